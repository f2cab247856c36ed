// backward_support.hpp: what the backward tests share (tests/test_backward.cpp in the main suite,
// tests/test_tiny_backward.cpp in the checks run under oclgrind): the four backward paths, one
// call that runs the forward then a backward path on a case with every output poisoned with NaN,
// and the accuracy check against the float64 reference gradients.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "backward_reference.hpp"
#include "support.hpp"

namespace flashcl::test {

// The four ways to run the backward.
struct Path {
  Algorithm algorithm;
  bool deterministic;
  const char* name;
};
extern const Path kBackwardPaths[4];  // standard, fa1, fa2, fa2_deterministic

struct BackwardRun {
  std::vector<float> d_q, d_k, d_v, d_bias;      // logical (dense) layouts
  std::vector<float> raw_d_q, raw_d_k, raw_d_v;  // whole buffers, for bitwise comparisons
  std::size_t gaps_written = 0;
  bench::ReferenceGradients ref;
};

// Runs the fa2 forward (for O and LSE), then the backward by `path` with every output (and the bias
// gradient, when asked) filled with NaN first; the reference gradients when `with_reference`.
BackwardRun run_backward(const Case& c, const Path& path, bool want_d_bias, bool with_reference = true);

// fp32: within a small multiple of fp32 rounding. 16-bit storage: twice the error of the reference
// gradient rounded to that storage, plus a floor (the kernels compute D from the 16-bit O the
// forward stored, which the float64 reference does not).
void expect_gradient(const std::vector<float>& got, const std::vector<double>& want, DType dtype,
                     const std::string& what);

// expect_gradient on dQ, dK, dV (and the bias gradient), and nothing written outside the layouts.
void expect_run_accurate(const BackwardRun& r, DType dtype, const std::string& what);

// The variant inputs the backward cases take: a bias in [-1.5, 1.5) of dims (mask_batch,
// mask_heads, Nq, Nk); a boolean mask hiding about a third of the keys and every key of row
// `empty_row` of the first slice (a row that sees nothing: zero gradients); ALiBi slopes
// 2^(-4 (h + 1) / H).
void add_bias(bench::Shape& s, int mask_batch, int mask_heads, std::uint64_t seed);
void add_bool_mask(bench::Shape& s, int mask_batch, int mask_heads, int empty_row, std::uint64_t seed);
void add_alibi(bench::Shape& s);

}  // namespace flashcl::test
