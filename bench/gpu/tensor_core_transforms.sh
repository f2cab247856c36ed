#!/bin/bash
# tensor_core_transforms.sh: one GPU call for the forward's softcap, ALiBi, masks and biases on
# NVIDIA's tensor cores (fa2_mma.cl's SCORE_TRANSFORM, FLASHCL_TENSOR_CORE_TRANSFORMS=1), which ran
# on the portable fa2 (~20x slower at d = 64 on an H100). Builds (setup.sh), runs the forward's
# variant suites (the parameterised All/Variants cases too), HostileValues.* and the 16-bit
# LowPrecision cases with the switch on against float64, prints ptxas's report (registers, spills) of the softcap + ALiBi programs at d 64 and
# 128, then times the forward (fp16, causal and not, fa2, d 64 and 128; B 8, H 16, N 4096, masks
# and biases at B 1, whose (B, H, N, N) buffers are the caller's) with the switch on (mma), off (the
# portable fa2, FLASHCL_TENSOR_CORE_TRANSFORMS=0) and, for the softcap, on with the library's
# tanh (FLASHCL_FWD_SOFTCAP_EX2=0). Budget: ~350 s after the build. Files in OUT_DIR: tests.log,
# ptxas.log, forward.txt; the table last.
# Usage: bench/gpu/tensor_core_transforms.sh OUT_DIR
set -uo pipefail
out=${1:-/tmp/flashcl-tensor-core-transforms}
mkdir -p "$out"
cd "$(dirname "$0")/../.."
. bench/gpu/setup.sh  # the NVIDIA driver, FLASHCL_PLATFORM, build-gpu
SECONDS=0
bench=./build-gpu/bench/flashcl-bench

echo "== tests (FLASHCL_TENSOR_CORE_TRANSFORMS=1)" | tee "$out/tests.log"
FLASHCL_TENSOR_CORE_TRANSFORMS=1 timeout 170 ./build-gpu/tests/flashcl_tests \
  --gtest_filter='All/Variants.*:Variant*:HostileValues.*:Storage/LowPrecision.*' >> "$out/tests.log" 2>&1
echo "All/Variants.*, Variant*, HostileValues.*, LowPrecision exit $?: $(grep -E '^\[  (PASSED|FAILED)  \]' "$out/tests.log" | tail -2 | tr '\n' ' ')"
grep -E '^\[  FAILED  \]|Failure' "$out/tests.log" | head -10
echo "(${SECONDS}s)"

echo "== ptxas: softcap + ALiBi on the tensor cores (fp16, d 64, 128)"
FLASHCL_TENSOR_CORE_TRANSFORMS=1 FLASHCL_BUILD_OPTIONS=-cl-nv-verbose FLASHCL_BUILD_LOG=1 FLASHCL_DISK_CACHE=0 \
  timeout 60 $bench -b 2 --heads 2 -n 512 --head-dim 64,128 --causal on --dtype f16 --algo fa2 -r 1 -w 1 --no-check \
  --no-roofline --softcap 30 --alibi > /dev/null 2> "$out/ptxas.log"
awk '/build log for/ { mine = /-DSOFTCAP=1/ && /-DWARPS/ } mine && /Compiling entry|Used|spill/ { print }' \
  "$out/ptxas.log" | head -8

: > "$out/forward.txt"
for variant in "plain:-b 8" "softcap:-b 8 --softcap 30" "alibi:-b 8 --alibi" "softcap+alibi:-b 8 --softcap 30 --alibi" \
               "bool:-b 1 --mask bool" "bias:-b 1 --mask bias"; do
  name=${variant%%:*} opts=${variant#*:}
  forms="mma portable"
  [ "$name" = softcap ] && forms="mma portable tanh"
  [ "$name" = plain ] && forms="mma"
  for form in $forms; do
    env="FLASHCL_TENSOR_CORE_TRANSFORMS=1" reps="-r 10 -w 2"
    [ $form = portable ] && env="FLASHCL_TENSOR_CORE_TRANSFORMS=0" reps="-r 3 -w 1"
    [ $form = tanh ] && env="FLASHCL_TENSOR_CORE_TRANSFORMS=1 FLASHCL_FWD_SOFTCAP_EX2=0"
    echo "== $name $form" >> "$out/forward.txt"
    env $env timeout 90 $bench --heads 16 -n 4096 --head-dim 64,128 --dtype f16 --causal both --algo fa2 $reps \
      --no-check --no-roofline -f csv $opts >> "$out/forward.txt" 2>&1
  done
  echo "$name done (${SECONDS}s)"
done
echo "== forward (fp16, fa2, B 8 (masks: 1), H 16, N 4096; device-event medians): $out/forward.txt"
python3 - "$out/forward.txt" <<'PY'
import csv, io, re, sys
blocks = re.split(r"^== (\S+) (\S+)$", open(sys.argv[1]).read(), flags=re.M)
ms = {}
for name, form, body in zip(blocks[1::3], blocks[2::3], blocks[3::3]):
    at = body.find("algo,")
    rows = [r for r in csv.DictReader(io.StringIO(body[at:])) if r.get("algo") == "fa2"] if at >= 0 else []
    if not rows:
        print(f"{name:14} {form:9} no row: {body.strip()[-300:]}")
    for r in rows:
        key = (name, int(r["head_dim"]), r["causal"])
        ms[key + (form,)] = float(r["median_ms"])
        print(f"{name:14} {form:9} d {r['head_dim']:>3} causal {r['causal']:5} {r['status']:4} median "
              f"{float(r['median_ms']):8.3f} ms {float(r['tflops']):7.1f} TFLOP/s  {r['resolved']} {r['note']}")
print("speed-up of the tensor cores over the portable fa2 (and over the library's tanh for the softcap)")
for (name, d, causal, form), t in sorted(ms.items()):
    if form != "mma":
        continue
    p, h = ms.get((name, d, causal, "portable")), ms.get((name, d, causal, "tanh"))
    plain = ms.get(("plain", d, causal, "mma"))
    print(f"{name:14} d {d:3} causal {causal:5} mma {t:8.3f} ms" + (f"  portable/mma {p / t:6.2f}" if p else "") +
          (f"  tanh/ex2 {h / t:5.2f}" if h else "") + (f"  mma/plain {t / plain:5.2f}" if plain and name != "plain" else ""))
PY
echo "total ${SECONDS}s after the build"
