#!/bin/bash
# decode_tree_ab.sh: the decode defaults of two source trees against each other on the NVIDIA GPU
# machine, in one run (the rule for a change to kernels whose speed is on record: an A/B in one
# call, and no row slower). Builds flashcl-bench in a base tree (another commit's source, e.g.
# `git archive BASE | tar -x -C .ab/base`, carried with the call) and in this tree, then alternates
# base and new for ROUNDS rounds (default 2) over issue 22's shapes: fp16, H 32 over 8, d 128,
# one query at B 8 and 1, 4k/32k/128k keys, contiguous and pages of 16 and 256, and 4 queries on a
# contiguous cache at 32k/128k; each tree's default plan (-r 20 -w 3, device-event medians).
# Prints each row's TB/s per tree (median over rounds) and new/base, slowest row last. FORM=F runs
# both trees forced onto FLASHCL_DECODE=F instead of their default plans (a form the bar's shapes
# do not take unforced, e.g. lanes-async or lanes-wide).
# Usage: [ROUNDS=R] [FORM=F] bench/gpu/decode_tree_ab.sh BASE_SRC_DIR OUT_DIR
set -uo pipefail
base=$(realpath "$1")
out=$(realpath -m "${2:-/tmp/flashcl-decode-tree-ab}")
mkdir -p "$out"
cd "$(dirname "$0")/../.."

. bench/gpu/ab_setup.sh  # the driver, and flashcl-bench of both trees in build-ab

one="--decode --heads 32 --heads-kv 8 --head-dim 128 --dtype f16 -r 20 -w 3 --csv --no-roofline"
bench() {  # tree name round: CSV rows prefixed name,round
  for page in 0 16 256; do
    FLASHCL_DECODE=${FORM:-} FLASHCL_CACHE_DIR=/tmp/flashcl-cache-$2 timeout 60 "$1/build-ab/bench/flashcl-bench" $one -b 8,1 \
      --cache 4096,32768,131072 --page-size $page 2>> "$out/bench.log" | tail -n +2 | sed "s/^/$2,$3,/"
  done
  FLASHCL_DECODE=${FORM:-} FLASHCL_CACHE_DIR=/tmp/flashcl-cache-$2 timeout 60 "$1/build-ab/bench/flashcl-bench" $one -b 8,1 \
    --cache 32768,131072 --seqlen-q 4 2>> "$out/bench.log" | tail -n +2 | sed "s/^/$2,$3,/"
}
for round in $(seq 1 "${ROUNDS:-2}"); do
  bench "$base" base "$round"
  bench "$PWD" new "$round"
done > "$out/rows.csv"

python3 - "$out/rows.csv" <<'PY'
import csv, statistics, sys
runs = {}  # (tree, shape) -> GB/s per round
for row in csv.reader(open(sys.argv[1])):
    if len(row) < 18:
        continue
    tree, cache, batch, nq, layout, page, gbs = row[0], row[3], row[4], row[9], row[11], row[12], float(row[17])
    runs.setdefault((tree, (int(cache), int(batch), int(nq), layout, int(page))), []).append(gbs)
shapes = sorted({s for _, s in runs})
print(f"{'keys':>7} {'B':>2} {'Nq':>3} {'layout':10} {'page':>4} | {'base':>7} {'new':>7} TB/s | new/base (rounds)")
worst = None
for s in shapes:
    b, n = runs.get(("base", s), []), runs.get(("new", s), [])
    if not b or not n or statistics.median(b) == 0:
        continue
    mb, mn = statistics.median(b), statistics.median(n)
    ratio = mn / mb
    worst = ratio if worst is None else min(worst, ratio)
    per_round = " ".join(f"{x / y:.3f}" for x, y in zip(n, b) if y)
    print(f"{s[0]:7} {s[1]:2} {s[2]:3} {s[3]:10} {s[4]:4} | {mb / 1e3:7.3f} {mn / 1e3:7.3f}      | {ratio:.3f} ({per_round})")
print(f"slowest row new/base: {worst:.3f} (medians over rounds, base and new alternating)" if worst else "no rows compared")
PY
