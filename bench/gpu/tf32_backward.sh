#!/bin/bash
# tf32_backward.sh: one GPU call for the fp32 backward on NVIDIA's tensor cores (issue 20's fp32 bar;
# programs.txt's bwd_mma_tf32: bwd_mma.cl's 3xTF32 contract form and bwd_mma_dq.cl over
# mma_tf32.cl), the default since an H100 ran this call (2026-12-07). Builds (setup.sh),
# prints ptxas's register and spill report of its programs at d 64 and 128, runs BwdMmaTf32.* with
# FLASHCL_BWD_MMA=1 (a failed probe is an error) and the variants on, and Backward* with the switch
# on (default plans), against float64; then times flashcl-bench --backward (B 8, H 16, N 4096, d
# 64/128, fp32, causal both, fa2: the forward on 3xTF32 too) with the switch on and off (the portable
# kernels), next to PyTorch's memory-efficient SDPA forward+backward on fp32 (sdpa_train.py), the
# bar's reference. Budget: at most 470 s after the build (the timeouts below; pending.sh gives 520). Files in OUT_DIR: cmake.log, build.log,
# ptxas.log, tests.log, bench.txt, sdpa_train.json, sdpa.log; the table last.
# Usage: bench/gpu/tf32_backward.sh OUT_DIR
set -uo pipefail
out=${1:-/tmp/flashcl-tf32-backward}
mkdir -p "$out"
cd "$(dirname "$0")/../.."
. bench/gpu/setup.sh  # the NVIDIA driver, FLASHCL_PLATFORM, build-gpu
SECONDS=0
bench=./build-gpu/bench/flashcl-bench
export FLASHCL_BWD_TF32=1 FLASHCL_TENSOR_CORE_VARIANTS=1

echo "== ptxas: bwd_mma_tf32 (registers, spills) at d 64 and 128"
FLASHCL_BUILD_OPTIONS=-cl-nv-verbose FLASHCL_BUILD_LOG=1 FLASHCL_DISK_CACHE=0 timeout 60 $bench --backward -b 1 \
  --heads 2 -n 512 --head-dim 64,128 --causal yes --dtype f32 -r 1 -w 1 > /dev/null 2> "$out/ptxas.log"
awk '/build log for/ { mine = /-DONE_PITCH=1/; if (mine) print substr($0, 1, 200) }
     mine && /Compiling entry|Used|spill/ { print }' "$out/ptxas.log" | head -12
grep -i "probe\|error" "$out/ptxas.log" | head -5

echo "== tests" | tee "$out/tests.log"
verdict() { grep -E '^\[  (PASSED|FAILED)  \]' "$out/tests.log" | tail -2 | tr '\n' ' '; }
FLASHCL_BWD_MMA=1 timeout 150 ./build-gpu/tests/flashcl_tests --gtest_filter='BwdMmaTf32.*' >> "$out/tests.log" 2>&1
echo "BwdMmaTf32.* (FLASHCL_BWD_MMA=1) exit $?: $(verdict)"
timeout 100 ./build-gpu/tests/flashcl_tests --gtest_filter='Backward*' >> "$out/tests.log" 2>&1
echo "Backward* (switch on, default plans) exit $?: $(verdict)"
grep -E '^\[  FAILED  \]|Failure' "$out/tests.log" | head -10
echo "(${SECONDS}s)"

: > "$out/bench.txt"
for form in tf32 portable; do
  env="FLASHCL_BWD_MMA=1" reps="-r 10 -w 2"
  [ $form = portable ] && env="FLASHCL_BWD_TF32=0" reps="-r 2 -w 1"
  echo "== $form" >> "$out/bench.txt"
  env $env timeout 60 $bench --backward -b 8 --heads 16 -n 4096 --head-dim 64,128 --causal both --dtype f32 \
    --algo fa2 $reps >> "$out/bench.txt" 2>&1
  echo "$form done (${SECONDS}s)"
done
timeout 40 python3 bench/gpu/sdpa_train.py --tokens 32768 --heads 16 --seqlen 4096 --head-dim 64,128 --dtype f32 \
  --backends efficient --repeat 5 --json "$out/sdpa_train.json" > "$out/sdpa.log" 2>&1 || tail -5 "$out/sdpa.log"

python3 - "$out/bench.txt" "$out/sdpa_train.json" <<'PY'
import json, sys
rows, form = {}, None
for line in open(sys.argv[1]):
    f = line.split()
    if line.startswith("== "):
        form = f[1]
        continue
    if len(f) >= 11 and f[0].isdigit() and f[5] == "|" and f[6] != "error:":  # (an error row: printed above)
        rows[(form, int(f[1]), f[2] == "yes")] = (float(f[7]), float(f[10]))  # bwd, fwd+bwd TFLOP/s
try:
    ref = {(r["head_dim"], r["causal"], r["backend"]): r.get("fwd_bwd_tflops", float("nan"))
           for r in json.load(open(sys.argv[2]))}
except Exception as e:
    ref = {}
    print("no sdpa_train.json:", e)
for line in open(sys.argv[1]):
    if "error" in line:
        print(line.rstrip())
print("fp32 forward+backward TFLOP/s, B 8, H 16, N 4096 (bar: tf32 >= 1.05x efficient)")
print(f"{'d':>4} {'causal':6} | {'tf32 bwd':>8} {'tf32 f+b':>8} | {'portable f+b':>12} | {'efficient f+b':>13} | "
      f"{'x efficient':>11} {'x portable':>10}")
for d in (64, 128):
    for c in (False, True):
        t = rows.get(("tf32", d, c), (float("nan"),) * 2)
        p = rows.get(("portable", d, c), (float("nan"),) * 2)
        e = ref.get((d, c, "efficient"), float("nan"))
        print(f"{d:4} {str(c):6} | {t[0]:8.1f} {t[1]:8.1f} | {p[1]:12.2f} | {e:13.1f} | {t[1] / e:11.2f} "
              f"{t[1] / p[1]:10.1f}")
PY
