#!/bin/sh
# carry_deps.sh: fills the ignored .deps/ folder that the GPU scripts carry to the device machine,
# which has a compiler, CMake, Ninja and the OpenCL headers but cannot download anything
# (../shared/GPU.md). Run here, once per checkout: Debian's packages of the libraries the build
# uses (CLI11, nlohmann-json, GoogleTest, xxhash; `apt-get download`, unpacked with `dpkg -x` into
# .deps, where setup.sh points CMake at .deps/usr) and pure-Python pytest in .deps/pylib
# (python_setup.sh puts it on PYTHONPATH where the machine's Python has none).
# Usage: bench/gpu/carry_deps.sh   (then `carry: [".deps", ...]` in the device call)
set -eu
cd "$(dirname "$0")/../.."
rm -rf .deps && mkdir -p .deps/debs
(cd .deps/debs && apt-get download -qq libcli11-dev nlohmann-json3-dev libgtest-dev googletest libxxhash-dev \
  libxxhash0)
for deb in .deps/debs/*.deb; do dpkg -x "$deb" .deps; done
rm -rf .deps/debs
python3 -m pip download -q --only-binary=:all: --no-deps -d /tmp/carry-pylib pytest pluggy iniconfig packaging \
  exceptiongroup tomli
python3 -m pip install -q --no-deps --no-index --target .deps/pylib /tmp/carry-pylib/*.whl
rm -rf /tmp/carry-pylib
du -sh .deps
