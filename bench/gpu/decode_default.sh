#!/bin/bash
# decode_default.sh: the async form as NVIDIA's decode default (16-bit caches, up to 4 rows), checked
# in one call: builds (setup.sh); runs the Decode* float64 tests with no switch; prints the planner's
# reason for issue 22's shapes (--explain: the kernel, the residency the driver reported and the
# split count); sweeps forced split counts around whole waves (B 1 at 32k and 128k, B 8 at 32k);
# times the default against the forms it replaced (FLASHCL_DECODE=lanes-single, contiguous's
# before; lanes-wide, paged's before), alternating over two rounds; last the Python CUDA kvcache
# tests (tests/python/test_torch_kvcache.py -k cuda) on the new default.
# Usage: bench/gpu/decode_default.sh OUT_DIR (~5 minutes after the build)
set -uo pipefail
out=${1:-/tmp/flashcl-decode-default}
mkdir -p "$out"
out=$(realpath "$out")
cd "$(dirname "$0")/../.."

. bench/gpu/setup.sh  # the NVIDIA driver, FLASHCL_PLATFORM, build-gpu
export FLASHCL_CACHE_DIR=/tmp/flashcl-cache-default
bench=./build-gpu/bench/flashcl-bench
start=$SECONDS

echo "== Decode* float64 tests, no switch"
timeout 120 ./build-gpu/tests/flashcl_tests --gtest_filter='Decode*' > "$out/tests.log" 2>&1
echo "exit $? $(grep -E '^\[  (PASSED|FAILED) +\]' "$out/tests.log" | tr '\n' ' ') ($((SECONDS - start)) s)"
grep -E '^\[  FAILED  \]' "$out/tests.log" | head -6

echo "== the planner's reasons"
for page in 0 16; do
  $bench --decode --cache 4096,32768,131072 -b 8,1 --heads 32 --heads-kv 8 --head-dim 128 --dtype f16 --page-size $page \
    -r 1 -w 1 --no-roofline --explain 2>&1 >/dev/null | grep "^B " | sed "s/^/page $page: /"
done

dec="--heads 32 --heads-kv 8 --head-dim 128 --dtype f16 -r 20 -w 3 --csv --no-roofline"
echo "form,round,$($bench --decode $dec --cache 4096 -b 1 -r 1 -w 1 2>/dev/null | head -1)"
for bs in "1 32768" "1 131072" "8 32768"; do
  set -- $bs
  for s in 12 16 24 33 40 49 66 99; do
    timeout 20 $bench --decode $dec --cache $2 -b $1 --splits $s 2>>"$out/err.log" | tail -n +2 | sed "s/^/sweep,1,/"
  done
done
for round in 1 2; do
  for form in default lanes-single lanes-wide; do
    for page in 0 16 256; do
      env FLASHCL_DECODE=$([ $form = default ] || echo $form) timeout 40 $bench --decode $dec --cache 4096,32768,131072 \
        -b 8,1 --page-size $page 2>>"$out/err.log" | tail -n +2 | sed "s/^/$form,$round,/"
    done
  done
done
echo "errors: $(grep -c . "$out/err.log" 2>/dev/null)"; head -5 "$out/err.log" 2>/dev/null
echo "(bench done: $((SECONDS - start)) s)"

echo "== Python: tests/python/test_torch_kvcache.py -k cuda"
. bench/gpu/python_setup.sh
timeout -k 10 150 "$py" -m pytest -q -rs -p no:cacheprovider -k cuda tests/python/test_torch_kvcache.py > "$out/pytest.log" 2>&1
echo "exit $?: $(grep -E "passed|failed|error" "$out/pytest.log" | tail -1)"
grep -E "^(FAILED|ERROR)" "$out/pytest.log" | head -10
echo "total after the build: $((SECONDS - start)) s"
