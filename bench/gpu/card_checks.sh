#!/bin/bash
# card_checks.sh: one GPU call (any NVIDIA card) for the forward's score transforms as the default
# (fa2_mma.cl's SCORE_TRANSFORM since 2026-12-07): the forward variant suites as amended after the
# first card run (VariantTransforms at amplitude 1, VariantMaskedNan), the backward suites, whose
# forward now runs these transforms on the tensor cores too, and an A/B of kernel trees through
# FLASHCL_KERNEL_DIR (one build): this tree ("new"), BASE_KERNELS when given ("base": another
# commit's kernels/ folder itself, e.g. DIR/kernels after `git archive BASE kernels | tar -x -C DIR`)
# and this tree without clear_unseen_row's two calls ("noclear": the O = 0 of a row that saw no key),
# on fp16 softcap / ALiBi / bool mask / bias rows (fa2, d 64 and 128, causal both) for ROUNDS rounds
# (kernel_trees_ab.sh). The tests took ~300 s on an H100 and a round ~280 s (the host's inputs: the
# masks' at B 1, the rest at B 8), so one round (the default) already needs most of a 600 s call.
# Files in OUT_DIR: tests.log, ab/ (kernel_trees_ab.sh's); the table last.
# Usage: [ROUNDS=R] [BASE_KERNELS=DIR] bench/gpu/card_checks.sh OUT_DIR
set -uo pipefail
out=$(realpath -m "${1:-/tmp/flashcl-card-checks}")
mkdir -p "$out"
cd "$(dirname "$0")/../.."
. bench/gpu/setup.sh  # the NVIDIA driver, FLASHCL_PLATFORM, build-gpu
SECONDS=0
bench=./build-gpu/bench/flashcl-bench
verdict() { grep -E '^\[  (PASSED|FAILED)  \]' "$out/tests.log" | tail -2 | tr '\n' ' '; }

: > "$out/tests.log"
timeout 320 ./build-gpu/tests/flashcl_tests \
  --gtest_filter='VariantTransforms.*:VariantMaskedNan.*:VariantMagnitudes.*:All/Variants.*' >> "$out/tests.log" 2>&1
echo "forward variants (default plans) exit $?: $(verdict) (${SECONDS}s)"
timeout 320 ./build-gpu/tests/flashcl_tests \
  --gtest_filter='Backward*:Backward/*:BwdMma.*:BwdMmaTf32.*' >> "$out/tests.log" 2>&1
echo "backward suites (default plans) exit $?: $(verdict) (${SECONDS}s)"
grep -E '^\[  FAILED  \]|Failure|Expected|relative' "$out/tests.log" | head -20

# the kernel trees: this one, BASE_KERNELS, and this one without clear_unseen_row's calls
noclear=$(mktemp -d)
cp -r kernels/. "$noclear"
sed -i 's/^\( *\)clear_unseen_row(acc\[i\], r, sum);/\1\/\* removed for the A\/B \*\//' "$noclear/nvidia/fa2_mma.cl"
echo "clear_unseen_row calls left in noclear: $(grep -c 'clear_unseen_row(acc' "$noclear/nvidia/fa2_mma.cl")"
trees="new:kernels noclear:$noclear"
[ -n "${BASE_KERNELS:-}" ] && trees="$trees base:$(realpath -e "$BASE_KERNELS")"
r=${ROUNDS:-1}
TREES="$trees" SETS="softcap:$r:-b 8 --softcap 30; alibi:$r:-b 8 --alibi; bool:$r:-b 1 --mask bool; bias:$r:-b 1 --mask bias" \
  bash bench/gpu/kernel_trees_ab.sh "$out/ab"
echo "total ${SECONDS}s after the build"
