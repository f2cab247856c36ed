// test_fp8_tensor_core.cpp: FP8 calls of the shapes the NVIDIA tensor-core kernel takes
// (kernels/mma_e4m3.cl: e4m3, per-head descales, V as stored, O in fp16 or bf16, plain, causal or
// GQA), against float64 attention on the dequantised inputs, so the kernel's own error is measured
// apart from the quantisation's. Head dims and strides cover its load variants: 16-byte copies and
// 4-byte Q loads (d = 64, 128), a head dim padded to the mma's k of 32 (d = 80), element-wise
// copies (d = 72, 30) and unaligned rows. On NVIDIA GPUs of compute capability 8.9+ the tensor
// cores run them and round P to e4m3 before P·V, as FlashAttention-3 does: up to half an e4m3 step
// (2^-4) relative, about 3.6 % RMS per entry, and O's relative error is of that order because O and
// its error both average over the keys (1.8-2.5 % measured on the H200), so the bound on O's
// relative RMS error is 4e-2; a wrong fragment layout or descale is off by O(1). Elsewhere the
// portable fa2 runs them (P in fp32: 2e-4 to 2e-3 measured under PoCL). LSE comes from fp32 sums
// on both paths: within 1e-5.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "support.hpp"

namespace flashcl::test {
namespace {

struct TensorCoreCase {
  int batch, heads, heads_kv, seqlen_q, seqlen_k, head_dim;
  bool causal;
  DType out;
  Layout o_layout;
};

void run_tensor_core_case(const TensorCoreCase& c) {
  bench::Shape s;
  s.batch = c.batch;
  s.heads = c.heads;
  s.heads_kv = c.heads_kv;
  s.seqlen_q = c.seqlen_q;
  s.seqlen_k = c.seqlen_k;
  s.head_dim = c.head_dim;
  s.causal = c.causal;
  const std::string what = "B" + std::to_string(c.batch) + " H" + std::to_string(c.heads) + "/" +
                           std::to_string(c.heads_kv) + " " + std::to_string(c.seqlen_q) + "x" +
                           std::to_string(c.seqlen_k) + " d" + std::to_string(c.head_dim) +
                           (c.causal ? " causal " : " ") + to_string(c.out);
  // e4m3 bytes of values spread over most of the format's range (some saturate at 448), and
  // per-(batch, K/V head) descales in [0.5, 1.5) / 300, so dequantised inputs are O(1)
  const std::uint64_t seed = 7000 + c.seqlen_q * 13 + c.head_dim;
  auto bytes_of = [&](std::size_t n, std::uint64_t salt) {
    std::vector<float> x = bench::random_values(n, seed + salt);
    for (float& e : x) e *= 480.0f;
    return to_fp8(DType::E4M3, x);
  };
  const std::size_t slots = static_cast<std::size_t>(c.batch) * c.heads_kv;
  auto descales_of = [&](std::uint64_t salt) {
    std::vector<float> d = bench::random_values(slots, seed + salt);
    for (float& e : d) e = (1.0f + 0.5f * e) / 300.0f;
    return d;
  };
  const std::vector<std::uint8_t> q8 = bytes_of(s.q_elems(), 1), k8 = bytes_of(s.kv_elems(), 2),
                                  v8 = bytes_of(s.kv_elems(), 3);
  const std::vector<float> qd = descales_of(4), kd = descales_of(5), vd = descales_of(6);
  // the dequantised (B, S, H, d) inputs: element (b, ., h, .) takes slot b·H_kv + h_kv
  auto dequantise = [&](const std::vector<std::uint8_t>& bytes, const std::vector<float>& descale, int heads,
                        int group) {
    std::vector<float> x = from_fp8(DType::E4M3, bytes);
    const std::size_t row = static_cast<std::size_t>(heads) * c.head_dim, per_batch = x.size() / c.batch;
    for (std::size_t i = 0; i < x.size(); ++i) {
      const std::size_t b = i / per_batch, h = i % row / c.head_dim;
      x[i] *= descale[b * c.heads_kv + h / group];
    }
    return x;
  };
  const int group = c.heads / c.heads_kv;
  const std::vector<float> q = dequantise(q8, qd, c.heads, group), k = dequantise(k8, kd, c.heads_kv, 1),
                           v = dequantise(v8, vd, c.heads_kv, 1);

  DeviceBytes qb(q8.data(), q8.size()), kb(k8.data(), k8.size()), vb(v8.data(), v8.size());
  DeviceBytes qdb(qd.data(), qd.size() * 4), kdb(kd.data(), kd.size() * 4), vdb(vd.data(), vd.size() * 4);
  DeviceTensor o(c.o_layout, c.batch, c.seqlen_q, c.heads, c.head_dim, nullptr, c.out);  // NaN everywhere
  DeviceBuffer lse(static_cast<std::size_t>(c.batch) * c.heads * c.seqlen_q, NAN);
  ForwardArgs a = shape_args(s);
  a.heads_kv = c.heads_kv;
  a.dtype = DType::E4M3;
  a.out_dtype = c.out;
  a.algorithm = Algorithm::FA2;
  a.q = {qb.mem};
  a.k = {kb.mem};
  a.v = {vb.mem};
  a.o = o.view;
  a.lse = lse.mem;
  a.fp8.q_descale = qdb.mem;
  a.fp8.k_descale = kdb.mem;
  a.fp8.v_descale = vdb.mem;
  forward(session().queue(), a).wait();

  const bench::Reference ref = bench::reference_attention(s, q, k, v);
  const bench::ErrorStats out = bench::compare(o.logical(), ref.out);
  const bench::ErrorStats lse_err = bench::compare(lse.read(), ref.lse);
  std::printf("[ fp8 mma-shaped ] %s: O rel %.3g, max |err| %.3g; LSE rel %.3g\n", what.c_str(), out.rel_norm,
              out.max_abs, lse_err.rel_norm);
  EXPECT_EQ(out.non_finite, 0u) << what << ": NaN/Inf in O (unwritten or broken elements)";
  EXPECT_EQ(o.gap_elements_changed(), 0u) << what << ": wrote outside O's layout";
  EXPECT_LE(out.rel_norm, 4e-2) << what;
  EXPECT_EQ(lse_err.non_finite, 0u) << what;
  EXPECT_LE(lse_err.rel_norm, 1e-5) << what;
}

TEST(Fp8TensorCore, AlignedHeadDims) {
  for (int d : {64, 128})
    for (bool causal : {false, true})
      run_tensor_core_case({2, 4, 4, 200, 200, d, causal, causal ? DType::BF16 : DType::F16, Layout::BSHD});
}

TEST(Fp8TensorCore, GqaPartialBlocksAndUnequalLengths) {
  run_tensor_core_case({2, 8, 2, 77, 300, 64, true, DType::BF16, Layout::BHSD});
  run_tensor_core_case({1, 4, 1, 300, 129, 128, false, DType::F16, Layout::BSHD});
  run_tensor_core_case({1, 4, 2, 130, 130, 128, true, DType::F16, Layout::BSHD});
}

TEST(Fp8TensorCore, PaddedAndElementWiseHeadDims) {
  run_tensor_core_case({1, 2, 2, 100, 150, 80, false, DType::F16, Layout::BSHD});   // padded to 96
  run_tensor_core_case({1, 2, 2, 100, 150, 72, true, DType::BF16, Layout::BSHD});   // element-wise copies
  run_tensor_core_case({2, 2, 1, 37, 150, 30, false, DType::F16, Layout::PaddedRows});  // byte loads of Q
}

}  // namespace
}  // namespace flashcl::test
