// io_model.cpp: the byte counts. Per (batch, head), in elements (N = Nq, M = Nk); Q, K, V, O are
// in the storage type, S, P, fa1's scratch and LSE in fp32:
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

// Keys a query row sees: all, or j <= i + (Nk - Nq) under the bottom-right causal mask.
long visible_keys(const Shape& s, long row) {
  if (!s.causal) return s.seqlen_k;
  return std::clamp<long>(row + s.seqlen_k - s.seqlen_q + 1, 0, s.seqlen_k);
}

Elems standard_elems(const Shape& s, bool lse) {
  const double n = s.seqlen_q, m = s.seqlen_k, d = s.head_dim;
  return {2 * n * d + 2 * m * d, 4 * n * m + (lse ? n : 0)};
}

Elems fa1_elems(const Shape& s, const Tiles& t, bool lse) {
  const long n = s.seqlen_q, m = s.seqlen_k, d = s.head_dim, dp = std::max(t.padded_head_dim, s.head_dim);
  const long br = std::max(t.block_rows, 1), bc = std::max(t.block_cols, 1), shift = m - n;
  Elems e;
  e.fp32 = 2.0 * n * dp + 2.0 * n;                        // O = 0, m = -inf, l = 0 in scratch
  for (long k0 = 0; k0 < m; k0 += bc) {
    e.storage += 2.0 * std::min(bc, m - k0) * d;          // K, V block
    const long first_row = s.causal ? std::max<long>(0, k0 - shift) / br * br : 0;
    const long rows = std::max<long>(0, n - first_row);
    e.storage += static_cast<double>(rows) * d;            // Q block
    e.fp32 += rows * (2.0 * dp + 4.0);                     // O read and written; m, l read and written
  }
  e.fp32 += n * dp + 2.0 * n + (lse ? n : 0);              // epilogue: scratch O, m, l read; LSE written
  e.storage += static_cast<double>(n) * d;                 // O written
  return e;
}

Elems fa2_elems(const Shape& s, const Tiles& t, bool lse) {
  const long n = s.seqlen_q, m = s.seqlen_k, d = s.head_dim;
  const long br = std::max(t.block_rows, 1), bc = std::max(t.block_cols, 1);
  Elems e;
  for (long q0 = 0; q0 < n; q0 += br) {
    const long q_end = std::min(q0 + br, n);
    const long keys = visible_keys(s, q_end - 1);          // the block's last row sees the most
    const long blocks = (keys + bc - 1) / bc;
    e.storage += 2.0 * (q_end - q0) * d;                   // Q block read, O block written
    e.storage += 2.0 * std::min(blocks * bc, m) * d;       // K and V blocks
    e.fp32 += lse ? q_end - q0 : 0;                        // LSE
  }
  return e;
}

}  // namespace

IoModel io_model(const Shape& s, Algorithm algorithm, const Tiles& tiles, bool lse, int elem_bytes) {
  const double heads = static_cast<double>(s.batch) * s.heads;
  const double n = s.seqlen_q, m = s.seqlen_k, d = s.head_dim;
  const auto bytes = [&](const Elems& e) { return heads * (e.storage * elem_bytes + e.fp32 * 4.0); };
  IoModel io;
  io.min_bytes = bytes({2 * n * d + 2 * m * d, lse ? n : 0.0});
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

}  // namespace flashcl::bench
