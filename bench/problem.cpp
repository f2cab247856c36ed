// problem.cpp: random inputs, the float64 reference attention (all rows, or a sample of rows for
// long sequences) and error metrics.
#include "problem.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>

namespace flashcl::bench {

double Shape::effective_scale() const { return scale != 0.0 ? scale : 1.0 / std::sqrt(static_cast<double>(head_dim)); }
std::size_t Shape::q_elems() const { return static_cast<std::size_t>(batch) * seqlen_q * heads * head_dim; }
std::size_t Shape::kv_elems() const { return static_cast<std::size_t>(batch) * seqlen_k * heads * head_dim; }
std::size_t Shape::rows() const { return static_cast<std::size_t>(batch) * heads * seqlen_q; }
double Shape::flops() const {
  const double f = 4.0 * batch * heads * static_cast<double>(seqlen_q) * seqlen_k * head_dim;
  return causal ? f / 2 : f;
}

std::vector<float> random_values(std::size_t n, std::uint64_t seed, float amplitude) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> dist(-amplitude, amplitude);
  std::vector<float> v(n);
  for (auto& x : v) {
    do x = dist(rng);
    while (x == 0.0f);
  }
  return v;
}

namespace {

// One query row of one (batch, head): writes d outputs and returns the LSE.
double reference_row(const Shape& s, const std::vector<float>& q, const std::vector<float>& k,
                     const std::vector<float>& v, int b, int h, int i, std::vector<double>& scores, double* out) {
  const int d = s.head_dim, H = s.heads;
  const float* qi = &q[((static_cast<std::size_t>(b) * s.seqlen_q + i) * H + h) * d];
  // bottom-right aligned causal mask: query i sees keys j <= i + Nk - Nq
  const int visible = s.causal ? std::min(s.seqlen_k, i + s.seqlen_k - s.seqlen_q + 1) : s.seqlen_k;
  if (visible <= 0) return -std::numeric_limits<double>::infinity();  // no visible key: O = 0
  const double scale = s.effective_scale();
  double m = -std::numeric_limits<double>::infinity();
  for (int j = 0; j < visible; ++j) {
    const float* kj = &k[((static_cast<std::size_t>(b) * s.seqlen_k + j) * H + h) * d];
    double dot = 0.0;
    for (int c = 0; c < d; ++c) dot += static_cast<double>(qi[c]) * kj[c];
    scores[j] = dot * scale;
    m = std::max(m, scores[j]);
  }
  double sum = 0.0;
  for (int j = 0; j < visible; ++j) {
    scores[j] = std::exp(scores[j] - m);
    sum += scores[j];
  }
  for (int j = 0; j < visible; ++j) {
    const float* vj = &v[((static_cast<std::size_t>(b) * s.seqlen_k + j) * H + h) * d];
    const double p = scores[j] / sum;
    for (int c = 0; c < d; ++c) out[c] += p * vj[c];
  }
  return m + std::log(sum);
}

}  // namespace

Reference reference_attention_rows(const Shape& s, const std::vector<float>& q, const std::vector<float>& k,
                                   const std::vector<float>& v, const std::vector<int>& rows) {
  const int d = s.head_dim, H = s.heads;
  const std::size_t n = rows.size();
  Reference ref;
  ref.out.assign(static_cast<std::size_t>(s.batch) * n * H * d, 0.0);
  ref.lse.assign(static_cast<std::size_t>(s.batch) * H * n, -std::numeric_limits<double>::infinity());
  std::vector<double> scores(s.seqlen_k);
  for (int b = 0; b < s.batch; ++b)
    for (int h = 0; h < H; ++h)
      for (std::size_t r = 0; r < n; ++r) {
        double* out = &ref.out[((static_cast<std::size_t>(b) * n + r) * H + h) * d];
        ref.lse[(static_cast<std::size_t>(b) * H + h) * n + r] = reference_row(s, q, k, v, b, h, rows[r], scores, out);
      }
  return ref;
}

Reference reference_attention(const Shape& s, const std::vector<float>& q, const std::vector<float>& k,
                              const std::vector<float>& v) {
  std::vector<int> all(s.seqlen_q);
  for (int i = 0; i < s.seqlen_q; ++i) all[i] = i;
  return reference_attention_rows(s, q, k, v, all);
}

std::vector<int> sample_rows(const Shape& s, double max_macs) {
  const double per_row = static_cast<double>(s.batch) * s.heads * s.seqlen_k * s.head_dim;
  const int want = static_cast<int>(std::min<double>(s.seqlen_q, std::max(16.0, max_macs / per_row)));
  const int n = std::max(1, std::min(want, s.seqlen_q));
  std::vector<int> rows(n);
  for (int r = 0; r < n; ++r)  // spread over [0, Nq - 1]: the causal diagonal's ends are included
    rows[r] = n == 1 ? s.seqlen_q - 1 : static_cast<int>(static_cast<long long>(r) * (s.seqlen_q - 1) / (n - 1));
  return rows;
}

std::vector<float> gather_rows(const Shape& s, const std::vector<float>& out, const std::vector<int>& rows) {
  const std::size_t n = rows.size(), width = static_cast<std::size_t>(s.heads) * s.head_dim;
  std::vector<float> picked(static_cast<std::size_t>(s.batch) * n * width);
  for (int b = 0; b < s.batch; ++b)
    for (std::size_t r = 0; r < n; ++r) {
      const float* from = &out[(static_cast<std::size_t>(b) * s.seqlen_q + rows[r]) * width];
      std::copy(from, from + width, &picked[(static_cast<std::size_t>(b) * n + r) * width]);
    }
  return picked;
}

ErrorStats compare(const std::vector<float>& got, const std::vector<double>& want) {
  ErrorStats e;
  double diff2 = 0.0, ref2 = 0.0;
  for (std::size_t i = 0; i < want.size() && i < got.size(); ++i) {
    if (std::isinf(want[i]) && got[i] == want[i]) continue;  // matching -inf LSE
    if (!std::isfinite(got[i])) {
      ++e.non_finite;
      continue;
    }
    const double diff = static_cast<double>(got[i]) - want[i];
    e.max_abs = std::max(e.max_abs, std::fabs(diff));
    diff2 += diff * diff;
    ref2 += want[i] * want[i];
  }
  if (got.size() != want.size()) e.non_finite += 1;
  e.rel_norm = ref2 > 0.0 ? std::sqrt(diff2 / ref2) : std::sqrt(diff2);
  return e;
}

}  // namespace flashcl::bench
