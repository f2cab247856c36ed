#!/bin/bash
# The Python package on the NVIDIA GPU machine, in one run: registers NVIDIA's OpenCL driver and
# builds the C++ tree in build-gpu (setup.sh), builds the nanobind module with plain CMake into
# build-gpu-python (no network: nanobind from the machine's Python; C++ tests and bench off there),
# runs the CUDA-tensor tests (tests/python/test_cuda_tensors.py and test_cuda_unavailable.py:
# float64 reference, zero-copy pool, tiny Llama against sdpa, producer/consumer ordering under
# semaphores, the flag and host waits; a producer/consumer chain; the fallback when
# cuStreamWaitValue32 is hidden), and measures the bar: flash_attn_func on CUDA fp16 (B = 8, H = 16,
# N = 4096, d = 128) forward and forward+backward, pool and plain tensors, under every ordering the
# driver offers (GPU-side semaphores, the flag the stream waits for on the GPU, host waits; switched
# in one process by flashcl.cuda.set_ordering), next to flashcl-bench's device time for the same
# shape, and each ordering's fixed cost per call.
# Usage: bench/gpu/python.sh OUT_DIR   (default /tmp/flashcl-python; PYTHON= picks the interpreter;
# STEPS="tests bench" by default: STEPS=tests or STEPS=bench runs one part, e.g. in two device calls
# when both do not fit one; TEST_LIMIT=420 and BENCH_LIMIT=300 seconds bound the parts)
# pytest: the machine's, else .deps/pylib (pure-Python copies of pytest and its dependencies,
# carried like .deps/usr). OUT_DIR gets cmake.log, build.log, python-build.log, pytest.log,
# cpp-fwd.csv, cpp-bwd.txt, python-bench.txt.
set -uo pipefail
out=${1:-/tmp/flashcl-python}
mkdir -p "$out"
cd "$(dirname "$0")/../.."

. bench/gpu/python_setup.sh  # setup.sh, then the Python module in build-gpu-python; sets $py

steps=" ${STEPS:-tests bench} "
test_limit=${TEST_LIMIT:-420}
bench_limit=${BENCH_LIMIT:-300}

if [[ $steps == *" tests "* ]]; then
  echo "== tests (tests/python/test_cuda_*.py; test_cuda_import.py: plain tensors without staging)"
  # Bounded, so a hang (a semaphore wait never satisfied) still leaves the logs and the bench's
  # turn; faulthandler prints every thread's stack of a test that runs past 120 s.
  timeout -k 10 "$test_limit" "$py" -m pytest -q -rs -s -p no:cacheprovider -o faulthandler_timeout=120 \
    tests/python/test_cuda_tensors.py tests/python/test_cuda_unavailable.py tests/python/test_cuda_import.py \
    > "$out/pytest.log" 2>&1
  [ $? -ge 124 ] && echo "python.sh: pytest ran past $test_limit s and was stopped (stacks in pytest.log)"
  grep -E "bridge:|passed|failed|error|sdpa \[|flashcl \[" "$out/pytest.log" | tail -20
  grep -E "^(FAILED|ERROR)" "$out/pytest.log" | head -20
fi

if [[ $steps == *" bench "* ]]; then
  echo "== the bar: B = 8, H = 16, N = 4096, d = 128, fp16"
  ./build-gpu/bench/flashcl-bench -b 8 --heads 16 -n 4096 --head-dim 128 --causal both --algo fa2 --dtype f16 -r 10 \
    --no-check --no-roofline -q -f csv -o "$out/cpp-fwd.csv" > /dev/null 2>> "$out/python-build.log"
  ./build-gpu/bench/flashcl-bench --backward -b 8 --heads 16 -n 4096 --head-dim 128 --causal both --algo fa2 \
    --dtype f16 -r 10 > "$out/cpp-bwd.txt" 2>&1
  timeout -k 10 "$bench_limit" "$py" bench/gpu/python_bench.py "$out/cpp-fwd.csv" "$out/cpp-bwd.txt" 2>&1 \
    | tee "$out/python-bench.txt"
fi
