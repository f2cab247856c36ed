// test_standard_cpu.cpp: the CPU-shaped standard (kernels/cpu/standard_cpu.cl) on the test device,
// against the float64 reference with outputs poisoned with NaN (run_case). On a CPU device the
// planner gives it every standard call without a forced tile, so the Forward, Variants,
// LowPrecision, Stress and Tiny suites run it too (forced tiles keep running the portable GEMM
// form, test_standard_gemm.cpp); here: that it is the form chosen, query and key lengths around
// its panels (64 rows, 64-key blocks), head dims that take each padding and register-block split,
// causal shapes with more keys than rows and the reverse (the visited block ranges), and that
// hidden keys holding NaN (blocks never visited, masked keys inside a visited block) never reach O.
#include <cstdlib>
#include <tuple>

#include "cpu_test_support.hpp"

namespace flashcl::test {
namespace {

bool cpu_form_runs() {
  ForwardArgs a = cpu_form_call();
  a.algorithm = Algorithm::Standard;
  return tile_info(session().device(), a).reason.find("standard CPU form") != std::string::npos;
}

TEST(StandardCpu, ChosenOnCpuDevices) {
  if (!test_device_is_cpu() || std::getenv("FLASHCL_STANDARD_CPU") != nullptr)
    GTEST_SKIP() << "not a CPU device, or FLASHCL_STANDARD_CPU set";
  EXPECT_TRUE(cpu_form_runs());
  ForwardArgs tiled = cpu_form_call();
  tiled.algorithm = Algorithm::Standard;
  tiled.tile = {64, 64};  // a forced tile stays the portable GEMM's
  EXPECT_EQ(tile_info(session().device(), tiled).reason.find("standard CPU form"), std::string::npos);
}

using Param = std::tuple<int, int, int, bool>;  // Nq, Nk, d, causal

class StandardCpuShapes : public testing::TestWithParam<Param> {};

TEST_P(StandardCpuShapes, MatchesFloat64Reference) {
  const auto [nq, nk, d, causal] = GetParam();
  const Case c = make_case(nq, nk, d, causal, 1, 2);
  expect_accurate(run_case(c, Algorithm::Standard), c.name());
}

// Lengths: one row, a register block's edge (3, 5), a panel's (63, 64, 65), two panels and a bit;
// causal with Nq > Nk leaves the first rows seeing nothing (fully masked rows, O = 0).
INSTANTIATE_TEST_SUITE_P(Lengths, StandardCpuShapes,
                         testing::Combine(testing::Values(1, 5, 63, 65, 130), testing::Values(3, 64, 129),
                                          testing::Values(64), testing::Bool()));
INSTANTIATE_TEST_SUITE_P(HeadDims, StandardCpuShapes,
                         testing::Combine(testing::Values(67), testing::Values(70),
                                          testing::Values(1, 17, 40, 80, 96, 112, 200, 256), testing::Bool()));
INSTANTIATE_TEST_SUITE_P(Long, StandardCpuShapes,
                         testing::Combine(testing::Values(300), testing::Values(300, 520), testing::Values(64, 128),
                                          testing::Values(true)));

TEST(StandardCpu, HiddenKeysHoldingNaNNeverReachO) { expect_hidden_nan_keys_never_reach_o(Algorithm::Standard, 70); }

}  // namespace
}  // namespace flashcl::test
