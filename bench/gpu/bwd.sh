#!/bin/bash
# bwd.sh: one GPU call for the tensor-core backward (issue 20; kernels/nvidia/bwd_mma.cl and
# bwd_mma_dq.cl). Builds, dumps ptxas's register and spill report of bwd_mma_dkdv and bwd_mma_dq,
# runs the tensor-core backward tests and the existing backward tests on the GPU (again, in part,
# with the atomic dQ form, FLASHCL_BWD_MMA_DQ=atomic), then times flashcl-bench --backward (B 8,
# H 16, N 4096, d 64/128, causal both, fp16/bf16) with dQ in its own pass (the default, deterministic)
# and with atomic dQ, next to PyTorch's SDPA forward+backward (sdpa_train.py) on the same shapes,
# plus a sweep of the kernels' shapes (FLASHCL_BWD_MMA_TILE, FLASHCL_BWD_MMA_DQ_TILE) in fp16.
# Every run with FLASHCL_BWD_MMA=1, so a probe that fails is an error rather than a silent
# fallback. Files in OUT_DIR (7): cmake.log, build.log (setup.sh), ptxas.log, tests.log, bench.txt,
# sdpa_train.json, sdpa.log; the summary goes to stdout.
# Usage: bench/gpu/bwd.sh OUT_DIR
set -uo pipefail
out=${1:-/tmp/flashcl-bwd}
mkdir -p "$out"
cd "$(dirname "$0")/../.."

. bench/gpu/setup.sh  # the NVIDIA driver, FLASHCL_PLATFORM, build-gpu
export FLASHCL_BWD_MMA=1
bench=./build-gpu/bench/flashcl-bench

echo "== ptxas: bwd_mma_dkdv and bwd_mma_dq (registers, spills) at each head dim and mask"
FLASHCL_BUILD_OPTIONS=-cl-nv-verbose FLASHCL_BUILD_LOG=1 FLASHCL_DISK_CACHE=0 \
  timeout 120 $bench --backward -b 1 --heads 2 -n 1024 --head-dim 64,128 --causal both --dtype f16 -r 1 -w 1 \
  > /dev/null 2> "$out/ptxas.log"
# each bwd_mma program's options (-DHEAD_DIM, -DCAUSAL, -DBQ ...), then its ptxas lines
awk '/build log for/ { mine = /-DBQ=/; if (mine) print substr($0, 1, 200) }
     mine && /Compiling entry|Used|spill/ { print }' "$out/ptxas.log" | head -40
grep -i "probe\|error" "$out/ptxas.log" | head -5

echo "== tests on the GPU (tensor-core backward, then every backward path)"
timeout 240 ./build-gpu/tests/flashcl_tests --gtest_filter='BwdMma*:Backward*' > "$out/tests.log" 2>&1
echo "exit $?: $(grep -E '^\[  (PASSED|FAILED)  \]|tests? .*skipped' "$out/tests.log" | tr '\n' ' ')"
echo "== FLASHCL_BWD_MMA_DQ=atomic" >> "$out/tests.log"
FLASHCL_BWD_MMA_DQ=atomic timeout 90 ./build-gpu/tests/flashcl_tests \
  --gtest_filter='BwdMma.HeadDimsCausalAndTypes:BwdMma.GroupedQueryHeads:BwdMma.UnequalLengthsAndPartialBlocks' \
  >> "$out/tests.log" 2>&1
echo "atomic dQ: exit $?: $(grep -E '^\[  (PASSED|FAILED)  \]' "$out/tests.log" | tail -1)"
grep -E "^\[  FAILED  \]|Failure|error" "$out/tests.log" | head -20

echo "== flashcl-bench --backward (fa2: the tensor cores, dQ pass) and PyTorch SDPA, B 8 H 16 N 4096"
timeout 150 $bench --backward -b 8 --heads 16 -n 4096 --head-dim 64,128 --causal both --dtype f16,bf16 --algo fa2 \
  -r 10 -w 2 > "$out/bench.txt" 2>&1
cat "$out/bench.txt"
echo "== atomic dQ (FLASHCL_BWD_MMA_DQ=atomic: bwd_mma_dkdv adds dQ with red.global.add)" | tee -a "$out/bench.txt"
FLASHCL_BWD_MMA_DQ=atomic timeout 150 $bench --backward -b 8 --heads 16 -n 4096 --head-dim 64,128 --causal both \
  --dtype f16,bf16 --algo fa2 -r 10 -w 2 2>&1 | tee -a "$out/bench.txt"
echo "== shapes (FLASHCL_BWD_MMA_TILE=WARPSxBQ[xSTAGES], FLASHCL_BWD_MMA_DQ_TILE=KEYSxSTAGES), fp16" | tee -a "$out/bench.txt"
for d in 64 128; do
  tiles="8x32/64x2 4x32/64x2 4x64/64x1 4x64/128x1 4x64/32x2"
  [ $d = 128 ] && tiles="4x16x2/32x2 4x32/64x1 4x32/16x2"
  for pair in $tiles; do
    tile=${pair%/*} dq=${pair#*/}
    FLASHCL_BWD_MMA_TILE=$tile FLASHCL_BWD_MMA_DQ_TILE=$dq timeout 60 $bench --backward -b 8 --heads 16 -n 4096 \
      --head-dim $d --causal both --dtype f16 --algo fa2 -r 5 -w 1 2>&1 | grep -E "^ +[0-9]|error" | sed "s|^|$pair |" |
      tee -a "$out/bench.txt"
  done
done
timeout 150 python3 bench/gpu/sdpa_train.py --tokens 32768 --heads 16 --seqlen 4096 --head-dim 64,128 \
  --dtype f16,bf16 --json "$out/sdpa_train.json" > "$out/sdpa.log" 2>&1 || tail -5 "$out/sdpa.log"

python3 - "$out/bench.txt" "$out/sdpa_train.json" <<'PY'
import json, sys
ours, det = {}, {}
section = ours  # the default rows (dQ pass), then the atomic section's; the sweeps after are not read
for line in open(sys.argv[1]):
    f = line.split()
    if line.startswith("=="):
        if "atomic dQ (" in line:
            section = det
            continue
        break
    if len(f) >= 11 and f[0].isdigit() and f[5] == "|":
        section[(f[3], int(f[1]), f[2] == "yes")] = (float(f[7]), float(f[10]))  # bwd, fwd+bwd TFLOP/s
try:
    torch_rows = json.load(open(sys.argv[2]))
except Exception as e:
    torch_rows = []
    print("no sdpa_train.json:", e)
ref = {}
for r in torch_rows:
    if "bwd_tflops" in r:
        ref[(r["dtype"], r["head_dim"], r["causal"], r["backend"])] = (r["bwd_tflops"], r["fwd_bwd_tflops"])
print(f"{'dtype':5} {'d':>4} {'causal':6} | {'flashcl bwd':>11} {'flash bwd':>9} {'cudnn bwd':>9} {'x flash':>7} | "
      f"{'flashcl f+b':>11} {'flash f+b':>9} {'x flash':>7} | {'atomic':>7} {'pass/atomic':>11}")
for (dt, d, c), (b, fb) in sorted(ours.items()):
    fl = ref.get((dt, d, c, "flash"), (float("nan"),) * 2)
    cu = ref.get((dt, d, c, "cudnn"), (float("nan"),) * 2)
    db = det.get((dt, d, c), (float("nan"),) * 2)[0]
    print(f"{dt:5} {d:4} {str(c):6} | {b:11.1f} {fl[0]:9.1f} {cu[0]:9.1f} {b / fl[0]:7.2f} | {fb:11.1f} {fl[1]:9.1f} "
          f"{fb / fl[1]:7.2f} | {db:7.1f} {b / db:11.2f}")
PY
