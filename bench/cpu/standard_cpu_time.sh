#!/bin/bash
# standard_cpu_time.sh: kernel_cpu_time.sh's measurement for the `standard` path: GFLOP per
# CPU-second spent in the standard kernels' .so files (perf cpu-clock samples at 2000 Hz in every
# PoCL kernel library whose name holds "standard": scores, softmax and P.V, CPU form or portable),
# times 2000 Hz, FLOPs of REPEAT + 1 calls (the bench's warm-up included), x THREADS cores, with
# the bench's wall-clock median and the load average beside it. The per-kernel sample split is
# printed too, so an A/B shows which phase moved. Old/new A/Bs: both binaries back to back.
# Usage: [THREADS=2] [REPEAT=4] bench/cpu/standard_cpu_time.sh BENCH_BINARY N D on|off [f32|f16|bf16]
set -uo pipefail
bench=$1 n=$2 d=$3 causal=$4 dtype=${5:-f32} threads=${THREADS:-2} reps=${REPEAT:-4}
export POCL_MAX_PTHREAD_COUNT=$threads
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
perf record -q -e cpu-clock -F 2000 -o "$tmp/perf.data" -- "$bench" -b 1 --heads 8 -n "$n" --head-dim "$d" \
  --causal "$causal" --dtype "$dtype" --algo standard -r "$reps" --no-check --no-roofline -q > "$tmp/bench.txt" 2>&1 || exit 1
perf report -i "$tmp/perf.data" --sort dso --stdio -F sample,dso 2>/dev/null | awk '/standard/ {print $1, $2}' > "$tmp/dso.txt"
samples=$(awk '{s += $1} END {print s + 0}' "$tmp/dso.txt")
split=$(awk '{printf "%s%s %s", (NR > 1 ? ", " : ""), $2, $1}' "$tmp/dso.txt")
wall=$(awk '$1 == "standard" {print $11}' "$tmp/bench.txt")
load=$(cut -d' ' -f1 /proc/loadavg)
python3 - "$n" "$d" "$causal" "$dtype" "$samples" "$threads" "$wall" "$reps" "$load" "$split" <<'PY'
import sys
n, d, causal, dtype, samples, threads, wall, reps, load, split = sys.argv[1:]
flops = (int(reps) + 1) * 4 * 8 * int(n) ** 2 * int(d) / (2 if causal == "on" else 1)
rate = flops / (int(samples) / 2000.0) * int(threads) / 1e9 if int(samples) else 0.0
print(f"standard N={n} d={d} causal={causal} {dtype}: {samples} samples, {rate:.1f} GFLOP/CPU-s x {threads}, "
      f"wall median {wall} ms, load {load} [{split}]")
PY
