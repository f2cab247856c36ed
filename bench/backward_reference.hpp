// backward_reference.hpp: the float64 reference of the attention backward that the tests (and the
// bench's backward pass) share: dQ, dK, dV and the bias gradient of L = Σ O ∘ dO, for every variant
// of a Shape, from the same score function as the forward reference (problem.hpp).
#pragma once

#include <vector>

#include "problem.hpp"

namespace flashcl::bench {

struct ReferenceGradients {
  std::vector<double> d_q;     // like Q: (B, Nq, H, d) dense; varlen (total_q, H, d)
  std::vector<double> d_k;     // like K: (B, Nk, H_kv, d); varlen (total_k, H_kv, d)
  std::vector<double> d_v;     // like V
  std::vector<double> d_bias;  // shape.mask == Bias: (mask_batch, mask_heads, Nq, Nk), summed over broadcast dims
};

// Exact gradients in float64 given the upstream gradient d_o (laid out like O). Per row:
// P = softmax(scores), dP = dO·Vᵀ, dS = P ∘ (dP − rowsum(P ∘ dP)); the bias gets dS, the raw scores
// dS times the softcap slope; dQ = scale·dS·K, dK = scale·dSᵀ·Q (summed over a K/V head's query
// heads), dV = Pᵀ·dO. Rows that see no key contribute nothing.
ReferenceGradients reference_backward(const Shape& shape, const std::vector<float>& q, const std::vector<float>& k,
                                      const std::vector<float>& v, const std::vector<float>& d_o);

// The loss the gradients are of: Σ O ∘ d_o with O = reference_attention(shape, q, k, v).out
// (for finite-difference checks).
double reference_loss(const Shape& shape, const std::vector<float>& q, const std::vector<float>& k,
                      const std::vector<float>& v, const std::vector<float>& d_o);

}  // namespace flashcl::bench
