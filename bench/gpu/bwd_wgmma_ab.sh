#!/bin/bash
# bwd_wgmma_ab.sh: one GPU call (an H100 or H200: compute capability 9.0) for engineer H2's opt-in
# tensor-core backward on Hopper's wgmma (issue 20), against the default mma.sync backward:
#   dq     FLASHCL_BWD_WGMMA=dq: bwd_mma_dq (the dQ pass) from programs.txt's bwd_mma_wgmma, S and dP
#          issued together behind one wait, B read by descriptor from core-matrix tiles;
#   wgmma  FLASHCL_BWD_WGMMA=1: the dK/dV kernel too (bwd_wgmma_dkdv.cl: S^T, dP^T, dV, dK on wgmma,
#          K_w and V_w as register A fragments);
#   ovl    FLASHCL_BWD_WGMMA=overlap: as wgmma, the dQ pass's dQ += dS K_j left in flight over the
#          next block's S, dP and dS (-DDQ_OVERLAP=1: three K buffers, 172 registers at d = 64).
# Builds (setup.sh), runs the tensor-core backward tests with each form against float64 (with
# FLASHCL_BWD_MMA=1 a failed probe is an error; DeterministicBitIdenticalOverTenRuns included), prints
# the driver's ptxas lines of the sm_90a (retargeted) programs, then times flashcl-bench --backward
# (B 8, H 16, N 4096, d 64/128, causal both, fp16/bf16, fa2; device-event medians of -r 10 after
# -w 2) default, dq, wgmma, ovl, then ovl, wgmma, dq, default, and PyTorch's FlashAttention-2 (sdpa_train.py,
# flash backend only) on the same shapes; the table last (backward and forward+backward, each form
# against FA2). Budget: ~170 s after the build. Files in OUT_DIR: cmake.log, build.log, tests.log,
# ptxas.log, ab.txt, sdpa_train.json, sdpa.log.
# Usage: bench/gpu/bwd_wgmma_ab.sh OUT_DIR
set -uo pipefail
out=${1:-/tmp/flashcl-bwd-wgmma-ab}
mkdir -p "$out"
cd "$(dirname "$0")/../.."

. bench/gpu/setup.sh  # the NVIDIA driver, FLASHCL_PLATFORM, build-gpu
. bench/gpu/bwd_ab_steps.sh  # FLASHCL_BWD_MMA=1, $bench, shape=(...), bwd_ab_tests, bwd_ab_rounds, bwd_fa2_reference
# a form's environment
form_env() {
  case $1 in
    default) echo "" ;;
    dq) echo "FLASHCL_BWD_WGMMA=dq" ;;
    wgmma) echo "FLASHCL_BWD_WGMMA=1" ;;
    ovl) echo "FLASHCL_BWD_WGMMA=overlap" ;;
  esac
}
SECONDS=0

: > "$out/tests.log"
for form in wgmma ovl dq; do  # ovl and dq change one kernel against wgmma / the default: two tests each
  filter='BwdMma.*'
  [ $form != wgmma ] && filter='BwdMma.HeadDimsCausalAndTypes:BwdMma.DeterministicBitIdenticalOverTenRuns'
  bwd_ab_tests $form "$filter"
done
grep -E "^\[  FAILED  \]|Failure|error|Skipped" "$out/tests.log" | head -10

echo "== ptxas: the sm_90a (retargeted) programs (warnings: wgmma serialised)"
: > "$out/ptxas.log"
for run in "wgmma 64" "wgmma 128" "ovl 64"; do
  set -- $run
  echo "== $1 d $2" >> "$out/ptxas.log"
  env $(form_env $1) FLASHCL_BUILD_OPTIONS=-cl-nv-verbose FLASHCL_BUILD_LOG=1 FLASHCL_DISK_CACHE=0 \
    timeout 30 $bench --backward -b 1 --heads 2 -n 512 --head-dim $2 --causal no --dtype f16 -r 1 -w 1 \
    > /dev/null 2>> "$out/ptxas.log"
done
awk '/^== / { print } /Compiling entry/ { mine = /sm_90a/ } mine && /Compiling entry|Used|spill/ { print }
     /arning/ { print }' "$out/ptxas.log" | sed 's/^ptxas *//' | head -24

echo "== A/B: default, dq, wgmma, ovl, then ovl, wgmma, dq, default"
bwd_ab_rounds default dq wgmma ovl ovl wgmma dq default
bwd_fa2_reference

python3 - "$out/ab.txt" "$out/sdpa_train.json" <<'PY'
import sys
sys.path.insert(0, "bench/gpu")
from ab_rows import backward_rounds, fa2_reference, median as med, nan
forms = ("default", "dq", "wgmma", "ovl")
bwd, fb = backward_rounds(sys.argv[1], forms)  # (dtype, d, causal) -> [TFLOP/s per round]: backward, fwd+bwd
flash = fa2_reference(sys.argv[2])
print("TFLOP/s, medians of the two rounds; bwd = the backward alone, f+b = forward+backward; x FA2 = / PyTorch's "
      "FlashAttention-2 (issue 20's bar: f+b x FA2 >= 1.0)")
print(f"{'dtype':5} {'d':>4} {'causal':6} | {'bwd def':>7} {'dq':>6} {'wgmma':>6} {'ovl':>6} {'wg/def':>6} "
      f"{'FA2':>6} | {'x FA2: def':>10} {'dq':>5} {'wgmma':>5} {'ovl':>5} | {'f+b def':>7} {'dq':>6} {'wgmma':>6} "
      f"{'ovl':>6} {'FA2':>6} | {'x FA2: def':>10} {'dq':>5} {'wgmma':>5} {'ovl':>5}")
for key in sorted(bwd["default"]):
    b = [med(bwd[f].get(key, [])) for f in forms]
    s = [med(fb[f].get(key, [])) for f in forms]
    fl = flash.get(key, (nan, nan))
    print(f"{key[0]:5} {key[1]:4} {str(key[2]):6} | {b[0]:7.1f} {b[1]:6.1f} {b[2]:6.1f} {b[3]:6.1f} "
          f"{b[2] / b[0]:6.3f} {fl[0]:6.1f} | {b[0] / fl[0]:10.2f} {b[1] / fl[0]:5.2f} {b[2] / fl[0]:5.2f} "
          f"{b[3] / fl[0]:5.2f} | {s[0]:7.1f} {s[1]:6.1f} {s[2]:6.1f} {s[3]:6.1f} {fl[1]:6.1f} | "
          f"{s[0] / fl[1]:10.2f} {s[1] / fl[1]:5.2f} {s[2] / fl[1]:5.2f} {s[3] / fl[1]:5.2f}")
print("rounds (bwd):", {f: {f"{k[0]} d{k[1]} {'causal' if k[2] else 'plain'}": v for k, v in bwd[f].items()}
                        for f in forms})
PY
echo "total ${SECONDS}s after the build"
