#!/bin/bash
# bwd.sh: one GPU call for the tensor-core backward (issue 20; kernels/nvidia/bwd_mma.cl). Builds,
# dumps ptxas's register and spill report of bwd_mma_dkdv, runs the tensor-core backward tests and
# the existing backward tests on the GPU, then times flashcl-bench --backward (B 8, H 16, N 4096,
# d 64/128, causal both, fp16/bf16) next to PyTorch's SDPA forward+backward (sdpa_train.py) on the
# same shapes, plus a sweep of the kernel's shapes (FLASHCL_BWD_MMA_TILE) in fp16; the tensor-core
# tests run again, in part, with dQ added by red.global.add.v2.f32 (-DRED_V2=1, an experiment also
# timed, never the default). The deterministic form (bwd_mma_dkdv without dQ adds, then
# bwd_mma_dq.cl) is timed on the same shapes (--deterministic rows next to the atomic ones, and its
# ratio to them; issue 20's bar is 0.8x), with a sweep of its dQ kernel's K/V blocks
# (FLASHCL_BWD_MMA_DQ_TILE=KEYSxSTAGES). Every run with
# FLASHCL_BWD_MMA=1, so a probe that fails is an error rather than a silent fallback. Files in
# OUT_DIR (7): cmake.log, build.log (setup.sh), ptxas.log, tests.log, bench.txt, sdpa_train.json,
# sdpa.log; the summary goes to stdout.
# Usage: bench/gpu/bwd.sh OUT_DIR
set -uo pipefail
out=${1:-/tmp/flashcl-bwd}
mkdir -p "$out"
cd "$(dirname "$0")/../.."

. bench/gpu/setup.sh  # the NVIDIA driver, FLASHCL_PLATFORM, build-gpu
export FLASHCL_BWD_MMA=1
bench=./build-gpu/bench/flashcl-bench

echo "== ptxas: bwd_mma_dkdv (registers, spills) at each head dim and mask"
FLASHCL_BUILD_OPTIONS=-cl-nv-verbose FLASHCL_BUILD_LOG=1 FLASHCL_DISK_CACHE=0 \
  timeout 120 $bench --backward -b 1 --heads 2 -n 1024 --head-dim 64,128 --causal both --dtype f16 -r 1 -w 0 \
  > /dev/null 2> "$out/ptxas.log"
# the deterministic programs: bwd_mma_dkdv with DQ_ATOMIC=0 and bwd_mma_dq (ptxas names each kernel)
FLASHCL_BUILD_OPTIONS=-cl-nv-verbose FLASHCL_BUILD_LOG=1 FLASHCL_DISK_CACHE=0 \
  timeout 120 $bench --backward -b 1 --heads 2 -n 1024 --head-dim 64,128 --causal both --dtype f16 -r 1 -w 0 \
  --deterministic > /dev/null 2>> "$out/ptxas.log"
# each bwd_mma program's options (-DHEAD_DIM, -DCAUSAL, -DBQ ...), then its ptxas lines
awk '/build log for/ { mine = /-DBQ=/; if (mine) print substr($0, 1, 200) }
     mine && /Compiling entry|Used|spill/ { print }' "$out/ptxas.log" | head -60
grep -i "probe\|error" "$out/ptxas.log" | head -5

echo "== tests on the GPU (tensor-core backward, then every backward path)"
timeout 240 ./build-gpu/tests/flashcl_tests --gtest_filter='BwdMma*:Backward*' > "$out/tests.log" 2>&1
echo "exit $?: $(grep -E '^\[  (PASSED|FAILED)  \]|tests? .*skipped' "$out/tests.log" | tr '\n' ' ')"
# the experiment: dQ pairs by red.global.add.v2.f32 (sm_90, PTX ISA 8.1; the probe builds without
# FLASHCL_BUILD_OPTIONS, so these tests are what checks it), on the plain cases
echo "== FLASHCL_BUILD_OPTIONS=-DRED_V2=1" >> "$out/tests.log"
FLASHCL_BUILD_OPTIONS=-DRED_V2=1 FLASHCL_BUILD_LOG=1 timeout 90 ./build-gpu/tests/flashcl_tests \
  --gtest_filter='BwdMma.HeadDimsCausalAndTypes:BwdMma.GroupedQueryHeads' 2>&1 | grep -v "^flashcl: build log\|^ptxas\|^$" \
  >> "$out/tests.log"
echo "red.v2: exit ${PIPESTATUS[0]}: $(grep -E '^\[  (PASSED|FAILED)  \]' "$out/tests.log" | tail -1)"
grep -E "^\[  FAILED  \]|Failure|error" "$out/tests.log" | head -20

echo "== flashcl-bench --backward (fa2: the tensor cores) and PyTorch SDPA, B 8 H 16 N 4096"
timeout 150 $bench --backward -b 8 --heads 16 -n 4096 --head-dim 64,128 --causal both --dtype f16,bf16 --algo fa2 \
  -r 10 -w 2 > "$out/bench.txt" 2>&1
cat "$out/bench.txt"
echo "== deterministic (bwd_mma_dkdv without dQ adds + bwd_mma_dq)" | tee -a "$out/bench.txt"
timeout 150 $bench --backward -b 8 --heads 16 -n 4096 --head-dim 64,128 --causal both --dtype f16,bf16 --algo fa2 \
  --deterministic -r 10 -w 2 2>&1 | tee -a "$out/bench.txt"
# the atomic shapes the 17:37 run measured are not repeated: the old default 4x64 against 8x32 (the
# main rows) and the two-buffer forms that run left out; then dQ by red.v2 (the experiment)
echo "== shapes (FLASHCL_BWD_MMA_TILE=WARPSxBQ[xSTAGES]), fp16" | tee -a "$out/bench.txt"
for d in 64 128; do
  tiles="8x32x2 4x64"; [ $d = 128 ] && tiles="4x16x2"
  for tile in $tiles; do
    echo "tile $tile" >> "$out/bench.txt"
    FLASHCL_BWD_MMA_TILE=$tile timeout 60 $bench --backward -b 8 --heads 16 -n 4096 --head-dim $d --causal both \
      --dtype f16 --algo fa2 -r 5 -w 1 2>&1 | grep -E "^ +[0-9]|error" | sed "s/^/$tile /" | tee -a "$out/bench.txt"
  done
done
echo "tile red.v2 (default shapes, FLASHCL_BUILD_OPTIONS=-DRED_V2=1)" >> "$out/bench.txt"
FLASHCL_BUILD_OPTIONS=-DRED_V2=1 timeout 60 $bench --backward -b 8 --heads 16 -n 4096 --head-dim 64,128 --causal both \
  --dtype f16 --algo fa2 -r 5 -w 1 2>&1 | grep -E "^ +[0-9]|error" | sed "s/^/red.v2 /" | tee -a "$out/bench.txt"
echo "== deterministic dQ kernel's K/V blocks (FLASHCL_BWD_MMA_DQ_TILE=KEYSxSTAGES), fp16" | tee -a "$out/bench.txt"
for d in 64 128; do
  tiles="64x1 128x1 32x2"; [ $d = 128 ] && tiles="32x1 64x1 16x2"  # the defaults (64x2, 32x2) are the rows above
  for tile in $tiles; do
    echo "dq tile $tile" >> "$out/bench.txt"
    FLASHCL_BWD_MMA_DQ_TILE=$tile timeout 60 $bench --backward -b 8 --heads 16 -n 4096 --head-dim $d --causal both \
      --dtype f16 --algo fa2 --deterministic -r 5 -w 1 2>&1 | grep -E "^ +[0-9]|error" | sed "s/^/dq $tile /" |
      tee -a "$out/bench.txt"
  done
done
# the dQ kernel takes the dK/dV kernel's warps: at d = 64, 4 warps (64-row Q blocks) instead of 8,
# to read against the 4x64 atomic row (ptxas.log has each kernel's registers)
echo "dq tile 64x2 with FLASHCL_BWD_MMA_TILE=4x64" >> "$out/bench.txt"
FLASHCL_BWD_MMA_TILE=4x64 timeout 60 $bench --backward -b 8 --heads 16 -n 4096 --head-dim 64 --causal both \
  --dtype f16 --algo fa2 --deterministic -r 5 -w 1 2>&1 | grep -E "^ +[0-9]|error" | sed "s/^/dq 4x64 /" |
  tee -a "$out/bench.txt"
timeout 150 python3 bench/gpu/sdpa_train.py --tokens 32768 --heads 16 --seqlen 4096 --head-dim 64,128 \
  --dtype f16,bf16 --json "$out/sdpa_train.json" > "$out/sdpa.log" 2>&1 || tail -5 "$out/sdpa.log"

python3 - "$out/bench.txt" "$out/sdpa_train.json" <<'PY'
import json, sys
ours, det = {}, {}
section = ours  # the atomic rows, then the deterministic section's; the sweeps after are not read
for line in open(sys.argv[1]):
    f = line.split()
    if line.startswith("=="):
        if "deterministic (" in line:
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
      f"{'flashcl f+b':>11} {'flash f+b':>9} {'x flash':>7} | {'det bwd':>7} {'x atomic':>8}")
for (dt, d, c), (b, fb) in sorted(ours.items()):
    fl = ref.get((dt, d, c, "flash"), (float("nan"),) * 2)
    cu = ref.get((dt, d, c, "cudnn"), (float("nan"),) * 2)
    db = det.get((dt, d, c), (float("nan"),) * 2)[0]
    print(f"{dt:5} {d:4} {str(c):6} | {b:11.1f} {fl[0]:9.1f} {cu[0]:9.1f} {b / fl[0]:7.2f} | {fb:11.1f} {fl[1]:9.1f} "
          f"{fb / fl[1]:7.2f} | {db:7.1f} {db / b:8.2f}")
PY
