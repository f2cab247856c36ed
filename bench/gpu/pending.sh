#!/bin/bash
# pending.sh: the GPU scripts not yet run on a card (docs/perf/nvidia-h100.md, "Not run on the
# card"), grouped into device calls that each fit the 10-minute limit, most decisive first. Every
# call first builds build-gpu through setup.sh (about 4 min on a fresh machine, a no-op on a warm
# one, so the scripts' own builds are no-ops), then runs each script under its own timeout with its
# files in /tmp/pending/<script>; its stdout (tests' verdicts, ptxas lines, the table last) goes to
# OUT/<script>.log, and all files of the call to one OUT/details.tar.gz, because a device call
# brings back only a few files. If the machine went cold between calls, the build comes back and
# the call may need repeating. All four calls ran on an H100 on 2026-12-05 11:50 UTC (results and the
# defaults they decided: docs/perf/nvidia-h100.md); bench/gpu/defaults_ab.sh re-checks those defaults.
# Usage (from the repository root, in a device call carrying .deps): bench/gpu/pending.sh CALL OUT
#   CALL 1: fp8_wgmma_ab (~150 s)                  after the build (~240 s fresh)
#   CALL 2: bwd_wgmma_ab (~170 s), fp8_ab (~120 s)
#   CALL 3: bwd_ab (~150 s), decode_ab (~100 s)
#   CALL 4: python_ab (~120 s, with the Python module's build), python_kvcache (~60 s)
set -uo pipefail
call=${1:?CALL: 1, 2, 3 or 4}
out=${2:?OUT directory}
mkdir -p "$out" /tmp/pending/build
case "$call" in
  1) scripts="fp8_wgmma_ab:220" ;;
  2) scripts="bwd_wgmma_ab:240 fp8_ab:170" ;;
  3) scripts="bwd_ab:200 decode_ab:150" ;;
  4) scripts="python_ab:260 python_kvcache:150" ;;
  *) echo "pending.sh: CALL must be 1, 2, 3 or 4, got '$call'"; exit 2 ;;
esac
start=$(date +%s)
( out=/tmp/pending/build; . bench/gpu/setup.sh ) > "$out/build.log" 2>&1 || { tail -30 "$out/build.log"; exit 1; }
echo "== build: $(( $(date +%s) - start )) s" | tee -a "$out/build.log"
for entry in $scripts; do
  name=${entry%%:*} limit=${entry##*:}
  start=$(date +%s)
  timeout "$limit" bash "bench/gpu/$name.sh" "/tmp/pending/$name" > "$out/$name.log" 2>&1
  echo "== $name: exit $? after $(( $(date +%s) - start )) s (limit $limit s)" | tee -a "$out/$name.log"
done
tar -czf "$out/details.tar.gz" -C /tmp pending 2>/dev/null
