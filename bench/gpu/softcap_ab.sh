#!/bin/bash
# softcap_ab.sh: one GPU call for the tensor-core backward's 16-bit softcap (bwd_kv_steps.cl's
# variant_entry: tanh from one ex2.approx and one reciprocal, for the score and its slope, instead
# of the library's tanh and a division for each). Builds (setup.sh); runs BwdMma.Variants and
# Backward* with FLASHCL_BWD_MMA=1 against float64 (this tree's kernels); then times flashcl-bench
# --backward (fp16 and bf16, causal, B 8, H 16, N 4096, d 64 and 128, fa2) with a softcap of 30 and
# without (the control: its programs are unchanged), this tree's kernels against BASE_KERNELS (a
# kernels/ folder of the tree before the change, read through FLASHCL_KERNEL_DIR), in two
# alternating rounds. Budget ~200 s after the build. Files in OUT_DIR: tests.log, times.txt; the
# table last (ms; new / base).
# Usage: BASE_KERNELS=DIR bench/gpu/softcap_ab.sh OUT_DIR
set -uo pipefail
out=${1:-/tmp/flashcl-softcap-ab}
base=$(realpath "${BASE_KERNELS:?BASE_KERNELS: the kernels/ folder of the tree before the change}")
mkdir -p "$out"
cd "$(dirname "$0")/../.."
. bench/gpu/setup.sh  # the NVIDIA driver, FLASHCL_PLATFORM, build-gpu
SECONDS=0
bench=./build-gpu/bench/flashcl-bench

FLASHCL_BWD_MMA=1 timeout 150 ./build-gpu/tests/flashcl_tests --gtest_filter='BwdMma.Variants:Backward*' \
  > "$out/tests.log" 2>&1
echo "tests exit $?: $(grep -E '^\[  (PASSED|FAILED)  \]' "$out/tests.log" | tr '\n' ' ') (${SECONDS}s)"
grep -E '^\[  FAILED  \]|Failure' "$out/tests.log" | head -10

: > "$out/times.txt"
for round in 1 2; do
  for form in new base; do
    for variant in "softcap:--softcap 30" "plain:"; do
      name=${variant%%:*} opts=${variant#*:}
      dir=$PWD/kernels
      [ $form = base ] && dir=$base
      echo "== $round $form $name" >> "$out/times.txt"
      FLASHCL_KERNEL_DIR=$dir timeout 60 $bench --backward -b 8 --heads 16 -n 4096 --head-dim 64,128 \
        --dtype f16,bf16 --causal yes --algo fa2 -r 10 -w 2 $opts >> "$out/times.txt" 2>&1
    done
  done
  echo "round $round done (${SECONDS}s)"
done
python3 - "$out/times.txt" <<'PY'
import re, sys
rows, cur = {}, None
for line in open(sys.argv[1]):
    m = re.match(r"== (\d) (\S+) (\S+)", line)
    if m:
        cur = m.groups()
        continue
    m = re.match(r"\s*(\d+)\s+(\d+)\s+\S+\s+(\S+)\s+\S+\s+\|\s+([\d.]+)", line)
    if m and cur:
        rows[cur + (int(m.group(2)), m.group(3))] = float(m.group(4))
    elif cur and "error" in line:
        print(cur, line.rstrip())
print("backward ms, causal, B 8, H 16, N 4096 (new: one ex2 a softcap score; base: tanh and a division)")
print(f"{'variant':8} {'d':>4} {'dtype':5} | {'new r1':>8} {'base r1':>8} {'new r2':>8} {'base r2':>8} | new/base")
for name in ("softcap", "plain"):
    for d in (64, 128):
        for dt in ("f16", "bf16"):
            v = [rows.get((r, f, name, d, dt), float("nan")) for r in "12" for f in ("new", "base")]
            ratio = [v[0] / v[1], v[2] / v[3]]
            print(f"{name:8} {d:4} {dt:5} | {v[0]:8.3f} {v[1]:8.3f} {v[2]:8.3f} {v[3]:8.3f} | "
                  f"{ratio[0]:.3f} {ratio[1]:.3f}")
PY
