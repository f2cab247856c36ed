#!/bin/bash
# pending.sh: the GPU scripts not yet run on a card (docs/perf/nvidia-h100.md, "Not run on the
# card"), grouped into device calls that each fit the 10-minute limit, most decisive first. Each
# script runs under its own timeout with its files in /tmp/pending/<script>; its stdout (tests'
# verdicts, ptxas lines, the table last) goes to OUT/<script>.log, and all files of the call to one
# OUT/details.tar.gz, because a device call brings back only a few files.
# Usage (from the repository root, in a device call carrying .deps): bench/gpu/pending.sh CALL OUT
#   CALL 1: fp8_wgmma_ab (~150 s), bwd_wgmma_ab (~170 s), after the build (~4 min on a fresh machine)
#   CALL 2: fp8_ab (~120 s), bwd_ab (~150 s), decode_ab (~100 s)
#   CALL 3: python_ab (~120 s), python_kvcache (~60 s), after the Python module's build (~1 min)
set -uo pipefail
call=${1:?CALL: 1, 2 or 3}
out=${2:?OUT directory}
mkdir -p "$out" /tmp/pending
case "$call" in
  1) scripts="fp8_wgmma_ab:280 bwd_wgmma_ab:260" ;;  # the first one's limit covers the build
  2) scripts="fp8_ab:170 bwd_ab:200 decode_ab:150" ;;
  3) scripts="python_ab:240 python_kvcache:150" ;;
  *) echo "pending.sh: CALL must be 1, 2 or 3, got '$call'"; exit 2 ;;
esac
for entry in $scripts; do
  name=${entry%%:*} limit=${entry##*:}
  start=$(date +%s)
  timeout "$limit" bash "bench/gpu/$name.sh" "/tmp/pending/$name" > "$out/$name.log" 2>&1
  echo "== $name: exit $? after $(( $(date +%s) - start )) s (limit $limit s)" | tee -a "$out/$name.log"
done
tar -czf "$out/details.tar.gz" -C /tmp pending 2>/dev/null
