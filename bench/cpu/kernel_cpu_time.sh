#!/bin/bash
# kernel_cpu_time.sh: GFLOP per CPU-second spent in the fa2 kernel's .so (docs/perf/pocl-cpu.md's
# method for a loaded machine: perf cpu-clock samples at 2000 Hz in fa2_cpu_forward.so or
# fa2_forward.so, times 2000 Hz, FLOPs of 9 calls, x THREADS cores), and the bench's wall-clock
# median beside it. Old/new A/Bs: run it with both builds (or FLASHCL_KERNEL_DIR) back to back.
# Usage: [THREADS=2] [REPEAT=8 (calls timed; one more warms up)] bench/cpu/kernel_cpu_time.sh BENCH_BINARY N D on|off [f32|f16|bf16]
set -uo pipefail
source "$(dirname "$0")/cpu_time_common.sh"
default_repeat=8
forward_args "$@"
forward_record fa2 || exit 1
samples=$(dso_samples "$tmp/perf.data" 'fa2_cpu_forward|fa2_forward' | awk '{s += $1} END {print s + 0}')
wall=$(awk '/^fa2/ {print $11}' "$tmp/bench.txt")
echo "N=$n d=$d causal=$causal $dtype: $samples samples, $(gflop_rate "$samples") GFLOP/CPU-s x $threads, wall median $wall ms"
