// backward_reference.cpp: the float64 attention backward, one query row at a time (scores from
// reference_scores, so the forward and backward references cannot disagree on a variant).
#include "backward_reference.hpp"

#include <cmath>
#include <limits>

namespace flashcl::bench {

ReferenceGradients reference_backward(const Shape& s, const std::vector<float>& q, const std::vector<float>& k,
                                      const std::vector<float>& v, const std::vector<float>& d_o) {
  const int d = s.head_dim, H = s.heads, Hk = s.kv_heads();
  const double scale = s.effective_scale(), inf = std::numeric_limits<double>::infinity();
  ReferenceGradients g;
  g.d_q.assign(s.q_elems(), 0.0);
  g.d_k.assign(s.kv_elems(), 0.0);
  g.d_v.assign(s.kv_elems(), 0.0);
  if (s.mask == MaskMode::Bias)
    g.d_bias.assign(static_cast<std::size_t>(s.mask_batch) * s.mask_heads * s.seqlen_q * s.seqlen_k, 0.0);
  std::vector<double> scores, slopes, dp;
  for (int b = 0; b < s.batch; ++b)
    for (int h = 0; h < H; ++h) {
      const int hk = h / (H / Hk), lk = s.len_k(b);
      for (int i = 0; i < s.len_q(b); ++i) {
        reference_scores(s, q, k, b, h, i, scores, &slopes);
        double m = -inf;
        for (int j = 0; j < lk; ++j) m = std::max(m, scores[j]);
        if (m == -inf) continue;  // no visible key: O = 0 whatever Q, K, V
        double sum = 0.0;
        for (int j = 0; j < lk; ++j) sum += scores[j] == -inf ? 0.0 : std::exp(scores[j] - m);
        const float* qi = &q[(s.q_row(b, i) * H + h) * d];
        const float* doi = &d_o[(s.q_row(b, i) * H + h) * d];
        dp.assign(lk, 0.0);
        double row_dot = 0.0;  // Σ_j P dP = dO · O
        for (int j = 0; j < lk; ++j) {
          if (scores[j] == -inf) continue;
          const float* vj = &v[(s.k_row(b, j) * Hk + hk) * d];
          for (int c = 0; c < d; ++c) dp[j] += static_cast<double>(doi[c]) * vj[c];
          row_dot += std::exp(scores[j] - m) / sum * dp[j];
        }
        double* dqi = &g.d_q[(s.q_row(b, i) * H + h) * d];
        for (int j = 0; j < lk; ++j) {
          if (scores[j] == -inf) continue;
          const double p = std::exp(scores[j] - m) / sum;
          const double ds = p * (dp[j] - row_dot);
          if (s.mask == MaskMode::Bias) {
            const std::size_t mb = s.mask_batch == 1 ? 0 : b, mh = s.mask_heads == 1 ? 0 : h;
            g.d_bias[((mb * s.mask_heads + mh) * s.seqlen_q + i) * s.seqlen_k + j] += ds;
          }
          const double ds_raw = ds * slopes[j] * scale;
          const std::size_t kv = (s.k_row(b, j) * Hk + hk) * d;
          for (int c = 0; c < d; ++c) {
            dqi[c] += ds_raw * k[kv + c];
            g.d_k[kv + c] += ds_raw * qi[c];
            g.d_v[kv + c] += p * doi[c];
          }
        }
      }
    }
  return g;
}

double reference_loss(const Shape& s, const std::vector<float>& q, const std::vector<float>& k,
                      const std::vector<float>& v, const std::vector<float>& d_o) {
  const Reference ref = reference_attention(s, q, k, v);
  double loss = 0.0;
  for (std::size_t i = 0; i < ref.out.size(); ++i) loss += ref.out[i] * d_o[i];
  return loss;
}

}  // namespace flashcl::bench
