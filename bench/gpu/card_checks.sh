#!/bin/bash
# card_checks.sh: one GPU call (any NVIDIA card) for the forward's score transforms as the default
# (fa2_mma.cl's SCORE_TRANSFORM since 2026-12-07): the forward variant suites as amended after the
# first card run (VariantTransforms at amplitude 1, VariantMaskedNan), the backward suites, whose
# forward now runs these transforms on the tensor cores too, and an A/B of kernel trees through
# FLASHCL_KERNEL_DIR (one build): this tree ("new"), BASE_KERNELS when given ("base": another
# commit's kernels/, e.g. `git archive BASE kernels`) and this tree without clear_unseen_row's two
# calls ("noclear": the O = 0 of a row that saw no key), on fp16 softcap / ALiBi / bool mask / bias
# rows (fa2, d 64 and 128, causal both) alternating for ROUNDS rounds. Budget: ~450 s after the
# build. Files in OUT_DIR: tests.log, ab.txt; the table last.
# Usage: [ROUNDS=R] [BASE_KERNELS=DIR] bench/gpu/card_checks.sh OUT_DIR
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

# the kernel trees: this one, BASE_KERNELS, and this one without clear_unseen_row's calls
noclear=$(mktemp -d)
cp -r kernels/. "$noclear"
sed -i 's/^\( *\)clear_unseen_row(acc\[i\], r, sum);/\1\/\* removed for the A\/B \*\//' "$noclear/nvidia/fa2_mma.cl"
echo "clear_unseen_row calls left in noclear: $(grep -c 'clear_unseen_row(acc' "$noclear/nvidia/fa2_mma.cl")"
forms="new:$PWD/kernels noclear:$noclear"
[ -n "${BASE_KERNELS:-}" ] && forms="$forms base:$(realpath "$BASE_KERNELS")"
: > "$out/ab.txt"
for round in $(seq "${ROUNDS:-3}"); do
  for form in $forms; do
    name=${form%%:*} dir=${form#*:}
    for variant in "softcap:-b 8 --softcap 30" "alibi:-b 8 --alibi" "bool:-b 1 --mask bool" "bias:-b 1 --mask bias"; do
      vname=${variant%%:*} opts=${variant#*:}
      echo "== $vname $name $round" >> "$out/ab.txt"
      FLASHCL_CACHE_DIR=/tmp/flashcl-cache-$name FLASHCL_KERNEL_DIR=$dir timeout 60 $bench --heads 16 -n 4096 \
        --head-dim 64,128 --dtype f16 --causal both --algo fa2 -r 10 -w 2 --no-check --no-roofline -f csv $opts \
        >> "$out/ab.txt" 2>&1
    done
  done
  echo "round $round done (${SECONDS}s)"
done
echo "== A/B of kernel trees (fp16, fa2 on the tensor cores, B 8 (masks: 1), H 16, N 4096; median of the rounds' device-event medians; x/new: the form's time over new's)"
python3 - "$out/ab.txt" <<'PY'
import csv, io, re, statistics, sys
blocks = re.split(r"^== (\S+) (\S+) (\d+)$", open(sys.argv[1]).read(), flags=re.M)
ms, forms = {}, []
for name, form, rnd, body in zip(blocks[1::4], blocks[2::4], blocks[3::4], blocks[4::4]):
    forms += [form] if form not in forms else []
    at = body.find("algo,")
    rows = [r for r in csv.DictReader(io.StringIO(body[at:])) if r.get("algo") == "fa2"] if at >= 0 else []
    if not rows:
        print(f"{name} {form} {rnd}: no row: {body.strip()[-300:]}")
    for r in rows:
        ms.setdefault((name, int(r["head_dim"]), r["causal"]), {}).setdefault(form, []).append(float(r["median_ms"]))
for (name, d, causal), by in sorted(ms.items()):
    new = statistics.median(by.get("new", [float("nan")]))
    line = f"{name:8} d {d:3} causal {causal:5} new {new:7.3f} ms"
    for form in forms:
        if form != "new" and form in by:
            t = statistics.median(by[form])
            line += f"  {form} {t:7.3f} ms ({form}/new {t / new:5.3f})"
    print(line + "  rounds: " + "; ".join(f"{f} " + " ".join(f"{t:.3f}" for t in by.get(f, [])) for f in forms))
PY
echo "total ${SECONDS}s after the build"
