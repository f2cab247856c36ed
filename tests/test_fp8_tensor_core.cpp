// test_fp8_tensor_core.cpp: FP8 calls of the shapes the NVIDIA tensor-core kernel takes
// (kernels/nvidia/mma_e4m3.cl: e4m3, per-head descales, V as stored, O in fp16 or bf16, plain, causal or
// GQA), checked by fp8_support's run_fp8_case against float64 on the dequantised inputs, so the
// kernel's own error is measured apart from the quantisation's. Head dims and strides cover its
// load variants: 16-byte copies and 4-byte Q loads (d = 64, 128), a head dim padded to the mma's
// k of 32 (d = 80), element-wise copies (d = 72, 30) and unaligned rows. On NVIDIA GPUs of compute
// capability 8.9+ the tensor cores run them and round P to e4m3 before P·V, as FlashAttention-3
// does: up to half an e4m3 step (2^-4) relative, about 3.6 % RMS per entry, and O's relative
// error is of that order because O and its error both average over the keys (1.8-2.5 % measured
// on the H200), so the bound on O's relative RMS error is 4e-2; a wrong fragment layout or
// descale is off by O(1). Elsewhere the portable fa2 runs them (P in fp32: 2e-4 to 2e-3 measured
// under PoCL). LSE comes from fp32 sums: within 1e-5, 1e-4 on Hopper's wgmma (cc 9.0 up to
// d = 128, the default there; FLASHCL_FP8_WGMMA=0 checks mma.sync), whose FP8 products are added
// with fewer bits than fp32 (fp8_support.cpp).
#include <gtest/gtest.h>

#include <string>

#include "fp8_support.hpp"

namespace flashcl::test {
namespace {

void run_tensor_core_case(int b, int h, int h_kv, int nq, int nk, int d, bool causal, DType out, Layout o_layout) {
  run_fp8_case(tensor_core_case(b, h, h_kv, nq, nk, d, causal, out, o_layout));
}

TEST(Fp8TensorCore, AlignedHeadDims) {
  for (int d : {64, 128})
    for (bool causal : {false, true})
      run_tensor_core_case(2, 4, 4, 200, 200, d, causal, causal ? DType::BF16 : DType::F16, Layout::BSHD);
}

TEST(Fp8TensorCore, GqaPartialBlocksAndUnequalLengths) {
  run_tensor_core_case(2, 8, 2, 77, 300, 64, true, DType::BF16, Layout::BHSD);
  run_tensor_core_case(1, 4, 1, 300, 129, 128, false, DType::F16, Layout::BSHD);
  run_tensor_core_case(1, 4, 2, 130, 130, 128, true, DType::F16, Layout::BSHD);
}

TEST(Fp8TensorCore, PaddedAndElementWiseHeadDims) {
  run_tensor_core_case(1, 2, 2, 100, 150, 80, false, DType::F16, Layout::BSHD);       // padded to 96
  run_tensor_core_case(1, 2, 2, 100, 150, 72, true, DType::BF16, Layout::BSHD);       // element-wise copies
  run_tensor_core_case(2, 2, 1, 37, 150, 30, false, DType::F16, Layout::PaddedRows);  // byte loads of Q
}

// Head dims past 128: the tensor cores take them (4x32x1x2: O's 32 n-tiles a warp, Q's 8 k-steps);
// on other devices, and under FLASHCL_FP8_D256=0, the portable fa2 does.
TEST(Fp8TensorCore, HeadDimsTo256) {
  run_tensor_core_case(1, 2, 2, 150, 150, 256, false, DType::BF16, Layout::BSHD);
  run_tensor_core_case(1, 4, 2, 130, 200, 256, true, DType::F16, Layout::BSHD);
  run_tensor_core_case(1, 2, 1, 100, 100, 160, true, DType::BF16, Layout::BHSD);  // 5 k-steps of 32
}

}  // namespace
}  // namespace flashcl::test
