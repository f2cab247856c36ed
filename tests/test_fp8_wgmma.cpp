// test_fp8_wgmma.cpp: the e4m3 forward on Hopper's wgmma (kernels/nvidia/mma_wgmma_e4m3.cl, the
// default for e4m3 up to d = 128 on compute capability 9.0) checked as test_fp8_tensor_core.cpp
// checks the mma.sync kernel: fp8_support's run_fp8_case against float64 on the dequantised inputs,
// O and LSE poisoned with NaN, O's relative RMS error within 4e-2 (P rounded to e4m3 before P·V, as
// FlashAttention-3; a wrong fragment, transposition or descriptor is off by O(1)). The cases cover
// what is new in this kernel: V transposed through registers (d = 64 and 128 with 16-byte copies
// and word loads of V, d = 72 and 30 with element-wise copies and byte loads), wgmma widths of 32,
// 64 + 32 and two 64s along d (d = 32, 96, 128), key blocks that are partial, alone (prologue and
// last block only) or two (the loop once), GQA, causal both, fp16 and bf16 O, and V stored
// transposed (read as stored, K's rows permuted instead). Each case first
// asserts that the plan is the wgmma one; FLASHCL_FP8_WGMMA=require (bench/gpu/fp8_wgmma_ab.sh)
// makes a failed probe an error rather than a silent fallback to mma.sync. The tests skip, saying
// why, under FLASHCL_FP8_WGMMA=0 or on a device other than compute capability 9.0 (wgmma is sm_90a).
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "fp8_support.hpp"

namespace flashcl::test {
namespace {

class Fp8Wgmma : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* on = std::getenv("FLASHCL_FP8_WGMMA");
    if (on != nullptr && std::string(on) == "0")
      GTEST_SKIP() << "FLASHCL_FP8_WGMMA=0: e4m3 runs on mma.sync, which Fp8TensorCore checks";
    if (!hopper_device()) GTEST_SKIP() << "e4m3 on wgmma needs an NVIDIA GPU of compute capability 9.0 (sm_90a)";
  }

  static void run(int b, int h, int h_kv, int nq, int nk, int d, bool causal, DType out, Layout o_layout,
                  bool v_transposed = false) {
    Fp8Case c = tensor_core_case(b, h, h_kv, nq, nk, d, causal, out, o_layout);
    c.v_transposed = v_transposed;
    // the plan the call takes (a failed probe under =require then fails the call itself)
    ForwardArgs a = shape_args(c.shape);
    a.dtype = DType::E4M3;
    a.out_dtype = out;
    a.algorithm = Algorithm::FA2;
    a.fp8.v_transposed = v_transposed;
    if (v_transposed) a.v = {};  // dense (B, H_kv, d, Nk)
    const std::string reason = tile_info(session().device(), a).reason;
    const std::string planned = v_transposed ? "wgmma.m64nNk32 e4m3, V^T as stored" : "wgmma.m64nNk32 e4m3";
    ASSERT_NE(reason.find(planned), std::string::npos) << c.name << ": planned " << reason;
    run_fp8_case(c);
  }
};

TEST_F(Fp8Wgmma, AlignedHeadDims) {
  for (int d : {64, 128})
    for (bool causal : {false, true})
      run(2, 4, 4, 200, 200, d, causal, causal ? DType::BF16 : DType::F16, Layout::BSHD);
}

TEST_F(Fp8Wgmma, GqaPartialBlocksAndUnequalLengths) {
  run(2, 8, 2, 77, 300, 64, true, DType::BF16, Layout::BHSD);    // Nq < Nk, bottom-right diagonal
  run(1, 4, 1, 300, 129, 128, false, DType::F16, Layout::BSHD);  // a 1-key last block
  run(1, 4, 2, 130, 130, 128, true, DType::F16, Layout::BSHD);
  run(1, 4, 2, 300, 129, 128, true, DType::BF16, Layout::BSHD);  // rows that see no key
}

TEST_F(Fp8Wgmma, OneAndTwoKeyBlocks) {
  run(1, 2, 2, 70, 64, 128, false, DType::F16, Layout::BSHD);  // one block: the prologue and the last block only
  run(1, 2, 2, 1, 17, 64, true, DType::BF16, Layout::BSHD);    // one row, one partial block
  run(2, 2, 1, 65, 65, 64, false, DType::BF16, Layout::BSHD);  // two blocks: the loop once
  run(1, 2, 2, 128, 128, 128, true, DType::F16, Layout::BSHD);
}

TEST_F(Fp8Wgmma, HeadDimWidthsAndElementWiseLoads) {
  run(1, 2, 2, 100, 150, 32, false, DType::F16, Layout::BSHD);       // P V as one wgmma of 32 columns
  run(1, 2, 2, 100, 150, 96, true, DType::BF16, Layout::BSHD);       // 64 + 32 columns
  run(1, 2, 2, 100, 150, 80, false, DType::F16, Layout::BSHD);       // padded to 96
  run(1, 2, 2, 100, 150, 72, true, DType::BF16, Layout::BSHD);       // element-wise K copies, byte loads of V
  run(2, 2, 1, 37, 150, 30, false, DType::F16, Layout::PaddedRows);  // byte loads of Q and V, unaligned rows
}

// V stored (B, H_kv, d, Nk), read as stored by cp.async with K's rows permuted (mma_wgmma_e4m3.cl):
// 16-byte copies where Nk is a multiple of 16 (d-rows on 16 bytes), element-wise ones elsewhere;
// the masks (causal, bounds) then find each score's key through S_COLUMN_KEY.
TEST_F(Fp8Wgmma, TransposedV) {
  for (int d : {64, 128})
    for (bool causal : {false, true}) run(2, 4, 4, 200, 256, d, causal, causal ? DType::BF16 : DType::F16, Layout::BSHD, true);
  run(2, 8, 2, 77, 304, 64, true, DType::BF16, Layout::BHSD, true);   // GQA, Nq < Nk, 16-byte copies
  run(1, 4, 2, 300, 129, 128, true, DType::BF16, Layout::BSHD, true); // element-wise, a 1-key last block
  run(1, 2, 2, 1, 17, 64, true, DType::F16, Layout::BSHD, true);      // one row, one partial block
  run(1, 2, 2, 100, 150, 96, false, DType::F16, Layout::BSHD, true);  // 64 + 32 columns
  run(2, 2, 1, 37, 150, 30, false, DType::BF16, Layout::PaddedRows, true);
}

}  // namespace
}  // namespace flashcl::test
