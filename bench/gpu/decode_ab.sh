#!/bin/bash
# decode_lanes' opt-in wide form (FLASHCL_DECODE=lanes-wide; docs/DECODE.md, "The wide form")
# against the default decode on the NVIDIA card, in one call of about 100 s after the build:
#  1. correctness there: the decode tests that cover page sizes (1, 3, 4, 6, 7, 16, 256: both the
#     page base per lane and the per-key walk), forced splits, GQA 4 and 8, NaNs and hostile device
#     values under FLASHCL_DECODE=lanes-wide, and two fp8 cache tests under lanes-wide16 (float64
#     reference, poisoned outputs); each capped (timeout) so the call stays near 100 s;
#  2. fp16, 1 query, H 32 over 8, d 128, B 8 and 1, 4k/32k/128k keys, contiguous and pages of 16
#     and 256: default and lanes-wide alternating, 2 rounds (-r 20 -w 3, device-event medians);
#  3. e4m3 caches, contiguous: default, lanes-wide16 (16-byte fp8 loads), lanes-wide and
#     lanes-wide-np (no L2 prefetch), one round each;
#  4. PyTorch SDPA (FlashAttention-2, cuDNN) on the fp16 shapes (bench/gpu/sdpa_decode.py);
#  5. one table (decode_ab_table.py): TB/s default, new, new/default, paged/contiguous for both
#     forms, new/FA2.
# Files in OUT_DIR: tests.log, default.csv, wide.csv, e4m3.csv, sdpa.json, table.txt (and setup's logs).
# Ran on the H100 on 2026-12-05 (docs/perf/nvidia-h100.md); paged 16-bit caches take the wide form
# by default since, so "default" and "lanes-wide" coincide on their paged rows; the single form is
# FLASHCL_DECODE=lanes-single (bench/gpu/defaults_ab.sh compares the two).
# Usage: bench/gpu/decode_ab.sh OUT_DIR
set -uo pipefail
out=${1:-/tmp/flashcl-decode-ab}
mkdir -p "$out"
out=$(realpath "$out")
cd "$(dirname "$0")/../.."

. bench/gpu/setup.sh  # the NVIDIA driver, FLASHCL_PLATFORM, build-gpu
start=$SECONDS
bench=./build-gpu/bench/flashcl-bench
export FLASHCL_CACHE_DIR=/tmp/flashcl-cache-ab

# 1. The wide form on this card against float64 (the first run compiles its programs).
FLASHCL_DECODE=lanes-wide timeout 40 ./build-gpu/tests/flashcl_tests --gtest_filter='Decode.HeadDim128GqaGroups:Decode.PagedPageSizes:Decode.SplitCountsAgree:Decode.PagedInOrderEqualsContiguous:Decode.NaNInTheCacheReachesOnlyItsRows:Decode.HostileDeviceValuesStayInBounds' > "$out/tests.log" 2>&1
echo "lanes-wide tests (rc $?): $(grep -E '^\[  (PASSED|FAILED)  \]' "$out/tests.log" | tr '\n' ' ')"
FLASHCL_DECODE=lanes-wide16 timeout 20 ./build-gpu/tests/flashcl_tests --gtest_filter='Decode.Fp8CacheHeadDim128:Decode.Fp8CacheContiguousAndPagedEveryQueryType' >> "$out/tests.log" 2>&1
echo "lanes-wide16 fp8 tests (rc $?): $(grep -E '^\[  (PASSED|FAILED)  \]' "$out/tests.log" | tail -n +2 | tr '\n' ' ')"
grep -E '^\[  FAILED  \]' "$out/tests.log" | head -10
echo "tests: $((SECONDS - start)) s"

# Registers and spills of the wide programs (the driver's ptxas, -cl-nv-verbose), stdout only.
for form in lanes-wide lanes-wide16; do
  FLASHCL_DECODE=$form FLASHCL_BUILD_OPTIONS=-cl-nv-verbose FLASHCL_BUILD_LOG=1 FLASHCL_DISK_CACHE=0 timeout 10 $bench \
    --decode --cache 4096 -b 1 --page-size 16 --cache-dtype e4m3 -r 1 -w 1 --no-roofline 2>&1 >/dev/null \
    | grep -A2 "properties for decode_lanes" | grep -E "Used|spill" | head -2 | sed "s/^/$form e4m3 paged 16: /"
done
FLASHCL_DECODE=lanes-wide FLASHCL_BUILD_OPTIONS=-cl-nv-verbose FLASHCL_BUILD_LOG=1 FLASHCL_DISK_CACHE=0 timeout 10 $bench \
  --decode --cache 4096 -b 1 --page-size 16 -r 1 -w 1 --no-roofline 2>&1 >/dev/null \
  | grep -A2 "properties for decode_lanes" | grep -E "Used|spill" | head -2 | sed "s/^/lanes-wide f16 paged 16: /"

# 2. fp16: default and lanes-wide alternating, per page size, 2 rounds.
shapes() {  # FORM(empty: default) PAGE [extra args]: CSV rows, no header
  local form=$1 page=$2
  shift 2
  FLASHCL_DECODE=$form timeout 15 $bench --decode --cache 4096,32768,131072 -b 8,1 --heads 32 --heads-kv 8 \
    --head-dim 128 --dtype f16 --page-size "$page" -r 20 -w 3 --csv "$@" 2>> "$out/tests.log" | tail -n +2
}
: > "$out/default.csv"
: > "$out/wide.csv"
for round in 1 2; do
  for page in 0 16 256; do
    shapes "" $page >> "$out/default.csv"
    shapes lanes-wide $page >> "$out/wide.csv"
  done
done
echo "fp16 A/B: $((SECONDS - start)) s"

# 3. e4m3 caches, contiguous (the form in the first CSV column).
: > "$out/e4m3.csv"
for form in default lanes-wide16 lanes-wide lanes-wide-np; do
  f=$form
  [ "$form" = default ] && f=""
  FLASHCL_DECODE=$f timeout 15 $bench --decode --cache 4096,32768,131072 -b 8,1 --heads 32 --heads-kv 8 --head-dim 128 \
    --dtype f16 --cache-dtype e4m3 -r 20 -w 3 --csv 2>> "$out/tests.log" | tail -n +2 | sed "s/^/$form,/" >> "$out/e4m3.csv"
done
echo "e4m3: $((SECONDS - start)) s"

# 4. PyTorch on the fp16 shapes.
timeout 25 python3 bench/gpu/sdpa_decode.py --batch 8,1 --cache 4096,32768,131072 --dtype f16 --repeat 20 \
  --json "$out/sdpa.json" > /dev/null 2>> "$out/tests.log" || echo "sdpa_decode.py failed: see tests.log"
echo "total after the build: $((SECONDS - start)) s"

# 5. The table.
python3 bench/gpu/decode_ab_table.py "$out" | tee "$out/table.txt"
