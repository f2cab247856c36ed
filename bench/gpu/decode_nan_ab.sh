#!/bin/bash
# decode_nan_ab.sh: one GPU call for the decode kernels' handling of NaN scores (decode_common.cl,
# "NaN scores": decode_stream, decode_lanes, their streams' merge and decode_split). Runs the decode
# suite on the default plans and its NaN tests forced onto each of those forms, then the speed A/B
# against BASE_SRC_DIR for the two NVIDIA defaults among them, forced onto the one-query rows of
# issue 22's shapes: lanes-async (16-bit caches at 4 rows) and lanes-wide (paged 16-bit caches at 5-8
# rows); the 4-query rows (16 rows a K/V head), which neither form takes, run the unforced plan in
# both trees. Unforced, the bar's shapes run decode_mma and decode_merge, which neither change
# touched. Runs so far: the NaN-keeping max per score (9a81892) against `git archive ddf85c7`, the
# tree before it (2026-12-06 10:10 UTC: tests passed, lanes-async 0.94-1.01x, lanes-wide 0.99-1.25x);
# the NaN flag per block (one instruction a score) against `git archive 116099c`, the per-score max.
# Usage: bench/gpu/decode_nan_ab.sh BASE_SRC_DIR OUT_DIR
set -uo pipefail
base=$(realpath -m "${1:?BASE_SRC_DIR}")
out=$(realpath -m "${2:-/tmp/flashcl-decode-nan-ab}")
mkdir -p "$out"
cd "$(dirname "$0")/../.."

. bench/gpu/setup.sh  # the NVIDIA driver, FLASHCL_PLATFORM, build-gpu
tests=./build-gpu/tests/flashcl_tests
timeout 120 $tests --gtest_filter='Decode.*' > "$out/tests-default.log" 2>&1
echo "decode suite, default plans: exit $? $(grep -E '^\[  (PASSED|FAILED)' "$out/tests-default.log" | tr '\n' ' ')"
for form in stream lanes lanes-async lanes-wide staged; do  # (staged: decode_split)
  FLASHCL_DECODE=$form timeout 40 $tests --gtest_filter='Decode.*NaN*' > "$out/tests-$form.log" 2>&1
  echo "NaN tests, FLASHCL_DECODE=$form: exit $? $(grep -E '^\[  (PASSED|FAILED)' "$out/tests-$form.log" | tr '\n' ' ')"
done
for form in lanes-async lanes-wide; do
  echo "== A/B forced onto $form (new against base)"
  FORM=$form timeout 200 bash bench/gpu/decode_tree_ab.sh "$base" "$out/ab-$form" | tail -24
done
