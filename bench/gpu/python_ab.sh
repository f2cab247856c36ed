#!/bin/bash
# Plain PyTorch CUDA tensors without a staging copy, on the NVIDIA GPU machine in one run (issue 21's
# bar: flash_attn_func on CUDA fp16, B 8, H 16, N 4096, d 128, forward and forward+backward, within
# 1.15x flashcl-bench's device time). Registers NVIDIA's OpenCL driver and builds build-gpu
# (setup.sh), builds the Python module as python.sh does, runs tests/python/test_cuda_import.py
# (fresh interpreters: imports under expandable_segments against float64 forward and backward, the
# straddled-chunk and switched-off fallbacks, no fd/import/memory left after empty_cache; the
# default allocator's staging with its warning), then flashcl-bench's device time and
# bench/gpu/python_bench.py once per allocator setting: the default (pool tensors, and plain ones
# staged), expandable_segments:True (plain: 128 MiB tensors straddle its 20 MiB chunks, so staged),
# and expandable_segments:True,large_segment_size_mb:1024 where this PyTorch has that option (plain
# tensors imported). Prints one table last. Usage: bench/gpu/python_ab.sh OUT_DIR (default
# /tmp/flashcl-python-ab; PYTHON= picks the interpreter). About 120 s after the build.
set -uo pipefail
out=${1:-/tmp/flashcl-python-ab}
mkdir -p "$out"
cd "$(dirname "$0")/../.."

. bench/gpu/python_setup.sh  # setup.sh, then the Python module in build-gpu-python; sets $py
"$py" -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"

echo "== tests (tests/python/test_cuda_import.py)"
timeout -k 10 200 "$py" -m pytest -q -rs -s -p no:cacheprovider tests/python/test_cuda_import.py > "$out/pytest.log" 2>&1
[ $? -ge 124 ] && echo "python_ab.sh: pytest ran past 200 s and was stopped"
grep -E "^(expandable|default):|passed|failed|error" "$out/pytest.log" | tail -8
grep -E "^(FAILED|ERROR)|Error|assert" "$out/pytest.log" | head -12

echo "== the bar: B = 8, H = 16, N = 4096, d = 128, fp16"
./build-gpu/bench/flashcl-bench -b 8 --heads 16 -n 4096 --head-dim 128 --causal both --algo fa2 --dtype f16 -r 10 \
  --no-check --no-roofline -q -f csv -o "$out/cpp-fwd.csv" > /dev/null 2>> "$out/python-build.log"
./build-gpu/bench/flashcl-bench --backward -b 8 --heads 16 -n 4096 --head-dim 128 --causal both --algo fa2 \
  --dtype f16 -r 10 > "$out/cpp-bwd.txt" 2>&1
summary="$out/summary.tsv"
: > "$summary"
run() {  # label, tensors, PYTORCH_CUDA_ALLOC_CONF
  echo "-- $1 ($3)"
  # 20 calls a loop (plain staged forward, H100, 2026-12-06: 4.19 ms a call in loops of 10, 3.67-3.71
  # in loops of 20 in a later call; python_stage_probe.py, 20 calls in two rounds, 3.68-3.82)
  PYTORCH_CUDA_ALLOC_CONF=$3 timeout -k 10 120 "$py" bench/gpu/python_bench.py "$out/cpp-fwd.csv" \
    "$out/cpp-bwd.txt" --repeat 20 \
    --orderings auto --tensors "$2" --label "$1" --summary "$summary" --no-fixed-cost > "$out/bench-$1.txt" 2>&1
  local rc=$?
  [ $rc -ne 0 ] && { echo "python_ab.sh: $1 failed (exit $rc):"; tail -6 "$out/bench-$1.txt"; }
  grep -E "^\[|imports at the end" "$out/bench-$1.txt"
}
run default pool,plain ""
run expandable plain "expandable_segments:True"
run expandable-1g plain "expandable_segments:True,large_segment_size_mb:1024"

echo "== ms per call back to back (CUDA events) against flashcl-bench's kernel time; bar: ratio <= 1.15"
printf "%-14s %-6s %-6s %-9s | %8s %8s %6s | %8s %8s %6s | %6s %8s\n" allocator tensor causal ordering \
  "fwd ms" "C++" ratio "f+b ms" "C++" ratio staged imported
while IFS=$'\t' read -r label kind causal ordering f fc fr b bc br staged imported; do
  printf "%-14s %-6s %-6s %-9s | %8s %8s %6s | %8s %8s %6s | %6s %8s\n" "$label" "$kind" "$causal" "$ordering" \
    "$f" "$fc" "$fr" "$b" "$bc" "$br" "$staged" "$imported"
done < "$summary"
