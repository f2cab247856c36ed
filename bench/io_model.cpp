// io_model.cpp: the byte counts. Per (batch, query head), in elements (N = Nq, M = Nk); Q, K, V, O
// are in the storage type, S, P, fa1's scratch and LSE in fp32. Blocks wholly above the causal
// diagonal or outside a sliding window are skipped exactly as the kernels skip them:
//  standard  the paper's Θ(Nd + N²): Q, K read; S written; S read, P written; P, V read; O
//            written: 2Nd + 2Md + 4NM. The mask does not shorten it (the kernels run the full
//            N×M); the GEMMs' tile re-reads of Q, K, V are cache traffic the paper leaves out.
//  fa1       Θ(N²d²/M): K, V read once; for each of the Tc = ceil(M/Bc) K/V blocks, every Q block
//            that sees it reads Q and the running O, m, l and writes O, m, l back (causal skips the
//            Q blocks above the diagonal); plus zeroing O, m, l and the final copy to O and LSE.
//  fa2       Q read once; each of the Tr = ceil(N/Br) Q blocks reads the K, V blocks it sees
//            (about half of them under the causal mask); O and LSE written once.
#include "io_model.hpp"

#include <algorithm>

namespace flashcl::bench {
namespace {

struct Elems {
  double storage = 0.0;  // Q, K, V, O elements
  double fp32 = 0.0;     // S, P, scratch, LSE elements
};

// Keys [lo, hi) that rows [q0, q_end) can see at all (causal, window), as the kernels bound them.
void key_range(const Shape& s, long q0, long q_end, long& lo, long& hi) {
  const long shift = s.seqlen_k - s.seqlen_q;
  lo = 0;
  hi = s.seqlen_k;
  if (s.causal) hi = std::min(hi, q_end + shift);
  if (s.window_right >= 0) hi = std::min(hi, q_end + shift + s.window_right);
  if (s.window_left >= 0) lo = std::max(lo, q0 + shift - s.window_left);
}

// Rows [lo, hi) with a row that sees a key of [k0, k_end).
void row_range(const Shape& s, long k0, long k_end, long& lo, long& hi) {
  const long shift = s.seqlen_k - s.seqlen_q;
  lo = 0;
  hi = s.seqlen_q;
  if (s.causal) lo = std::max(lo, k0 - shift);
  if (s.window_right >= 0) lo = std::max(lo, k0 - shift - s.window_right);
  if (s.window_left >= 0) hi = std::min(hi, k_end - shift + s.window_left);
}

Elems standard_elems(const Shape& s, bool lse) {
  const double n = s.seqlen_q, m = s.seqlen_k, d = s.head_dim;
  return {2 * n * d + 2 * m * d, 4 * n * m + (lse ? n : 0)};
}

Elems fa1_elems(const Shape& s, const Tiles& t, bool lse) {
  const long n = s.seqlen_q, m = s.seqlen_k, d = s.head_dim, dp = std::max(t.padded_head_dim, s.head_dim);
  const long br = std::max(t.block_rows, 1), bc = std::max(t.block_cols, 1);
  Elems e;
  e.fp32 = 2.0 * n * dp + 2.0 * n;  // O = 0, m = -inf, l = 0 in scratch
  long k_lo = 0, k_hi = 0;
  key_range(s, 0, n, k_lo, k_hi);
  for (long k0 = k_lo / bc * bc; k0 < k_hi; k0 += bc) {
    const long k_end = std::min(k0 + bc, m);
    e.storage += 2.0 * (k_end - k0) * d;  // K, V block
    long r_lo = 0, r_hi = 0;
    row_range(s, k0, k_end, r_lo, r_hi);
    if (r_hi <= r_lo) continue;
    const long rows = std::min(n, (r_hi + br - 1) / br * br) - r_lo / br * br;  // whole Q blocks
    e.storage += static_cast<double>(rows) * d;                                 // Q blocks
    e.fp32 += rows * (2.0 * dp + 4.0);  // O read and written; m, l read and written
  }
  e.fp32 += n * dp + 2.0 * n + (lse ? n : 0);  // epilogue: scratch O, m, l read; LSE written
  e.storage += static_cast<double>(n) * d;     // O written
  return e;
}

Elems fa2_elems(const Shape& s, const Tiles& t, bool lse) {
  const long n = s.seqlen_q, m = s.seqlen_k, d = s.head_dim;
  const long br = std::max(t.block_rows, 1), bc = std::max(t.block_cols, 1);
  Elems e;
  for (long q0 = 0; q0 < n; q0 += br) {
    const long q_end = std::min(q0 + br, n);
    long lo = 0, hi = 0;
    key_range(s, q0, q_end, lo, hi);
    const long keys = hi <= lo ? 0 : std::min(m, (hi + bc - 1) / bc * bc) - lo / bc * bc;  // whole K/V blocks
    e.storage += 2.0 * (q_end - q0) * d;  // Q block read, O block written
    e.storage += 2.0 * keys * d;          // K and V blocks
    e.fp32 += lse ? q_end - q0 : 0;       // LSE
  }
  return e;
}

}  // namespace

IoModel io_model(const Shape& s, Algorithm algorithm, const Tiles& tiles, bool lse, int elem_bytes) {
  const double heads = static_cast<double>(s.batch) * s.heads, kv_share = static_cast<double>(s.kv_heads()) / s.heads;
  const double n = s.seqlen_q, m = s.seqlen_k, d = s.head_dim;
  const auto bytes = [&](const Elems& e) { return heads * (e.storage * elem_bytes + e.fp32 * 4.0); };
  IoModel io;
  io.min_bytes = bytes({2 * n * d + 2 * m * d * kv_share, lse ? n : 0.0});  // GQA: K, V once per KV head
  switch (algorithm) {
    case Algorithm::Standard:
      io.bytes = bytes(standard_elems(s, lse));
      io.formula = "2Nd+2Md+4NM (S, P written and read)";
      break;
    case Algorithm::FA1:
      io.bytes = bytes(fa1_elems(s, tiles, lse));
      io.formula = "2Md + Tc*(Nd + 2Nd + 4N), Tc=ceil(M/Bc)";
      break;
    default:
      io.bytes = bytes(fa2_elems(s, tiles, lse));
      io.formula = "2Nd + Tr*2Md, Tr=ceil(N/Br)";
      break;
  }
  return io;
}

double flops_of(const Shape& s) {
  if (s.window_left < 0 && s.window_right < 0) return s.flops();
  double pairs = 0.0;  // visible (query, key) pairs of one (batch, head)
  for (long i = 0; i < s.seqlen_q; ++i) {
    long lo = 0, hi = 0;
    key_range(s, i, i + 1, lo, hi);
    pairs += std::max(0L, hi - lo);
  }
  return 4.0 * s.batch * s.heads * pairs * s.head_dim;
}

}  // namespace flashcl::bench
