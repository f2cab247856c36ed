#!/bin/bash
# decode_mma.sh: the tensor-core decode form (decode_mma.cl; NVIDIA's default at one query on
# contiguous caches from 8192 keys and at more queries, FLASHCL_DECODE=mma[-b<BC>s<RING>] forces it)
# checked and timed in one call on issue 22's one-query shapes.
# Builds (setup.sh); runs the decode float64 tests on the default path and forced to mma-b16s2
# (fp32, fp8 and rotary cases keep their kernels); prints the kernel's registers (-cl-nv-verbose);
# times flashcl-bench --decode (fp16, 1 query, H 32/8, d 128, B 8 and 1, 4k/32k/128k keys,
# contiguous and paged 16/256): the default against FLASHCL_DECODE=lanes-async (the default before,
# decode_lanes' async form) and mma-b16s2, alternating over two rounds; sweeps the mma form's split
# count (contiguous, 32k and 128k); times one-query causal against non-causal (the default path);
# last PyTorch SDPA (FlashAttention-2, cuDNN) and the copy ceiling on the same shapes. CSV rows,
# the form first; device-event medians.
# Usage: bench/gpu/decode_mma.sh OUT_DIR (~4 minutes after the build)
set -uo pipefail
out=${1:-/tmp/flashcl-decode-mma}
mkdir -p "$out"
cd "$(dirname "$0")/../.."

. bench/gpu/setup.sh  # the NVIDIA driver, FLASHCL_PLATFORM, build-gpu
export FLASHCL_CACHE_DIR=/tmp/flashcl-cache-mma
bench=./build-gpu/bench/flashcl-bench
start=$SECONDS
forms="default lanes-async mma-b16s2"

echo "== decode float64 tests: the default path, and every shape on mma-b16s2"
for form in default mma-b16s2; do
  env FLASHCL_DECODE=$([ $form = default ] || echo $form) timeout 150 ./build-gpu/tests/flashcl_tests \
    --gtest_filter='Decode*' > "$out/tests-$form.log" 2>&1
  echo "$form: exit $? $(grep -E '^\[  (PASSED|FAILED) +\]' "$out/tests-$form.log" | tr '\n' ' ') ($((SECONDS - start)) s)"
  grep -E '^\[  FAILED  \]|Failure' "$out/tests-$form.log" | head -6
done

echo "== registers and shared memory (B 1, 32k)"
for form in mma mma-b16s2; do
  for page in 0 16; do
    echo "$form page $page: $(FLASHCL_DECODE=$form FLASHCL_BUILD_OPTIONS=-cl-nv-verbose FLASHCL_BUILD_LOG=1 \
      FLASHCL_DISK_CACHE=0 $bench --decode --cache 32768 -b 1 --heads 32 --heads-kv 8 --head-dim 128 --dtype f16 \
      --page-size $page -r 1 -w 1 --no-roofline 2>&1 | grep -iE "decode_mma|registers|smem" | head -4 | tr '\n' ' ')"
  done
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
  echo "(round $round: $((SECONDS - start)) s)"
done
echo "== mma split sweep (contiguous; 0: the planner's)"
one="--decode --heads 32 --heads-kv 8 --head-dim 128 --dtype f16 -r 20 -w 3 --csv --no-roofline"
for cache in 32768 131072; do
  for s in 0 33 49 66; do
    FLASHCL_DECODE=mma timeout 20 $bench $one --cache $cache -b 1 --splits $s 2>>"$out/err.log" | tail -n +2 | sed "s/^/mma-splits-$s,1,/"
  done
  for s in 0 4 8 12; do
    FLASHCL_DECODE=mma timeout 20 $bench $one --cache $cache -b 8 --splits $s 2>>"$out/err.log" | tail -n +2 | sed "s/^/mma-splits-$s,1,/"
  done
done
echo "== one query, causal against not (the default path; B 8 and 1, 32k); Nq 2"
for nq in 1 2; do
  for causal in "" --causal; do
    timeout 20 $bench $one --cache 32768 -b 8,1 --seqlen-q $nq $causal 2>>"$out/err.log" | tail -n +2 | sed "s/^/nq$nq${causal:+-causal},1,/"
  done
done
echo "errors: $(grep -c . "$out/err.log" 2>/dev/null)"; head -5 "$out/err.log" 2>/dev/null
echo "(after the benches: $((SECONDS - start)) s)"

echo "== PyTorch SDPA decode on the same shapes"
timeout 90 python3 bench/gpu/sdpa_decode.py --batch 8,1 --cache 4096,32768,131072 --dtype f16 --repeat 20 \
  --json "$out/sdpa_decode.json" > "$out/sdpa.log" 2>&1 || tail -3 "$out/sdpa.log"
python3 -c "import json,sys; [print('sdpa:', json.dumps(r)) for r in json.load(open(sys.argv[1]))]" "$out/sdpa_decode.json" 2>/dev/null
echo "total after the build: $((SECONDS - start)) s"
