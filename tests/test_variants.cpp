// test_variants.cpp: the attention variants against the float64 reference, on every path, with
// outputs poisoned with NaN first: GQA/MQA, sliding windows (with and without causal), softcap,
// ALiBi (H and B×H slopes), boolean masks and additive biases broadcast over batch and heads,
// variable-length batches (empty sequences included), and their combinations in fp32, fp16 and
// bf16. Rows that see no key (causal, window, mask, varlen) must give O = 0 and LSE = -inf; scores
// around ±1e4 must stay finite and as accurate as fp32 allows; blocks wholly outside a window must
// never be read; Session::forward takes every variant's data as host arrays. Shapes are small so the
// whole file stays within about a minute on two cores.
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <tuple>

#include "flashcl/flashcl.h"
#include "support.hpp"

namespace flashcl::test {
namespace {

const float kInf = std::numeric_limits<float>::infinity();

// make_case with a seed given per case, so each variant case keeps the inputs it always had.
Case make(int nq, int nk, int d, bool causal, int b, int h, std::uint64_t seed) {
  Case c = make_case(nq, nk, d, causal, b, h);
  c.seed = seed;
  return c;
}

Case gqa(Case c, int heads_kv) {
  c.shape.heads_kv = heads_kv;
  return c;
}

Case window(Case c, int left, int right) {
  c.shape.window_left = left;
  c.shape.window_right = right;
  return c;
}

Case softcap(Case c, double cap) {
  c.shape.softcap = cap;
  return c;
}

// flash-attn's geometric slopes 2^(-8(h+1)/H), times 1 + b/4 when per batch.
Case alibi(Case c, bool per_batch) {
  const int H = c.shape.heads, B = per_batch ? c.shape.batch : 1;
  c.shape.alibi_slopes.clear();
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < H; ++h)
      c.shape.alibi_slopes.push_back(static_cast<float>(std::exp2(-8.0 * (h + 1) / H) * (1.0 + b / 4.0)));
  return c;
}

// A boolean mask (about a quarter of the keys hidden) or a bias in [-2, 2) with a few -inf, of
// dims (mask_batch, mask_heads, Nq, Nk). Row 1 of the first slice is hidden entirely, so the
// "no visible key" rule is exercised through the mask too.
Case mask(Case c, bench::MaskMode mode, int mask_batch, int mask_heads) {
  auto& s = c.shape;
  s.mask = mode;
  s.mask_batch = mask_batch;
  s.mask_heads = mask_heads;
  const std::size_t n = static_cast<std::size_t>(mask_batch) * mask_heads * s.seqlen_q * s.seqlen_k;
  const auto r = bench::random_values(n, c.seed + 99);
  s.mask_values.resize(n);
  for (std::size_t i = 0; i < n; ++i) {
    if (mode == bench::MaskMode::Bool) s.mask_values[i] = r[i] < -0.5f ? 0.0f : 1.0f;
    else s.mask_values[i] = r[i] < -0.95f ? -kInf : 2.0f * r[i];
  }
  if (s.seqlen_q > 1)
    for (int j = 0; j < s.seqlen_k; ++j) s.mask_values[s.seqlen_k + j] = mode == bench::MaskMode::Bool ? 0.0f : -kInf;
  return c;
}

Case dtype(Case c, DType t) {
  c.dtype = t;
  return c;
}

Case layout(Case c, Layout l) {
  c.layout = l;
  return c;
}

std::vector<Case> variant_cases() {
  using bench::MaskMode;
  // lengths with an empty query sequence, an empty key sequence and one that does not fill a block
  const std::vector<int> vq = {37, 0, 70, 5, 1}, vk = {50, 9, 70, 0, 66};
  // Each distinct set of -D switches is a program PoCL compiles (seconds each), so the cases share
  // head dim 32 and, outside the combinations, causal only where it is the point.
  return {
      // GQA / MQA
      gqa(make(70, 97, 32, true, 2, 6, 1), 2),
      layout(gqa(make(65, 40, 32, false, 1, 4, 2), 1), Layout::PaddedRows),
      // windows: causal + left, symmetric, one-sided each way, the diagonal only, with Nq != Nk
      window(make(97, 97, 32, true, 1, 2, 3), 16, -1),
      window(make(70, 130, 32, false, 2, 1, 4), 8, 8),
      window(make(130, 70, 32, false, 1, 2, 5), -1, 3),
      window(make(64, 100, 32, false, 1, 1, 6), 20, -1),
      window(make(40, 40, 32, true, 1, 1, 7), 0, 0),
      // softcap (Q/K amplitude 3 so the cap bites) and ALiBi, H and B x H slopes
      softcap(make(70, 97, 32, false, 1, 2, 8), 5.0),
      alibi(make(97, 70, 32, false, 2, 3, 9), false),
      alibi(make(65, 65, 32, false, 2, 2, 10), true),
      // masks: bool and bias, full and broadcast dims
      mask(make(50, 70, 32, false, 2, 3, 11), MaskMode::Bool, 2, 3),
      mask(make(70, 50, 32, false, 2, 3, 12), MaskMode::Bool, 1, 1),
      mask(make(50, 70, 32, false, 2, 3, 13), MaskMode::Bias, 1, 3),
      mask(make(64, 64, 32, false, 2, 2, 14), MaskMode::Bias, 2, 1),
      // varlen (empty sequences on both sides), strided
      varlen(make(1, 1, 32, false, 1, 2, 15), vq, vk),
      layout(varlen(make(1, 1, 32, false, 1, 2, 17), {65, 3}, {20, 130}), Layout::BHSD),
      // combinations
      window(gqa(varlen(make(1, 1, 32, true, 1, 4, 18), vq, vk), 2), 12, -1),
      dtype(softcap(alibi(make(70, 97, 32, true, 2, 2, 19), false), 8.0), DType::BF16),
      dtype(window(varlen(make(1, 1, 32, false, 1, 2, 20), vq, vk), 6, 6), DType::F16),
      gqa(mask(make(50, 70, 32, false, 2, 4, 21), MaskMode::Bias, 1, 4), 2),
      gqa(mask(make(70, 70, 32, false, 2, 3, 22), MaskMode::Bool, 2, 1), 1),
      // a mask or bias with a softcap or ALiBi on key blocks wholly inside the band (non-causal,
      // Nk 160: for any key block width up to 160, e.g. fa2_cpu's vector transform_inside_band)
      softcap(alibi(mask(make(70, 160, 32, false, 1, 2, 43), MaskMode::Bias, 1, 2), false), 6.0),
      alibi(mask(make(70, 160, 32, false, 1, 2, 44), MaskMode::Bool, 1, 1), true),
      layout(softcap(alibi(window(gqa(mask(varlen(make(1, 1, 32, true, 1, 4, 23), vq, vk), MaskMode::Bias, 1, 1), 2),
                                  10, -1),
                           true),
                     4.0),
             Layout::PaddedRows),
  };
}

using Param = std::tuple<Case, Algorithm>;

class Variants : public testing::TestWithParam<Param> {};

TEST_P(Variants, MatchesFloat64Reference) {
  Case c = std::get<0>(GetParam());
  const Algorithm algorithm = std::get<1>(GetParam());
  if (c.shape.softcap > 0.0) c.amplitude = 3.0f;
  const auto r = run_case(c, algorithm);
  expect_accurate(r, c.name() + " " + to_string(algorithm), c.dtype);
  std::printf("[ accuracy ] %s %s: O max |err| %.3g rel %.3g, LSE rel %.3g\n", to_string(algorithm), c.name().c_str(),
              r.out.max_abs, r.out.rel_norm, r.lse.rel_norm);
  // every row with no visible key: exactly O = 0 and LSE = -inf
  const int d = c.shape.head_dim, H = c.shape.heads;
  const std::size_t rows = c.shape.total_q();
  for (std::size_t t = 0; t < rows; ++t)
    for (int h = 0; h < H; ++h) {
      const std::size_t lse_index = c.shape.varlen() ? h * rows + t
                                                     : (t / c.shape.seqlen_q * H + h) * c.shape.seqlen_q +
                                                           t % c.shape.seqlen_q;
      if (!std::isinf(r.ref.lse[lse_index])) continue;
      EXPECT_EQ(r.lse_values[lse_index], -kInf) << "row " << t << " head " << h;
      for (int i = 0; i < d; ++i) ASSERT_EQ(r.o[(t * H + h) * d + i], 0.0f) << "row " << t << " head " << h;
    }
}

INSTANTIATE_TEST_SUITE_P(All, Variants,
                         testing::Combine(testing::ValuesIn(variant_cases()),
                                          testing::Values(Algorithm::Standard, Algorithm::FA1, Algorithm::FA2)),
                         [](const testing::TestParamInfo<Param>& info) {
                           return std::string(to_string(std::get<1>(info.param))) + "_" +
                                  std::get<0>(info.param).name();
                         });

// The GPU team shapes (several work-items per row, P through local memory) with the variants on.
TEST(VariantTiles, GpuTeamShapes) {
  const std::vector<int> vq = {37, 0, 70}, vk = {50, 9, 70};
  for (Case c : {window(gqa(varlen(make(1, 1, 40, true, 1, 4, 30), vq, vk), 2), 9, -1),
                 softcap(alibi(mask(make(45, 70, 64, false, 2, 2, 31), bench::MaskMode::Bias, 1, 2), true), 6.0)})
    for (auto algorithm : {Algorithm::FA1, Algorithm::FA2}) {
      c.amplitude = 2.0f;
      expect_accurate(run_case(c, algorithm, {32, 32, 8, 4}), std::string(to_string(algorithm)) + " " + c.name());
    }
}

// Scores around ±1e4 (|Q|, |K| up to 40, scale 1, d = 64) stay finite, and the error stays within
// what fp32 allows: twice that of a plain fp32 computation of the same attention, plus a floor.
TEST(VariantMagnitudes, ScoresAroundTenThousand) {
  for (Case c : {make(65, 97, 64, false, 1, 2, 40), make(97, 65, 64, true, 1, 2, 41),
                 alibi(window(gqa(make(70, 70, 64, true, 1, 2, 42), 1), 20, -1), false)}) {
    c.amplitude = 40.0f;
    c.shape.scale = 1.0;
    const auto& s = c.shape;
    const auto q = bench::random_values(s.q_elems(), c.seed * 3 + 0, c.amplitude);
    const auto k = bench::random_values(s.kv_elems(), c.seed * 3 + 1, c.amplitude);
    const auto v = bench::random_values(s.kv_elems(), c.seed * 3 + 2);
    // plain fp32 attention (scores, max, exp, sum in float) as the yardstick
    std::vector<double> fp32_out(s.q_elems());
    double max_score = 0.0;
    const int H = s.heads, d = s.head_dim, hk_group = H / s.kv_heads();
    for (int h = 0; h < H; ++h)
      for (int i = 0; i < s.seqlen_q; ++i) {
        std::vector<float> sc(s.seqlen_k, -kInf);
        float m = -kInf;
        for (int j = 0; j < s.seqlen_k; ++j) {
          const int rel = j - i - (s.seqlen_k - s.seqlen_q);
          if ((s.causal && rel > 0) || (s.window_left >= 0 && rel < -s.window_left)) continue;
          float dot = 0.0f;
          for (int x = 0; x < d; ++x) dot += q[(i * H + h) * d + x] * k[(j * s.kv_heads() + h / hk_group) * d + x];
          max_score = std::max(max_score, static_cast<double>(std::fabs(dot)));
          sc[j] = dot - (s.alibi_slopes.empty() ? 0.0f : s.alibi_slopes[h] * std::fabs(static_cast<float>(rel)));
          m = std::max(m, sc[j]);
        }
        float sum = 0.0f;
        for (float& x : sc) sum += (x = std::exp(x - m));
        for (int x = 0; x < d; ++x) {
          float o = 0.0f;
          for (int j = 0; j < s.seqlen_k; ++j) o += sc[j] / sum * v[(j * s.kv_heads() + h / hk_group) * d + x];
          fp32_out[(i * H + h) * d + x] = o;
        }
      }
    EXPECT_GT(max_score, 5e3) << "the inputs should give scores around 1e4";
    for (auto algorithm : {Algorithm::Standard, Algorithm::FA1, Algorithm::FA2}) {
      const auto r = run_case(c, algorithm);
      std::vector<float> plain(fp32_out.begin(), fp32_out.end());
      const auto yardstick = bench::compare(plain, r.ref.out);
      EXPECT_EQ(r.out.non_finite, 0u) << to_string(algorithm);
      EXPECT_EQ(r.lse.non_finite, 0u) << to_string(algorithm);
      EXPECT_LE(r.out.max_abs, 2 * yardstick.max_abs + 1e-4) << to_string(algorithm) << " " << c.name();
      EXPECT_LE(r.lse.rel_norm, 1e-6) << to_string(algorithm);
      std::printf("[ accuracy ] %s %s, max |score| %.3g: O max |err| %.3g (plain fp32: %.3g), LSE rel %.3g\n",
                  to_string(algorithm), c.name().c_str(), max_score, r.out.max_abs, yardstick.max_abs,
                  r.lse.rel_norm);
    }
  }
}

// Sliding windows in 16-bit storage at the head dims the NVIDIA tensor cores take (fa2_mma.cl runs
// them there unless FLASHCL_TENSOR_CORE_VARIANTS=0, its fp16/bf16 and wgmma forms included;
// elsewhere the portable fa2): bands wide enough
// for interior blocks, causal with a left band, two-sided and one-sided, Nq != Nk, GQA.
TEST(VariantWindow, HalfTypesWithWideBands) {
  std::uint64_t seed = 60;
  for (int d : {64, 128})
    for (DType type : {DType::F16, DType::BF16}) {
      for (Case c : {window(make(520, 520, d, true, 1, 2, ++seed), 200, -1),
                     window(gqa(make(300, 450, d, false, 2, 4, ++seed), 2), 170, 90),
                     window(make(400, 260, d, false, 1, 2, ++seed), -1, 40)}) {
        c.dtype = type;
        expect_accurate(run_case(c, Algorithm::FA2), c.name(), type);
      }
    }
}

// Packed sequences in 16-bit storage at the head dims the NVIDIA tensor cores take (fa2_mma.cl
// there unless FLASHCL_TENSOR_CORE_VARIANTS=0): empty and one-row sequences, keys past a short
// sequence's end, Nq > Nk with causal rows that see nothing, GQA, and a window on top.
TEST(VariantPacked, HalfTypesAtTensorCoreHeadDims) {
  std::uint64_t seed = 80;
  const std::vector<int> vq = {150, 0, 1, 260, 70}, vk = {130, 9, 40, 260, 0};
  for (int d : {64, 128})
    for (DType type : {DType::F16, DType::BF16})
      for (Case c : {varlen(make(1, 1, d, true, 1, 4, ++seed), vq, vk),
                     gqa(varlen(make(1, 1, d, false, 1, 4, ++seed), vq, vk), 2),
                     window(varlen(make(1, 1, d, true, 1, 2, ++seed), vq, vk), 48, -1)}) {
        c.dtype = type;
        expect_accurate(run_case(c, Algorithm::FA2), c.name(), type);
      }
}

// Softcap, ALiBi, masks and biases in 16-bit storage at the head dims the NVIDIA tensor cores take
// (fa2_mma.cl's score transforms unless FLASHCL_TENSOR_CORE_TRANSFORMS=0: the softcap's ex2 tanh up to
// a cap of 64 and the library's above, wgmma at d 64 causal and not, mma.sync with staged O at d 128;
// elsewhere the portable fa2), causal and not, Nq != Nk, GQA and per-head mask slices. Inputs keep
// amplitude 1 (a cap of 2 bites on scores of about N(0, 1)): with amplitude 3 the softmax is so
// peaked that the tensor cores' P rounded to bf16 put up to 11 elements at d = 128 past twice the
// output's rounding (4.8e-3 against 4.0e-3 on an H100, both caps alike, so not the tanh form).
TEST(VariantTransforms, HalfTypesAtTensorCoreHeadDims) {
  using bench::MaskMode;
  std::uint64_t seed = 100;
  for (int d : {64, 128})
    for (DType type : {DType::F16, DType::BF16})
      for (bool causal : {false, true})
        for (Case c : {softcap(make(150, 200, d, causal, 1, 2, ++seed), 2.0),
                       softcap(make(150, 200, d, causal, 1, 2, ++seed), 100.0),
                       alibi(gqa(make(200, 150, d, causal, 2, 4, ++seed), 2), true),
                       mask(make(150, 200, d, causal, 1, 2, ++seed), MaskMode::Bool, 1, 2),
                       mask(make(130, 130, d, causal, 2, 2, ++seed), MaskMode::Bias, 2, 1)}) {
          c.dtype = type;
          expect_accurate(run_case(c, Algorithm::FA2), c.name(), type);
        }
}

// Blocks wholly outside the window are skipped, not masked: with 16x16 tiles, one Q block of 16
// rows and a window of 8 keys to the left of the bottom-right diagonal, keys 0..95 lie in blocks
// no row sees. They hold NaN: reading them would turn O into NaN (0 * NaN).
TEST(VariantWindow, BlocksOutsideTheWindowAreNeverRead) {
  const int nq = 16, nk = 128, d = 16;
  auto q = bench::random_values(static_cast<std::size_t>(nq) * d, 50);
  auto k = bench::random_values(static_cast<std::size_t>(nk) * d, 51);
  auto v = bench::random_values(static_cast<std::size_t>(nk) * d, 52);
  bench::Shape s;
  s.seqlen_q = nq;
  s.seqlen_k = nk;
  s.head_dim = d;
  s.causal = true;
  s.window_left = 8;
  const auto ref = bench::reference_attention(s, q, k, v);
  for (int j = 0; j < 96 * d; ++j) k[j] = v[j] = std::numeric_limits<float>::quiet_NaN();
  for (auto algorithm : {Algorithm::FA1, Algorithm::FA2}) {
    DeviceTensor dq(Layout::BSHD, 1, nq, 1, d, &q), dk(Layout::BSHD, 1, nk, 1, d, &k), dv(Layout::BSHD, 1, nk, 1, d, &v);
    DeviceTensor dout(Layout::BSHD, 1, nq, 1, d, nullptr);
    ForwardArgs a;
    a.batch = a.heads = 1;
    a.seqlen_q = nq;
    a.seqlen_k = nk;
    a.head_dim = d;
    a.causal = true;
    a.window = {8, -1};
    a.algorithm = algorithm;
    a.tile = {16, 16};
    a.q = dq.view;
    a.k = dk.view;
    a.v = dv.view;
    a.o = dout.view;
    forward(session().queue(), a).wait();
    const auto err = bench::compare(dout.logical(), ref.out);
    EXPECT_EQ(err.non_finite, 0u) << to_string(algorithm) << ": a block outside the window was read";
    EXPECT_LE(err.rel_norm, 1e-5) << to_string(algorithm);
  }
}

// The C API carries every variant field, and fcl_forward_args_init leaves them all off.
TEST(VariantCApi, InitDefaultsAreOff) {
  fcl_forward_args a;
  fcl_forward_args_init(&a);
  EXPECT_EQ(a.heads_kv, 0);
  EXPECT_EQ(a.window_left, -1);
  EXPECT_EQ(a.window_right, -1);
  EXPECT_EQ(a.softcap, 0.0f);
  EXPECT_EQ(a.alibi_slopes, nullptr);
  EXPECT_EQ(a.mask.kind, FCL_MASK_NONE);
  EXPECT_EQ(a.cu_seqlens_q, nullptr);
  EXPECT_EQ(a.cu_seqlens_k, nullptr);
}

TEST(VariantCApi, GqaWindowAlibiThroughC) {
  Case c = alibi(window(gqa(make(40, 60, 32, true, 1, 4, 60), 2), 10, -1), false);
  const auto& s = c.shape;
  const auto q = bench::random_values(s.q_elems(), 1), k = bench::random_values(s.kv_elems(), 2),
             v = bench::random_values(s.kv_elems(), 3);
  DeviceTensor dq(Layout::BSHD, 1, s.seqlen_q, 4, 32, &q), dk(Layout::BSHD, 1, s.seqlen_k, 2, 32, &k),
      dv(Layout::BSHD, 1, s.seqlen_k, 2, 32, &v), dout(Layout::BSHD, 1, s.seqlen_q, 4, 32, nullptr);
  DeviceBytes slopes(s.alibi_slopes.data(), s.alibi_slopes.size() * sizeof(float));
  fcl_forward_args a;
  fcl_forward_args_init(&a);
  a.batch = 1;
  a.heads = 4;
  a.heads_kv = 2;
  a.seqlen_q = s.seqlen_q;
  a.seqlen_k = s.seqlen_k;
  a.head_dim = 32;
  a.causal = 1;
  a.window_left = 10;
  a.alibi_slopes = slopes.mem;
  a.q.buffer = dq.view.buffer;
  a.k.buffer = dk.view.buffer;
  a.v.buffer = dv.view.buffer;
  a.o.buffer = dout.view.buffer;
  cl_event done = nullptr;
  ASSERT_EQ(fcl_forward(session().queue(), &a, 0, nullptr, &done), FCL_SUCCESS) << fcl_last_error();
  clWaitForEvents(1, &done);
  clReleaseEvent(done);
  const auto err = bench::compare(dout.logical(), bench::reference_attention(s, q, k, v).out);
  EXPECT_EQ(err.non_finite, 0u);
  EXPECT_LE(err.rel_norm, 1e-5);
}

// Session::forward with the variants' data as host arrays: varlen (packed rows), GQA, ALiBi and a
// boolean mask (one row hidden entirely) together, causal, against the float64 reference.
TEST(VariantSession, HostArraysForEveryVariant) {
  const Case c = mask(alibi(gqa(varlen(make(1, 1, 24, true, 1, 4, 41), {37, 23}, {50, 49}), 2), false),
                      bench::MaskMode::Bool, 1, 1);
  const bench::Shape& s = c.shape;
  const auto q = bench::random_values(s.q_elems(), 42), k = bench::random_values(s.kv_elems(), 43),
             v = bench::random_values(s.kv_elems(), 44);

  ForwardArgs a = shape_args(s);
  a.heads_kv = s.heads_kv;
  a.mask.kind = MaskKind::Bool;
  a.mask.batch = s.mask_batch;
  a.mask.heads = s.mask_heads;
  HostVariants hv;
  hv.alibi_slopes = s.alibi_slopes;
  hv.mask.assign(s.mask_values.begin(), s.mask_values.end());  // 0 or 1
  hv.cu_seqlens_q = s.cu_seqlens_q;
  hv.cu_seqlens_k = s.cu_seqlens_k;
  CaseResult r;
  r.ref = bench::reference_attention(s, q, k, v);
  r.o = session().forward(a, q, k, v, hv, &r.lse_values);
  ASSERT_EQ(r.o.size(), r.ref.out.size());
  ASSERT_EQ(r.lse_values.size(), r.ref.lse.size());
  r.out = bench::compare(r.o, r.ref.out);
  r.lse = bench::compare(r.lse_values, r.ref.lse);
  expect_accurate(r, "Session::forward with every variant");
  EXPECT_LE(r.out.max_abs, 1e-5);
}

// A boolean mask that hides row 5 entirely and keys 30-39 from every row, with NaN in V at those
// keys (uninitialised padding under a Hugging Face padding mask): row 5 is O = 0 and LSE = -inf on
// every path, the tensor cores' included (fa2_mma.cl's clear_unseen_row: its P V multiplies the
// hidden keys' NaN by 0); other rows' LSE is exact. (Their O may carry the NaN on the tensor cores,
// as at a causally hidden key, README "Performance"; the portable kernels keep it out.)
TEST(VariantMaskedNan, FullyMaskedRowIsZeroDespiteNanValues) {
  for (DType dtype : {DType::F32, DType::F16, DType::BF16}) {
    const int n = 40, d = 32;
    ForwardArgs a;
    a.batch = a.heads = 1;
    a.seqlen_q = a.seqlen_k = n;
    a.head_dim = d;
    a.dtype = dtype;
    a.algorithm = Algorithm::FA2;
    a.mask.kind = MaskKind::Bool;
    a.mask.batch = a.mask.heads = 1;
    const auto q = bench::random_values(n * d, 61), k = bench::random_values(n * d, 62);
    auto v = bench::random_values(n * d, 63);
    HostVariants hv;
    hv.mask.assign(n * n, 1);
    for (int row = 0; row < n; ++row)
      for (int key = 30; key < n; ++key) hv.mask[row * n + key] = 0;
    for (int key = 0; key < n; ++key) hv.mask[5 * n + key] = 0;
    for (int key = 30; key < n; ++key)
      for (int i = 0; i < d; ++i) v[key * d + i] = std::numeric_limits<float>::quiet_NaN();
    std::vector<float> lse;
    const auto o = session().forward(a, q, k, v, hv, &lse);
    ASSERT_EQ(o.size(), std::size_t(n) * d);
    ASSERT_EQ(lse.size(), std::size_t(n));
    for (int i = 0; i < d; ++i) EXPECT_EQ(o[5 * d + i], 0.0f) << to_string(dtype) << " column " << i;
    EXPECT_EQ(lse[5], -kInf) << to_string(dtype);
    for (int row = 0; row < n; ++row)
      if (row != 5) EXPECT_TRUE(std::isfinite(lse[row])) << to_string(dtype) << " row " << row;
  }
}

// Packed batches with no keys at all give O = 0 and LSE = -inf; with no queries, empty results.
TEST(VariantSession, EmptyPackedTotals) {
  ForwardArgs a;
  a.batch = 2;
  a.heads = 2;
  a.seqlen_q = a.seqlen_k = 8;
  a.head_dim = 8;
  HostVariants hv;
  hv.cu_seqlens_q = {0, 3, 8};
  hv.cu_seqlens_k = {0, 0, 0};
  const auto q = bench::random_values(8 * 2 * 8, 46);
  std::vector<float> lse;
  const auto o = session().forward(a, q, {}, {}, hv, &lse);
  ASSERT_EQ(o.size(), q.size());
  for (float x : o) EXPECT_EQ(x, 0.0f);
  ASSERT_EQ(lse.size(), 16u);
  for (float x : lse) EXPECT_EQ(x, -kInf);
  hv.cu_seqlens_q = {0, 0, 0};
  hv.cu_seqlens_k = {0, 4, 8};
  const auto kv = bench::random_values(8 * 2 * 8, 47);
  EXPECT_TRUE(session().forward(a, {}, kv, kv, hv, &lse).empty());
  EXPECT_TRUE(lse.empty());
}

// Session::forward on caller memory (HostView): on a CPU device (PoCL) page-aligned Q, K, V, O and
// LSE become buffers over that memory (CL_MEM_USE_HOST_PTR); one float off the alignment, Q, K, V
// still do (at an offset) and O, LSE are copied; both give the vector overload's results bit for bit.
TEST(VariantSession, HostViewsOverCallerMemory) {
  ForwardArgs a;
  a.batch = 1;
  a.heads = 2;
  a.seqlen_q = a.seqlen_k = 64;
  a.head_dim = 32;
  a.causal = true;
  const std::size_t n = 64 * 2 * 32, nlse = 64 * 2;
  const auto q = bench::random_values(n, 51), k = bench::random_values(n, 52), v = bench::random_values(n, 53);
  std::vector<float> lse_ref;
  const auto o_ref = session().forward(a, q, k, v, HostVariants{}, &lse_ref);
  const HostMemoryFacts facts = host_memory_facts();
  const std::size_t room_align = facts.room_align(), slot = std::max<std::size_t>(room_align / sizeof(float), 2 * n);
  for (const std::size_t shift : {std::size_t{0}, std::size_t{1}}) {
    const AlignedRoom room(room_align, 5 * slot * sizeof(float));  // five arrays `slot` floats apart
    float* at[5];
    for (int i = 0; i < 5; ++i) at[i] = room.floats() + i * slot + shift;
    std::copy(q.begin(), q.end(), at[0]);
    std::copy(k.begin(), k.end(), at[1]);
    std::copy(v.begin(), v.end(), at[2]);
    session().forward(a, HostView<const float>{at[0], n}, HostView<const float>{at[1], n},
                      HostView<const float>{at[2], n}, HostView<float>{at[3], n}, HostVariants{},
                      HostView<float>{at[4], nlse});
    // one float off: Q, K, V still in place at an offset (MisalignedInputsInPlace), O and LSE copied
    const std::size_t bytes = shift * sizeof(float);
    EXPECT_EQ(session().last_forward_host_buffers(), facts.aligned(bytes) ? 5 : facts.widened(bytes) ? 3 : 0) << shift;
    EXPECT_EQ(std::memcmp(at[3], o_ref.data(), n * sizeof(float)), 0) << "O, shift " << shift;
    EXPECT_EQ(std::memcmp(at[4], lse_ref.data(), nlse * sizeof(float)), 0) << "LSE, shift " << shift;
  }
  std::vector<float> o(n - 1);
  try {
    session().forward(a, HostView<const float>{q.data(), n}, HostView<const float>{k.data(), n},
                      HostView<const float>{v.data(), n}, HostView<float>{o.data(), o.size()});
    ADD_FAILURE() << "a short O was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), Status::InvalidArgument);
    EXPECT_NE(std::string(e.what()).find("o: expected"), std::string::npos) << e.what();
  }
}

// Session::forward's inputs that miss the base address alignment by whole floats (4, 16, 64 bytes
// past it: numpy's large arrays start 16 past a page) are still used in place on a host-unified
// device, at an element offset in a buffer from the aligned address below; O and LSE, written, are
// copied then. 2 bytes past it, or in f16, everything is copied. Dense and varlen (packed rows, GQA)
// cases, outputs poisoned with NaN: within the float64 reference's bounds and bit-identical to the
// copied path (2 bytes).
TEST(VariantSession, MisalignedInputsInPlace) {
  const HostMemoryFacts facts = host_memory_facts();
  const std::size_t slot_align = facts.room_align();
  const Case cases[] = {make(64, 64, 32, true, 1, 2, 61),
                        gqa(varlen(make(1, 1, 24, true, 1, 4, 62), {37, 23}, {50, 49}), 2)};
  for (const DType dtype : {DType::F32, DType::F16})
    for (const Case& c : cases) {
      const bench::Shape& s = c.shape;
      const auto q = round_to(dtype, bench::random_values(s.q_elems(), c.seed * 3 + 0)),
                 k = round_to(dtype, bench::random_values(s.kv_elems(), c.seed * 3 + 1)),
                 v = round_to(dtype, bench::random_values(s.kv_elems(), c.seed * 3 + 2));
      ForwardArgs a = shape_args(s);
      a.heads_kv = s.heads_kv;
      a.dtype = dtype;
      HostVariants hv;
      hv.cu_seqlens_q = s.cu_seqlens_q;
      hv.cu_seqlens_k = s.cu_seqlens_k;
      CaseResult r;
      r.ref = bench::reference_attention(s, q, k, v);
      const std::size_t nq = q.size(), nk = k.size(), nlse = r.ref.lse.size();
      const std::size_t sizes[5] = {nq, nk, nk, nq, nlse};
      const std::size_t slot_bytes = (std::max(nq, nk) * sizeof(float) / slot_align + 2) * slot_align;
      std::vector<float> copied_o, copied_lse;  // the 2-byte run's
      for (const std::size_t shift :
           {std::size_t{2}, std::size_t{0}, std::size_t{4}, std::size_t{16}, std::size_t{64}}) {
        const std::string what = c.name() + " " + to_string(dtype) + " shift " + std::to_string(shift);
        const AlignedRoom room(slot_align, 5 * slot_bytes);
        char* at[5];
        for (int i = 0; i < 5; ++i) at[i] = room.bytes() + i * slot_bytes + shift;
        // memcpy in and out: 2 bytes off, a float's own alignment is missed
        std::memcpy(at[0], q.data(), nq * sizeof(float));
        std::memcpy(at[1], k.data(), nk * sizeof(float));
        std::memcpy(at[2], v.data(), nk * sizeof(float));
        std::fill_n(reinterpret_cast<unsigned char*>(at[3]), nq * sizeof(float), 0xff);  // NaN
        std::fill_n(reinterpret_cast<unsigned char*>(at[4]), nlse * sizeof(float), 0xff);
        auto in = [&](int i) { return HostView<const float>{reinterpret_cast<const float*>(at[i]), sizes[i]}; };
        auto out = [&](int i) { return HostView<float>{reinterpret_cast<float*>(at[i]), sizes[i]}; };
        session().forward(a, in(0), in(1), in(2), out(3), hv, out(4));
        int over = 0;  // LSE is f32 whatever the storage, so in f16 it alone may lie in place
        if (facts.aligned(shift))
          over = dtype == DType::F32 ? 5 : 1;
        else if (dtype == DType::F32 && facts.widened(shift))
          over = 3;  // Q, K, V at an offset
        EXPECT_EQ(session().last_forward_host_buffers(), over) << what;
        r.o.resize(nq);
        r.lse_values.resize(nlse);
        std::memcpy(r.o.data(), at[3], nq * sizeof(float));
        std::memcpy(r.lse_values.data(), at[4], nlse * sizeof(float));
        r.out = bench::compare(r.o, r.ref.out);
        r.lse = bench::compare(r.lse_values, r.ref.lse);
        expect_accurate(r, what, dtype);
        if (shift == 2) copied_o = r.o, copied_lse = r.lse_values;
        EXPECT_EQ(std::memcmp(r.o.data(), copied_o.data(), nq * sizeof(float)), 0) << "O vs the copied path, " << what;
        EXPECT_EQ(std::memcmp(r.lse_values.data(), copied_lse.data(), nlse * sizeof(float)), 0)
            << "LSE vs the copied path, " << what;
      }
    }
}

// An aligned output whose last bytes lie just before a widened input (inside the aligned block its
// buffer starts from) is copied, not wrapped: OpenCL leaves overlapping host regions undefined once
// one is written. LSE (120 floats, 480 bytes: not a whole number of 128-byte blocks) at a page and
// Q right after it: Q over host memory, LSE copied (4 host buffers on PoCL with K, V, O aligned);
// Q one block further: both over host memory (5). Results those of the vector overload.
TEST(VariantSession, OutputBesideAWidenedInput) {
  ForwardArgs a;
  a.batch = 1;
  a.heads = 3;
  a.seqlen_q = a.seqlen_k = 40;
  a.head_dim = 16;
  const std::size_t n = 40 * 3 * 16, nlse = 40 * 3;
  const auto q = bench::random_values(n, 71), k = bench::random_values(n, 72), v = bench::random_values(n, 73);
  std::vector<float> lse_ref;
  const auto o_ref = session().forward(a, q, k, v, HostVariants{}, &lse_ref);
  const HostMemoryFacts facts = host_memory_facts();
  for (const std::size_t gap : {std::size_t{0}, std::size_t{32}}) {  // floats between LSE's end and Q
    const AlignedRoom room(4096, 10 * 4096);  // LSE then Q in the first 4 pages; K, V, O 2 pages each after
    float* p = room.floats();
    float *lse = p, *dq = p + nlse + gap, *dk = p + 4096, *dv = p + 6144, *o = p + 8192;
    ASSERT_LE(nlse + gap + n, 4096u);
    std::copy(q.begin(), q.end(), dq);
    std::copy(k.begin(), k.end(), dk);
    std::copy(v.begin(), v.end(), dv);
    std::fill(o, o + n, std::numeric_limits<float>::quiet_NaN());
    std::fill(lse, lse + nlse, std::numeric_limits<float>::quiet_NaN());
    session().forward(a, HostView<const float>{dq, n}, HostView<const float>{dk, n}, HostView<const float>{dv, n},
                      HostView<float>{o, n}, HostVariants{}, HostView<float>{lse, nlse});
    if (facts.unified && facts.align == 128 && facts.widen)  // the sizes above are for 128-byte blocks
      EXPECT_EQ(session().last_forward_host_buffers(), gap == 0 ? 4 : 5) << "gap " << gap;
    EXPECT_EQ(std::memcmp(o, o_ref.data(), n * sizeof(float)), 0) << "O, gap " << gap;
    EXPECT_EQ(std::memcmp(lse, lse_ref.data(), nlse * sizeof(float)), 0) << "LSE, gap " << gap;
    EXPECT_EQ(std::memcmp(dq, q.data(), n * sizeof(float)), 0) << "Q changed, gap " << gap;
  }
}

// The host arrays must match the switches in the shape, before anything runs.
TEST(VariantSession, HostArraysMustMatchTheShape) {
  const auto x = bench::random_values(2 * 8 * 8, 45);
  ForwardArgs a;
  a.batch = 2;
  a.heads = 1;
  a.seqlen_q = a.seqlen_k = 8;
  a.head_dim = 8;
  HostVariants hv;
  hv.mask.assign(64, 1);  // a mask without mask.kind
  try {
    session().forward(a, x, x, x, hv);
    ADD_FAILURE() << "a mask array without mask.kind was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), Status::InvalidArgument);
    EXPECT_NE(std::string(e.what()).find("mask"), std::string::npos) << e.what();
  }
  hv = {};
  hv.cu_seqlens_q = {0, 8};  // batch 2 needs 3 offsets
  hv.cu_seqlens_k = {0, 8};
  try {
    session().forward(a, x, x, x, hv);
    ADD_FAILURE() << "cu_seqlens of the wrong length were accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), Status::InvalidArgument);
    EXPECT_NE(std::string(e.what()).find("cu_seqlens_q"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace flashcl::test
