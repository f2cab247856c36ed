# cpu_time_common.sh: sourced by the kernel CPU-time scripts (kernel_cpu_time.sh, standard_cpu_time.sh,
# decode_cputime.sh), which measure a kernel by its own CPU time on a machine others load: perf's
# cpu-clock samples at 2000 Hz (both PoCL threads) in the kernel's .so, not the wall clock
# (docs/perf/pocl-cpu.md). Here once: the sampling run, the count of samples per .so, and for the
# forward scripts their shared arguments (BENCH_BINARY N D on|off [dtype], THREADS, REPEAT), the
# temporary directory and the GFLOP per CPU-second of REPEAT + 1 calls (the warm-up included).

# perf_record DATA COMMAND...: COMMAND (its output on stdout) with every CPU's time sampled into DATA
perf_record() {
  local data=$1
  shift
  perf record -q -e cpu-clock -F 2000 -o "$data" -- "$@"
}

# dso_samples DATA AWK_REGEX: "COUNT NAME" per sampled .so whose name matches
dso_samples() {
  perf report -i "$1" --sort dso --stdio -F sample,dso 2>/dev/null | awk -v re="$2" '$2 ~ re {print $1, $2}'
}

# forward_args BENCH_BINARY N D on|off [dtype]: the forward scripts' arguments and environment, and
# $tmp, removed on exit
forward_args() {
  bench=$1 n=$2 d=$3 causal=$4 dtype=${5:-f32} threads=${THREADS:-2} reps=${REPEAT:-$default_repeat}
  export POCL_MAX_PTHREAD_COUNT=$threads
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
}

# forward_record ALGO: the bench's B 1, H 8 call of the forward arguments under perf, into $tmp
forward_record() {
  perf_record "$tmp/perf.data" "$bench" -b 1 --heads 8 -n "$n" --head-dim "$d" --causal "$causal" --dtype "$dtype" \
    --algo "$1" -r "$reps" --no-check --no-roofline -q > "$tmp/bench.txt" 2>&1
}

# gflop_rate SAMPLES: GFLOP per CPU-second of the forward calls (4 B H N^2 d FLOPs, half causal), x threads
gflop_rate() {
  awk -v s="$1" -v n="$n" -v d="$d" -v c="$causal" -v r="$reps" -v t="$threads" 'BEGIN {
    flops = (r + 1) * 4 * 8 * n * n * d / (c == "on" ? 2 : 1)
    printf "%.1f", (s > 0 ? flops / (s / 2000.0) * t / 1e9 : 0.0) }'
}
