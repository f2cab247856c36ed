#!/bin/bash
# FP8 on the NVIDIA GPU machine, in one run: builds; runs the FP8 tests there (the tensor-core
# kernel's shapes against float64 on the dequantised inputs, FA3's RMSE experiment, the portable
# path's variants), with the tensor-core probe's verdict on stderr; then flashcl-bench's e4m3
# forward beside flashcl's fp16 forward on the same inputs (B = 8, H = 16, N = 4096, d = 64, 128,
# 256, causal both; per-head scales, the tensor-core path, and block + Hadamard, the portable one)
# and PyTorch's SDPA fp16 (FlashAttention-2, cuDNN) on the same shapes.
# Usage: bench/gpu/fp8.sh OUT_DIR
set -uo pipefail
out=${1:-/tmp/flashcl-fp8}
mkdir -p "$out"
cd "$(dirname "$0")/../.."

. bench/gpu/setup.sh  # the NVIDIA driver, FLASHCL_PLATFORM, build-gpu

FLASHCL_BUILD_LOG=1 ./build-gpu/tests/flashcl_tests --gtest_filter='Fp8*' > "$out/fp8-tests.log" 2>&1
echo "FP8 tests on the GPU: $(grep -E '^\[  (PASSED|FAILED) ' "$out/fp8-tests.log" | tr '\n' ' ')"
grep -E "fp8 rmse|fp8 mma-shaped|probe|FAILED|Failure" "$out/fp8-tests.log" | head -30

shapes="-b 8 --heads 16 -n 4096 --head-dim 64,128,256 --causal both -r 10"
./build-gpu/bench/flashcl-bench --dtype e4m3 --quant head $shapes > "$out/fp8-head.txt" 2>&1
./build-gpu/bench/flashcl-bench --dtype e4m3 --quant block --block 128 --hadamard $shapes > "$out/fp8-block.txt" 2>&1
cat "$out/fp8-head.txt" "$out/fp8-block.txt"
python3 bench/gpu/sdpa.py --seqlen 4096 --head-dim 64,128,256 --dtype f16 --backends flash,cudnn \
  --json "$out/sdpa.json" 2>> "$out/sdpa.log"
python3 - "$out/sdpa.json" <<'PY'
import json, sys
for r in json.load(open(sys.argv[1])):
    t = f"{r['tflops']:.1f}" if r["tflops"] else "-"
    print(f"PyTorch {r['backend']:6s} {r['dtype']} d={r['head_dim']:3d} N={r['seqlen']} causal={r['causal']!s:5s} {t} TFLOP/s")
PY
