#!/bin/bash
# flashcl.torch.flash_attn_with_kvcache on CUDA tensors, on the NVIDIA GPU machine in one run:
# registers NVIDIA's OpenCL driver and builds build-gpu (setup.sh), builds the Python module
# (python_setup.sh), runs tests/python/test_torch_kvcache.py's CUDA cases (-k cuda: fp16, and fp16/
# bf16 in test_half_precisions; contiguous and paged caches, appends checked in place, float64
# reference) under both allocator settings, then times one decode shape (B 8, H 32/8, d 128, 32k
# keys + 1 appended, fp16) through Python (bench/gpu/python_kvcache_bench.py, default allocator:
# pool tensors, and plain ones, staged; CUDA events) next to flashcl-bench --decode's device time
# for the same shape: a ratio near 1 for pool tensors shows no host round trip.
# Usage: bench/gpu/python_kvcache.sh OUT_DIR (default /tmp/flashcl-python-kvcache; PYTHON= picks
# the interpreter). OUT_DIR gets cmake.log, build.log, python-build.log, pytest.log,
# pytest-expandable.log, cpp.csv, bench.txt. About a minute after the build.
set -uo pipefail
out=${1:-/tmp/flashcl-python-kvcache}
mkdir -p "$out"
cd "$(dirname "$0")/../.."

. bench/gpu/python_setup.sh  # setup.sh, then the Python module in build-gpu-python; sets $py

# Twice: under PyTorch's default allocator the caches are staged into flashcl's pool and copied
# back after the append; under expandable_segments they are imported and written where they are.
for alloc in "" "expandable_segments:True"; do
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
timeout -k 10 200 "$py" bench/gpu/python_kvcache_bench.py "$out/cpp.csv" 2>&1 | tee "$out/bench.txt"
