#!/bin/bash
# decode_nan_ab.sh: one GPU call for the decode kernels' NaN-keeping running max (max_keep_nan in
# decode_common.cl, commit 9a81892: decode_stream, decode_lanes, their streams' merge and
# decode_split), which PoCL has checked but no card yet. Runs the decode suite on the default plans
# and its NaN tests forced onto each changed form, then the speed A/B against BASE_SRC_DIR (`git
# archive ddf85c7`, the tree before it) for the two NVIDIA defaults among the changed forms, forced
# onto the one-query rows of issue 22's shapes: lanes-async (16-bit caches at 4 rows) and
# lanes-wide (paged 16-bit caches at 5-8 rows); the 4-query rows (16 rows a K/V head), which
# neither form takes, run the unforced plan in both trees. Unforced, the bar's shapes run decode_mma and
# decode_merge, which the change left byte-identical (bench/gpu/ptx_diff.py). Predicted: every test passes; new/base
# 0.99-1.01 (one compare and select more per score; ptxas: 142 against 144 registers in the async
# form, 255 in both wide forms, no spills). Usage: bench/gpu/decode_nan_ab.sh BASE_SRC_DIR OUT_DIR
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
