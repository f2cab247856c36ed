#!/bin/bash
# card_checks.sh: one GPU call (any NVIDIA card) for the forward's score transforms as the default
# (fa2_mma.cl's SCORE_TRANSFORM since 2026-12-07): the forward variant suites as amended after the
# first card run (VariantTransforms at amplitude 1, VariantMaskedNan), the backward suites, whose
# forward now runs these transforms on the tensor cores too, and an A/B of clear_unseen_row (the
# O = 0 of a row that saw no key): this tree against a copy of its kernels with the two calls
# removed (FLASHCL_KERNEL_DIR), fp16 softcap / ALiBi / bool mask rows alternating for ROUNDS rounds.
# Budget: ~420 s after the build. Files in OUT_DIR: tests.log, ab.txt; the table last.
# Usage: [ROUNDS=R] bench/gpu/card_checks.sh OUT_DIR
set -uo pipefail
out=$(realpath -m "${1:-/tmp/flashcl-card-checks}")
mkdir -p "$out"
cd "$(dirname "$0")/../.."
. bench/gpu/setup.sh  # the NVIDIA driver, FLASHCL_PLATFORM, build-gpu
SECONDS=0
bench=./build-gpu/bench/flashcl-bench
verdict() { grep -E '^\[  (PASSED|FAILED)  \]' "$out/tests.log" | tail -2 | tr '\n' ' '; }

: > "$out/tests.log"
timeout 200 ./build-gpu/tests/flashcl_tests \
  --gtest_filter='VariantTransforms.*:VariantMaskedNan.*:VariantMagnitudes.*:All/Variants.*' >> "$out/tests.log" 2>&1
echo "forward variants (default plans) exit $?: $(verdict) (${SECONDS}s)"
timeout 200 ./build-gpu/tests/flashcl_tests \
  --gtest_filter='Backward*:Backward/*:BwdMma.*:BwdMmaTf32.*' >> "$out/tests.log" 2>&1
echo "backward suites (default plans) exit $?: $(verdict) (${SECONDS}s)"
grep -E '^\[  FAILED  \]|Failure|Expected|relative' "$out/tests.log" | head -20

# B: the kernels without clear_unseen_row's calls (the function stays, unused)
nocl=$(mktemp -d)
cp -r kernels/. "$nocl"
sed -i 's/^\( *\)clear_unseen_row(acc\[i\], r, sum);/\1\/\* removed for the A\/B \*\//' "$nocl/nvidia/fa2_mma.cl"
echo "calls left in B: $(grep -c 'clear_unseen_row(acc' "$nocl/nvidia/fa2_mma.cl")"
: > "$out/ab.txt"
for round in $(seq "${ROUNDS:-3}"); do
  for form in with without; do
    for variant in "softcap:-b 8 --softcap 30" "alibi:-b 8 --alibi" "bool:-b 1 --mask bool"; do
      name=${variant%%:*} opts=${variant#*:}
      env="FLASHCL_CACHE_DIR=/tmp/flashcl-cache-with"
      [ $form = without ] && env="FLASHCL_CACHE_DIR=/tmp/flashcl-cache-without FLASHCL_KERNEL_DIR=$nocl"
      echo "== $name $form $round" >> "$out/ab.txt"
      env $env timeout 60 $bench --heads 16 -n 4096 --head-dim 64,128 --dtype f16 --causal both --algo fa2 \
        -r 10 -w 2 --no-check --no-roofline -f csv $opts >> "$out/ab.txt" 2>&1
    done
  done
  echo "round $round done (${SECONDS}s)"
done
echo "== clear_unseen_row A/B (fp16, fa2 on the tensor cores, B 8 (bool: 1), H 16, N 4096; median of the rounds' device-event medians)"
python3 - "$out/ab.txt" <<'PY'
import csv, io, re, statistics, sys
blocks = re.split(r"^== (\S+) (\S+) (\d+)$", open(sys.argv[1]).read(), flags=re.M)
ms = {}
for name, form, rnd, body in zip(blocks[1::4], blocks[2::4], blocks[3::4], blocks[4::4]):
    at = body.find("algo,")
    rows = [r for r in csv.DictReader(io.StringIO(body[at:])) if r.get("algo") == "fa2"] if at >= 0 else []
    if not rows:
        print(f"{name} {form} {rnd}: no row: {body.strip()[-300:]}")
    for r in rows:
        ms.setdefault((name, int(r["head_dim"]), r["causal"], form), []).append(float(r["median_ms"]))
for (name, d, causal, form), ts in sorted(ms.items()):
    if form != "with":
        continue
    w, wo = statistics.median(ts), statistics.median(ms.get((name, d, causal, "without"), [float("nan")]))
    print(f"{name:8} d {d:3} causal {causal:5} with {w:7.3f} ms  without {wo:7.3f} ms  with/without {w / wo:5.3f}"
          f"  (rounds: {' '.join(f'{t:.3f}' for t in ts)} / {' '.join(f'{t:.3f}' for t in ms.get((name, d, causal, 'without'), []))})")
PY
echo "total ${SECONDS}s after the build"
