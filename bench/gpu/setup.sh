# setup.sh, sourced by the GPU scripts (run.sh, fp8.sh) from the repository root with $out set:
# registers NVIDIA's OpenCL driver with the ICD loader, points flashcl at it and at a disk cache,
# and builds the tree in build-gpu (Release; headers and libraries carried in .deps/ when the
# machine lacks them), leaving the logs in $out; on a failed build it shows their ends and exits.
echo /usr/local/nvidia/lib64/libnvidia-opencl.so.1 > /etc/OpenCL/vendors/nvidia.icd
export FLASHCL_PLATFORM=NVIDIA FLASHCL_CACHE_DIR=/tmp/flashcl-cache
prefix=""
[ -d .deps/usr ] && prefix="-DCMAKE_PREFIX_PATH=$PWD/.deps/usr"  # headers/libs carried from Debian
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release $prefix > "$out/cmake.log" 2>&1 \
  && cmake --build build-gpu > "$out/build.log" 2>&1 || { tail -30 "$out/cmake.log" "$out/build.log"; exit 1; }
