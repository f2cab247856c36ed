#!/bin/bash
# defaults_ab.sh: one GPU call after three forms measured faster became defaults (docs/perf/
# nvidia-h100.md, "Defaults from the 12-05 runs"): e4m3 on wgmma on compute capability 9.0 up to
# d = 128, the tensor-core backward's two m-tiles a warp at d = 64, decode_lanes' wide form for
# paged 16-bit caches on NVIDIA. Builds (setup.sh); runs the float64 tests of the three with no
# switch (the defaults themselves; FLASHCL_BWD_MMA=1 makes a failed backward probe an error); then
# times each new default against its old form forced by a switch, in one run, alternating, two
# rounds: flashcl-bench --dtype e4m3 (B 8, H 16, N 4096, d 64/128, causal both; flashcl's fp16
# forward beside) new vs FLASHCL_FP8_WGMMA=0, and d 256 under FLASHCL_FP8_D256=1 (mma.sync, the
# only tensor-core e4m3 form there) against the portable kernel; --backward d 64 fp16/bf16 new vs
# FLASHCL_BWD_MMA_TILE=4x64 FLASHCL_BWD_MMA_DQ_TILE=64x2; --decode fp16 paged 16/256, B 8 and 1,
# 32k keys, new vs FLASHCL_DECODE=lanes-single, and contiguous beside; last PyTorch on the same
# shapes (SDPA forward fp16, FlashAttention-2's training step at d 64 and decode). Each line is
# printed with its form and round; the medians are device events. Budget: ~500 s after the build (the
# H100 took 417 s to the end of the decode part: give the call the whole 600 s limit).
# Usage: bench/gpu/defaults_ab.sh OUT_DIR
set -uo pipefail
out=${1:-/tmp/flashcl-defaults-ab}
mkdir -p "$out"
cd "$(dirname "$0")/../.."

. bench/gpu/setup.sh  # the NVIDIA driver, FLASHCL_PLATFORM, build-gpu
export FLASHCL_CACHE_DIR=/tmp/flashcl-cache-defaults  # round 2 reuses round 1's programs
bench=./build-gpu/bench/flashcl-bench
start=$SECONDS
rows() { grep -E "^ +[0-9]|^\"|rror" "$1" | sed "s/^/$2: /"; }

echo "== float64 tests with the new defaults (no switch)"
FLASHCL_BWD_MMA=1 timeout 120 ./build-gpu/tests/flashcl_tests --gtest_filter='Fp8Wgmma.*:Fp8TensorCore.*:BwdMma.*:Decode.Paged*:Decode.HostileDeviceValuesStayInBounds:Decode.HeadDim128GqaGroups:Decode.SplitCountsAgree' \
  > "$out/tests.log" 2>&1
echo "exit $?: $(grep -E '^\[  (PASSED|FAILED|SKIPPED) +\]' "$out/tests.log" | tr '\n' ' ') ($((SECONDS - start)) s)"
grep -hE "Failure|FAILED|rounded P" "$out/tests.log" | head -24

echo "== e4m3 forward: new (wgmma) vs old (FLASHCL_FP8_WGMMA=0), B 8, H 16, N 4096; then d 256"
fp8="--dtype e4m3 -b 8 --heads 16 -n 4096 --causal both -r 10 -w 1 --quant head --out-dtype bf16 --check-macs 1e7"
for round in 1 2; do
  timeout 80 $bench $fp8 --head-dim 64,128 > "$out/fp8-new-$round.txt" 2>&1
  rows "$out/fp8-new-$round.txt" "fp8 new r$round"
  FLASHCL_FP8_WGMMA=0 timeout 60 $bench $fp8 --head-dim 64,128 --no-fp16 > "$out/fp8-old-$round.txt" 2>&1
  rows "$out/fp8-old-$round.txt" "fp8 old r$round"
done
FLASHCL_FP8_D256=1 timeout 60 $bench $fp8 --head-dim 256 > "$out/fp8-d256-tc.txt" 2>&1
rows "$out/fp8-d256-tc.txt" "fp8 d256 mma.sync"
timeout 60 $bench $fp8 --head-dim 256 --no-fp16 > "$out/fp8-d256-portable.txt" 2>&1
rows "$out/fp8-d256-portable.txt" "fp8 d256 portable"
echo "($((SECONDS - start)) s)"

echo "== backward d 64: new (MK 2, MT 2) vs old (4x64, dQ 64x2)"
bwd="--backward -b 8 --heads 16 -n 4096 --head-dim 64 --causal both --dtype f16,bf16 --algo fa2 -r 10 -w 2"
for round in 1 2; do
  for form in new old; do
    [ $round = 2 ] && form=$([ $form = new ] && echo old || echo new)  # ABBA
    env_=(FLASHCL_BWD_MMA=1)
    [ $form = old ] && env_+=(FLASHCL_BWD_MMA_TILE=4x64 FLASHCL_BWD_MMA_DQ_TILE=64x2)
    env "${env_[@]}" timeout 40 $bench $bwd > "$out/bwd-$form-$round.txt" 2>&1
    rows "$out/bwd-$form-$round.txt" "bwd $form r$round"
  done
done
echo "($((SECONDS - start)) s)"

echo "== decode fp16, H 32/8, d 128, 32k keys: paged new (wide) vs old (lanes-single); contiguous beside"
dec="--decode --cache 32768 -b 8,1 --heads 32 --heads-kv 8 --head-dim 128 --dtype f16 -r 20 -w 3 --csv"
for round in 1 2; do
  for page in 16 256; do
    timeout 15 $bench $dec --page-size $page > "$out/dec-new-$page-$round.csv" 2>&1
    rows "$out/dec-new-$page-$round.csv" "dec new p$page r$round"
    FLASHCL_DECODE=lanes-single timeout 15 $bench $dec --page-size $page > "$out/dec-old-$page-$round.csv" 2>&1
    rows "$out/dec-old-$page-$round.csv" "dec old p$page r$round"
  done
  timeout 15 $bench $dec > "$out/dec-contiguous-$round.csv" 2>&1
  rows "$out/dec-contiguous-$round.csv" "dec contiguous r$round"
done
echo "($((SECONDS - start)) s)"

echo "== PyTorch on the same shapes: SDPA forward fp16 (d 64/128/256), FA2 training d 64, FA2 decode 32k"
timeout 60 python3 bench/gpu/sdpa.py --tokens 32768 --heads 16 --seqlen 4096 --head-dim 64,128,256 --dtype f16 \
  --json "$out/sdpa_fwd.json" > "$out/sdpa.log" 2>&1 || tail -3 "$out/sdpa.log"
timeout 40 python3 bench/gpu/sdpa_train.py --tokens 32768 --heads 16 --seqlen 4096 --head-dim 64 --dtype f16,bf16 \
  --backends flash --json "$out/sdpa_train.json" >> "$out/sdpa.log" 2>&1 || tail -3 "$out/sdpa.log"
timeout 30 python3 bench/gpu/sdpa_decode.py --batch 8,1 --cache 32768 --dtype f16 --repeat 20 \
  --json "$out/sdpa_decode.json" >> "$out/sdpa.log" 2>&1 || tail -3 "$out/sdpa.log"
for f in sdpa_fwd sdpa_train sdpa_decode; do
  python3 -c "import json,sys; [print('$f:', json.dumps(r)) for r in json.load(open(sys.argv[1]))]" "$out/$f.json" 2>/dev/null
done
echo "total after the build: $((SECONDS - start)) s"
