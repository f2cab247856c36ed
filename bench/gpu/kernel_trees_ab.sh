#!/bin/bash
# kernel_trees_ab.sh: an A/B of forward kernel trees on the NVIDIA GPU machine with one build: each
# tree's kernels/ reach the same flashcl-bench through FLASHCL_KERNEL_DIR (own program cache each),
# row sets alternating tree by tree for the rounds, then the table (median of the rounds' device-event
# medians, each tree's time over the first's) and ptxas's report (registers, stack, spills) of each
# tree's program for the first row set at d 64 and 128. For kernel-only changes (the host's options
# must be the same in every tree). Trees run in reverse order on even rounds. A tree whose tensor-core
# program fails its probe falls back to the portable fa2 silently: its times (~10x) show it.
#   TREES   "name:dir ..." (the first is the reference; dirs hold a kernels/ tree's files)
#   SETS    "name:rounds:bench options; ..." row sets (fp16, fa2, H 16, N 4096, d 64 and 128, causal
#           both, -r 10 -w 2 added), e.g. "bool:2:-b 1 --mask bool; alibi:1:-b 2 --alibi"
# Usage: TREES=... SETS=... [PTXAS=0] bench/gpu/kernel_trees_ab.sh OUT_DIR   (files: ab.txt, ptxas.log)
set -uo pipefail
out=$(realpath -m "${1:-/tmp/flashcl-kernel-trees-ab}")
mkdir -p "$out"
trees=""  # name:absolute dir, resolved before the cd below, each checked
for tree in $TREES; do
  dir=$(realpath -e "${tree#*:}") && [ -f "$dir/programs.txt" ] || { echo "no kernels/ tree at '${tree#*:}'"; exit 2; }
  trees="$trees ${tree%%:*}:$dir"
done
cd "$(dirname "$0")/../.."
. bench/gpu/setup.sh  # the NVIDIA driver, FLASHCL_PLATFORM, build-gpu
SECONDS=0
bench=./build-gpu/bench/flashcl-bench
IFS=';' read -ra all_sets <<< "$SETS"
sets=()
for set in "${all_sets[@]}"; do [ -n "$(echo "$set" | xargs)" ] && sets+=("$set"); done
rounds=0
for set in "${sets[@]}"; do r=$(echo "$set" | cut -d: -f2); [ "$r" -gt "$rounds" ] && rounds=$r; done
: > "$out/ab.txt"
for round in $(seq "$rounds"); do
  for set in "${sets[@]}"; do
    name=$(echo "$set" | cut -d: -f1 | xargs) r=$(echo "$set" | cut -d: -f2) opts=$(echo "$set" | cut -d: -f3-)
    [ "$round" -gt "$r" ] && continue
    order=$trees
    [ $((round % 2)) = 0 ] && order=$(echo $trees | tr ' ' '\n' | tac | tr '\n' ' ')
    for tree in $order; do
      tname=${tree%%:*} dir=${tree#*:}
      echo "== $name $tname $round" >> "$out/ab.txt"
      FLASHCL_CACHE_DIR=/tmp/flashcl-cache-$tname FLASHCL_KERNEL_DIR=$dir timeout 90 $bench --heads 16 -n 4096 \
        --head-dim 64,128 --dtype f16 --causal both --algo fa2 -r 10 -w 2 --no-check --no-roofline -f csv $opts \
        >> "$out/ab.txt" 2>&1
    done
  done
  echo "round $round done (${SECONDS}s)"
done
first_opts=$(echo "${sets[0]}" | cut -d: -f3- | sed -E 's/(^| )-b [0-9]+//')  # (the report's own -b)
: > "$out/ptxas.log"
[ "${PTXAS:-1}" = 0 ] && trees=""  # PTXAS=0: no report
for tree in $trees; do
  tname=${tree%%:*} dir=${tree#*:}
  echo "== $tname" >> "$out/ptxas.log"
  FLASHCL_KERNEL_DIR=$dir FLASHCL_BUILD_OPTIONS=-cl-nv-verbose FLASHCL_BUILD_LOG=1 FLASHCL_DISK_CACHE=0 timeout 60 $bench \
    -b 1 --heads 2 -n 512 --head-dim 64,128 --causal off --dtype f16 --algo fa2 -r 1 -w 1 --no-check --no-roofline \
    $first_opts 2>&1 >/dev/null | awk '/build log for/ { mine = /-DWARPS/ && /-DHEAD_DIM=(64|128) / } mine && /build log for|Used|spill|stack/' >> "$out/ptxas.log"
done
cat "$out/ptxas.log"
echo "== A/B of kernel trees (fp16, fa2, H 16, N 4096; median of the rounds' device-event medians; tree/first: time over the first tree's)"
python3 - "$out/ab.txt" <<'PY'
import csv, io, re, statistics, sys
blocks = re.split(r"^== (\S+) (\S+) (\d+)$", open(sys.argv[1]).read(), flags=re.M)
ms, trees = {}, []
for name, tree, rnd, body in zip(blocks[1::4], blocks[2::4], blocks[3::4], blocks[4::4]):
    trees += [tree] if tree not in trees else []
    at = body.find("algo,")
    rows = [r for r in csv.DictReader(io.StringIO(body[at:])) if r.get("algo") == "fa2"] if at >= 0 else []
    if not rows:
        print(f"{name} {tree} {rnd}: no row: {body.strip()[-300:]}")
    for r in rows:
        if r["status"] != "ok":
            print(f"{name} {tree} {rnd} d {r['head_dim']} causal {r['causal']}: {r['status']} {r['note']}")
            continue
        ms.setdefault((name, int(r["head_dim"]), r["causal"]), {}).setdefault(tree, []).append(float(r["median_ms"]))
for (name, d, causal), by in ms.items():
    ref = statistics.median(by.get(trees[0], [float("nan")]))
    line = f"{name:8} d {d:3} causal {causal:5} {trees[0]} {ref:7.3f} ms"
    for tree in trees[1:]:
        if tree in by:
            t = statistics.median(by[tree])
            line += f"  {tree} {t:7.3f} ({t / ref:5.3f})"
    print(line + "  rounds: " + "; ".join(f"{tr} " + " ".join(f"{t:.3f}" for t in by.get(tr, [])) for tr in trees))
PY
echo "total ${SECONDS}s after the build"
