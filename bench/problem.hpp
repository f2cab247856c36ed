// problem.hpp: the description of one attention problem that the tests and flashcl-bench share:
// shape, random inputs, the float64 reference, FLOP count and error metrics. What the bench
// measures is what the tests check.
#pragma once

#include <cstdint>
#include <vector>

namespace flashcl::bench {

struct Shape {
  int batch = 1, heads = 1, seqlen_q = 128, seqlen_k = 128, head_dim = 64;
  bool causal = false;
  double scale = 0.0;  // 0: 1/sqrt(d)

  double effective_scale() const;
  std::size_t q_elems() const;   // B·Nq·H·d
  std::size_t kv_elems() const;  // B·Nk·H·d
  std::size_t rows() const;      // B·H·Nq
  // FlashAttention convention: 4·B·H·Nq·Nk·d, halved when causal.
  double flops() const;
};

// Uniform values in [-1, 1) (times `amplitude`) from a seeded generator: never zeros.
std::vector<float> random_values(std::size_t n, std::uint64_t seed, float amplitude = 1.0f);

struct Reference {
  std::vector<double> out;  // (B, Nq, H, d) dense
  std::vector<double> lse;  // (B, H, Nq); -inf for rows that see no key
};

// Exact attention in float64 on dense (B, S, H, d) inputs.
Reference reference_attention(const Shape& shape, const std::vector<float>& q, const std::vector<float>& k,
                              const std::vector<float>& v);

// The same for the query rows `rows` only (each in [0, Nq)), in every batch and head: out is
// (B, rows.size(), H, d) dense and lse (B, H, rows.size()). A check of a long sequence costs
// rows.size()/Nq of the full O(B·H·Nq·Nk·d) reference.
Reference reference_attention_rows(const Shape& shape, const std::vector<float>& q, const std::vector<float>& k,
                                   const std::vector<float>& v, const std::vector<int>& rows);

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
