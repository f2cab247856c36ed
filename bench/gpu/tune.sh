#!/bin/bash
# Tile sweep for fa2 on the GPU: each candidate tile (forced through $TUNE_VAR: FLASHCL_TILE's
# BRxBCxTPRxTM for the portable kernel by default, or FLASHCL_MMA_TILE's WARPSxBC[xMT[xSTAGES[xLAZY]]]
# for the tensor-core one) runs flashcl-bench at one shape (B=8, H=16, N=4096, dtype $TUNE_DTYPE,
# default f32) with the float64 check on, so the fastest correct tile per head dim can go into the
# planner's table.
# Usage: [TUNE_VAR=FLASHCL_MMA_TILE TUNE_DTYPE=f16] bench/gpu/tune.sh OUT_DIR "64:64x32x8x4 32x64x8x4" "128:..."
set -uo pipefail
out=$1; shift
mkdir -p "$out"
: > "$out/tune.csv"
for spec in "$@"; do
  d=${spec%%:*}
  for tile in ${spec#*:}; do
    for causal in off on; do
      env "${TUNE_VAR:-FLASHCL_TILE}=$tile" ./build-gpu/bench/flashcl-bench -b 8 --heads 16 -n 4096 --head-dim "$d" \
        --causal $causal --dtype "${TUNE_DTYPE:-f32}" --algo fa2 -r 5 --check --no-roofline -f csv -q 2>>"$out/tune.err" | tail -n +2 | sed "s/^/\"$tile\",/" \
        >> "$out/tune.csv"
    done
  done
done
python3 - "$out/tune.csv" <<'PY'
import csv, sys
print(f"{'tile':>14} {'d':>4} {'causal':>6} {'TFLOP/s':>8} {'max|err|':>9} {'local B':>8} status")
for row in csv.reader(open(sys.argv[1])):
    tile, r = row[0], row[1:]
    # columns: algo,resolved,status,note,batch,heads,seqlen_q,seqlen_k,head_dim,causal,...
    status, d, causal = r[2], r[8], r[9]
    tflops = r[20] if status == "ok" else "-"
    err = f"{float(r[38]):9.1e}" if status == "ok" else r[3][:60]
    print(f"{tile:>14} {d:>4} {causal:>6} {float(tflops) if tflops not in ('', '-') else 0:8.2f} {err:>9} {r[13]:>8} {status}")
PY
