#!/bin/sh
# check-install.sh [BUILD_DIR]: proves the installed package works for a consumer. Installs flashcl
# into a temporary prefix (from BUILD_DIR when given, already built; else from a fresh Release
# build of the library and bench), runs the installed flashcl-bench --list-devices, builds
# examples/ against the prefix with find_package(flashcl), builds the same two programs with
# pkg-config's flags, and runs all four (each checks its output against a reference). Needs a
# working OpenCL device (PoCL's CPU in CI); called by .ci/run.
set -eu
src=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/flashcl-install.XXXXXX")
trap 'rm -rf "$work"' EXIT
prefix="$work/prefix"

if [ $# -ge 1 ]; then
  build=$1
else
  build="$work/build"
  cmake -S "$src" -B "$build" -G Ninja -DFLASHCL_BUILD_TESTS=OFF -DFLASHCL_PYTHON=OFF >/dev/null
  cmake --build "$build"
fi
cmake --install "$build" --prefix "$prefix" >/dev/null
echo "== installed flashcl-bench --list-devices"
"$prefix/bin/flashcl-bench" --list-devices

echo "== examples/ with find_package(flashcl)"
cmake -S "$src/examples" -B "$work/examples" -G Ninja -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$work/examples"
"$work/examples/attention_cpp"
"$work/examples/attention_c"

echo "== the same programs with pkg-config --cflags --libs flashcl"
libdir=$(dirname "$(find "$prefix" -name flashcl.pc)")
export PKG_CONFIG_PATH="$libdir${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
# A static libflashcl needs its private libraries (the C++ runtime) on a C program's link line.
static=""
[ -e "$(pkg-config --variable=libdir flashcl)/libflashcl.a" ] && static=--static
flags=$(pkg-config $static --cflags --libs flashcl)
rpath="-Wl,-rpath,$(pkg-config --variable=libdir flashcl)"
# shellcheck disable=SC2086 # the flags are words
c++ -std=c++17 -DCL_TARGET_OPENCL_VERSION=300 -o "$work/pc_attention_cpp" "$src/examples/attention.cpp" $flags $rpath
# shellcheck disable=SC2086
cc -DCL_TARGET_OPENCL_VERSION=300 -o "$work/pc_attention_c" "$src/examples/attention.c" $flags -lm $rpath
"$work/pc_attention_cpp"
"$work/pc_attention_c"
echo "check-install: the installed package works (CMake, pkg-config, installed flashcl-bench)"
