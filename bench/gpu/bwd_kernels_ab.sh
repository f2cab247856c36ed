#!/bin/bash
# bwd_kernels_ab.sh: one GPU call that A/Bs forms of the backward kernels chosen by switches
# (NEW_ENV) against BASE_ENV (empty: the defaults), with their float64 tests first. Made for two
# forms of 2026-12-07 that it then decided on an H100 (docs/perf/nvidia-h100.md, 13:21 UTC): the
# 16-bit softcap's tanh from one ex2.approx (bwd_kv_steps.cl's variant_entry), the default since,
# and the fp32 A fragments split at each product (mma_tf32.cl's SPLIT_A_EACH_PRODUCT), the
# default at d > 64 since. Its default NEW_ENV is therefore the forms before them
# (FLASHCL_BWD_SOFTCAP_EX2=0 FLASHCL_BWD_TF32_SPLIT=0): new / base below 1 means the defaults win.
# Builds (setup.sh); runs TESTS with FLASHCL_BWD_MMA=1 and NEW_ENV; then, in ROUNDS alternating
# rounds, flashcl-bench --backward (causal, B 8, H 16, N 4096, d 64 and 128, fa2) for each ROWS
# entry "name:dtypes:options" with NEW_ENV (new) and BASE_ENV (base). Files in OUT_DIR: tests.log,
# times.txt; the table last (backward TFLOP/s by round, new / base).
# Usage: [NEW_ENV="..."] [BASE_ENV="..."] [ROUNDS=2] [TESTS=gtest filter] [ROWS="a:f16:--softcap 30|..."]
#        bench/gpu/bwd_kernels_ab.sh OUT_DIR
set -uo pipefail
out=${1:-/tmp/flashcl-bwd-kernels-ab}
new_env=${NEW_ENV:-FLASHCL_BWD_SOFTCAP_EX2=0 FLASHCL_BWD_TF32_SPLIT=0}
base_env=${BASE_ENV:-}
rounds=${ROUNDS:-2}
tests=${TESTS:-BwdMma.Variants:BwdMmaTf32.*:Backward*}
rows=${ROWS:-"softcap:f16,bf16:--softcap 30|plain:f16:|fp32:f32:"}
mkdir -p "$out"
cd "$(dirname "$0")/../.."
. bench/gpu/setup.sh  # the NVIDIA driver, FLASHCL_PLATFORM, build-gpu
SECONDS=0
bench=./build-gpu/bench/flashcl-bench

env $new_env FLASHCL_BWD_MMA=1 timeout 200 ./build-gpu/tests/flashcl_tests --gtest_filter="$tests" > "$out/tests.log" 2>&1
echo "tests exit $?: $(grep -E '^\[  (PASSED|FAILED)  \]' "$out/tests.log" | tr '\n' ' ') (${SECONDS}s)"
grep -E '^\[  FAILED  \]|Failure' "$out/tests.log" | head -10

: > "$out/times.txt"
IFS='|' read -ra entries <<< "$rows"
for round in $(seq "$rounds"); do
  for form in new base; do
    env=$new_env
    [ $form = base ] && env=$base_env
    for entry in "${entries[@]}"; do
      name=${entry%%:*} rest=${entry#*:}
      dtypes=${rest%%:*} opts=""
      [[ $rest == *:* ]] && opts=${rest#*:}
      echo "== $form-$name round $round" >> "$out/times.txt"
      env $env timeout 60 $bench --backward -b 8 --heads 16 -n 4096 --head-dim 64,128 \
        --dtype "$dtypes" --causal yes --algo fa2 -r 10 -w 2 $opts >> "$out/times.txt" 2>&1
    done
  done
  echo "round $round done (${SECONDS}s)"
done
names=$(for entry in "${entries[@]}"; do printf '%s ' "${entry%%:*}"; done)
python3 - "$out/times.txt" $names <<'PY'
import sys
sys.path.insert(0, "bench/gpu")
from ab_rows import backward_rounds

names = sys.argv[2:]
forms = [f"{form}-{name}" for name in names for form in ("new", "base")]
bwd, _ = backward_rounds(sys.argv[1], forms)
print("backward TFLOP/s, causal, B 8, H 16, N 4096: the opt-in forms (new) against the defaults (base)")
print(f"{'row':8} {'dtype':5} {'d':>4} | {'new by round':>20} | {'base by round':>20} | new/base by round")
for name in names:
    for key in sorted(bwd[f"new-{name}"]):
        new, base = bwd[f"new-{name}"][key], bwd[f"base-{name}"].get(key, [])
        ratios = " ".join(f"{n / b:.3f}" for n, b in zip(new, base))
        print(f"{name:8} {key[0]:5} {key[1]:4} | {' '.join(f'{x:.1f}' for x in new):>20} | "
              f"{' '.join(f'{x:.1f}' for x in base):>20} | {ratios}")
PY
