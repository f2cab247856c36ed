#!/bin/bash
# fp8_wgmma_ab.sh: one GPU call (Hopper, compute capability 9.0) for the e4m3 forward on wgmma
# (FLASHCL_FP8_WGMMA, kernels/nvidia/mma_wgmma_e4m3.cl; docs/FP8.md, docs/perf/nvidia-h100.md "FP8
# forward on wgmma"). Builds (setup.sh); runs the float64 tests with FLASHCL_FP8_WGMMA=require first
# (Fp8Wgmma.* and the Fp8TensorCore.* cases, which then take the wgmma kernel up to d 128; =require
# makes a failed probe an error, so a wrong kernel cannot hide behind the mma.sync fallback), with
# each case's error on stdout; prints NVIDIA's ptxas lines of the new programs (-cl-nv-verbose: d 64
# and 128, causal both; registers, spills, any wgmma serialisation warning); then flashcl-bench
# --dtype e4m3 (B 8, H 16, N 4096, d 64/128, causal both, per-head descales, O bf16, as fp8.sh) for
# the default (mma.sync) and the wgmma kernel at its planned shape, at 8 warps and (d 64 only) at
# 12 warps x 128 keys, in ABBA order over 2 rounds, flashcl's fp16 forward beside in the default
# runs; last, one table of TFLOP/s (mean of the rounds' medians) with issue 23's bar, e4m3 >= 1.5x
# fp16. Budget: ~130-160 s after the build.
# Usage: bench/gpu/fp8_wgmma_ab.sh OUT_DIR
set -uo pipefail
out=${1:-/tmp/flashcl-fp8-wgmma-ab}
mkdir -p "$out"
cd "$(dirname "$0")/../.."

. bench/gpu/setup.sh  # the NVIDIA driver, FLASHCL_PLATFORM, build-gpu
bench=./build-gpu/bench/flashcl-bench
shapes="-b 8 --heads 16 -n 4096 --causal both -r 10 -w 1 --quant head --out-dtype bf16 --check-macs 1e7"

echo "== float64 tests with FLASHCL_FP8_WGMMA=require (skips mean: not cc 9.0)"
FLASHCL_FP8_WGMMA=require FLASHCL_BUILD_LOG=1 timeout 90 ./build-gpu/tests/flashcl_tests \
  --gtest_filter='Fp8Wgmma.*:Fp8TensorCore.*' > "$out/tests-wgmma.log" 2>&1
echo "exit $?: $(grep -E '^\[  (PASSED|FAILED|SKIPPED) +\]' "$out/tests-wgmma.log" | tr '\n' ' ')"
grep -hE "rounded P|probe|Failure|FAILED|Skipped|planned" "$out/tests-wgmma.log" | head -40

echo "== ptxas (NVIDIA's) of fa2_mma_wgmma_e4m3: d 64/128, causal both (clang+ptxas offline: 121/128 and 168/168)"
FLASHCL_FP8_WGMMA=require FLASHCL_BUILD_OPTIONS=-cl-nv-verbose FLASHCL_BUILD_LOG=1 FLASHCL_DISK_CACHE=0 \
  timeout 60 $bench --dtype e4m3 --quant head --out-dtype bf16 -b 1 --heads 1 -n 256 --head-dim 64,128 \
  --causal both -r 1 -w 1 --no-fp16 > /dev/null 2> "$out/ptxas.log"
# each tensor-core program's options (-DHEAD_DIM, -DCAUSAL, -DWARPS), then its ptxas lines and warnings
awk '/build log for/ { mine = /-DWARPS=/; if (mine) print substr($0, 22, 150) }
     mine && /Used|spill|arning|C75/ { print "   " $0 }' "$out/ptxas.log" | head -30

echo "== flashcl-bench e4m3: default (mma.sync) vs wgmma (planned shape, 8 warps, d 64 at 128 keys), ABBA, 2 rounds"
rm -f "$out"/bench-*.txt  # a rerun into the same folder starts its rounds afresh
for form in default wgmma wgmma8 wide wide wgmma8 wgmma default; do
  dims=(--head-dim 64,128)
  case $form in
    default) env_=() fp16=() ;;
    wgmma) env_=(FLASHCL_FP8_WGMMA=require) fp16=(--no-fp16) ;;
    wgmma8) env_=(FLASHCL_FP8_WGMMA=require FLASHCL_MMA_TILE=8x64x1x2x1) fp16=(--no-fp16) ;;
    # 128-key blocks fit 48 KiB at d 64 only (34 KiB; clang+ptxas: 168 registers, no spills)
    wide) env_=(FLASHCL_FP8_WGMMA=require FLASHCL_MMA_TILE=12x128x1x2x1) fp16=(--no-fp16) dims=(--head-dim 64) ;;
  esac
  round=1
  [ -e "$out/bench-$form-1.txt" ] && round=2
  env "${env_[@]}" timeout 45 $bench --dtype e4m3 $shapes "${fp16[@]}" "${dims[@]}" > "$out/bench-$form-$round.txt" 2>&1
  grep -E "^ +[0-9]|rror" "$out/bench-$form-$round.txt" | sed "s/^/$form r$round: /"
done

echo "== TFLOP/s (mean of the rounds' medians; issue 23's bar: wgmma/fp16 >= 1.5 at d 128)"
python3 - "$out" <<'PY'
import sys
sys.path.insert(0, "bench/gpu")
from ab_rows import fp8_rounds, mean
fp8, f16 = fp8_rounds(sys.argv[1])
print(f"{'d':>4} {'causal':>6} | {'default':>8} {'wgmma':>8} {'w/def':>6} {'wgmma8':>8} {'w8/def':>6} {'12x128':>8} | "
      f"{'fp16':>7} | {'wgmma/fp16':>10} {'best/fp16':>9}")
for key in sorted({k for (_, k) in fp8}):
    d0, w, w8, wide = (mean(fp8.get((f, key), [])) for f in ("default", "wgmma", "wgmma8", "wide"))
    h = mean(f16.get(key, []))
    seen = [x for x in (d0, w, w8, wide) if x == x]
    best = max(seen) if seen else float("nan")
    print(f"{key[0]:>4} {key[1]:>6} | {d0:8.1f} {w:8.1f} {w / d0:6.2f} {w8:8.1f} {w8 / d0:6.2f} {wide:8.1f} | "
          f"{h:7.1f} | {w / h:10.2f} {best / h:9.2f}")
PY
