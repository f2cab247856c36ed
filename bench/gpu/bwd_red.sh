#!/bin/bash
# bwd_red.sh: one GPU call for issue 20's atomics A/B: the portable backward's dQ adds by the
# compare-and-swap loop (FLASHCL_BWD_RED=0) against NVIDIA's red.global.add.f32 (FLASHCL_BWD_RED=1,
# kernels/backward/bwd_common.cl; the NVIDIA default since the H100 timed it, docs/BACKWARD.md). Builds, runs the backward tests on the portable kernels with the
# native add, then times flashcl-bench --backward (fa2, atomic dQ) on the portable kernels, CAS
# and red alternating over two rounds. FLASHCL_BWD_MMA=0 throughout: every fa2 call then runs
# bwd_dkdv with its atomic dQ, as the calls the tensor cores decline (fp32, other head dims,
# window, softcap, ALiBi, masks, varlen) always do. Files in OUT_DIR: cmake.log, build.log, tests.log,
# bench.txt; the summary goes to stdout. Usage: bench/gpu/bwd_red.sh OUT_DIR
set -uo pipefail
out=${1:-/tmp/flashcl-bwd-red}
mkdir -p "$out"
cd "$(dirname "$0")/../.."

. bench/gpu/setup.sh  # the NVIDIA driver, FLASHCL_PLATFORM, build-gpu
bench=./build-gpu/bench/flashcl-bench

echo "== backward tests on the portable kernels with red.global.add.f32 (FLASHCL_BWD_RED=1 FLASHCL_BWD_MMA=0)"
FLASHCL_BWD_RED=1 FLASHCL_BWD_MMA=0 timeout 240 ./build-gpu/tests/flashcl_tests --gtest_filter='Backward*' \
  > "$out/tests.log" 2>&1
echo "exit $?: $(grep -E '^\[  (PASSED|FAILED)  \]' "$out/tests.log" | tr '\n' ' ')"
grep -E "^\[  FAILED  \]|Failure" "$out/tests.log" | head -10

echo "== flashcl-bench --backward, fa2 portable (B 4, H 16, N 2048, d 64/128): CAS then red, two rounds" | tee "$out/bench.txt"
export FLASHCL_BWD_MMA=0
for round in 1 2; do
  for red in 0 1; do
    echo "-- round $round, FLASHCL_BWD_RED=$red" >> "$out/bench.txt"
    FLASHCL_BWD_RED=$red timeout 120 $bench --backward -b 4 --heads 16 -n 2048 --head-dim 64,128 --dtype f16,f32 \
      --causal both --algo fa2 -r 5 -w 1 2>&1 | grep -E "^ +[0-9]|error" >> "$out/bench.txt"
  done
done
cat "$out/bench.txt"
