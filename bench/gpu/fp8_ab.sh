#!/bin/bash
# fp8_ab.sh: one GPU call for the e4m3 tensor-core fa2 with Q in __local memory (FLASHCL_FP8_QLOCAL=1,
# kernels/nvidia/mma_e4m3.cl's Q_LOCAL; docs/FP8.md, docs/perf/nvidia-h100.md "FP8 forward: Q in
# local memory"). Builds (setup.sh); prints NVIDIA's ptxas registers/spills of the new programs
# (d 128 and, FLASHCL_FP8_D256=1, 256; causal both); runs the FP8 tensor-core tests with the switch (its default
# shape 4x32x1x2, then its two-m-tile shape 4x32x2x2 on the aligned head dims), with probe failures on stderr; then
# flashcl-bench --dtype e4m3 (B 8, H 16, N 4096, d 64/128, causal both, per-head descales, O bf16,
# as fp8.sh) for the default and the new forms alternating, 2 rounds, flashcl's fp16 forward on the
# same shapes in the default runs; then d 256 with FLASHCL_FP8_D256=1 (the e4m3 tensor-core fa2 at
# head dims 129-256; its test first) beside fp16, whose d 256 is portable (the default e4m3's d 256,
# portable at ~1 s a run, is not rerun); last, one table of medians (TFLOP/s) for d 64/128.
# Budget: ~120 s after the build.
# Usage: bench/gpu/fp8_ab.sh OUT_DIR
set -uo pipefail
out=${1:-/tmp/flashcl-fp8-ab}
mkdir -p "$out"
cd "$(dirname "$0")/../.."

. bench/gpu/setup.sh  # the NVIDIA driver, FLASHCL_PLATFORM, build-gpu
bench=./build-gpu/bench/flashcl-bench
shapes="-b 8 --heads 16 -n 4096 --head-dim 64,128 --causal both -r 10 -w 1 --quant head --out-dtype bf16 --check-macs 1e7"

# (the default's on record: 255 registers, up to 204 bytes of spill stores, docs/perf/nvidia-h200.md)
echo "== ptxas (NVIDIA's): FLASHCL_FP8_QLOCAL=1 at d 128, FLASHCL_FP8_D256=1 at d 256, causal both"
for form in qlocal d256; do
  case $form in
    qlocal) sw=FLASHCL_FP8_QLOCAL=1 d=128 ;;
    d256) sw=FLASHCL_FP8_D256=1 d=256 ;;
  esac
  env $sw FLASHCL_BUILD_OPTIONS=-cl-nv-verbose FLASHCL_BUILD_LOG=1 \
    FLASHCL_DISK_CACHE=0 timeout 40 $bench --dtype e4m3 --quant head -b 1 --heads 1 -n 256 --head-dim $d \
    --causal both -r 1 -w 1 --no-fp16 > /dev/null 2> "$out/ptxas-$form.log"
  # each tensor-core program's options (-DHEAD_DIM, -DCAUSAL, -DMT, -DBC, -DQ_LOCAL), then its ptxas lines
  awk -v f=$form '/build log for/ { mine = /-DWARPS=/; if (mine) print f ": " substr($0, 22, 150) }
       mine && /Used|spill/ { print f ":   " $0 }' "$out/ptxas-$form.log" | head -24
done

echo "== FP8 tensor-core tests with FLASHCL_FP8_QLOCAL=1 (4x32x1x2, then 4x32x2x2)"
FLASHCL_FP8_QLOCAL=1 FLASHCL_BUILD_LOG=1 timeout 60 ./build-gpu/tests/flashcl_tests --gtest_filter='Fp8TensorCore*' \
  > "$out/tests-qlocal.log" 2>&1
echo "exit $?: $(grep -E '^\[  (PASSED|FAILED)  \]' "$out/tests-qlocal.log" | tr '\n' ' ')"
FLASHCL_FP8_QLOCAL=1 FLASHCL_MMA_TILE=4x32x2x2 FLASHCL_BUILD_LOG=1 timeout 40 ./build-gpu/tests/flashcl_tests \
  --gtest_filter='Fp8TensorCore.AlignedHeadDims' > "$out/tests-qlocal-mt2.log" 2>&1
echo "4x32x2x2 exit $?: $(grep -E '^\[  (PASSED|FAILED)  \]' "$out/tests-qlocal-mt2.log" | tr '\n' ' ')"
FLASHCL_FP8_D256=1 FLASHCL_BUILD_LOG=1 timeout 40 ./build-gpu/tests/flashcl_tests \
  --gtest_filter='Fp8TensorCore.HeadDimsTo256' > "$out/tests-d256.log" 2>&1
echo "FLASHCL_FP8_D256=1 exit $?: $(grep -E '^\[  (PASSED|FAILED)  \]' "$out/tests-d256.log" | tr '\n' ' ')"
grep -hE "probe|Failure|FAILED" "$out"/tests-qlocal*.log "$out/tests-d256.log" | head -12
echo "Q_LOCAL builds logged (0 if the disk cache had them): $(grep -c -- '-DQ_LOCAL=1' "$out/tests-qlocal.log")"

echo "== flashcl-bench e4m3: default vs Q in local memory, alternating, 2 rounds"
for round in 1 2; do
  for form in default qlocal qlocal-mt2; do
    case $form in
      default) env_=() fp16=() ;;
      qlocal) env_=(FLASHCL_FP8_QLOCAL=1) fp16=(--no-fp16) ;;
      qlocal-mt2) env_=(FLASHCL_FP8_QLOCAL=1 FLASHCL_MMA_TILE=4x32x2x2) fp16=(--no-fp16) ;;
    esac
    [ $round = 2 ] && [ $form = default ] && fp16=(--no-fp16)
    env "${env_[@]}" timeout 45 $bench --dtype e4m3 $shapes "${fp16[@]}" > "$out/bench-$form-$round.txt" 2>&1
    grep -E "^ +[0-9]" "$out/bench-$form-$round.txt" | sed "s/^/$form r$round: /"
  done
done

echo "== d 256: FLASHCL_FP8_D256=1 (tensor cores, 4x32x1x2) beside fp16 (portable); the default e4m3 is portable there (3.9 TFLOP/s on record)"
FLASHCL_FP8_D256=1 timeout 40 $bench --dtype e4m3 -b 8 --heads 16 -n 4096 --head-dim 256 --causal both -r 5 -w 1 \
  --quant head --out-dtype bf16 --check-macs 1e7 \
  > "$out/d256.txt" 2>&1
grep -E "^ +[0-9]|rror" "$out/d256.txt"

echo "== TFLOP/s (mean of the rounds' medians; bar: new/fp16 >= 1.5)"
python3 - "$out" <<'PY'
import sys
sys.path.insert(0, "bench/gpu")
from ab_rows import fp8_rounds, mean
fp8, f16 = fp8_rounds(sys.argv[1])
print(f"{'d':>4} {'causal':>6} | {'default':>8} {'qlocal':>8} {'q/def':>6} {'q-mt2':>8} {'mt2/def':>7} | {'fp16':>7} | {'best/fp16':>9}")
for key in sorted({k for (_, k) in fp8}):
    d0, q1, q2 = (mean(fp8.get((f, key), [])) for f in ("default", "qlocal", "qlocal-mt2"))
    h = mean(f16.get(key, []))
    best = max(d0, q1, q2)
    print(f"{key[0]:>4} {key[1]:>6} | {d0:8.1f} {q1:8.1f} {q1 / d0:6.2f} {q2:8.1f} {q2 / d0:7.2f} | {h:7.1f} | {best / h:9.2f}")
PY
