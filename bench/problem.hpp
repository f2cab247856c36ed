// problem.hpp: the description of one attention problem that the tests and flashcl-bench share:
// shape, random inputs, the float64 reference, FLOP count and error metrics. What the bench
// measures is what the tests check.
#pragma once

#include <cstdint>
#include <vector>

namespace flashcl::bench {

// The optional mask of a shape (as SDPA's attn_mask).
enum class MaskMode { None, Bool, Bias };

struct Shape {
  int batch = 1, heads = 1, seqlen_q = 128, seqlen_k = 128, head_dim = 64;
  bool causal = false;
  double scale = 0.0;  // 0: 1/sqrt(d)

  // Variants; every default is off, so a shape without them is plain attention.
  int heads_kv = 0;                          // K/V heads (GQA/MQA); 0: = heads
  int window_left = -1, window_right = -1;   // sliding window (flash-attn's window_size); -1: unbounded
  double softcap = 0.0;                      // s <- c·tanh(s/c) before the softmax; 0: off
  std::vector<float> alibi_slopes;           // empty: off; H slopes, or B·H
  MaskMode mask = MaskMode::None;
  int mask_batch = 1, mask_heads = 1;        // the mask's dims: 1 (broadcast) or B, 1 or H
  std::vector<float> mask_values;            // dense (mask_batch, mask_heads, Nq, Nk): Bool 0/1, Bias added
  std::vector<int> cu_seqlens_q, cu_seqlens_k;  // empty: off; B + 1 offsets; seqlen_q/k are the maxima

  int kv_heads() const { return heads_kv > 0 ? heads_kv : heads; }
  bool varlen() const { return !cu_seqlens_q.empty(); }
  int len_q(int b) const { return varlen() ? cu_seqlens_q[b + 1] - cu_seqlens_q[b] : seqlen_q; }
  int len_k(int b) const { return varlen() ? cu_seqlens_k[b + 1] - cu_seqlens_k[b] : seqlen_k; }
  // Row of query i / key j of sequence b in the (rows, heads, d) view of Q / K: packed when varlen.
  std::size_t q_row(int b, int i) const;
  std::size_t k_row(int b, int j) const;
  std::size_t total_q() const;  // B·Nq, or cu_seqlens_q[B]
  std::size_t total_k() const;

  double effective_scale() const;
  std::size_t q_elems() const;   // B·Nq·H·d (varlen: total_q·H·d)
  std::size_t kv_elems() const;  // B·Nk·H_kv·d (varlen: total_k·H_kv·d)
  std::size_t rows() const;      // B·H·Nq (varlen: H·total_q): the LSE's size
  // Query-key pairs of sequence b a head: Nq·Nk; causal, half of it when Nq = Nk (the papers'
  // convention), else the pairs the bottom-right mask leaves (problem.cpp). Windows: flops_of.
  double pairs(int b) const;
  // 4·H·d times the pairs of every sequence: the FlashAttention convention 4·B·H·Nq·Nk·d, halved
  // when causal with Nq = Nk.
  double flops() const;
};

// A plain (B, Nq/Nk, H, d) shape, every variant off.
Shape dense_shape(int batch, int heads, int seqlen_q, int seqlen_k, int head_dim, bool causal = false);

// Uniform values in [-1, 1) (times `amplitude`) from a seeded generator: never zeros.
std::vector<float> random_values(std::size_t n, std::uint64_t seed, float amplitude = 1.0f);

// The bench's mask of n elements (--mask): Bool 0 or 1 (1 key in 8 hidden), Bias in [-2, 2).
std::vector<float> bench_mask_values(MaskMode mode, std::size_t n, std::uint64_t seed);

// flash-attn's geometric ALiBi slopes, 2^(-8 (h + 1) / H) for h = 0 .. H - 1 (the bench's --alibi).
std::vector<float> geometric_alibi_slopes(int heads);

struct Reference {
  std::vector<double> out;  // (B, Nq, H, d) dense; varlen: (total_q, H, d)
  std::vector<double> lse;  // (B, H, Nq); varlen: (H, total_q); -inf for rows that see no key
};

// Exact attention in float64 on dense (B, S, H, d) inputs (varlen: packed (total, H, d)), with
// every variant of the shape: GQA, window, causal, softcap, ALiBi, mask, varlen.
Reference reference_attention(const Shape& shape, const std::vector<float>& q, const std::vector<float>& k,
                              const std::vector<float>& v);

// The same for the query rows `rows` only (each in [0, Nq)), in every batch and head: out is
// (B, rows.size(), H, d) dense and lse (B, H, rows.size()). Varlen: the rows each sequence has,
// packed in (sequence, row) order: out (n, H, d), lse (H, n). A check of a long sequence costs
// rows.size()/Nq of the full O(B·H·Nq·Nk·d) reference.
Reference reference_attention_rows(const Shape& shape, const std::vector<float>& q, const std::vector<float>& k,
                                   const std::vector<float>& v, const std::vector<int>& rows);

// The scores query i of (b, h) gives every key of its sequence, as the softmax sees them (scale·q·k,
// softcap, ALiBi, bias; -inf where hidden: causal, window, boolean mask); with `slopes`, also
// d score / d(scale·q·k) per key (softcap's 1 − tanh², else 1; 0 where hidden). Varlen: i and the
// keys are positions in sequence b.
void reference_scores(const Shape& shape, const std::vector<float>& q, const std::vector<float>& k, int b, int h,
                      int i, std::vector<double>& scores, std::vector<double>* slopes);

// Evenly spaced query rows, first and last included, as many as a reference of at most
// `max_macs` multiply-adds allows (at least min(Nq, 16)); all rows when the full one fits.
std::vector<int> sample_rows(const Shape& shape, double max_macs);

// `rows` of a dense (B, Nq, H, d) output, laid out like reference_attention_rows()'s out.
std::vector<float> gather_rows(const Shape& shape, const std::vector<float>& out, const std::vector<int>& rows);

struct ErrorStats {
  double max_abs = 0.0;   // max |x - ref|
  double rel_norm = 0.0;  // ||x - ref|| / ||ref||
  std::size_t non_finite = 0;  // NaN or Inf where the reference is finite
};
ErrorStats compare(const std::vector<float>& got, const std::vector<double>& want);

}  // namespace flashcl::bench
