#!/bin/bash
# decode_rows.sh: the tensor-core decode form (decode_mma.cl) at more rows than one query, as the
# default now, against the kernels those calls took before, in one call: speculative decoding (Nq 2
# and 4 of a group of 4: 8 and 16 rows; before: decode_lanes, single form contiguous and wide form
# paged, and the staged kernel) and chunked prefill (Nq 16: 64 rows, one work-group of 4 warps; before:
# the staged kernel), causal and not, contiguous and paged 16, B 8 and 1 at 32k keys (fp16, H 32/8,
# d 128). Builds (setup.sh); runs the decode float64 tests on the default path and forced onto the
# mma form first. CSV rows, the form first; device-event medians.
# Usage: bench/gpu/decode_rows.sh OUT_DIR (~2 minutes after the build)
set -uo pipefail
out=${1:-/tmp/flashcl-decode-rows}
mkdir -p "$out"
cd "$(dirname "$0")/../.."

. bench/gpu/setup.sh  # the NVIDIA driver, FLASHCL_PLATFORM, build-gpu
export FLASHCL_CACHE_DIR=/tmp/flashcl-cache-rows
bench=./build-gpu/bench/flashcl-bench
start=$SECONDS

echo "== decode float64 tests: the default path, and forced onto mma"
for form in default mma; do
  env FLASHCL_DECODE=$([ $form = default ] || echo $form) timeout 150 ./build-gpu/tests/flashcl_tests \
    --gtest_filter='Decode*' > "$out/tests-$form.log" 2>&1
  echo "$form: exit $? $(grep -E '^\[  (PASSED|FAILED) +\]' "$out/tests-$form.log" | tr '\n' ' ') ($((SECONDS - start)) s)"
  grep -E '^\[  FAILED  \]|Failure' "$out/tests-$form.log" | head -6
done

one="--decode --heads 32 --heads-kv 8 --head-dim 128 --dtype f16 -r 20 -w 3 --csv --no-roofline -b 8,1"
echo "form,round,$($bench $one --cache 4096 -r 1 -w 1 2>/dev/null | head -1)"
for round in 1 2; do
  for nq in 2 4 16; do
    for causal in "" --causal; do
      for page in 0 16; do
        for form in default before; do
          before=staged
          [ $nq = 2 ] && before=$([ $page = 0 ] && echo lanes-single || echo lanes-wide)
          env FLASHCL_DECODE=$([ $form = default ] || echo $before) timeout 30 $bench $one --cache 32768 --seqlen-q $nq \
            $causal --page-size $page 2>>"$out/err.log" | tail -n +2 | sed "s/^/$form-nq$nq${causal:+-causal},$round,/"
        done
      done
    done
  done
  echo "(round $round: $((SECONDS - start)) s)"
done
echo "errors: $(grep -c . "$out/err.log" 2>/dev/null)"; head -5 "$out/err.log" 2>/dev/null
echo "total after the build: $((SECONDS - start)) s"
