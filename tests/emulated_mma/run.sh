#!/bin/bash
# Runs tests on PoCL with the tensor-core kernels (the files the GPU builds) over the emulated
# operand files of this folder instead of the PTX ones (see mma_operands.cl): a kernel dir copy
# where nvidia/mma_ptx.cl, mma_half_io.cl, mma_f16.cl and mma_tf32.cl are replaced. By default
# tests/test_standard_mma.cpp's cases on the tensor-core standard (kernels/nvidia/standard_mma.cl,
# forward/standard_softmax.cl), with FLASHCL_STANDARD_MMA=1 (the path on any device, its probe
# required) and FLASHCL_STANDARD_CPU=0 (PoCL's standard otherwise takes the CPU-shaped form first);
# with FLASHCL_DECODE=mma and a Decode filter, the decode suite on decode_mma.cl; with
# FLASHCL_BWD_MMA=any, FLASHCL_BWD_TF32=1, FLASHCL_BWD_CPU=0 (FLASHCL_TENSOR_CORE_VARIANTS=1 for its
# variants) and a BwdMmaTf32 filter, the fp32 tensor-core backward (bwd_mma.cl's contract form over
# mma_tf32.cl, bwd_mma_dq.cl); with FLASHCL_MMA=any (and FLASHCL_MMA_TILE's one-buffer shapes) the
# forward's fa2_mma.cl. Checks indexing,
# masks, block ranges, stores and barriers against float64 without a GPU; the tensor-core
# instructions themselves only run on the card (bench/gpu/standard.sh, bench/gpu/decode_mma.sh).
# Usage: tests/emulated_mma/run.sh BUILD_DIR [GTEST_FILTER]   (default filter StandardMma.*)
# EMULATED_MMA_RUNNER, when set, is the command line the test binary runs under (oclgrind and its
# options: ctest's oclgrind_*_bwd_mma_tf32_emulated).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(realpath "$1")
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cp -r "$here/../../kernels/." "$dir/"
cp "$here/mma_ptx.cl" "$dir/nvidia/mma_ptx.cl"
: > "$dir/nvidia/mma_half_io.cl"
cp "$here/mma_operands.cl" "$dir/nvidia/mma_f16.cl"
cp "$here/mma_operands.cl" "$dir/nvidia/mma_tf32.cl"
cd "$build"
FLASHCL_KERNEL_DIR="$dir" FLASHCL_STANDARD_MMA=1 FLASHCL_STANDARD_CPU=0 FLASHCL_BUILD_LOG=1 \
  ${EMULATED_MMA_RUNNER:-} ./tests/flashcl_tests --gtest_filter="${2:-StandardMma.*}"
