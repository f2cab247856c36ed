// io_model.cpp: the byte counts. Per (sequence, query head), in elements (N = Nq, M = Nk: a varlen
// sequence's own lengths); Q, K, V, O are in the storage type, S, P, fa1's scratch and LSE in fp32.
// Blocks wholly above the causal diagonal or outside a sliding window are skipped exactly as the
// kernels skip them:
//  standard  the paper's Θ(Nd + N²): Q, K read; S written; S read, P written; P, V read; O
//            written: 2Nd + 2Md + 4NM. The mask does not shorten it (the kernels run the full
//            N×M); the GEMMs' tile re-reads of Q, K, V are cache traffic the paper leaves out.
//  fa1       Θ(N²d²/M): K, V read once; for each of the Tc = ceil(M/Bc) K/V blocks, every Q block
//            that sees it reads Q and the running O, m, l and writes O, m, l back (causal skips the
//            Q blocks above the diagonal); plus zeroing O, m, l and the final copy to O and LSE.
//  fa2       Q read once; each of the Tr = ceil(N/Br) Q blocks reads the K, V blocks it sees
//            (about half of them under the causal mask); O and LSE written once.
// The backward (backward_io_model), after a preprocess that reads O and dO and writes D (N):
//  standard  P and dS materialised: Q, K, dO, V, LSE, D read, P and dS written (2NM fp32); dK, dV
//            from P, dS, Q, dO; dQ from dS, K: 7Nd + 5Md storage and 5NM + 3N fp32.
//  fa1, fa2  each K/V block read once and its dK, dV written once a K/V head (GQA: shared by the
//            group's query heads); each (query head, Q block) that sees it reads Q, dO, LSE, D and
//            read-modify-writes its fp32 dQ rows (the accumulator, or the CPU form's partial), then
//            the accumulator (or the partials) read and dQ written. With a dQ pass (deterministic,
//            and the tensor cores' default) no accumulator: the pass reads each Q block, dO, LSE, D
//            and the K/V blocks it sees, and writes dQ.
#include "io_model.hpp"

#include <algorithm>

namespace flashcl::bench {
namespace {

struct Elems {
  double storage = 0.0;  // Q, K, V, O elements
  double fp32 = 0.0;     // S, P, scratch, LSE elements
};

// One sequence's query and key counts (varlen: its own; otherwise the shape's Nq, Nk).
struct Lengths {
  long n = 0, m = 0;
};
// fn(lengths, count) for each distinct sequence: a varlen batch's each once, a dense batch's one,
// B times.
template <class Fn>
void each_sequence(const Shape& s, Fn fn) {
  if (!s.varlen()) return fn(Lengths{s.seqlen_q, s.seqlen_k}, static_cast<double>(s.batch));
  for (int b = 0; b < s.batch; ++b) fn(Lengths{s.len_q(b), s.len_k(b)}, 1.0);
}

// Keys [lo, hi) that rows [q0, q_end) can see at all (causal, window), as the kernels bound them.
void key_range(const Shape& s, Lengths len, long q0, long q_end, long& lo, long& hi) {
  const long shift = len.m - len.n;
  lo = 0;
  hi = len.m;
  if (s.causal) hi = std::min(hi, q_end + shift);
  if (s.window_right >= 0) hi = std::min(hi, q_end + shift + s.window_right);
  if (s.window_left >= 0) lo = std::max(lo, q0 + shift - s.window_left);
}

// Rows [lo, hi) with a row that sees a key of [k0, k_end).
void row_range(const Shape& s, Lengths len, long k0, long k_end, long& lo, long& hi) {
  const long shift = len.m - len.n;
  lo = 0;
  hi = len.n;
  if (s.causal) lo = std::max(lo, k0 - shift);
  if (s.window_right >= 0) lo = std::max(lo, k0 - shift - s.window_right);
  if (s.window_left >= 0) hi = std::min(hi, k_end - shift + s.window_left);
}

Elems standard_elems(const Shape& s, Lengths len, bool lse) {
  const double n = len.n, m = len.m, d = s.head_dim;
  return {2 * n * d + 2 * m * d, 4 * n * m + (lse ? n : 0)};
}

Elems fa1_elems(const Shape& s, Lengths len, const Tiles& t, bool lse) {
  const long n = len.n, m = len.m, d = s.head_dim, dp = std::max(t.padded_head_dim, s.head_dim);
  const long br = std::max(t.block_rows, 1), bc = std::max(t.block_cols, 1);
  Elems e;
  e.fp32 = 2.0 * n * dp + 2.0 * n;  // O = 0, m = -inf, l = 0 in scratch
  long k_lo = 0, k_hi = 0;
  key_range(s, len, 0, n, k_lo, k_hi);
  for (long k0 = k_lo / bc * bc; k0 < k_hi; k0 += bc) {
    const long k_end = std::min(k0 + bc, m);
    e.storage += 2.0 * (k_end - k0) * d;  // K, V block
    long r_lo = 0, r_hi = 0;
    row_range(s, len, k0, k_end, r_lo, r_hi);
    if (r_hi <= r_lo) continue;
    const long rows = std::min(n, (r_hi + br - 1) / br * br) - r_lo / br * br;  // whole Q blocks
    e.storage += static_cast<double>(rows) * d;                                 // Q blocks
    e.fp32 += rows * (2.0 * dp + 4.0);  // O read and written; m, l read and written
  }
  e.fp32 += n * dp + 2.0 * n + (lse ? n : 0);  // epilogue: scratch O, m, l read; LSE written
  e.storage += static_cast<double>(n) * d;     // O written
  return e;
}

Elems fa2_elems(const Shape& s, Lengths len, const Tiles& t, bool lse) {
  const long n = len.n, m = len.m, d = s.head_dim;
  const long br = std::max(t.block_rows, 1), bc = std::max(t.block_cols, 1);
  Elems e;
  for (long q0 = 0; q0 < n; q0 += br) {
    const long q_end = std::min(q0 + br, n);
    long lo = 0, hi = 0;
    key_range(s, len, q0, q_end, lo, hi);
    const long keys = hi <= lo ? 0 : std::min(m, (hi + bc - 1) / bc * bc) - lo / bc * bc;  // whole K/V blocks
    e.storage += 2.0 * (q_end - q0) * d;  // Q block read, O block written
    e.storage += 2.0 * keys * d;          // K and V blocks
    e.fp32 += lse ? q_end - q0 : 0;       // LSE
  }
  return e;
}

// One (sequence, query head) of a backward: storage elements (Q, K, V, O, dO, gradients) and fp32
// ones (LSE, D, P, dS, dQ accumulation); K/V-head traffic times kv_share (its group's share).
Elems backward_elems(const Shape& s, Lengths len, const BackwardTileInfo& t, double kv_share) {
  const long n = len.n, m = len.m, d = s.head_dim;
  Elems e{2.0 * n * d, static_cast<double>(n)};  // preprocess: O, dO read; D written
  if (t.block_rows <= 0 || t.block_cols <= 0) {   // standard
    e.storage += 5.0 * n * d + 3.0 * m * d + 2.0 * m * d * kv_share;
    e.fp32 += 5.0 * n * m + 2.0 * n;
    return e;
  }
  const long br = t.block_rows, bc = t.block_cols;
  const bool accumulates = !t.dq_pass;
  for (long k0 = 0; k0 < m; k0 += bc) {
    const long k_end = std::min(k0 + bc, m);
    e.storage += 4.0 * (k_end - k0) * d * kv_share;  // K, V read; dK, dV written
    long r_lo = 0, r_hi = 0;
    row_range(s, len, k0, k_end, r_lo, r_hi);
    if (r_hi <= r_lo) continue;
    const long rows = std::min(n, (r_hi + br - 1) / br * br) - r_lo / br * br;  // whole Q blocks
    e.storage += 2.0 * rows * d;                                                 // Q, dO
    e.fp32 += 2.0 * rows + (accumulates ? 2.0 * rows * d : 0.0);                // LSE, D; dQ read and written
  }
  if (accumulates) {  // the accumulator (or each partial) cleared, then read and summed into dQ
    const double copies = std::max(t.dq_partials, 1);
    e.fp32 += 2.0 * copies * n * d;
    e.storage += static_cast<double>(n) * d;
    return e;
  }
  const long qr = std::max(t.dq_block_rows, 1), kc = std::max(t.dq_block_cols, 1);
  for (long q0 = 0; q0 < n; q0 += qr) {
    const long q_end = std::min(q0 + qr, n);
    long lo = 0, hi = 0;
    key_range(s, len, q0, q_end, lo, hi);
    const long keys = hi <= lo ? 0 : std::min(m, (hi + kc - 1) / kc * kc) - lo / kc * kc;
    e.storage += 3.0 * (q_end - q0) * d + 2.0 * keys * d;  // Q, dO read, dQ written; K, V blocks
    e.fp32 += 2.0 * (q_end - q0);                          // LSE, D
  }
  return e;
}

}  // namespace

IoModel backward_io_model(const Shape& s, const BackwardTileInfo& t, int elem_bytes) {
  const double kv_share = static_cast<double>(s.kv_heads()) / s.heads, d = s.head_dim;
  const auto bytes = [&](const Elems& e) { return s.heads * (e.storage * elem_bytes + e.fp32 * 4.0); };
  IoModel io;
  io.formula = t.block_rows <= 0 ? "7Nd+5Md + 5NM+3N fp32 (P, dS written and read)"
               : t.dq_pass       ? "K/V blocks once; Q, dO, LSE, D per block pair; dQ pass over K/V"
                                 : "K/V blocks once; Q, dO, LSE, D and fp32 dQ per block pair";
  each_sequence(s, [&](Lengths len, double count) {
    const double n = len.n, m = len.m;
    // Q, O, dO read, dQ written; K, V read and dK, dV written once a K/V head; LSE read
    io.min_bytes += count * bytes({4 * n * d + 4 * m * d * kv_share, n});
    io.bytes += count * bytes(backward_elems(s, len, t, kv_share));
  });
  return io;
}

IoModel io_model(const Shape& s, Algorithm algorithm, const Tiles& tiles, bool lse, int elem_bytes) {
  const double kv_share = static_cast<double>(s.kv_heads()) / s.heads, d = s.head_dim;
  const auto bytes = [&](const Elems& e) { return s.heads * (e.storage * elem_bytes + e.fp32 * 4.0); };
  IoModel io;
  io.formula = algorithm == Algorithm::Standard ? "2Nd+2Md+4NM (S, P written and read)"
               : algorithm == Algorithm::FA1    ? "2Md + Tc*(Nd + 2Nd + 4N), Tc=ceil(M/Bc)"
                                                : "2Nd + Tr*2Md, Tr=ceil(N/Br)";
  each_sequence(s, [&](Lengths len, double count) {
    const double n = len.n, m = len.m;
    io.min_bytes += count * bytes({2 * n * d + 2 * m * d * kv_share, lse ? n : 0.0});  // GQA: K, V once per KV head
    const Elems e = algorithm == Algorithm::Standard ? standard_elems(s, len, lse)
                    : algorithm == Algorithm::FA1    ? fa1_elems(s, len, tiles, lse)
                                                     : fa2_elems(s, len, tiles, lse);
    io.bytes += count * bytes(e);
  });
  return io;
}

double flops_of(const Shape& s) {
  if (s.window_left < 0 && s.window_right < 0) return s.flops();
  double pairs = 0.0;  // visible (query, key) pairs a head over the batch (varlen: each sequence's own)
  each_sequence(s, [&](Lengths len, double count) {
    for (long i = 0; i < len.n; ++i) {
      long lo = 0, hi = 0;
      key_range(s, len, i, i + 1, lo, hi);
      pairs += count * std::max(0L, hi - lo);
    }
  });
  return 4.0 * s.heads * pairs * s.head_dim;
}

}  // namespace flashcl::bench
