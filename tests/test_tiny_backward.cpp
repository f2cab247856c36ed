// test_tiny_backward.cpp: every backward kernel on shapes small enough for oclgrind's simulator
// (tests/CMakeLists.txt runs them there with bounds, barrier-divergence, data-race and
// uninitialised-value checks, label `oclgrind`); the same cases run on the default device with the
// other checks. Per path (standard, fa1, fa2 atomic, fa2 deterministic): lengths that divide no
// tile with Nq != Nk, causal + GQA, a padded layout with NaN gaps, varlen with an empty sequence
// and a bias broadcast over heads with its gradient, fp16 storage (d = 6, and d = 20 in fp16 and
// bf16: a 16-wide vector and a tail in the CPU backward's conversions), and softcap + ALiBi + a
// boolean mask.
#include <tuple>

#include "backward_support.hpp"

namespace flashcl::test {
namespace {

struct TinyBackward {
  const char* name;
  Case c;
  bool d_bias = false;
};

std::vector<TinyBackward> tiny_backward_cases() {
  std::vector<TinyBackward> cases;
  Case plain = make_case(5, 7, 5, false, 1, 1);
  cases.push_back({"plain_Nq5_Nk7_d5", plain});
  Case causal = make_case(9, 6, 12, true, 1, 2);
  causal.shape.heads_kv = 1;
  cases.push_back({"causal_mqa_Nq9_Nk6_d12", causal});
  Case padded = make_case(6, 9, 7, false, 2, 2, Layout::PaddedRows);
  cases.push_back({"padded_B2H2", padded});
  Case varlen = make_case(5, 6, 4, false, 3, 2);
  varlen.shape.cu_seqlens_q = {0, 5, 5, 8};
  varlen.shape.cu_seqlens_k = {0, 4, 10, 12};
  varlen.shape.mask = bench::MaskMode::Bias;
  varlen.shape.mask_batch = 3;
  varlen.shape.mask_heads = 1;
  varlen.shape.mask_values = bench::random_values(3 * 1 * 5 * 6, 907);
  cases.push_back({"varlen_bias_grad", varlen, true});
  Case half = make_case(7, 5, 6, true, 1, 1);
  half.dtype = DType::F16;
  cases.push_back({"causal_f16", half});
  // d = 20: a 16-wide vector and a tail in the CPU backward's 16-bit staging and stores (cpu_io.cl)
  for (DType dtype : {DType::F16, DType::BF16}) {
    Case wide = make_case(9, 11, 20, true, 1, 2, Layout::PaddedRows);
    wide.dtype = dtype;
    cases.push_back({dtype == DType::F16 ? "causal_padded_d20_f16" : "causal_padded_d20_bf16", wide});
  }
  // softcap, ALiBi and a boolean mask with a fully hidden row, no bias gradient: the CPU backward's
  // vector rules (softmax_grad_row_vectors), whose mask lanes stop at the keys' end
  Case shifted = make_case(6, 7, 8, true, 1, 2);
  shifted.shape.softcap = 1.5;
  add_alibi(shifted.shape);
  add_bool_mask(shifted.shape, 1, 2, 3, 908);
  cases.push_back({"causal_softcap_alibi_bool", shifted});
  return cases;
}

class TinyBackwardKernels : public testing::TestWithParam<std::tuple<int, int>> {};

TEST_P(TinyBackwardKernels, MatchReference) {
  const Path& path = kBackwardPaths[std::get<0>(GetParam())];
  const TinyBackward t = tiny_backward_cases()[std::get<1>(GetParam())];
  expect_run_accurate(run_backward(t.c, path, t.d_bias), t.c.dtype, std::string(path.name) + " " + t.name);
}

INSTANTIATE_TEST_SUITE_P(Tiny, TinyBackwardKernels, testing::Combine(testing::Range(0, 4),
                                                          testing::Range(0, static_cast<int>(tiny_backward_cases().size()))),
                         [](const testing::TestParamInfo<std::tuple<int, int>>& info) {
                           return std::string(kBackwardPaths[std::get<0>(info.param)].name) + "_" +
                                  tiny_backward_cases()[std::get<1>(info.param)].name;
                         });

}  // namespace
}  // namespace flashcl::test
