#!/bin/bash
# decode_waves.sh: does the decode split count want one full wave of the work-groups an SM holds?
# decode_lanes at d 128 fp16 takes ~166 registers, so 3 work-groups of 128 fit an SM by registers
# (396 on 132 SMs; the driver's CL_KERNEL_WORK_GROUP_SIZE later said 2), while SplitRule{2, ...} asks for 2 per SM (B 1, H_kv 8: 33 splits, 264 work-groups); the
# H200's sweep (docs/perf/nvidia-h200.md) had 33 best at B 1 but never tried 49 (392 work-groups:
# one full wave at 3 per SM) or 99 (two). Builds (setup.sh), prints the decode kernels' registers
# (-cl-nv-verbose), then times flashcl-bench --decode (fp16, 1 query, H 32/8, d 128) at forced
# split counts around those waves: B 1 at 32k and 128k keys, contiguous (single and wide forms)
# and paged 16 (wide), B 8 at 32k and 128k; two rounds, device-event medians, one CSV row each.
# Usage: bench/gpu/decode_waves.sh OUT_DIR (~120 s after the build)
set -uo pipefail
out=${1:-/tmp/flashcl-decode-waves}
mkdir -p "$out"
cd "$(dirname "$0")/../.."

. bench/gpu/setup.sh  # the NVIDIA driver, FLASHCL_PLATFORM, build-gpu
export FLASHCL_CACHE_DIR=/tmp/flashcl-cache-waves
bench=./build-gpu/bench/flashcl-bench
start=$SECONDS

echo "== registers (ptxas through -cl-nv-verbose): contiguous, then paged 16"
for page in 0 16; do
  FLASHCL_BUILD_OPTIONS=-cl-nv-verbose FLASHCL_BUILD_LOG=1 FLASHCL_DISK_CACHE=0 $bench --decode --cache 4096 -b 1 \
    --heads 32 --heads-kv 8 --head-dim 128 --dtype f16 --page-size $page -r 1 -w 1 --no-roofline 2>&1 >/dev/null |
    grep -E "Compiling entry|Used|spill" | head -8
done

dec="--decode --heads 32 --heads-kv 8 --head-dim 128 --dtype f16 -r 20 -w 3 --csv --no-roofline"
run() {  # label env... -- bench args...
  local label=$1
  shift
  local envs=()
  while [ "$1" != -- ]; do envs+=("$1"); shift; done
  shift
  env "${envs[@]}" timeout 20 $bench $dec "$@" 2>>"$out/err.log" | tail -n +2 | sed "s/^/$label,/"
}
echo "form,round,$($bench $dec --cache 4096 -b 1 -r 1 -w 1 2>/dev/null | head -1)"
for round in 1 2; do
  for cache in 32768 131072; do
    for s in 0 24 33 40 49 66 99 132; do
      run "contiguous,$round" FLASHCL_X=0 -- --cache $cache -b 1 --splits $s
      run "contiguous-wide,$round" FLASHCL_DECODE=lanes-wide -- --cache $cache -b 1 --splits $s
      run "paged16,$round" FLASHCL_X=0 -- --cache $cache -b 1 --splits $s --page-size 16
    done
    for s in 0 8 12 16 24 33 49 64; do
      run "contiguous,$round" FLASHCL_X=0 -- --cache $cache -b 8 --splits $s
      run "paged16,$round" FLASHCL_X=0 -- --cache $cache -b 8 --splits $s --page-size 16
    done
  done
done
echo "errors: $(grep -c . "$out/err.log" 2>/dev/null)"; head -5 "$out/err.log" 2>/dev/null
echo "total after the build: $((SECONDS - start)) s"
