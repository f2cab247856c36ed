#!/bin/bash
# decode_async.sh: decode_lanes with K/V arriving by cp.async into a ring in __local (the forced
# forms FLASHCL_DECODE=lanes-async[-k<KPT>s<stages>], docs/DECODE.md) against the default, and the
# split count from the kernel's residency (whole waves) against the old 2-per-SM rule, on issue
# 22's shapes in one call. Builds (setup.sh); runs the Decode* float64 tests under the default and
# under each async form; prints the kernels' registers and shared memory (-cl-nv-verbose); then times
# flashcl-bench --decode (fp16, 1 query, H 32/8, d 128, B 8 and 1, 4k/32k/128k keys, contiguous and
# paged 16/256), the forms alternating over two rounds, the old rule's split counts forced beside
# (B 8: 5/16/64, B 1: 16/33/64), and last PyTorch SDPA (FlashAttention-2, cuDNN) and the copy
# ceiling on the same shapes. One CSV row per run, the form first; device-event medians.
# Usage: bench/gpu/decode_async.sh OUT_DIR (~6 minutes after the build)
set -uo pipefail
out=${1:-/tmp/flashcl-decode-async}
mkdir -p "$out"
cd "$(dirname "$0")/../.."

. bench/gpu/setup.sh  # the NVIDIA driver, FLASHCL_PLATFORM, build-gpu
export FLASHCL_CACHE_DIR=/tmp/flashcl-cache-async
bench=./build-gpu/bench/flashcl-bench
start=$SECONDS
forms="default lanes-async lanes-async-k2s4 lanes-async-k2s5 lanes-async-k4s3"

echo "== Decode* float64 tests per form"
for form in $forms; do
  filter='Decode*'  # the async forms: fp8 caches keep the default kernel, so their tests are left out
  [ $form = default ] || filter='Decode*:-*Fp8*'
  env FLASHCL_DECODE=$([ $form = default ] || echo $form) timeout 100 ./build-gpu/tests/flashcl_tests \
    --gtest_filter="$filter" > "$out/tests-$form.log" 2>&1
  echo "$form: exit $? $(grep -E '^\[  (PASSED|FAILED) +\]' "$out/tests-$form.log" | tr '\n' ' ') ($((SECONDS - start)) s)"
  grep -E '^\[  FAILED  \]' "$out/tests-$form.log" | head -6
done

echo "== registers and shared memory (contiguous, B 1, 32k)"
for form in $forms; do
  echo "$form: $(env FLASHCL_DECODE=$([ $form = default ] || echo $form) FLASHCL_BUILD_OPTIONS=-cl-nv-verbose \
    FLASHCL_BUILD_LOG=1 FLASHCL_DISK_CACHE=0 $bench --decode --cache 32768 -b 1 --heads 32 --heads-kv 8 --head-dim 128 \
    --dtype f16 -r 1 -w 1 --no-roofline 2>&1 | grep -A2 "entry function 'decode_lanes'" | grep -E "Used" | head -1)"
done

dec="--decode --cache 4096,32768,131072 -b 8,1 --heads 32 --heads-kv 8 --head-dim 128 --dtype f16 -r 20 -w 3 --csv --no-roofline"
echo "form,round,$($bench $dec --cache 4096 -b 1 -r 1 -w 1 2>/dev/null | head -1)"
for round in 1 2; do
  for form in $forms; do
    for page in 0 16 256; do
      env FLASHCL_DECODE=$([ $form = default ] || echo $form) timeout 40 $bench $dec --page-size $page \
        2>>"$out/err.log" | tail -n +2 | sed "s/^/$form,$round,/"
    done
  done
  for page in 0 16 256; do  # the old rule's counts
    for bs in "8 4096 5" "8 32768 16" "8 131072 64" "1 4096 16" "1 32768 33" "1 131072 64"; do
      set -- $bs
      timeout 20 $bench --decode --cache $2 -b $1 --heads 32 --heads-kv 8 --head-dim 128 --dtype f16 -r 20 -w 3 --csv \
        --no-roofline --splits $3 --page-size $page 2>>"$out/err.log" | tail -n +2 | sed "s/^/old-rule,$round,/"
    done
  done
  echo "(round $round: $((SECONDS - start)) s)"
done
echo "errors: $(grep -c . "$out/err.log" 2>/dev/null)"; head -5 "$out/err.log" 2>/dev/null

echo "== PyTorch SDPA decode on the same shapes"
timeout 90 python3 bench/gpu/sdpa_decode.py --batch 8,1 --cache 4096,32768,131072 --dtype f16 --repeat 20 \
  --json "$out/sdpa_decode.json" > "$out/sdpa.log" 2>&1 || tail -3 "$out/sdpa.log"
python3 -c "import json,sys; [print('sdpa:', json.dumps(r)) for r in json.load(open(sys.argv[1]))]" "$out/sdpa_decode.json" 2>/dev/null
echo "total after the build: $((SECONDS - start)) s"
