# python_setup.sh, sourced by the Python package's GPU scripts (python.sh, python_ab.sh) from the
# repository root with $out set: setup.sh (NVIDIA's OpenCL driver, FLASHCL_PLATFORM, build-gpu with
# flashcl-bench), then the nanobind module built with plain CMake into build-gpu-python (no network:
# nanobind from the machine's Python; C++ tests and bench off there; its log in
# $out/python-build.log) and put on PYTHONPATH, with .deps/pylib's pytest where the machine has none.
# Leaves $py, the interpreter (PYTHON= picks it; python3 by default); exits where the interpreter
# lacks nanobind, numpy or a CUDA-enabled torch, or the module does not build.
. bench/gpu/setup.sh

py=$(command -v "${PYTHON:-python3}")
"$py" -c "import nanobind, numpy, torch; assert torch.cuda.is_available()" \
  || { echo "$(basename "$0"): $py lacks nanobind, numpy or a CUDA-enabled torch"; exit 1; }
cmake -S . -B build-gpu-python -G Ninja -DCMAKE_BUILD_TYPE=Release -DFLASHCL_PYTHON=ON -DFLASHCL_BUILD_TESTS=OFF \
  -DFLASHCL_BUILD_BENCH=OFF -DPython_EXECUTABLE="$py" $prefix > "$out/python-build.log" 2>&1 \
  && cmake --build build-gpu-python >> "$out/python-build.log" 2>&1 || { tail -30 "$out/python-build.log"; exit 1; }
export PYTHONPATH=$PWD/build-gpu-python/python
"$py" -c "import pytest" 2>/dev/null || export PYTHONPATH=$PYTHONPATH:$PWD/.deps/pylib
