#!/bin/bash
# One run on the NVIDIA GPU machine does everything: registers NVIDIA's OpenCL driver, builds,
# checks every path on the GPU against the float64 reference (the CTest suite, odd sizes
# included), runs flashcl-bench and PyTorch's SDPA on the same shapes, prints one comparison table
# and leaves the JSON and logs in the directory given (default /tmp/flashcl-gpu).
# Usage: bench/gpu/run.sh OUT_DIR [quick]   (quick: fewer shapes, no test suite)
set -uo pipefail
out=${1:-/tmp/flashcl-gpu}
mode=${2:-full}
mkdir -p "$out"
cd "$(dirname "$0")/../.."

echo /usr/local/nvidia/lib64/libnvidia-opencl.so.1 > /etc/OpenCL/vendors/nvidia.icd
export FLASHCL_PLATFORM=NVIDIA FLASHCL_CACHE_DIR=/tmp/flashcl-cache
prefix=""
[ -d .deps/usr ] && prefix="-DCMAKE_PREFIX_PATH=$PWD/.deps/usr"  # headers/libs carried from Debian
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release $prefix > "$out/cmake.log" 2>&1 \
  && cmake --build build-gpu > "$out/build.log" 2>&1 || { tail -30 "$out/cmake.log" "$out/build.log"; exit 1; }

# Register and spill report of each kernel (ptxas through -cl-nv-verbose).
FLASHCL_BUILD_OPTIONS=-cl-nv-verbose FLASHCL_BUILD_LOG=1 FLASHCL_DISK_CACHE=0 \
  ./build-gpu/bench/flashcl-bench -n 1024 --head-dim 64,128 --causal both --algo all -r 1 --no-roofline -q \
  > /dev/null 2> "$out/ptxas.log"
grep -E "Used|spill" "$out/ptxas.log" | sort | uniq -c | head -40

if [ "$mode" != quick ]; then
  ctest --test-dir build-gpu -LE full -j 8 --output-on-failure > "$out/ctest.log" 2>&1
  echo "ctest on the GPU: $(grep -E 'tests passed|tests failed' "$out/ctest.log")"
  grep -E "Failed|\*\*\*" "$out/ctest.log" | head -20
fi

seqlens="1024 2048 4096 8192"; [ "$mode" = quick ] && seqlens="4096"
for n in $seqlens; do
  b=$((32768 / n))
  # fp32: every path; fp16/bf16: fa2 (the tensor-core kernel on NVIDIA) next to standard
  ./build-gpu/bench/flashcl-bench -b $b --heads 16 -n $n --head-dim 64,128 --causal both --algo all -r 10 \
    --check -f json -o "$out/flashcl-$n.json" 2>> "$out/bench.log"
  ./build-gpu/bench/flashcl-bench -b $b --heads 16 -n $n --head-dim 64,128 --causal both --algo standard,fa2 \
    --dtype f16,bf16 -r 10 --check -f json -o "$out/flashcl-16bit-$n.json" 2>> "$out/bench.log"
done
python3 bench/gpu/sdpa.py --seqlen "$(echo $seqlens | tr ' ' ,)" --dtype f32,f16,bf16 --json "$out/sdpa.json" \
  2>> "$out/sdpa.log" || tail -5 "$out/sdpa.log"
python3 bench/gpu/compare.py "$out/sdpa.json" "$out"/flashcl-*.json | tee "$out/compare.txt"
