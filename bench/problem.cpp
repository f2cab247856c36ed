// problem.cpp: random inputs, the float64 reference attention and error metrics.
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

Reference reference_attention(const Shape& s, const std::vector<float>& q, const std::vector<float>& k,
                              const std::vector<float>& v) {
  const int d = s.head_dim, H = s.heads;
  const double scale = s.effective_scale();
  Reference ref;
  ref.out.assign(s.q_elems(), 0.0);
  ref.lse.assign(s.rows(), -std::numeric_limits<double>::infinity());
  std::vector<double> scores(s.seqlen_k);
  for (int b = 0; b < s.batch; ++b)
    for (int h = 0; h < H; ++h)
      for (int i = 0; i < s.seqlen_q; ++i) {
        const float* qi = &q[((static_cast<std::size_t>(b) * s.seqlen_q + i) * H + h) * d];
        // bottom-right aligned causal mask: query i sees keys j <= i + Nk - Nq
        const int visible = s.causal ? std::min(s.seqlen_k, i + s.seqlen_k - s.seqlen_q + 1) : s.seqlen_k;
        double* out = &ref.out[((static_cast<std::size_t>(b) * s.seqlen_q + i) * H + h) * d];
        if (visible <= 0) continue;  // no visible key: O = 0, LSE = -inf
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
        ref.lse[(static_cast<std::size_t>(b) * H + h) * s.seqlen_q + i] = m + std::log(sum);
      }
  return ref;
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
