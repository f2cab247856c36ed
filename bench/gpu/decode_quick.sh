#!/bin/bash
# decode_quick.sh: the decode defaults on issue 22's shapes in the least device time, most telling
# first (for a short lease, e.g. the bars' H200): builds (setup.sh); the default (decode_mma from 8k
# keys on contiguous caches and pages of a multiple of 8) against FLASHCL_DECODE=lanes-async (the
# form before) at one query (fp16, H 32/8, d 128, B 8 and 1, 4k/32k/128k keys, contiguous and paged
# 16/256), one round; PyTorch SDPA and the copy ceiling on the same shapes; decode_mma's edge-only
# masks against every tile (-DDM_EDGE_ONLY=0) at 4 and 16 causal queries; last
# the decode float64 tests on the default path. CSV rows, the form first; device-event medians.
# Usage: bench/gpu/decode_quick.sh OUT_DIR (~2 minutes after the build; STEPS="forms sdpa edge tests"
# by default, any subset of those words runs those parts; edge-tests: the decode tests with masks on
# every tile, DM_EDGE_ONLY=0; runs: decode_mma reading tiles in runs (FLASHCL_DECODE=mma, so 4k too;
# contiguous caches too) against each copy addressed on its own (-DDM_NO_RUNS=1; pages: the key
# table) and the async form
# (FLASHCL_DECODE=lanes-async), one query on contiguous caches and pages of 16 and 256, and 4
# queries on contiguous caches (runs against per copy), two rounds; runs-tests: the decode tests
# forced onto decode_mma, in runs (contiguous ones too) and per copy; ring: decode_mma's tile and ring shapes (BC 16-64,
# 2-4 stages) at one query, 32k and 128k keys, contiguous and pages of 16: whether a card with more
# bandwidth wants more bytes in flight; groups: decode_mma (forced) against the default at one query
# for groups of 1, 8 and 16 query heads a K/V head, 4k and 32k keys, contiguous: where the default
# could take it at short caches and other groups; fixed: B = 1 at one query, each kernel's device time
# and the launch gaps (--explain) at 32k keys over split counts, and at 256 (the floor), 4k and 128k, with decode_merge
# grouped (the default) and serial (-DMERGE_SERIAL=1), two rounds; contiguous and pages of 256, or
# the page sizes in FIXED_PAGES)
set -uo pipefail
out=${1:-/tmp/flashcl-decode-quick}
mkdir -p "$out"
cd "$(dirname "$0")/../.."

. bench/gpu/setup.sh  # the NVIDIA driver, FLASHCL_PLATFORM, build-gpu
export FLASHCL_CACHE_DIR=/tmp/flashcl-cache-quick
bench=./build-gpu/bench/flashcl-bench
start=$SECONDS
steps=" ${STEPS:-forms sdpa edge tests} "
# build_ab LABEL OPTIONS ARGS...: one flashcl-bench run under FLASHCL_BUILD_OPTIONS=OPTIONS, its rows
# prefixed LABEL
build_ab() {
  local label=$1 opts=$2
  shift 2
  FLASHCL_BUILD_OPTIONS=$opts timeout 30 $bench "$@" 2>>"$out/err.log" | tail -n +2 | sed "s/^/$label,/"
}
# decode_tests NAME [OPTIONS]: the decode float64 tests (under FLASHCL_BUILD_OPTIONS=OPTIONS), logged as NAME
decode_tests() {
  FLASHCL_BUILD_OPTIONS=${2:-} timeout 100 ./build-gpu/tests/flashcl_tests --gtest_filter='Decode*' > "$out/$1.log" 2>&1
  echo "$1: exit $? $(grep -E '^\[  (PASSED|FAILED) +\]' "$out/$1.log" | tr '\n' ' ') ($((SECONDS - start)) s)"
  grep -E '^\[  FAILED  \]|Failure' "$out/$1.log" | head -6
}

if [[ $steps == *" forms "* ]]; then
dec="--decode --cache 4096,32768,131072 -b 8,1 --heads 32 --heads-kv 8 --head-dim 128 --dtype f16 -r 20 -w 3 --csv --no-roofline"
echo "form,round,$($bench $dec --cache 4096 -b 1 -r 1 -w 1 2>/dev/null | head -1)"
for page in 0 16 256; do
  for form in default lanes-async; do
    env FLASHCL_DECODE=$([ $form = default ] || echo $form) timeout 40 $bench $dec --page-size $page \
      2>>"$out/err.log" | tail -n +2 | sed "s/^/$form,1,/"
  done
done
echo "(after the forms: $((SECONDS - start)) s)"
fi
if [[ $steps == *" sdpa "* ]]; then
timeout 60 python3 bench/gpu/sdpa_decode.py --batch 8,1 --cache 4096,32768,131072 --dtype f16 --repeat 20 \
  --json "$out/sdpa_decode.json" > "$out/sdpa.log" 2>&1 || tail -3 "$out/sdpa.log"
python3 -c "import json,sys; [print('sdpa:', r['backend'], r['batch'], r['cache'], r['kv_tb_per_s']) for r in json.load(open(sys.argv[1])) if r['backend'] in ('flash','cudnn','copy')]" "$out/sdpa_decode.json" 2>/dev/null
fi
if [[ $steps == *" edge "* ]]; then
one="--decode --heads 32 --heads-kv 8 --head-dim 128 --dtype f16 -r 20 -w 3 --csv --no-roofline -b 8,1 --cache 32768 --causal"
for nq in 4 16; do
  build_ab "edge-nq$nq-causal,1" "" $one --seqlen-q $nq
  build_ab "every-nq$nq-causal,1" -DDM_EDGE_ONLY=0 $one --seqlen-q $nq
done
echo "(after the edge A/B: $((SECONDS - start)) s)"
fi
if [[ $steps == *" runs "* ]]; then  # decode_mma's runs against per-copy addresses and the async form
one="--decode --heads 32 --heads-kv 8 --head-dim 128 --dtype f16 -r 20 -w 3 --csv --no-roofline -b 8,1"
echo "form,round,$($bench $one --cache 4096 -b 1 -r 1 -w 1 2>/dev/null | head -1)"
for round in 1 2; do
  for page in 0 16 256; do
    FLASHCL_DECODE=mma build_ab "runs-p$page,$round" "" $one --cache 4096,32768,131072 --page-size $page
    FLASHCL_DECODE=mma build_ab "percopy-p$page,$round" -DDM_NO_RUNS=1 $one --cache 4096,32768,131072 --page-size $page
    FLASHCL_DECODE=lanes-async build_ab "async-p$page,$round" "" $one --cache 4096,32768,131072 --page-size $page
  done
  build_ab "runs-nq4,$round" "" $one --cache 32768,131072 --seqlen-q 4
  build_ab "percopy-nq4,$round" -DDM_NO_RUNS=1 $one --cache 32768,131072 --seqlen-q 4
done
echo "(after the runs A/B: $((SECONDS - start)) s)"
fi
if [[ $steps == *" ring "* ]]; then  # decode_mma's tile and ring shapes, one query
one="--decode --heads 32 --heads-kv 8 --head-dim 128 --dtype f16 -r 20 -w 3 --csv --no-roofline -b 8,1 --cache 32768,131072"
for page in 0 16; do
  for form in mma-b32s2 mma-b32s3 mma-b32s4 mma-b64s2 mma-b16s4; do
    FLASHCL_DECODE=$form build_ab "$form-p$page,1" "" $one --page-size $page
  done
done
echo "(after the ring shapes: $((SECONDS - start)) s)"
fi
if [[ $steps == *" groups "* ]]; then  # decode_mma against the default for other GQA groups
for heads in 8 64 128; do
  one="--decode --heads $heads --heads-kv 8 --head-dim 128 --dtype f16 -r 20 -w 3 --csv --no-roofline -b 8,1 --cache 4096,32768"
  build_ab "default-h$heads,1" "" $one
  FLASHCL_DECODE=mma build_ab "mma-h$heads,1" "" $one
done
echo "(after the groups: $((SECONDS - start)) s)"
fi
if [[ $steps == *" fixed "* ]]; then  # B = 1's fixed cost: each kernel's time and the gaps (--explain)
one="--decode --heads 32 --heads-kv 8 --head-dim 128 --dtype f16 -r 20 -w 3 --csv --no-roofline -b 1 --explain"
for round in 1 2; do
  for merge in grouped serial; do  # decode_merge's split groups against one work-item a column (-DMERGE_SERIAL=1)
    opts=$([ $merge = serial ] && echo -DMERGE_SERIAL=1)
    for page in ${FIXED_PAGES:-0 256}; do
      for splits in 0 32 64 132; do
        FLASHCL_BUILD_OPTIONS=$opts timeout 30 $bench $one --cache 32768 --page-size $page --splits $splits 2>&1 |
          grep -E "kernels|^\"" | sed "s/^/fixed-$merge-p$page-s$splits,$round,/"
      done
      FLASHCL_BUILD_OPTIONS=$opts timeout 30 $bench $one --cache 256,4096,131072 --page-size $page 2>&1 |
        grep -E "keys:|kernels|^\"" | sed "s/^/fixed-$merge-p$page,$round,/"
    done
  done
done
echo "(after the fixed cost: $((SECONDS - start)) s)"
fi
if [[ $steps == *" runs-tests "* ]]; then
  FLASHCL_DECODE=mma decode_tests runs-tests
  FLASHCL_DECODE=mma decode_tests percopy-tests -DDM_NO_RUNS=1
fi
if [[ $steps == *" tests "* ]]; then decode_tests tests; fi
# the decode tests with masks on every tile (the A/B's other side)
if [[ $steps == *" edge-tests "* ]]; then decode_tests edge-tests -DDM_EDGE_ONLY=0; fi
echo "errors: $(grep -c . "$out/err.log" 2>/dev/null)"; head -3 "$out/err.log" 2>/dev/null
