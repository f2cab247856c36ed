#!/bin/bash
# decode_rows.sh: the tensor-core decode form (decode_mma.cl) at more rows than one query, against
# the kernels those calls take by default, in one call: speculative decoding (Nq 2 and 4 of a group
# of 4: 8 and 16 rows, decode_lanes and the staged kernel today) and chunked prefill (Nq 16: 64 rows,
# four 16-row blocks, the staged kernel), causal and not, contiguous and paged 16, B 8 and 1 at 32k
# keys (fp16, H 32/8, d 128); then, at one query, the default against its .L2::256B copy hint
# (FLASHCL_BUILD_OPTIONS=-DDM_L2_256=1, an experiment). Builds (setup.sh); runs the decode float64
# tests forced onto the mma form first. CSV rows, the form first; device-event medians.
# Usage: bench/gpu/decode_rows.sh OUT_DIR (~3 minutes after the build)
set -uo pipefail
out=${1:-/tmp/flashcl-decode-rows}
mkdir -p "$out"
cd "$(dirname "$0")/../.."

. bench/gpu/setup.sh  # the NVIDIA driver, FLASHCL_PLATFORM, build-gpu
export FLASHCL_CACHE_DIR=/tmp/flashcl-cache-rows
bench=./build-gpu/bench/flashcl-bench
start=$SECONDS

echo "== decode float64 tests forced onto mma"
FLASHCL_DECODE=mma timeout 150 ./build-gpu/tests/flashcl_tests --gtest_filter='Decode*' > "$out/tests.log" 2>&1
echo "mma: exit $? $(grep -E '^\[  (PASSED|FAILED) +\]' "$out/tests.log" | tr '\n' ' ') ($((SECONDS - start)) s)"
grep -E '^\[  FAILED  \]|Failure' "$out/tests.log" | head -6

one="--decode --heads 32 --heads-kv 8 --head-dim 128 --dtype f16 -r 20 -w 3 --csv --no-roofline -b 8,1"
echo "form,round,$($bench $one --cache 4096 -r 1 -w 0 2>/dev/null | head -1)"
for round in 1 2; do
  for nq in 2 4 16; do
    for causal in "" --causal; do
      for page in 0 16; do
        for form in default mma; do
          env FLASHCL_DECODE=$([ $form = default ] || echo $form) timeout 30 $bench $one --cache 32768 --seqlen-q $nq $causal \
            --page-size $page 2>>"$out/err.log" | tail -n +2 | sed "s/^/$form-nq$nq${causal:+-causal},$round,/"
        done
      done
    done
  done
  for form in default l2-256; do
    for cache in 32768 131072; do
      env FLASHCL_BUILD_OPTIONS=$([ $form = default ] || echo -DDM_L2_256=1) timeout 30 $bench $one --cache $cache \
        2>>"$out/err.log" | tail -n +2 | sed "s/^/$form-nq1,$round,/"
    done
  done
  echo "(round $round: $((SECONDS - start)) s)"
done
echo "errors: $(grep -c . "$out/err.log" 2>/dev/null)"; head -5 "$out/err.log" 2>/dev/null
echo "total after the build: $((SECONDS - start)) s"
