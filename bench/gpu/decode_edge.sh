#!/bin/bash
# decode_edge.sh: decode_mma's masks only on the tiles an edge crosses (DM_EDGE_ONLY, the default)
# against final_score on every tile (FLASHCL_BUILD_OPTIONS=-DDM_EDGE_ONLY=0), causal decode at 2, 4
# and 16 queries (fp16, H 32/8, d 128, 32k keys, B 8 and 1, contiguous and paged 16),
# alternating over two rounds in one call; the decode float64 tests on the default path first.
# Usage: bench/gpu/decode_edge.sh OUT_DIR (~2 minutes after the build)
set -uo pipefail
out=${1:-/tmp/flashcl-decode-edge}
mkdir -p "$out"
cd "$(dirname "$0")/../.."

. bench/gpu/setup.sh  # the NVIDIA driver, FLASHCL_PLATFORM, build-gpu
export FLASHCL_CACHE_DIR=/tmp/flashcl-cache-edge
bench=./build-gpu/bench/flashcl-bench
start=$SECONDS

echo "== decode float64 tests, the default path (edge-only masks)"
timeout 150 ./build-gpu/tests/flashcl_tests --gtest_filter='Decode*' > "$out/tests.log" 2>&1
echo "default: exit $? $(grep -E '^\[  (PASSED|FAILED) +\]' "$out/tests.log" | tr '\n' ' ') ($((SECONDS - start)) s)"
grep -E '^\[  FAILED  \]|Failure' "$out/tests.log" | head -6

one="--decode --heads 32 --heads-kv 8 --head-dim 128 --dtype f16 -r 20 -w 3 --csv --no-roofline -b 8,1 --cache 32768"
echo "form,round,$($bench $one -r 1 -w 0 2>/dev/null | head -1)"
for round in 1 2; do
  for nq in 2 4 16; do
    for page in 0 16; do
      for form in edge every; do
        env FLASHCL_BUILD_OPTIONS=$([ $form = edge ] || echo -DDM_EDGE_ONLY=0) timeout 30 $bench $one --seqlen-q $nq \
          --causal --page-size $page 2>>"$out/err.log" | tail -n +2 | sed "s/^/$form-nq$nq-causal,$round,/"
      done
    done
  done
  echo "(round $round: $((SECONDS - start)) s)"
done
echo "errors: $(grep -c . "$out/err.log" 2>/dev/null)"; head -5 "$out/err.log" 2>/dev/null
echo "total after the build: $((SECONDS - start)) s"
