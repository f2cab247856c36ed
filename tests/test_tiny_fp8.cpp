// test_tiny_fp8.cpp: tiny fp8 cases for the kernel checks (docs/CHECKS.md): the portable fa2 on
// e4m3/e5m2 inputs (per-head and block descales, transposed V, tiles that do not divide the
// lengths, a strided O whose NaN gaps must stay untouched) and the three quantisation kernels
// (block scales, Hadamard, transposed output; packed varlen rows with per-sequence scales, and
// hostile offsets). On PoCL they are ordinary tests; with
// FLASHCL_OCLGRIND_TESTS=ON CTest also runs each under oclgrind (oclgrind_*_fp8: races, bounds,
// uninitialised reads, 48 KiB of local memory).
#include <gtest/gtest.h>

#include <cmath>

#include "fp8_support.hpp"
#include "problem.hpp"

namespace flashcl::test {
namespace {

TEST(Fp8Tiny, Fa2BlockScalesTransposedV) {
  run_fp8_case({dense_shape(1, 2, 13, 17, 8, true), DType::E4M3, DType::F16, 4, true, Layout::PaddedRows, Algorithm::FA2,
                "tiny e4m3 block4 transposed"});
}

TEST(Fp8Tiny, Fa2PerHeadE5M2Gqa) {
  bench::Shape s = dense_shape(2, 2, 5, 16, 20);
  s.heads_kv = 1;
  run_fp8_case({s, DType::E5M2, DType::F32, 0, false, Layout::BSHD, Algorithm::FA2, "tiny e5m2 mqa"});
}

// e4m3 with block descales of 4 rows, V in its natural layout, d 20 (a 16-wide vector and a
// tail): the CPU-shaped fa2's fp8 form where FLASHCL_FA2_CPU=1 sends it (oclgrind_*_fp8_cpu), the
// portable fa2 in the other oclgrind entries.
TEST(Fp8Tiny, Fa2E4M3BlockScales) {
  bench::Shape s = dense_shape(1, 2, 9, 13, 20, true);
  s.heads_kv = 1;
  run_fp8_case({s, DType::E4M3, DType::BF16, 4, false, Layout::PaddedRows, Algorithm::FA2, "tiny e4m3 block4 gqa"});
}

TEST(Fp8Tiny, QuantizeBlockHadamardTransposed) {
  const int B = 1, S = 9, H = 2, d = 8;
  const std::vector<float> x = bench::random_values(std::size_t(B) * S * H * d, 3, 4.0f);
  DeviceTensor in(Layout::PaddedRows, B, S, H, d, &x);
  QuantizeArgs a;
  a.batch = B;
  a.seqlen = S;
  a.heads = H;
  a.head_dim = d;
  a.granularity = QuantGranularity::Block;
  a.block = 4;
  a.hadamard = true;
  a.transposed = true;
  a.in = in.view;
  const Fp8Tensor q = quantize_on_device(a, x.size());  // (NaN codes first: an unwritten element stays NaN)
  // decoded and descaled, each (transformed) row keeps its norm: M is orthogonal
  const std::vector<float>& scales = q.descale;
  const std::vector<float> values = from_fp8(DType::E4M3, q.bytes);
  ASSERT_EQ(scales.size(), 2u * 3u);
  for (float s : scales) EXPECT_TRUE(std::isfinite(s) && s > 0.0f) << s;
  for (int h = 0; h < H; ++h)
    for (int s = 0; s < S; ++s) {
      double in_norm = 0.0, out_norm = 0.0;
      for (int i = 0; i < d; ++i) {
        const double y = double(values[(std::size_t(h) * d + i) * S + s]) * scales[h * 3 + s / 4];
        ASSERT_FALSE(std::isnan(y)) << "unwritten element (h " << h << ", s " << s << ", i " << i << ")";
        in_norm += double(x[(std::size_t(s) * H + h) * d + i]) * x[(std::size_t(s) * H + h) * d + i];
        out_norm += y * y;
      }
      EXPECT_NEAR(std::sqrt(out_norm), std::sqrt(in_norm), 0.07 * std::sqrt(in_norm)) << "row " << s << ", head " << h;
    }
  EXPECT_EQ(in.gap_elements_changed(), 0u);
}

// Packed rows of three sequences (one empty) and two rows in none, scales per block of 2 rows of a
// sequence, after the Hadamard transform: bytes and descales as the host quantises them.
TEST(Fp8Tiny, QuantizeVarlenBlocksHadamard) {
  const int total = 11, H = 2, d = 8;
  const std::vector<int> offsets = {0, 4, 4, 9};
  const std::vector<float> x = bench::random_values(std::size_t(total) * H * d, 4, 4.0f);
  DeviceTensor in(Layout::PaddedRows, 1, total, H, d, &x);
  DeviceBytes cu(offsets.data(), offsets.size() * sizeof(int));
  QuantizeArgs a;
  a.batch = 3;
  a.seqlen = 5;
  a.heads = H;
  a.head_dim = d;
  a.granularity = QuantGranularity::Block;
  a.block = 2;
  a.hadamard = true;
  a.cu_seqlens = cu.mem;
  a.total = total;
  a.in = in.view;
  const Fp8Tensor q = quantize_on_device(a, x.size());
  expect_same_quantisation(q.bytes, q.descale, host_quantize(a, x, varlen_slots(a, offsets)), true, "tiny varlen");
  EXPECT_EQ(in.gap_elements_changed(), 0u);
}

// Offsets that decrease, go negative and pass the rows: under oclgrind every read of cu_seqlens
// and every write of out must stay inside (PoCL would not trap them), with the documented result.
TEST(Fp8Tiny, QuantizeVarlenHostileOffsets) {
  const int total = 9, H = 2, d = 8;
  const std::vector<int> offsets = {0, 7, 3, -2, 99};
  const std::vector<float> x = bench::random_values(std::size_t(total) * H * d, 5, 4.0f);
  DeviceTensor in(Layout::PaddedRows, 1, total, H, d, &x);
  DeviceBytes cu(offsets.data(), offsets.size() * sizeof(int));
  QuantizeArgs a;
  a.batch = 4;
  a.seqlen = 6;
  a.heads = H;
  a.head_dim = d;
  a.granularity = QuantGranularity::Block;
  a.block = 3;
  a.cu_seqlens = cu.mem;
  a.total = total;
  a.in = in.view;
  const Fp8Tensor q = quantize_on_device(a, x.size());
  expect_same_quantisation(q.bytes, q.descale, host_quantize(a, x, varlen_slots(a, offsets)), false, "tiny hostile");
  EXPECT_EQ(in.gap_elements_changed(), 0u);
}

}  // namespace
}  // namespace flashcl::test
