#!/bin/bash
# decode_cputime.sh TAG [flashcl-bench --decode options]: the decode kernel's K/V bytes per second
# of its own CPU time on PoCL, next to flashcl-bench's wall-clock figure. On a shared machine the
# wall clock measures the other processes as much as the kernel; perf's cpu-clock samples in
# decode_cpu.so (2000 Hz, both threads) count only the time the kernel ran (docs/perf/pocl-cpu.md,
# decode section). One shape per call (the first row's K/V bytes are used).
# Environment: BENCH (default build/bench/flashcl-bench), R timed runs (default 20; 2 warm-ups),
# OUT directory for the perf data (default /tmp), FLASHCL_KERNEL_DIR to time another kernel tree,
# KERNEL the attention kernel's name (default decode_cpu, fp8 caches included; decode_stream for
# FLASHCL_DECODE=stream).
set -euo pipefail
source "$(dirname "$0")/cpu_time_common.sh"
tag=${1:?usage: decode_cputime.sh TAG [flashcl-bench --decode options]}
shift
bench=${BENCH:-build/bench/flashcl-bench}
runs=${R:-20}
data=${OUT:-/tmp}/decode-$tag.perf
rows=$(perf_record "$data" "$bench" --decode -w 2 -r "$runs" "$@" 2>/dev/null | grep -E '^ +[0-9]')
samples() { dso_samples "$data" "^${1//./[.]}\$" | awk '{n += $1} END {print n + 0}'; }
so=${KERNEL:-decode_cpu}.so
kernel=$(samples "$so")
merge=$(( $(samples decode_merge.so) + $(samples decode_cpu_merge.so) ))
mb=$(echo "$rows" | awk 'NR == 1 {print $(NF - 3)}')
wall=$(echo "$rows" | awk 'NR == 1 {print $(NF - 2)}')
python3 - "$tag" "$runs" "$mb" "$wall" "${kernel:-0}" "${merge:-0}" <<'EOF'
import sys
tag, runs, mb, wall, kernel, merge = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4], int(sys.argv[5]), int(sys.argv[6])
calls, seconds = runs + 2, kernel / 2000.0
if kernel == 0:
    sys.exit(f"{tag}: no samples in the kernel's .so (not a CPU device, or another decode kernel chosen: KERNEL)")
load = open("/proc/loadavg").read().split()[0]
print(f"{tag}: {calls * mb / 1e3 / seconds:.2f} GB per kernel CPU-second ({seconds / calls * 1e3:.1f} CPU-ms a call, "
      f"merge {100.0 * merge / kernel:.1f} % of that), wall {wall} GB/s, load {load}")
EOF
