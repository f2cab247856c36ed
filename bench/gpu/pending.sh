#!/bin/bash
# pending.sh: the GPU scripts not yet run on the H200 (docs/perf/nvidia-h200.md, the "Not run"
# sections), grouped into device calls that each fit the 10-minute limit, most decisive first. Every
# call first builds build-gpu through setup.sh (22 s on a fresh H100 on 2026-12-06, a no-op on a
# warm one, so the scripts' own builds are no-ops), then runs each script under its own timeout with its
# files in /tmp/pending/<script>; its stdout (tests' verdicts, ptxas lines, the table last) goes to
# OUT/<script>.log, and all files of the call to one OUT/details.tar.gz, because a device call
# brings back only a few files. If the machine went cold between calls, the build comes back and
# the call may need repeating. (The calls of 2026-12-05, fp8_wgmma_ab, bwd_wgmma_ab, fp8_ab, bwd_ab,
# decode_ab, python_ab and python_kvcache, ran on an H100: docs/perf/nvidia-h100.md.)
# Usage (from the root of .snap, the committed tree that the device calls carry beside .deps):
#   bench/gpu/pending.sh CALL OUT
#   CALL 5: tf32_backward on an H200 (issue 20's fp32 bar): the float64 tests of the fp32 backward on the
#           tensor cores (3xTF32), ptxas's report, and its fwd+bwd against the portable kernels and
#           PyTorch's memory-efficient SDPA; ran on an H100 on 2026-12-07 (docs/BACKWARD.md)
#   CALL 7: bwd_head_dims on any card: the tensor-core backward at d 32/96/120 (taken since
#           2026-12-08, tested on PoCL over emulated operands in fp32 only): its float64 tests with
#           FLASHCL_BWD_MMA=1 and its fwd+bwd against the portable kernels and FlashAttention-2
# (CALLS 1, 2 and 3, decode_quick, bwd_red + python_ab and fp8_vt_ab, ran on an H200 on 2026-12-07
# 23:15 UTC and left this list: docs/perf/nvidia-h200.md, the section of that date.)
# (CALL 4, tensor_core_variants, ran on an H100 on 2026-12-07 and left this list: the variants and
# fp32 on the tensor cores have been the default since, docs/BACKWARD.md, "On the card". CALL 6,
# bwd_kernels_ab, ran on an H100 on 2026-12-07 13:25 UTC: the softcap's ex2 form is the default, the
# fp32 split at d > 64 only; docs/perf/nvidia-h100.md.)
# (The decode kernels' NaN handling, decode_nan_ab.sh, and fa1's, ab.sh, ran on an H100 on
# 2026-12-06 10:10 UTC and left this list.)
set -uo pipefail
call=${1:?CALL: 5 or 7}
out=${2:?OUT directory}
mkdir -p "$out" /tmp/pending/build
case "$call" in
  5) scripts="tf32_backward:520" ;;
  7) scripts="bwd_head_dims:420" ;;
  *) echo "pending.sh: CALL must be 5 or 7 (calls 1-4 and 6 have run), got '$call'"; exit 2 ;;
esac
# the builds live in /tmp, outside the carried tree, so that a call made while the machine is still
# warm finds them (a carried .snap replaces its whole folder)
for dir in build-gpu build-gpu-python; do  # (a real folder of that name stays as it is)
  if [ ! -e "$dir" ] || [ -L "$dir" ]; then mkdir -p "/tmp/$dir" && ln -sfn "/tmp/$dir" "$dir"; fi
done
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
