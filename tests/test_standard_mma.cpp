// test_standard_mma.cpp: the standard path on NVIDIA tensor cores (kernels/nvidia/standard_mma.cl:
// S = scale QK^T and O = P V on mma.sync, fp16/bf16 directly and fp32 as 3xTF32, the portable row
// softmax between them) against the float64 reference with outputs poisoned with NaN (run_case),
// over the calls the planner gives it: the three dtypes at d = 64 and 128, a head dim padded to the
// mma's k (72, 100) and one taking the element-wise copies (30), Nq != Nk both ways with blocks left
// partial, causal (Nq > Nk leaves rows that see no key: O = 0, LSE = -inf), and every variant the
// scores kernel takes through common.cl's final_score: window, GQA, varlen (empty sequences), softcap,
// ALiBi, a boolean mask and an additive bias (with fully hidden rows), head-major and padded layouts.
// The bounds are every path's (support.hpp's expect_accurate): P rounded to 16 bits before P.V, as
// the tensor-core fa2 rounds it, stays within twice the reference's own rounding.
//
// The tests skip where the device is not an NVIDIA GPU of compute capability >= 8.0 (PoCL), or where
// FLASHCL_STANDARD_MMA=0 / FLASHCL_MMA=0 turn the path off. Where they run, a failed probe would fall
// back to the portable standard and still pass: bench/gpu/standard.sh runs them with
// FLASHCL_STANDARD_MMA=1, which makes a failed probe an error. On PoCL they run with
// FLASHCL_STANDARD_MMA=1 FLASHCL_STANDARD_CPU=0 and the emulated operand files of
// tests/emulated_mma/ (run.sh there): the kernels' own code, the tensor-core instructions replaced.
#include <CL/cl.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <string>

#include "support.hpp"

namespace flashcl::test {
namespace {


bool env_is(const char* name, const char* value) {
  const char* v = std::getenv(name);
  return v != nullptr && std::string(v) == value;
}


class StandardMma : public ::testing::Test {
 protected:
  void SetUp() override {
    // FLASHCL_STANDARD_MMA=1 runs them anywhere: on PoCL with FLASHCL_KERNEL_DIR holding the
    // emulated operand files (tests/emulated_mma/run.sh), which checks the kernels' indexing
    if (!tensor_core_device() && !env_is("FLASHCL_STANDARD_MMA", "1"))
      GTEST_SKIP() << "not an NVIDIA GPU of compute capability >= 8.0 (FLASHCL_STANDARD_MMA=1 runs them anyway)";
    if (env_is("FLASHCL_STANDARD_MMA", "0") || env_is("FLASHCL_MMA", "0"))
      GTEST_SKIP() << "FLASHCL_STANDARD_MMA=0 or FLASHCL_MMA=0: the portable standard runs";
  }
};

Case make(int nq, int nk, int d, bool causal, int b, int h, DType dtype, std::uint64_t seed) {
  Case c = make_case(nq, nk, d, causal, b, h);
  c.dtype = dtype;
  c.seed = seed;
  return c;
}

// Runs the case as algorithm=standard and checks it: the common bounds, and every row with no
// visible key exactly O = 0 and LSE = -inf.
void check(Case c) {
  if (c.shape.softcap > 0.0) c.amplitude = 3.0f;  // so the cap bites
  const std::string what = c.name() + " " + to_string(c.dtype);
  const CaseResult r = run_case(c, Algorithm::Standard);
  expect_accurate(r, what, c.dtype);
  const int d = c.shape.head_dim, H = c.shape.heads;
  const std::size_t rows = c.shape.total_q();
  for (std::size_t t = 0; t < rows; ++t)
    for (int h = 0; h < H; ++h) {
      const std::size_t at = c.shape.varlen() ? h * rows + t
                                              : (t / c.shape.seqlen_q * H + h) * c.shape.seqlen_q + t % c.shape.seqlen_q;
      if (!std::isinf(r.ref.lse[at])) continue;
      EXPECT_EQ(r.lse_values[at], -std::numeric_limits<float>::infinity()) << what << " row " << t << " head " << h;
      for (int i = 0; i < d; ++i) ASSERT_EQ(r.o[(t * H + h) * d + i], 0.0f) << what << " row " << t << " head " << h;
    }
}

TEST_F(StandardMma, ChosenByThePlanner) {
  for (DType dtype : {DType::F16, DType::BF16, DType::F32})
    for (int d : {64, 128}) {
      ForwardArgs a;
      a.batch = 1;
      a.heads = 2;
      a.seqlen_q = a.seqlen_k = 256;
      a.head_dim = d;
      a.dtype = dtype;
      a.algorithm = Algorithm::Standard;
      EXPECT_NE(tile_info(session().device(), a).reason.find("standard on tensor cores"), std::string::npos)
          << to_string(dtype) << " d" << d;
    }
}

TEST_F(StandardMma, HeadDimsTypesAndLengths) {
  std::uint64_t seed = 4100;
  for (DType dtype : {DType::F16, DType::BF16, DType::F32})
    for (int d : {64, 128})
      for (bool causal : {false, true}) check(make(200, 333, d, causal, 2, 3, dtype, ++seed));
  for (DType dtype : {DType::F16, DType::BF16, DType::F32}) {
    check(make(333, 129, 72, true, 1, 2, dtype, ++seed));   // padded to the mma's k; Nq > Nk: rows see nothing
    check(make(70, 150, 100, false, 2, 1, dtype, ++seed));  // padded; partial key blocks
    check(make(37, 150, 30, true, 1, 2, dtype, ++seed));    // element-wise copies (d = 30)
    check(make(1, 65, 64, false, 1, 1, dtype, ++seed));     // one row
    check(make(129, 1, 64, true, 1, 1, dtype, ++seed));     // one key, most rows see nothing
    check(make(100, 63, 64, false, 1, 2, dtype, ++seed));   // an odd key count: element-wise S/P accesses
  }
}

TEST_F(StandardMma, Layouts) {
  std::uint64_t seed = 4200;
  for (DType dtype : {DType::F16, DType::F32})
    for (Layout layout : {Layout::BHSD, Layout::PaddedRows}) {
      Case c = make(130, 97, 64, true, 2, 2, dtype, ++seed);
      c.layout = layout;
      check(c);
    }
}

// A boolean mask (about a quarter of the keys hidden) or a bias in [-2, 2) with a few -inf, one
// slice broadcast over batch and heads; row 1 hidden entirely.
Case masked(Case c, bench::MaskMode mode) {
  auto& s = c.shape;
  s.mask = mode;
  s.mask_batch = s.mask_heads = 1;
  const std::size_t n = static_cast<std::size_t>(s.seqlen_q) * s.seqlen_k;
  const auto r = bench::random_values(n, c.seed + 99);
  s.mask_values.resize(n);
  for (std::size_t i = 0; i < n; ++i)
    s.mask_values[i] = mode == bench::MaskMode::Bool ? (r[i] < -0.5f ? 0.0f : 1.0f)
                                                     : (r[i] < -0.95f ? -std::numeric_limits<float>::infinity() : 2.0f * r[i]);
  for (int j = 0; j < s.seqlen_k; ++j)
    s.mask_values[s.seqlen_k + j] = mode == bench::MaskMode::Bool ? 0.0f : -std::numeric_limits<float>::infinity();
  return c;
}

TEST_F(StandardMma, Variants) {
  std::uint64_t seed = 4300;
  for (DType dtype : {DType::F16, DType::BF16, DType::F32}) {
    Case gqa = make(130, 200, 64, true, 2, 6, dtype, ++seed);
    gqa.shape.heads_kv = 2;
    check(gqa);
    Case window = make(200, 150, 64, true, 1, 2, dtype, ++seed);
    window.shape.window_left = 40;
    check(window);
    Case two_sided = make(150, 200, 128, false, 1, 2, dtype, ++seed);
    two_sided.shape.window_left = 17;
    two_sided.shape.window_right = 9;
    check(two_sided);
    Case softcap = make(130, 97, 64, false, 1, 2, dtype, ++seed);
    softcap.shape.softcap = 5.0;
    check(softcap);
    Case alibi = make(97, 130, 64, true, 2, 2, dtype, ++seed);
    for (int h = 0; h < 2; ++h) alibi.shape.alibi_slopes.push_back(static_cast<float>(std::exp2(-4.0 * (h + 1))));
    check(alibi);
    check(masked(make(70, 130, 64, false, 2, 2, dtype, ++seed), bench::MaskMode::Bool));
    check(masked(make(130, 70, 64, false, 2, 2, dtype, ++seed), bench::MaskMode::Bias));
    check(varlen(make(1, 1, 64, false, 1, 2, dtype, ++seed), {37, 0, 150, 5, 1}, {50, 9, 130, 0, 66}));
    check(varlen(make(1, 1, 128, true, 1, 2, dtype, ++seed), {130, 3}, {20, 200}));
  }
}

}  // namespace
}  // namespace flashcl::test
