#!/bin/bash
# standard_cpu_time.sh: kernel_cpu_time.sh's measurement for the `standard` path: GFLOP per
# CPU-second spent in the standard kernels' .so files (perf cpu-clock samples at 2000 Hz in every
# PoCL kernel library whose name holds "standard": scores, softmax and P.V, CPU form or portable),
# times 2000 Hz, FLOPs of REPEAT + 1 calls (the bench's warm-up included), x THREADS cores, with
# the bench's wall-clock median and the load average beside it. The per-kernel sample split is
# printed too, so an A/B shows which phase moved. Old/new A/Bs: both binaries back to back.
# Usage: [THREADS=2] [REPEAT=4] bench/cpu/standard_cpu_time.sh BENCH_BINARY N D on|off [f32|f16|bf16]
set -uo pipefail
source "$(dirname "$0")/cpu_time_common.sh"
default_repeat=4
forward_args "$@"
forward_record standard || exit 1
dso_samples "$tmp/perf.data" standard > "$tmp/dso.txt"
samples=$(awk '{s += $1} END {print s + 0}' "$tmp/dso.txt")
split=$(awk '{printf "%s%s %s", (NR > 1 ? ", " : ""), $2, $1}' "$tmp/dso.txt")
wall=$(awk '$1 == "standard" {print $11}' "$tmp/bench.txt")
load=$(cut -d' ' -f1 /proc/loadavg)
echo "standard N=$n d=$d causal=$causal $dtype: $samples samples, $(gflop_rate "$samples") GFLOP/CPU-s x $threads," \
  "wall median $wall ms, load $load [$split]"
