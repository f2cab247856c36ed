// backward_support.cpp: the backward tests' shared run and accuracy check.
#include "backward_support.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

namespace flashcl::test {
namespace {

const float kNaN = std::numeric_limits<float>::quiet_NaN();

}  // namespace

const Path kBackwardPaths[4] = {{Algorithm::Standard, false, "standard"},
                                {Algorithm::FA1, false, "fa1"},
                                {Algorithm::FA2, false, "fa2"},
                                {Algorithm::FA2, true, "fa2_deterministic"}};

// Runs the fa2 forward (for O and LSE), then the backward by `path`, outputs poisoned with NaN.
BackwardRun run_backward(const Case& c, const Path& path, bool want_d_bias, bool with_reference) {
  const auto& s = c.shape;
  const auto q = round_to(c.dtype, bench::random_values(s.q_elems(), c.seed * 5 + 0));
  const auto k = round_to(c.dtype, bench::random_values(s.kv_elems(), c.seed * 5 + 1));
  const auto v = round_to(c.dtype, bench::random_values(s.kv_elems(), c.seed * 5 + 2));
  const auto d_o = round_to(c.dtype, bench::random_values(s.q_elems(), c.seed * 5 + 3));
  const int tb = s.varlen() ? 1 : s.batch;
  const int rows_q = s.varlen() ? static_cast<int>(s.total_q()) : s.seqlen_q;
  const int rows_k = s.varlen() ? static_cast<int>(s.total_k()) : s.seqlen_k;
  DeviceTensor dq_in(c.layout, tb, rows_q, s.heads, s.head_dim, &q, c.dtype);
  DeviceTensor dk_in(c.layout, tb, rows_k, s.kv_heads(), s.head_dim, &k, c.dtype);
  DeviceTensor dv_in(c.layout, tb, rows_k, s.kv_heads(), s.head_dim, &v, c.dtype);
  DeviceTensor dout(c.layout, tb, rows_q, s.heads, s.head_dim, nullptr, c.dtype);
  DeviceTensor ddo(c.layout, tb, rows_q, s.heads, s.head_dim, &d_o, c.dtype);
  DeviceTensor grad_q(c.layout, tb, rows_q, s.heads, s.head_dim, nullptr, c.dtype);  // NaN
  DeviceTensor grad_k(c.layout, tb, rows_k, s.kv_heads(), s.head_dim, nullptr, c.dtype);
  DeviceTensor grad_v(c.layout, tb, rows_k, s.kv_heads(), s.head_dim, nullptr, c.dtype);
  DeviceBuffer lse(std::max<std::size_t>(s.rows(), 1), kNaN);
  const std::size_t bias_elems = s.mask == bench::MaskMode::Bias ? s.mask_values.size() : 1;
  DeviceBuffer grad_bias(bias_elems, kNaN);

  BackwardArgs args;
  ForwardArgs& f = args.forward;
  f = shape_args(s);
  f.dtype = c.dtype;
  f.algorithm = Algorithm::FA2;
  f.q = dq_in.view;
  f.k = dk_in.view;
  f.v = dv_in.view;
  f.o = dout.view;
  f.lse = lse.mem;
  if (s.varlen()) f.total_q = rows_q;
  VariantBuffers variants;
  variants.apply(s, f);
  forward(session().queue(), f).wait();

  f.algorithm = path.algorithm;
  args.deterministic = path.deterministic;
  args.d_o = ddo.view;
  args.d_q = grad_q.view;
  args.d_k = grad_k.view;
  args.d_v = grad_v.view;
  if (want_d_bias) {
    args.d_bias.kind = MaskKind::Bias;
    args.d_bias.buffer = grad_bias.mem;
  }
  backward(session().queue(), args).wait();

  BackwardRun r;
  r.d_q = grad_q.logical();
  r.d_k = grad_k.logical();
  r.d_v = grad_v.logical();
  r.raw_d_q = grad_q.raw();
  r.raw_d_k = grad_k.raw();
  r.raw_d_v = grad_v.raw();
  if (want_d_bias) r.d_bias = grad_bias.read();
  r.gaps_written = grad_q.gap_elements_changed() + grad_k.gap_elements_changed() + grad_v.gap_elements_changed();
  if (with_reference) r.ref = bench::reference_backward(s, q, k, v, d_o);
  return r;
}

// fp32: within a small multiple of fp32 rounding (sums of tens of terms). 16-bit storage: twice the
// error of the reference gradient rounded to that storage, plus a floor (the kernels compute D from
// the 16-bit O the forward stored, which the float64 reference does not).
void expect_gradient(const std::vector<float>& got, const std::vector<double>& want, DType dtype,
                     const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  const bench::ErrorStats e = bench::compare(got, want);
  EXPECT_EQ(e.non_finite, 0u) << what << ": NaN/Inf (unwritten or broken elements)";
  double scale = 0.0;
  for (double x : want) scale = std::max(scale, std::fabs(x));
  double abs_bound = 2e-6 + 2e-5 * scale, rel_bound = 2e-5;
  if (dtype != DType::F32) {
    std::vector<float> ref_f(want.begin(), want.end());
    const auto ref_err = bench::compare(round_to(dtype, ref_f), want);
    const double floor = dtype == DType::F16 ? 2e-3 : 1.6e-2;
    abs_bound = 2 * ref_err.max_abs + floor * scale;
    rel_bound = 2 * ref_err.rel_norm + floor;
  }
  EXPECT_LE(e.rel_norm, rel_bound) << what << " (max |err| " << e.max_abs << ", max |ref| " << scale << ")";
  EXPECT_LE(e.max_abs, abs_bound) << what << " (rel " << e.rel_norm << ")";
}

void expect_run_accurate(const BackwardRun& r, DType dtype, const std::string& what) {
  expect_gradient(r.d_q, r.ref.d_q, dtype, what + " dQ");
  expect_gradient(r.d_k, r.ref.d_k, dtype, what + " dK");
  expect_gradient(r.d_v, r.ref.d_v, dtype, what + " dV");
  if (!r.d_bias.empty()) expect_gradient(r.d_bias, r.ref.d_bias, DType::F32, what + " dBias");
  EXPECT_EQ(r.gaps_written, 0u) << what << ": wrote outside the gradients' layouts";
}

// ---- variant inputs of the cases ----

// A bias in [-1.5, 1.5) of dims (mask_batch, mask_heads, Nq, Nk).
void add_bias(bench::Shape& s, int mask_batch, int mask_heads, std::uint64_t seed) {
  s.mask = bench::MaskMode::Bias;
  s.mask_batch = mask_batch;
  s.mask_heads = mask_heads;
  s.mask_values =
      bench::random_values(static_cast<std::size_t>(mask_batch) * mask_heads * s.seqlen_q * s.seqlen_k, seed, 1.5f);
}

// A boolean mask hiding about a third of the keys, and every key of row `empty_row` of the first
// slice (a row that sees nothing: zero gradients).
void add_bool_mask(bench::Shape& s, int mask_batch, int mask_heads, int empty_row, std::uint64_t seed) {
  s.mask = bench::MaskMode::Bool;
  s.mask_batch = mask_batch;
  s.mask_heads = mask_heads;
  const auto r =
      bench::random_values(static_cast<std::size_t>(mask_batch) * mask_heads * s.seqlen_q * s.seqlen_k, seed);
  s.mask_values.resize(r.size());
  for (std::size_t i = 0; i < r.size(); ++i) s.mask_values[i] = r[i] < -0.33f ? 0.0f : 1.0f;
  for (int j = 0; j < s.seqlen_k; ++j) s.mask_values[static_cast<std::size_t>(empty_row) * s.seqlen_k + j] = 0.0f;
}

// ALiBi slopes 2^(-4 (h + 1) / H), one per head.
void add_alibi(bench::Shape& s) {
  s.alibi_slopes.clear();
  for (int h = 0; h < s.heads; ++h) s.alibi_slopes.push_back(static_cast<float>(std::exp2(-4.0 * (h + 1) / s.heads)));
}

}  // namespace flashcl::test
