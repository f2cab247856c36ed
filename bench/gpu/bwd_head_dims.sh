#!/bin/bash
# bwd_head_dims.sh: one GPU call for the tensor-core backward at head dims other than 64 and 128
# (bwd_mma_plan.cpp's shape_compiles: 32, 96, 120 and the like since 2026-12-08; before, those ran
# on the portable kernels). Builds (setup.sh), runs BwdMma.OtherHeadDims and
# BwdMmaTf32.OtherHeadDims with FLASHCL_BWD_MMA=1 (a failed probe is an error) against float64, then
# times flashcl-bench --backward (B 8, H 16, N 4096, fp16, d 32/96/120, causal both, fa2) on the
# tensor cores and with FLASHCL_BWD_MMA=0 (the portable kernels, the speed these calls had), next to
# PyTorch's FlashAttention-2 SDPA forward+backward (sdpa_train.py) in the same call. Predicted: the
# tensor cores far above the portable kernels (d 128 on the H200: 180 TFLOP/s against 5.8-6.9); against
# FlashAttention-2 about as at d 64/128 (0.7-0.9x), d 32 lower (its products shrink with d while the
# softmax's work per score stays). Budget: about 300 s after the build.
# Files in OUT_DIR: tests.log, bench.txt, sdpa_train.json, sdpa.log.
# Usage: bench/gpu/bwd_head_dims.sh OUT_DIR
set -uo pipefail
out=${1:-/tmp/flashcl-bwd-head-dims}
mkdir -p "$out"
cd "$(dirname "$0")/../.."
. bench/gpu/setup.sh  # the NVIDIA driver, FLASHCL_PLATFORM, build-gpu
SECONDS=0
bench=./build-gpu/bench/flashcl-bench

echo "== tests" | tee "$out/tests.log"
verdict() { grep -E '^\[  (PASSED|FAILED)  \]' "$out/tests.log" | tail -2 | tr '\n' ' '; }
FLASHCL_BWD_MMA=1 timeout 120 ./build-gpu/tests/flashcl_tests \
  --gtest_filter='BwdMma.OtherHeadDims:BwdMmaTf32.OtherHeadDims' >> "$out/tests.log" 2>&1
echo "OtherHeadDims (FLASHCL_BWD_MMA=1) exit $?: $(verdict)"
grep -E '^\[  FAILED  \]|Failure|probe' "$out/tests.log" | head -10
echo "(${SECONDS}s)"

: > "$out/bench.txt"
for form in tensor_cores portable; do
  env="FLASHCL_BWD_MMA=1" reps="-r 10 -w 2"
  [ $form = portable ] && env="FLASHCL_BWD_MMA=0" reps="-r 2 -w 1"
  echo "== $form" | tee -a "$out/bench.txt"
  env $env timeout 90 $bench --backward -b 8 --heads 16 -n 4096 --head-dim 32,96,120 --causal both --dtype f16 \
    --algo fa2 $reps 2>&1 | tee -a "$out/bench.txt" | grep -E "^ +[0-9]|error"
  echo "$form done (${SECONDS}s)"
done
timeout 60 python3 bench/gpu/sdpa_train.py --tokens 32768 --heads 16 --seqlen 4096 --head-dim 32,96,120 --dtype f16 \
  --backends flash --repeat 10 --json "$out/sdpa_train.json" > "$out/sdpa.log" 2>&1 || tail -5 "$out/sdpa.log"
python3 -c "
import json, sys
for r in json.load(open(sys.argv[1])):
    print('sdpa', r['backend'], 'd', r['head_dim'], 'causal', r['causal'], 'fwd+bwd TFLOP/s', r.get('fwd_bwd_tflops'))
" "$out/sdpa_train.json"
