// io_model.hpp: global-memory bytes one forward (or backward) call moves, after the FlashAttention
// paper's IO analysis (Theorem 2), counted at the block granularity the kernels actually use, next
// to the minimum any exact algorithm needs. Achieved GB/s and % of bandwidth peak are derived from it.
#pragma once

#include "flashcl/flashcl.hpp"
#include "problem.hpp"
#include "tiles.hpp"

namespace flashcl::bench {

struct IoModel {
  double bytes = 0.0;      // modelled traffic of this algorithm
  double min_bytes = 0.0;  // Q, K, V read once; O (and LSE) written once
  const char* formula = "";
};

// `lse`: whether the call writes the (B, H, Nq) log-sum-exp. Q, K, V, O elements are `elem_bytes`
// wide (the storage type); scores, scratch and LSE are fp32.
IoModel io_model(const Shape& shape, Algorithm algorithm, const Tiles& tiles, bool lse, int elem_bytes = 4);

// Global-memory bytes one backward call moves, at the blocks its kernels use (flashcl's
// backward_tile_info): Q, K, V, O, dO, LSE read and dQ, dK, dV written, with D and the dQ
// accumulation, or standard's P and dS, as io_model.cpp states. min_bytes: every input read once and
// every gradient written once.
IoModel backward_io_model(const Shape& shape, const BackwardTileInfo& tiles, int elem_bytes = 4);

// FLOPs of a forward call: the FlashAttention convention (Shape::flops(): 4·B·H·Nq·Nk·d, halved
// when causal with Nq = Nk; causal with Nq != Nk counts the pairs the mask leaves), except with a
// sliding window, where 4·B·H·d times the visible (query, key) pairs (the convention's N² would
// credit work no kernel does). Varlen batches count each sequence with its own lengths.
double flops_of(const Shape& shape);

}  // namespace flashcl::bench
