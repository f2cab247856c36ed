#!/bin/bash
# The decode path (forward_kvcache, docs/DECODE.md) on the NVIDIA GPU machine in one call: builds
# build-gpu (setup.sh), runs the decode tests there against float64 (gtest filter), then times
# flashcl-bench --decode on issue 22's shapes (fp16, 1 query, H 32 over H_kv 8, d 128; B 8 and 1;
# 4k, 32k and 128k keys; contiguous and paged with pages of 16 and 256), a sweep of forced split
# counts at each cache length, e4m3 caches (the FP8 KV cache, printed), decode_lanes with its next tile's loads in flight (the opt-in
# FLASHCL_DECODE=lanes form), and PyTorch SDPA (bench/gpu/sdpa_decode.py) on the same shapes, and prints
# one table of K/V TB/s and ratios (decode_table.py). The table's base column: with BASE=DIR
# (another commit's tree, e.g. `git archive HEAD~1 | tar -x -C .ab/base`), that tree's
# flashcl-bench on the same shapes; without it, this build with FLASHCL_DECODE=stream (the kernel
# NVIDIA ran before decode_lanes, with its split rule); either alternates with the new runs.
# At most 8 files land in OUT_DIR:
# cmake.log, build.log, tests.log, flashcl.csv, sweep.csv, base.csv, sdpa.json, table.txt.
# Usage: [BASE=DIR] [REPEAT=N] [SWEEP=0] bench/gpu/decode.sh OUT_DIR
set -uo pipefail
out=${1:-/tmp/flashcl-decode}
mkdir -p "$out"
out=$(realpath "$out")
cd "$(dirname "$0")/../.."

. bench/gpu/setup.sh  # the NVIDIA driver, FLASHCL_PLATFORM, build-gpu

# Correctness on this device first: every decode case against float64 (NaN-poisoned outputs).
./build-gpu/tests/flashcl_tests --gtest_filter='Decode*' > "$out/tests.log" 2>&1
echo "decode tests on the GPU: $(grep -E '^\[  (PASSED|FAILED)  \]' "$out/tests.log" | head -3 | tr '\n' ' ')"
grep -E '^\[  FAILED  \]' "$out/tests.log" | head -10

# Registers and spills of the decode kernels (ptxas through -cl-nv-verbose), on stdout only.
FLASHCL_BUILD_OPTIONS=-cl-nv-verbose FLASHCL_BUILD_LOG=1 FLASHCL_DISK_CACHE=0 ./build-gpu/bench/flashcl-bench --decode \
  --cache 4096 -b 8 -r 1 -w 1 --no-roofline 2>&1 >/dev/null | grep -E "Function properties|Used|spill" | head -12

base_bench=./build-gpu/bench/flashcl-bench base_label="FLASHCL_DECODE=stream" base_env="FLASHCL_DECODE=stream"
if [ -n "${BASE:-}" ]; then
  base_bench="" base_label="BASE=$BASE" base_env=""
  base=$(realpath "$BASE")
  prefix=""
  [ -d .deps/usr ] && prefix="-DCMAKE_PREFIX_PATH=$PWD/.deps/usr"
  logs=$(mktemp -d)
  cmake -S "$base" -B "$base/build-gpu" -G Ninja -DCMAKE_BUILD_TYPE=Release -DFLASHCL_BUILD_TESTS=OFF $prefix \
    > "$logs/cmake.log" 2>&1 && cmake --build "$base/build-gpu" --target flashcl-bench > "$logs/build.log" 2>&1 \
    && base_bench="$base/build-gpu/bench/flashcl-bench" || { echo "BASE build failed:"; tail -20 "$logs"/*.log; }
fi

shapes() {  # BENCH [VAR=VALUE ...]: every shape of the table as CSV rows on stdout (no header)
  local bench=$1
  shift
  for page in 0 16 256; do
    env "$@" "$bench" --decode --cache 4096,32768,131072 -b 8,1 --heads 32 --heads-kv 8 --head-dim 128 --dtype f16 \
      --page-size $page -r "${REPEAT:-30}" -w 5 --csv 2>> "$out/tests.log" | tail -n +2
  done
}
: > "$out/flashcl.csv"
[ -n "$base_bench" ] && : > "$out/base.csv"
for round in 1 2; do  # new and base alternate, so drift hits both; the table takes the better round
  shapes ./build-gpu/bench/flashcl-bench FLASHCL_CACHE_DIR=/tmp/flashcl-cache-new >> "$out/flashcl.csv"
  [ -n "$base_bench" ] && shapes "$base_bench" FLASHCL_CACHE_DIR=/tmp/flashcl-cache-base $base_env >> "$out/base.csv"
done

# The FP8 KV cache (docs/FP8.md, "FP8 KV cache"): e4m3 caches on the same contiguous shapes, the
# bench's own table on stdout (its K/V bytes count one an element: compare times with fp16's rows).
./build-gpu/bench/flashcl-bench --decode --cache 4096,32768,131072 -b 8,1 --heads 32 --heads-kv 8 --head-dim 128 \
  --dtype f16 --cache-dtype e4m3 -r "${REPEAT:-30}" -w 5 2>> "$out/tests.log"

# Forced split counts at each cache length (the planner's SplitRule is what this sweep checks);
# SWEEP=0 leaves it out (and the pipelined lanes rows) when the call's time is short.
: > "$out/sweep.csv"
[ "${SWEEP:-1}" = 1 ] && for cache in 4096 32768 131072; do
  for b in 8 1; do
    for s in 4 8 16 33 66 132 264; do
      ./build-gpu/bench/flashcl-bench --decode --cache $cache -b $b --heads 32 --heads-kv 8 --head-dim 128 --dtype f16 \
        --splits $s -r 20 -w 3 --csv --no-roofline 2>> "$out/tests.log" | tail -n +2 >> "$out/sweep.csv"
    done
  done
done

# decode_lanes with the next tile's loads in flight (FLASHCL_DECODE=lanes, the opt-in form), at
# 32k keys, its rows marked in the device column for the table.
[ "${SWEEP:-1}" = 1 ] && for page in 0 16; do
  FLASHCL_DECODE=lanes ./build-gpu/bench/flashcl-bench --decode --cache 32768 -b 8,1 --heads 32 --heads-kv 8 \
    --head-dim 128 --dtype f16 --page-size $page -r 20 -w 3 --csv --no-roofline 2>> "$out/tests.log" | tail -n +2 \
    | sed 's/^"/"lanes-pipelined /' >> "$out/sweep.csv"
done

python3 bench/gpu/sdpa_decode.py --batch 8,1 --cache 4096,32768,131072 --dtype f16 --json "$out/sdpa.json" \
  > /dev/null 2>> "$out/tests.log" || echo "sdpa_decode.py failed: see tests.log"

python3 bench/gpu/decode_table.py "$out" "$base_label" | tee "$out/table.txt"
