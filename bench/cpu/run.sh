#!/bin/bash
# The CPU comparison in one run (as bench/gpu/run.sh is for the GPU): builds flashcl, then for
# ROUNDS rounds (default 2) runs in turn flashcl-bench's fa2 (fp32, fp16, bf16: the CPU-shaped
# kernel the planner picks on PoCL), the team fa2 it replaced (FLASHCL_FA2_CPU=0, fp32), fa2's
# backward and forward+backward (flashcl-bench --backward, fp32: the CPU-shaped backward) and
# PyTorch's CPU SDPA (forward, and forward+backward) on the same shapes -- B = 1, H = 8, d = 64
# and 128, N = 1024, 2048, 4096, causal and not -- with the same thread count (THREADS, default
# 2: PoCL's pthreads and torch.set_num_threads), then prints bench/cpu/compare.py's table with the
# load average before and after. PyTorch comes from .venv (pip install torch).
# Usage: [ROUNDS=R] [THREADS=T] [BUILD=build-cpu] bench/cpu/run.sh OUT_DIR [quick]   (quick: N = 1024)
set -uo pipefail
out=${1:-/tmp/flashcl-cpu}
mode=${2:-full}
rounds=${ROUNDS:-2}
threads=${THREADS:-2}
build=${BUILD:-build-cpu}
mkdir -p "$out"
cd "$(dirname "$0")/../.."
python=.venv/bin/python
[ -x "$python" ] || python=python3

release=-DCMAKE_BUILD_TYPE=Release; [ -f "$build/CMakeCache.txt" ] && release=""  # an existing build keeps its type
cmake -S . -B "$build" -G Ninja $release > "$out/cmake.log" 2>&1 \
  && cmake --build "$build" --target flashcl-bench > "$out/build.log" 2>&1 || { tail -30 "$out/cmake.log" "$out/build.log"; exit 1; }
bench="$build/bench/flashcl-bench"
export POCL_MAX_PTHREAD_COUNT=$threads OMP_NUM_THREADS=$threads
seqlens=1024,2048,4096; [ "$mode" = quick ] && seqlens=1024
shape=(-b 1 --heads 8 -n "$seqlens" --head-dim 64,128 --causal both --algo fa2 --check-macs 2e8 -q)
bwd_shape=(-b 1 --heads 8 -n "$seqlens" --head-dim 64,128 --causal both --algo fa2 --dtype f32)

echo "load before: $(cut -d' ' -f1-3 /proc/loadavg); $($python -c 'import torch; print("torch", torch.__version__)'); $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2); PoCL $(dpkg-query -W -f='${Version}' pocl-opencl-icd 2>/dev/null)"
"$bench" "${shape[@]}" -r 1 --dtype f32,f16,bf16 -f json -o "$out/warmup.json" > /dev/null 2>> "$out/bench.log"  # builds
for r in $(seq 1 "$rounds"); do
  "$bench" "${shape[@]}" -r 3 --dtype f32,f16,bf16 -f json -o "$out/fa2-r$r.json" > /dev/null 2>> "$out/bench.log"
  FLASHCL_FA2_CPU=0 "$bench" "${shape[@]}" -r 3 --dtype f32 -f json -o "$out/team-r$r.json" > /dev/null 2>> "$out/bench.log"
  "$bench" --backward "${bwd_shape[@]}" -r 3 -w 1 > "$out/bwd-r$r.txt" 2>> "$out/bench.log"
  $python bench/cpu/sdpa_cpu.py --threads "$threads" --seqlen "$seqlens" --head-dim 64,128 --backward \
    --json "$out/sdpa-r$r.json" 2>> "$out/bench.log"
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 bench/cpu/compare.py "$out" | tee "$out/table.txt"
