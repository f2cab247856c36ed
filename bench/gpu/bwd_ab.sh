#!/bin/bash
# bwd_ab.sh: one GPU call for engineer H1's opt-in tensor-core backward forms (issue 20), both about
# halving the ldmatrix traffic per product at d = 64 by two 16-row m-tiles a warp:
#   dq   FLASHCL_BWD_MMA_DQ_TILE=32x2x2: bwd_mma_dq with -DMT=2 (32 query rows a warp, 32-key K/V
#        blocks, two buffers);
#   both the same and FLASHCL_BWD_MMA_TILE=4x32x2x2: bwd_mma_dkdv with -DMK=2 too (32 keys a warp,
#        128-key K/V blocks, 32-row Q blocks, two Q/dO buffers).
# Ran on the H100 on 2026-12-05: both won at d = 64 and are its default since (docs/perf/nvidia-h100.md),
# so "default" and "both" now coincide there. At d = 128 "both" is not eligible for the tensor cores
# (4x32 with two Q/dO buffers needs 56.5 KiB) and its rows time the portable kernel.
# Builds (setup.sh), runs the tensor-core backward tests with each form against float64
# (FLASHCL_BWD_MMA=1: a failed probe is an error), then times flashcl-bench --backward (B 8, H 16,
# N 4096, d 64/128, causal both, fp16/bf16, fa2; device-event medians of -r 10 after -w 2) default,
# dq, both, then both, dq, default, and PyTorch's FlashAttention-2 (sdpa_train.py, flash backend
# only) on the same shapes; the table last. Budget: ~150 s after the build. Files in OUT_DIR:
# cmake.log, build.log, tests.log, ptxas.log, ab.txt, sdpa_train.json, sdpa.log.
# Usage: bench/gpu/bwd_ab.sh OUT_DIR
set -uo pipefail
out=${1:-/tmp/flashcl-bwd-ab}
mkdir -p "$out"
cd "$(dirname "$0")/../.."

. bench/gpu/setup.sh  # the NVIDIA driver, FLASHCL_PLATFORM, build-gpu
. bench/gpu/bwd_ab_steps.sh  # FLASHCL_BWD_MMA=1, $bench, shape=(...), bwd_ab_tests, bwd_ab_rounds, bwd_fa2_reference
# a form's environment
form_env() {
  case $1 in
    default) echo "" ;;
    dq) echo "FLASHCL_BWD_MMA_DQ_TILE=32x2x2" ;;
    both) echo "FLASHCL_BWD_MMA_DQ_TILE=32x2x2 FLASHCL_BWD_MMA_TILE=4x32x2x2" ;;
  esac
}
SECONDS=0

: > "$out/tests.log"
for form in both dq; do  # dq alone: its dK/dV kernel keeps MK 1 (V_w loaded apart from load_q), one test
  filter='BwdMma.*'
  [ $form = dq ] && filter='BwdMma.HeadDimsCausalAndTypes'
  bwd_ab_tests $form "$filter"
done
grep -E "^\[  FAILED  \]|Failure|error" "$out/tests.log" | head -10

echo "== ptxas: the MT 2 / MK 2 programs (d 64)"
env $(form_env both) FLASHCL_BUILD_OPTIONS=-cl-nv-verbose FLASHCL_BUILD_LOG=1 FLASHCL_DISK_CACHE=0 \
  timeout 30 $bench --backward -b 1 --heads 2 -n 512 --head-dim 64 --causal no --dtype f16 -r 1 -w 1 \
  > /dev/null 2> "$out/ptxas.log"
awk '/build log for/ { mine = /-DMT=2/ } mine && /Compiling entry|Used|spill/ { print }' "$out/ptxas.log" | head -6

echo "== A/B: default, dq, both, then both, dq, default"
bwd_ab_rounds default dq both both dq default
bwd_fa2_reference

python3 - "$out/ab.txt" "$out/sdpa_train.json" <<'PY'
import sys
sys.path.insert(0, "bench/gpu")
from ab_rows import backward_rounds, fa2_reference, median as med, nan
runs, fb = backward_rounds(sys.argv[1], ("default", "dq", "both"))  # (dtype, d, causal) -> [TFLOP/s per round]
flash = fa2_reference(sys.argv[2])
print("TFLOP/s of the backward alone (median of the two rounds); f+b = forward+backward; new = both")
print(f"{'dtype':5} {'d':>4} {'causal':6} | {'default':>7} {'dq':>6} {'new':>6} {'new/def':>7} | {'flash':>6} "
      f"{'new/flash':>9} | {'new f+b':>7} {'flash f+b':>9} {'x flash':>7} | rounds default / dq / new")
for key in sorted(runs["default"]):
    d0, dq, d1 = med(runs["default"][key]), med(runs["dq"].get(key, [])), med(runs["both"].get(key, []))
    fl = flash.get(key, (nan, nan))
    f1 = med(fb["both"].get(key, []))
    print(f"{key[0]:5} {key[1]:4} {str(key[2]):6} | {d0:7.1f} {dq:6.1f} {d1:6.1f} {d1 / d0:7.3f} | {fl[0]:6.1f} "
          f"{d1 / fl[0]:9.2f} | {f1:7.1f} {fl[1]:9.1f} {f1 / fl[1]:7.2f} | {runs['default'][key]} / "
          f"{runs['dq'].get(key)} / {runs['both'].get(key)}")
PY
echo "total ${SECONDS}s after the build"
