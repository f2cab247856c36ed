#!/bin/bash
# flashcl.torch.flash_attn_with_kvcache on CUDA tensors, on the NVIDIA GPU machine in one run:
# registers NVIDIA's OpenCL driver and builds build-gpu (setup.sh), builds the Python module
# (python_setup.sh), runs tests/python/test_torch_kvcache.py's CUDA cases (-k cuda: fp16, and fp16/
# bf16 in test_half_precisions; contiguous and paged caches, appends checked in place, float64
# reference) under both allocator settings, then times one decode shape (B 8, H 32/8, d 128, 32k
# keys + 1 appended, fp16) through Python (bench/gpu/python_kvcache_bench.py, default allocator:
# pool tensors, and plain ones, staged; CUDA events) next to flashcl-bench --decode's device time
# for the same shape: a ratio near 1 for pool tensors shows no host round trip.
# Then the breakdown (python_kvcache_breakdown.py): flashcl-bench with and without the append,
# causal or not, and at an even capacity, next to the Python call with and without the append,
# under host waits, the bridge's floor (one fill), and each call's host time split between the
# Python layer and the binding (docs/perf/nvidia-h100.md, "where the 1.45x goes"; ~30 s more).
# Usage: bench/gpu/python_kvcache.sh OUT_DIR (default /tmp/flashcl-python-kvcache; PYTHON= picks
# the interpreter; STEPS=breakdown skips the tests and the first table). OUT_DIR gets cmake.log,
# build.log, python-build.log, pytest.log, pytest-expandable.log, cpp*.csv, bench.txt,
# breakdown.txt. About a minute and a half after the build.
set -uo pipefail
out=${1:-/tmp/flashcl-python-kvcache}
mkdir -p "$out"
cd "$(dirname "$0")/../.."

. bench/gpu/python_setup.sh  # setup.sh, then the Python module in build-gpu-python; sets $py

# Twice: under PyTorch's default allocator the caches are staged into flashcl's pool and copied
# back after the append; under expandable_segments they are imported and written where they are.
steps=${STEPS:-all}
for alloc in "" "expandable_segments:True"; do
  [ "$steps" = breakdown ] && break
  log="$out/pytest${alloc:+-expandable}.log"
  echo "== tests (tests/python/test_torch_kvcache.py -k cuda; PYTORCH_CUDA_ALLOC_CONF='$alloc')"
  PYTORCH_CUDA_ALLOC_CONF=$alloc timeout -k 10 240 "$py" -m pytest -q -rs -p no:cacheprovider -k cuda \
    tests/python/test_torch_kvcache.py > "$log" 2>&1
  [ $? -ge 124 ] && echo "python_kvcache.sh: pytest ran past 240 s and was stopped"
  grep -E "passed|failed|error" "$log" | tail -3
  grep -E "^(FAILED|ERROR)" "$log" | head -20
done

echo "== B 8, H 32/8, d 128, 32k keys + 1 appended, fp16: flashcl-bench against flash_attn_with_kvcache"
./build-gpu/bench/flashcl-bench --decode --cache 32768 -b 8 --heads 32 --heads-kv 8 --head-dim 128 --dtype f16 \
  --new-tokens 1 --causal -r 30 -w 5 --csv > "$out/cpp.csv" 2>> "$out/python-build.log"
cat "$out/cpp.csv"
[ "$steps" = breakdown ] || timeout -k 10 200 "$py" bench/gpu/python_kvcache_bench.py "$out/cpp.csv" 2>&1 | tee "$out/bench.txt"

echo "== breakdown: flashcl-bench variants, then the Python call's parts"
variant() {  # NAME then flashcl-bench arguments after the shape
  local name=$1
  shift
  timeout -k 5 30 ./build-gpu/bench/flashcl-bench --decode -b 8 --heads 32 --heads-kv 8 --head-dim 128 --dtype f16 \
    -r 30 -w 5 --csv "$@" > "$out/cpp-$name.csv" 2>> "$out/python-build.log"
}
variant no-append --cache 32768 --causal                              # two kernels, 32768 keys
variant non-causal --cache 32768 --new-tokens 1                       # -DCAUSAL=0
variant plain --cache 32768                                           # decode_ab.sh's shape
variant even --cache 32767 --new-tokens 1 --causal                    # capacity 32768 with the append
variant again --cache 32768 --new-tokens 1 --causal                   # cpp.csv's shape last: warm-up drift
timeout -k 10 120 "$py" bench/gpu/python_kvcache_breakdown.py \
  "append+causal (Python's shape)=$out/cpp.csv" "no append, causal=$out/cpp-no-append.csv" \
  "append, non-causal=$out/cpp-non-causal.csv" "no append, non-causal=$out/cpp-plain.csv" \
  "append+causal, capacity 32768=$out/cpp-even.csv" "append+causal, again (last)=$out/cpp-again.csv" 2>&1 | tee "$out/breakdown.txt"
