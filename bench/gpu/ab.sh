#!/bin/bash
# A/B of the forward on the NVIDIA GPU machine, in one run: builds a base tree (another commit's
# source, e.g. `git archive BASE | tar -x -C .ab/base`, carried with the call) and this tree, then
# runs flashcl-bench on run.sh's quick shapes (B = 8, H = 16, N = 4096, d = 64/128, causal both;
# fp32 every path, fp16/bf16 standard and fa2) alternating base and new for ROUNDS rounds, and
# prints each row's median TFLOP/s and the ratio new/base. A kernel change may not make a row slower.
# CHECK=0 leaves out --check (the float64 reference of every row, minutes of host time on a device
# call's budget) where the GPU test suite checks the same kernels in the call.
# F32_ALGOS narrows the fp32 rows (default all: standard, fa1, fa2).
# Usage: [ROUNDS=R] [CHECK=0] [F32_ALGOS=LIST] bench/gpu/ab.sh BASE_SRC_DIR OUT_DIR
set -uo pipefail
base=$(realpath "$1")
out=$(realpath -m "${2:-/tmp/flashcl-ab}")  # (absolute: the script changes directory)
mkdir -p "$out"
work=$(mktemp -d)
cd "$(dirname "$0")/../.."

. bench/gpu/ab_setup.sh  # the driver, and flashcl-bench of both trees in build-ab

check=--check
[ "${CHECK:-1}" = 0 ] && check=""
bench() {  # tree name round
  FLASHCL_CACHE_DIR=/tmp/flashcl-cache-$2 "$1/build-ab/bench/flashcl-bench" -b 8 --heads 16 -n 4096 \
    --head-dim 64,128 --causal both --algo "${F32_ALGOS:-all}" -r 10 $check -f json -o "$work/$2-f32-$3.json" 2>> "$out/bench.log"
  FLASHCL_CACHE_DIR=/tmp/flashcl-cache-$2 "$1/build-ab/bench/flashcl-bench" -b 8 --heads 16 -n 4096 \
    --head-dim 64,128 --causal both --algo standard,fa2 --dtype f16,bf16 -r 10 $check -f json \
    -o "$work/$2-16bit-$3.json" 2>> "$out/bench.log"
  # one file per tree and round: a device call brings back at most 8 files
  python3 -c 'import json, sys; a, b = (json.load(open(p)) for p in sys.argv[1:3]); a["results"] += b["results"]; json.dump(a, open(sys.argv[3], "w"))' \
    "$work/$2-f32-$3.json" "$work/$2-16bit-$3.json" "$out/$2-$3.json"
}
for round in $(seq 1 "${ROUNDS:-3}"); do
  bench "$base" base "$round"
  bench "$PWD" new "$round"
done

python3 - "$out" <<'PY'
import glob, json, statistics, sys
runs = {}  # (tree, key) -> TFLOP/s per round
for path in glob.glob(sys.argv[1] + "/*-*.json"):
    tree = path.rsplit("/", 1)[1].split("-")[0]
    for r in json.load(open(path))["results"]:
        key = (r["dtype"], r["head_dim"], r["causal"], r["algo"])
        runs.setdefault((tree, key), []).append(r["tflops"] if r.get("status") == "ok" else 0.0)
keys = sorted({k for _, k in runs})
print(f"{'dtype':5} {'d':>4} {'causal':6} {'algo':8} | {'base':>7} {'new':>7} | {'new/base':>8}")
worst = None
for k in keys:
    b, n = (statistics.median(runs.get((t, k), [0.0])) for t in ("base", "new"))
    ratio = n / b if b else 0.0
    worst = ratio if worst is None else min(worst, ratio)
    print(f"{k[0]:5} {k[1]:4} {str(k[2]):6} {k[3]:8} | {b:7.1f} {n:7.1f} | {ratio:8.3f}")
print(f"slowest row new/base: {worst:.3f} (medians over rounds, base and new alternating)")
PY
