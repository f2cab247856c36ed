# ab_setup.sh, sourced by the tree A/B scripts (ab.sh, decode_tree_ab.sh) from the repository root
# with $base (the base tree) and $out set: registers NVIDIA's OpenCL driver with the ICD loader,
# points flashcl at it, and builds flashcl-bench in both trees into build-ab (Release, tests off;
# not setup.sh's build-gpu, whose tests stay configured for the scripts that run them), with the
# headers and libraries carried in .deps/ when the machine lacks them. On a failed build it shows
# the logs' ends and exits (each tree's logs named after it: cmake-base.log, build-new.log, ...).
echo /usr/local/nvidia/lib64/libnvidia-opencl.so.1 > /etc/OpenCL/vendors/nvidia.icd
export FLASHCL_PLATFORM=NVIDIA
prefix=""
[ -d .deps/usr ] && prefix="-DCMAKE_PREFIX_PATH=$PWD/.deps/usr"
for tree in "$base" "$PWD"; do
  name=new
  [ "$tree" = "$base" ] && name=base
  cmake -S "$tree" -B "$tree/build-ab" -G Ninja -DCMAKE_BUILD_TYPE=Release -DFLASHCL_BUILD_TESTS=OFF $prefix \
    > "$out/cmake-$name.log" 2>&1 && cmake --build "$tree/build-ab" --target flashcl-bench > "$out/build-$name.log" 2>&1 \
    || { tail -30 "$out/cmake-$name.log" "$out/build-$name.log" 2>/dev/null; exit 1; }
done
