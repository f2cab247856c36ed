// test_bench_counts.cpp: the FLOP and byte counts behind flashcl-bench's TFLOP/s and GB/s
// (bench/problem.cpp's Shape::pairs and flops, bench/io_model.cpp's flops_of and io_model), against
// counts made here by brute force over every (query, key) pair and block: causal with Nq = Nk (the
// convention's half), Nq < Nk and Nq > Nk (the pairs the bottom-right mask leaves), windows, and
// varlen batches, whose sequences each count with their own lengths; and the backward's bytes
// (backward_io_model) against a walk over every block pair that sees a (query, key) pair.
#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

#include "io_model.hpp"
#include "problem.hpp"
#include "tiles.hpp"

namespace flashcl::bench {
namespace {

// Whether query i of a sequence of n queries over m keys sees key j (bottom-right alignment, as
// the reference and the kernels): causal hides j > i + m - n; a window keeps
// i + m - n - left <= j <= i + m - n + right.
bool visible(const Shape& s, long n, long m, long i, long j) {
  const long diag = i + m - n;
  if (s.causal && j > diag) return false;
  if (s.window_left >= 0 && j < diag - s.window_left) return false;
  if (s.window_right >= 0 && j > diag + s.window_right) return false;
  return true;
}

double brute_pairs(const Shape& s, long n, long m) {
  double pairs = 0;
  for (long i = 0; i < n; ++i)
    for (long j = 0; j < m; ++j) pairs += visible(s, n, m, i, j);
  return pairs;
}

Shape shape(int batch, int heads, int nq, int nk, int d, bool causal) {
  return dense_shape(batch, heads, nq, nk, d, causal);
}

TEST(BenchCounts, PlainAndCausalPairs) {
  EXPECT_DOUBLE_EQ(shape(2, 3, 64, 256, 32, false).flops(), 4.0 * 2 * 3 * 64 * 256 * 32);
  // Nq = Nk: the papers' convention, half of N·N (the PyTorch side of every comparison counts so).
  EXPECT_DOUBLE_EQ(shape(2, 3, 128, 128, 32, true).flops(), 4.0 * 2 * 3 * 128 * 128 * 32 / 2);
  // Nq != Nk: exactly the pairs the mask leaves (half of Nq·Nk was 1.75x too few at 64 x 256).
  for (const auto& [nq, nk] : std::vector<std::pair<int, int>>{{64, 256}, {256, 64}, {1, 100}, {100, 1}, {7, 8}}) {
    const Shape s = shape(2, 3, nq, nk, 16, true);
    EXPECT_DOUBLE_EQ(s.pairs(0), brute_pairs(s, nq, nk)) << nq << " x " << nk;
    EXPECT_DOUBLE_EQ(s.flops(), 4.0 * 2 * 3 * 16 * brute_pairs(s, nq, nk)) << nq << " x " << nk;
  }
  EXPECT_DOUBLE_EQ(shape(1, 1, 64, 256, 1, true).pairs(0), 14368.0);  // 64·65/2 + 64·192
}

TEST(BenchCounts, WindowsCountVisiblePairs) {
  for (const auto& [nq, nk] : std::vector<std::pair<int, int>>{{128, 128}, {64, 256}, {256, 64}}) {
    Shape s = shape(3, 2, nq, nk, 8, false);
    s.window_left = 16;
    s.window_right = 4;
    EXPECT_DOUBLE_EQ(flops_of(s), 4.0 * 3 * 2 * 8 * brute_pairs(s, nq, nk)) << nq << " x " << nk;
    s.causal = true;  // with causal the right side is 0
    EXPECT_DOUBLE_EQ(flops_of(s), 4.0 * 3 * 2 * 8 * brute_pairs(s, nq, nk)) << nq << " x " << nk;
  }
  // A window of (-1, 0) is the causal mask: the same count as causal wherever Nq != Nk.
  Shape w = shape(1, 1, 64, 256, 32, false);
  w.window_right = 0;
  EXPECT_DOUBLE_EQ(flops_of(w), flops_of(shape(1, 1, 64, 256, 32, true)));
}

// A varlen batch of three sequences (one empty) inside maxima of 96 queries and 160 keys.
Shape varlen_shape(bool causal) {
  Shape s = shape(3, 2, 96, 160, 16, causal);
  s.cu_seqlens_q = {0, 40, 40, 136};  // 40, 0, 96 queries
  s.cu_seqlens_k = {0, 100, 130, 290};  // 100, 30, 160 keys
  return s;
}

TEST(BenchCounts, VarlenCountsEachSequence) {
  for (const bool causal : {false, true}) {
    const Shape s = varlen_shape(causal);
    double want = 0;
    for (int b = 0; b < s.batch; ++b) want += brute_pairs(s, s.len_q(b), s.len_k(b));
    EXPECT_DOUBLE_EQ(s.flops(), 4.0 * 2 * 16 * want) << causal;
    Shape w = s;
    w.window_left = 10;
    w.window_right = causal ? -1 : 3;
    double want_w = 0;
    for (int b = 0; b < w.batch; ++b) want_w += brute_pairs(w, w.len_q(b), w.len_k(b));
    EXPECT_DOUBLE_EQ(flops_of(w), 4.0 * 2 * 16 * want_w) << causal;  // was B times the maxima's count
  }
}

// The IO model of a varlen batch is the sum of its sequences' models, each counted as a batch of
// one dense sequence (it was B times the maxima's).
TEST(BenchCounts, VarlenBytesSumTheSequences) {
  Tiles t;
  t.block_rows = 16;
  t.block_cols = 32;
  t.padded_head_dim = 16;
  for (const bool causal : {false, true})
    for (const Algorithm a : {Algorithm::Standard, Algorithm::FA1, Algorithm::FA2}) {
      const Shape s = varlen_shape(causal);
      double bytes = 0, min_bytes = 0;
      for (int b = 0; b < s.batch; ++b) {
        const IoModel one = io_model(shape(1, 2, s.len_q(b), s.len_k(b), 16, causal), a, t, true, 2);
        bytes += one.bytes;
        min_bytes += one.min_bytes;
      }
      const IoModel all = io_model(s, a, t, true, 2);
      EXPECT_DOUBLE_EQ(all.bytes, bytes) << causal << " " << static_cast<int>(a);
      EXPECT_DOUBLE_EQ(all.min_bytes, min_bytes) << causal << " " << static_cast<int>(a);
      // and a dense batch is B times one sequence
      const IoModel dense = io_model(shape(3, 2, 96, 160, 16, causal), a, t, true, 2);
      EXPECT_DOUBLE_EQ(dense.bytes, 3 * io_model(shape(1, 2, 96, 160, 16, causal), a, t, true, 2).bytes);
    }
}

// The backward's bytes of one (sequence, query head) by a walk over the blocks as the kernels
// take them: a (Q block, K/V block) pair counts when any of its (query, key) pairs is visible.
double brute_backward_bytes(const Shape& s, const BackwardTileInfo& t, int elem) {
  const long n = s.seqlen_q, m = s.seqlen_k, d = s.head_dim;
  const double kv_share = static_cast<double>(s.kv_heads()) / s.heads;
  double storage = 2.0 * n * d, fp32 = n;  // O, dO read; D written
  const auto sees = [&](long q0, long q1, long k0, long k1) {
    for (long i = q0; i < q1; ++i)
      for (long j = k0; j < k1; ++j)
        if (visible(s, n, m, i, j)) return true;
    return false;
  };
  if (t.block_rows == 0) {
    storage += 5.0 * n * d + 3.0 * m * d + 2.0 * m * d * kv_share;
    fp32 += 5.0 * n * m + 2.0 * n;
  } else {
    for (long k0 = 0; k0 < m; k0 += t.block_cols) {
      const long k1 = std::min<long>(k0 + t.block_cols, m);
      storage += 4.0 * (k1 - k0) * d * kv_share;
      for (long q0 = 0; q0 < n; q0 += t.block_rows) {
        const long q1 = std::min<long>(q0 + t.block_rows, n);
        if (!sees(q0, q1, k0, k1)) continue;
        storage += 2.0 * (q1 - q0) * d;
        fp32 += 2.0 * (q1 - q0) + (t.dq_pass ? 0.0 : 2.0 * (q1 - q0) * d);
      }
    }
    if (!t.dq_pass) {
      fp32 += 2.0 * std::max(t.dq_partials, 1) * n * d;
      storage += static_cast<double>(n) * d;
    } else {
      for (long q0 = 0; q0 < n; q0 += t.dq_block_rows) {
        const long q1 = std::min<long>(q0 + t.dq_block_rows, n);
        storage += 3.0 * (q1 - q0) * d;
        fp32 += 2.0 * (q1 - q0);
        for (long k0 = 0; k0 < m; k0 += t.dq_block_cols)
          if (sees(q0, q1, k0, std::min<long>(k0 + t.dq_block_cols, m)))
            storage += 2.0 * (std::min<long>(k0 + t.dq_block_cols, m) - k0) * d;
      }
    }
  }
  return s.heads * (storage * elem + fp32 * 4.0);
}

TEST(BenchCounts, BackwardBytesWalkTheBlockPairs) {
  BackwardTileInfo standard, atomic, pass, partials;
  atomic.block_rows = 16, atomic.block_cols = 32;
  pass = atomic;
  pass.dq_pass = true, pass.dq_block_rows = 64, pass.dq_block_cols = 16;
  partials = atomic;
  partials.dq_partials = 3;
  for (const BackwardTileInfo* t : {&standard, &atomic, &pass, &partials})
    for (const bool causal : {false, true})
      for (const auto [nq, nk] : {std::pair{96, 96}, {70, 150}, {150, 70}}) {
        Shape s = shape(1, 4, nq, nk, 16, causal);
        s.heads_kv = 2;
        for (const int left : {-1, 20}) {
          s.window_left = left;
          s.window_right = left < 0 ? -1 : 5;
          SCOPED_TRACE(std::to_string(nq) + "x" + std::to_string(nk) + (causal ? " causal" : "") + " window " +
                       std::to_string(left) + " blocks " + std::to_string(t->block_rows) + " pass " +
                       std::to_string(t->dq_pass) + " partials " + std::to_string(t->dq_partials));
          const IoModel io = backward_io_model(s, *t, 2);
          EXPECT_DOUBLE_EQ(io.bytes, brute_backward_bytes(s, *t, 2));
          // Q, O, dO read and dQ written; K, V read and dK, dV written once a K/V head; LSE read
          EXPECT_DOUBLE_EQ(io.min_bytes, 4 * (2.0 * (4.0 * nq * 16 + 4.0 * nk * 16 / 2) + 4.0 * nq));
          EXPECT_GE(io.bytes, io.min_bytes * (t == &standard ? 1.0 : 0.5));
        }
      }
}

}  // namespace
}  // namespace flashcl::bench
