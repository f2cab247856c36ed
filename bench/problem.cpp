// problem.cpp: random inputs, the float64 reference attention (all rows, or a sample of rows for
// long sequences) and error metrics.
#include "problem.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <utility>

namespace flashcl::bench {

Shape dense_shape(int batch, int heads, int seqlen_q, int seqlen_k, int head_dim, bool causal) {
  Shape s;
  s.batch = batch;
  s.heads = heads;
  s.seqlen_q = seqlen_q;
  s.seqlen_k = seqlen_k;
  s.head_dim = head_dim;
  s.causal = causal;
  return s;
}

double Shape::effective_scale() const { return scale != 0.0 ? scale : 1.0 / std::sqrt(static_cast<double>(head_dim)); }
std::size_t Shape::q_row(int b, int i) const {
  return varlen() ? static_cast<std::size_t>(cu_seqlens_q[b]) + i : static_cast<std::size_t>(b) * seqlen_q + i;
}
std::size_t Shape::k_row(int b, int j) const {
  return varlen() ? static_cast<std::size_t>(cu_seqlens_k[b]) + j : static_cast<std::size_t>(b) * seqlen_k + j;
}
std::size_t Shape::total_q() const { return varlen() ? cu_seqlens_q[batch] : static_cast<std::size_t>(batch) * seqlen_q; }
std::size_t Shape::total_k() const { return varlen() ? cu_seqlens_k[batch] : static_cast<std::size_t>(batch) * seqlen_k; }
std::size_t Shape::q_elems() const { return total_q() * heads * head_dim; }
std::size_t Shape::kv_elems() const { return total_k() * kv_heads() * head_dim; }
std::size_t Shape::rows() const { return total_q() * heads; }
// Query-key pairs of one sequence: Nq·Nk; causal with Nq = Nk, the convention's half (N²/2, as the
// papers and the PyTorch side of every side-by-side count it); causal otherwise, the pairs the
// bottom-right mask leaves: row i sees min(Nk, max(0, i + 1 + Nk - Nq)) keys, which sums to
// Nq(Nq+1)/2 + Nq(Nk-Nq) when Nq < Nk and Nk(Nk+1)/2 when Nq > Nk (halving N·M instead would
// count 1.75x too few at Nq 64, Nk 256, and 3.9x too many at Nq 256, Nk 64).
double Shape::pairs(int b) const {
  const double n = len_q(b), m = len_k(b);
  if (!causal) return n * m;
  if (n == m) return n * m / 2;
  return n < m ? n * (n + 1) / 2 + n * (m - n) : m * (m + 1) / 2;
}
double Shape::flops() const {
  double pairs_all = 0.0;  // over the batch (varlen: each sequence's own lengths)
  for (int b = 0; b < batch; ++b) pairs_all += pairs(b);
  return 4.0 * heads * pairs_all * head_dim;
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

std::vector<float> bench_mask_values(MaskMode mode, std::size_t n, std::uint64_t seed) {
  std::vector<float> v = random_values(n, seed);
  for (float& x : v) x = mode == MaskMode::Bool ? (x < -0.75f ? 0.0f : 1.0f) : x * 2.0f;
  return v;
}

std::vector<float> geometric_alibi_slopes(int heads) {
  std::vector<float> slopes;
  for (int h = 0; h < heads; ++h) slopes.push_back(static_cast<float>(std::exp2(-8.0 * (h + 1) / heads)));
  return slopes;
}

void reference_scores(const Shape& s, const std::vector<float>& q, const std::vector<float>& k, int b, int h, int i,
                      std::vector<double>& scores, std::vector<double>* slopes) {
  const int d = s.head_dim, H = s.heads, Hk = s.kv_heads(), hk = h / (H / Hk);
  const int lq = s.len_q(b), lk = s.len_k(b), shift = lk - lq;  // bottom-right alignment per sequence
  const double inf = std::numeric_limits<double>::infinity();
  const float* qi = &q[(s.q_row(b, i) * H + h) * d];
  const double scale = s.effective_scale();
  const double slope = s.alibi_slopes.empty() ? 0.0
                       : s.alibi_slopes.size() == static_cast<std::size_t>(H) ? s.alibi_slopes[h]
                                                                            : s.alibi_slopes[b * H + h];
  const float* mask_row = nullptr;
  if (s.mask != MaskMode::None) {
    const std::size_t mb = s.mask_batch == 1 ? 0 : b, mh = s.mask_heads == 1 ? 0 : h;
    mask_row = &s.mask_values[((mb * s.mask_heads + mh) * s.seqlen_q + i) * s.seqlen_k];
  }
  scores.assign(lk, -inf);
  if (slopes != nullptr) slopes->assign(lk, 0.0);
  for (int j = 0; j < lk; ++j) {
    const long rel = static_cast<long>(j) - i - shift;  // key position relative to the diagonal
    bool hidden = (s.causal && rel > 0) || (s.window_left >= 0 && rel < -s.window_left) ||
                  (s.window_right >= 0 && rel > s.window_right) ||
                  (s.mask == MaskMode::Bool && mask_row[j] == 0.0f);
    if (hidden) continue;
    const float* kj = &k[(s.k_row(b, j) * Hk + hk) * d];
    double dot = 0.0;
    for (int c = 0; c < d; ++c) dot += static_cast<double>(qi[c]) * kj[c];
    double x = dot * scale;
    double dx = 1.0;
    if (s.softcap > 0.0) {
      const double t = std::tanh(x / s.softcap);
      x = s.softcap * t;
      dx = 1.0 - t * t;
    }
    x -= slope * std::fabs(static_cast<double>(rel));
    if (s.mask == MaskMode::Bias) x += mask_row[j];
    scores[j] = x;
    if (slopes != nullptr) (*slopes)[j] = dx;
  }
}

namespace {

// One query row of one (batch, head): writes d outputs and returns the LSE. Scores follow the
// kernels' order: scale·q·k, softcap, ALiBi, bias; hidden keys (causal, window, bool mask) drop out.
double reference_row(const Shape& s, const std::vector<float>& q, const std::vector<float>& k,
                     const std::vector<float>& v, int b, int h, int i, std::vector<double>& scores, double* out) {
  const int d = s.head_dim, H = s.heads, Hk = s.kv_heads(), hk = h / (H / Hk);
  const int lk = s.len_k(b);
  const double inf = std::numeric_limits<double>::infinity();
  reference_scores(s, q, k, b, h, i, scores, nullptr);
  double m = -inf;
  bool nan_score = false;  // std::max passes over a NaN: a row whose only visible key scores NaN is NaN too
  for (int j = 0; j < lk; ++j) {
    m = std::max(m, scores[j]);
    nan_score |= std::isnan(scores[j]);
  }
  if (nan_score) {
    for (int c = 0; c < d; ++c) out[c] = std::numeric_limits<double>::quiet_NaN();
    return std::numeric_limits<double>::quiet_NaN();
  }
  if (m == -inf) return -inf;  // no visible key: O = 0
  double sum = 0.0;
  for (int j = 0; j < lk; ++j) {
    scores[j] = scores[j] == -inf ? 0.0 : std::exp(scores[j] - m);
    sum += scores[j];
  }
  for (int j = 0; j < lk; ++j) {
    if (scores[j] == 0.0) continue;
    const float* vj = &v[(s.k_row(b, j) * Hk + hk) * d];
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
  std::vector<double> scores(s.seqlen_k);
  if (s.varlen()) {  // packed (sequence, row) order, only the rows each sequence has
    std::vector<std::pair<int, int>> picked;
    for (int b = 0; b < s.batch; ++b)
      for (int r : rows)
        if (r < s.len_q(b)) picked.emplace_back(b, r);
    const std::size_t total = picked.size();
    ref.out.assign(total * H * d, 0.0);
    ref.lse.assign(total * H, -std::numeric_limits<double>::infinity());
    for (std::size_t t = 0; t < total; ++t)
      for (int h = 0; h < H; ++h)
        ref.lse[h * total + t] =
            reference_row(s, q, k, v, picked[t].first, h, picked[t].second, scores, &ref.out[(t * H + h) * d]);
    return ref;
  }
  ref.out.assign(static_cast<std::size_t>(s.batch) * n * H * d, 0.0);
  ref.lse.assign(static_cast<std::size_t>(s.batch) * H * n, -std::numeric_limits<double>::infinity());
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
  const std::size_t width = static_cast<std::size_t>(s.heads) * s.head_dim;
  std::vector<float> picked;
  for (int b = 0; b < s.batch; ++b)
    for (int r : rows)
      if (r < s.len_q(b)) {  // always true without varlen
        const float* from = &out[s.q_row(b, r) * width];
        picked.insert(picked.end(), from, from + width);
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
