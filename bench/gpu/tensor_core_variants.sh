#!/bin/bash
# tensor_core_variants.sh: one GPU call for the variants that moved onto NVIDIA's tensor cores on
# 2026-12-06: the backward's window, softcap, ALiBi, masks and packed sequences on mma.sync
# (issue 20; bwd_kv_steps.cl's BWD_VARIANTS) and the forward's sliding windows (fa2_mma.cl), which
# ran on the portable kernels before. Builds (setup.sh), runs BwdMma.* (BwdMma.Variants among them)
# with FLASHCL_BWD_MMA=1 (a failed probe is an error), the Backward* suites and the forward's
# Variant* suites on the default plans, against float64; prints NVIDIA's ptxas report (registers,
# spills) of the backward programs with every variant; then times flashcl-bench --backward (B 8,
# H 16, N 4096, d 64/128, fp16, causal, fa2) on the tensor cores (the switch on) and on the portable
# kernels (FLASHCL_BWD_MMA=0) for: plain, window 256,0, softcap 30, ALiBi, packed sequences, all
# four together; and the forward (same shape, d 128, causal: plain, window 1024,0, packed sequences)
# on the tensor cores and on the portable fa2 (FLASHCL_MMA=0), after ptxas's report of the forward's
# window and packed-sequence programs. Budget: ~400 s after the build (313 s on an H100 on 2026-12-07). Files in OUT_DIR:
# cmake.log, build.log, tests.log, ptxas.log, ptxas_forward.log, times.txt, forward.txt; the tables last.
# Usage: bench/gpu/tensor_core_variants.sh OUT_DIR
set -uo pipefail
out=${1:-/tmp/flashcl-tensor-core-variants}
mkdir -p "$out"
cd "$(dirname "$0")/../.."
. bench/gpu/setup.sh  # the NVIDIA driver, FLASHCL_PLATFORM, build-gpu
SECONDS=0
bench=./build-gpu/bench/flashcl-bench
export FLASHCL_TENSOR_CORE_VARIANTS=1  # the variants on the tensor cores (the default since an H100 ran this call)

echo "== tests" | tee "$out/tests.log"
FLASHCL_BWD_MMA=1 timeout 240 ./build-gpu/tests/flashcl_tests --gtest_filter='BwdMma.*' >> "$out/tests.log" 2>&1
echo "BwdMma.* (FLASHCL_BWD_MMA=1) exit $?: $(grep -E '^\[  (PASSED|FAILED)  \]' "$out/tests.log" | tail -2 | tr '\n' ' ')"
timeout 150 ./build-gpu/tests/flashcl_tests --gtest_filter='Backward*' >> "$out/tests.log" 2>&1
echo "Backward* (default plans) exit $?: $(grep -E '^\[  (PASSED|FAILED)  \]' "$out/tests.log" | tail -2 | tr '\n' ' ')"
timeout 150 ./build-gpu/tests/flashcl_tests --gtest_filter='All/Variants.*:Variant*' >> "$out/tests.log" 2>&1
echo "Variant* (forward, default plans) exit $?: $(grep -E '^\[  (PASSED|FAILED)  \]' "$out/tests.log" | tail -2 | tr '\n' ' ')"
grep -E '^\[  FAILED  \]|Failure' "$out/tests.log" | head -10
echo "(${SECONDS}s)"

echo "== ptxas: the programs with every variant (d 64, 128)"
FLASHCL_BUILD_OPTIONS=-cl-nv-verbose FLASHCL_BUILD_LOG=1 FLASHCL_DISK_CACHE=0 timeout 60 $bench --backward -b 1 \
  --heads 2 -n 512 --head-dim 64,128 --causal yes --dtype f16 -r 1 -w 1 --window 64,0 --softcap 30 --alibi --varlen \
  > /dev/null 2> "$out/ptxas.log"
awk '/build log for/ { mine = /-DSOFTCAP=1/ && /bwd_mma|-DWARPS/ } mine && /Compiling entry|Used|spill/ { print }' \
  "$out/ptxas.log" | head -12
echo "== ptxas: the forward's programs with a window and packed sequences (d 64, 128)"
FLASHCL_BUILD_OPTIONS=-cl-nv-verbose FLASHCL_BUILD_LOG=1 FLASHCL_DISK_CACHE=0 timeout 60 $bench -b 2 --heads 2 -n 512 \
  --head-dim 64,128 --causal on --dtype f16 --algo fa2 -r 1 -w 1 --no-check --no-roofline --window 64,0 --varlen \
  > /dev/null 2> "$out/ptxas_forward.log"
awk '/build log for/ { mine = /-DVARLEN=1/ && /-DWARPS/ } mine && /Compiling entry|Used|spill/ { print }' \
  "$out/ptxas_forward.log" | head -8

: > "$out/times.txt"
for variant in "plain:" "window:--window 256,0" "softcap:--softcap 30" "alibi:--alibi" "varlen:--varlen" \
               "all:--window 256,0 --softcap 30 --alibi --varlen"; do
  name=${variant%%:*} opts=${variant#*:}
  for form in mma portable; do
    env=""; reps="-r 10 -w 2"
    [ $form = portable ] && env="FLASHCL_BWD_MMA=0" reps="-r 2 -w 1"
    echo "== $name $form" >> "$out/times.txt"
    env $env timeout 60 $bench --backward -b 8 --heads 16 -n 4096 --head-dim 64,128 --dtype f16 --causal yes \
      --algo fa2 $reps $opts >> "$out/times.txt" 2>&1
  done
  echo "$name done (${SECONDS}s)"
done
python3 - "$out/times.txt" <<'PY'
import re, sys
rows, cur = {}, None
for line in open(sys.argv[1]):
    m = re.match(r"== (\S+) (\S+)", line)
    if m:
        cur = m.groups()
        continue
    m = re.match(r"\s*(\d+)\s+(\d+)\s+\S+\s+\S+\s+\S+\s+\|\s+([\d.]+)\s+([\d.]+)\s+\|\s+([\d.]+)", line)
    if m and cur:
        rows[(cur[0], int(m.group(2)), cur[1])] = (float(m.group(3)), float(m.group(4)))
print("backward ms (TFLOP/s as counted without the window), fp16, causal, B 8, H 16, N 4096")
print(f"{'variant':8} {'d':>4} | {'mma ms':>8} {'TFLOP/s':>8} | {'portable ms':>11} {'TFLOP/s':>8} | {'speed-up':>8}")
for name in ("plain", "window", "softcap", "alibi", "varlen", "all"):
    for d in (64, 128):
        m, p = rows.get((name, d, "mma")), rows.get((name, d, "portable"))
        if m and p:
            print(f"{name:8} {d:4} | {m[0]:8.3f} {m[1]:8.1f} | {p[0]:11.3f} {p[1]:8.2f} | {p[0] / m[0]:8.1f}")
        else:
            print(f"{name:8} {d:4} | missing: mma {m} portable {p}")
PY

: > "$out/forward.txt"
for variant in "plain:" "window:--window 1024,0" "varlen:--varlen"; do
  name=${variant%%:*} opts=${variant#*:}
  for form in mma portable; do
    env=""
    [ $form = portable ] && env="FLASHCL_MMA=0"
    echo "== $name $form" >> "$out/forward.txt"
    env $env timeout 60 $bench -b 8 --heads 16 -n 4096 --head-dim 128 --dtype f16 --causal on --algo fa2 -r 5 -w 1 \
      --no-check --no-roofline -f csv $opts >> "$out/forward.txt" 2>&1
  done
done
echo "== forward (fp16, d 128, causal, B 8, H 16, N 4096): $out/forward.txt"
python3 - "$out/forward.txt" <<'PY'
import csv, io, re, sys
blocks = re.split(r"^== (\S+) (\S+)$", open(sys.argv[1]).read(), flags=re.M)
for name, form, body in zip(blocks[1::3], blocks[2::3], blocks[3::3]):
    at = body.find("algo,")  # the CSV header (anything the bench printed before it skipped)
    rows = [r for r in csv.DictReader(io.StringIO(body[at:])) if r.get("algo") == "fa2"] if at >= 0 else []
    for r in rows:
        print(f"{name:7} {form:9} {r['status']:4} median {float(r['median_ms']):8.3f} ms  {float(r['tflops']):7.1f} TFLOP/s "
              f"(the window's visible pairs only)  {r['resolved']} {r['note']}")
    if not rows:
        print(f"{name:7} {form:9} no row: {body.strip()[-300:]}")
PY
echo "total ${SECONDS}s after the build"
