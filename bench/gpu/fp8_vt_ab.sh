#!/bin/bash
# fp8_vt_ab.sh: one GPU call (Hopper, compute capability 9.0) for the e4m3 wgmma forward with V
# stored transposed (Fp8Scales::v_transposed, read as stored by cp.async with K's rows permuted;
# kernels/nvidia/mma_wgmma_e4m3.cl, docs/FP8.md) against V as stored (transposed on chip through
# registers). Builds (setup.sh); runs the float64 tests with FLASHCL_FP8_WGMMA=require
# (Fp8Wgmma.*, TransposedV among them, Fp8TensorCore.*, and the quantiser's and portable forward's Fp8Quantize.*, Fp8Forward.*); prints NVIDIA's ptxas lines of the
# V^T programs (d 64/128, causal both); then flashcl-bench --dtype e4m3 (B 8, H 16, N 4096, d
# 64/128, causal both, per-head descales, O bf16) for V as stored (flashcl's fp16 forward beside),
# V^T, and, when ALT_KERNELS names a kernels folder, V^T built from it (another form of the same
# kernel, FLASHCL_KERNEL_DIR), in ABCCBA order over 2 rounds; last, one table of TFLOP/s (mean of
# the rounds' medians) with issue 23's bar (e4m3 >= 1.5x fp16 at d 128).
# Usage: [ALT_KERNELS=DIR] bench/gpu/fp8_vt_ab.sh OUT_DIR
set -uo pipefail
out=${1:-/tmp/flashcl-fp8-vt-ab}
mkdir -p "$out"
cd "$(dirname "$0")/../.."
alt=${ALT_KERNELS:-}

. bench/gpu/setup.sh  # the NVIDIA driver, FLASHCL_PLATFORM, build-gpu
bench=./build-gpu/bench/flashcl-bench
shapes="-b 8 --heads 16 -n 4096 --causal both -r 10 -w 1 --quant head --out-dtype bf16 --check-macs 1e7 --head-dim 64,128"

echo "== float64 tests with FLASHCL_FP8_WGMMA=require (skips mean: not cc 9.0)"
FLASHCL_FP8_WGMMA=require FLASHCL_BUILD_LOG=1 timeout 120 ./build-gpu/tests/flashcl_tests \
  --gtest_filter='Fp8Wgmma.*:Fp8TensorCore.*:Fp8Quantize.*:Fp8Forward.*' > "$out/tests.log" 2>&1
echo "exit $?: $(grep -E '^\[  (PASSED|FAILED|SKIPPED) +\]' "$out/tests.log" | tr '\n' ' ')"
grep -hE "probe|Failure|FAILED|planned|Expected|Which is" "$out/tests.log" | head -30

echo "== ptxas (NVIDIA's) of the V^T programs: d 64/128, causal both"
FLASHCL_FP8_WGMMA=require FLASHCL_BUILD_OPTIONS=-cl-nv-verbose FLASHCL_BUILD_LOG=1 FLASHCL_DISK_CACHE=0 \
  timeout 60 $bench --dtype e4m3 --quant head --out-dtype bf16 --v-transposed -b 1 --heads 1 -n 256 --head-dim 64,128 \
  --causal both -r 1 -w 1 --no-fp16 > /dev/null 2> "$out/ptxas.log"
awk '/build log for/ { mine = /-DWARPS=/; if (mine) print substr($0, 22, 150) }
     mine && /Used|spill|arning|C75/ { print "   " $0 }' "$out/ptxas.log" | head -30

forms="natural vt alt alt vt natural"
[ -n "$alt" ] || forms="natural vt vt natural"
echo "== flashcl-bench e4m3: $forms, 2 rounds"
rm -f "$out"/bench-*.txt
for form in $forms; do  # a form's first run is its round 1, the second its round 2
  case $form in
    natural) env_=(FLASHCL_FP8_WGMMA=require) extra=() ;;
    vt) env_=(FLASHCL_FP8_WGMMA=require) extra=(--v-transposed --no-fp16) ;;
    alt) env_=(FLASHCL_FP8_WGMMA=require FLASHCL_KERNEL_DIR="$alt" FLASHCL_DISK_CACHE=0) extra=(--v-transposed --no-fp16) ;;
  esac
  round=1
  [ -e "$out/bench-$form-1.txt" ] && round=2
  env "${env_[@]}" timeout 60 $bench --dtype e4m3 $shapes "${extra[@]}" > "$out/bench-$form-$round.txt" 2>&1
  grep -E "^ +[0-9]|rror" "$out/bench-$form-$round.txt" | sed "s/^/$form r$round: /"
done

echo "== TFLOP/s (mean of the rounds' medians; issue 23's bar: e4m3/fp16 >= 1.5 at d 128)"
python3 - "$out" <<'PY'
import sys
sys.path.insert(0, "bench/gpu")
from ab_rows import fp8_rounds, mean
fp8, f16 = fp8_rounds(sys.argv[1])
print(f"{'d':>4} {'causal':>6} | {'natural':>8} {'V^T':>8} {'alt':>8} | {'V^T/nat':>7} {'alt/nat':>7} | {'fp16':>7} | "
      f"{'nat/fp16':>8} {'V^T/fp16':>8}")
for key in sorted({k for (_, k) in fp8}):
    n, t, a = (mean(fp8.get((f, key), [])) for f in ("natural", "vt", "alt"))
    h = mean(f16.get(key, []))
    print(f"{key[0]:>4} {key[1]:>6} | {n:8.1f} {t:8.1f} {a:8.1f} | {t / n:7.3f} {a / n:7.3f} | {h:7.1f} | "
          f"{n / h:8.2f} {t / h:8.2f}")
PY
