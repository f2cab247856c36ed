#!/bin/bash
# kernel_cpu_time.sh: GFLOP per CPU-second spent in the fa2 kernel's .so (docs/perf/pocl-cpu.md's
# method for a loaded machine: perf cpu-clock samples at 2000 Hz in fa2_cpu_forward.so or
# fa2_forward.so, times 2000 Hz, FLOPs of 9 calls, x THREADS cores), and the bench's wall-clock
# median beside it. Old/new A/Bs: run it with both builds (or FLASHCL_KERNEL_DIR) back to back.
# Usage: [THREADS=2] [REPEAT=8 (calls timed; one more warms up)] bench/cpu/kernel_cpu_time.sh BENCH_BINARY N D on|off [f32|f16|bf16]
set -uo pipefail
bench=$1 n=$2 d=$3 causal=$4 dtype=${5:-f32} threads=${THREADS:-2} reps=${REPEAT:-8}
export POCL_MAX_PTHREAD_COUNT=$threads
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
perf record -q -e cpu-clock -F 2000 -o "$tmp/perf.data" -- "$bench" -b 1 --heads 8 -n "$n" --head-dim "$d" \
  --causal "$causal" --dtype "$dtype" --algo fa2 -r "$reps" --no-check --no-roofline -q > "$tmp/bench.txt" 2>&1 || exit 1
samples=$(perf report -i "$tmp/perf.data" --sort dso --stdio -F sample,dso 2>/dev/null |
          awk '/fa2_cpu_forward|fa2_forward/ {s += $1} END {print s + 0}')
wall=$(awk '/^fa2/ {print $11}' "$tmp/bench.txt")
python3 - "$n" "$d" "$causal" "$dtype" "$samples" "$threads" "$wall" "$reps" <<'PY'
import sys
n, d, causal, dtype, samples, threads, wall, reps = sys.argv[1:]
flops = (int(reps) + 1) * 4 * 8 * int(n) ** 2 * int(d) / (2 if causal == "on" else 1)
rate = flops / (int(samples) / 2000.0) * int(threads) / 1e9 if int(samples) else 0.0
print(f"N={n} d={d} causal={causal} {dtype}: {samples} samples, {rate:.1f} GFLOP/CPU-s x {threads}, wall median {wall} ms")
PY
