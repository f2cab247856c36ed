// test_standard_cpu.cpp: the CPU-shaped standard (kernels/cpu/standard_cpu.cl) on the test device,
// against the float64 reference with outputs poisoned with NaN (run_case). On a CPU device the
// planner gives it every standard call without a forced tile, so the Forward, Variants,
// LowPrecision, Stress and Tiny suites run it too (forced tiles keep running the portable GEMM
// form, test_standard_gemm.cpp); here: that it is the form chosen, query and key lengths around
// its panels (64 rows, 64-key blocks), head dims that take each padding and register-block split,
// causal shapes with more keys than rows and the reverse (the visited block ranges), and that
// hidden keys holding NaN (blocks never visited, masked keys inside a visited block) never reach O.
#include <cstdlib>
#include <limits>
#include <tuple>

#include "support.hpp"

namespace flashcl::test {
namespace {

bool cpu_form_runs() {
  ForwardArgs a;
  a.batch = a.heads = 1;
  a.seqlen_q = a.seqlen_k = 128;
  a.head_dim = 64;
  a.algorithm = Algorithm::Standard;
  return tile_info(session().device(), a).reason.find("standard CPU form") != std::string::npos;
}

TEST(StandardCpu, ChosenOnCpuDevices) {
  cl_device_type type = 0;
  check(clGetDeviceInfo(session().device(), CL_DEVICE_TYPE, sizeof type, &type, nullptr), "clGetDeviceInfo");
  if (!(type & CL_DEVICE_TYPE_CPU) || std::getenv("FLASHCL_STANDARD_CPU") != nullptr)
    GTEST_SKIP() << "not a CPU device, or FLASHCL_STANDARD_CPU set";
  EXPECT_TRUE(cpu_form_runs());
  ForwardArgs tiled;
  tiled.batch = tiled.heads = 1;
  tiled.seqlen_q = tiled.seqlen_k = 128;
  tiled.head_dim = 64;
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

TEST(StandardCpu, HiddenKeysHoldingNaNNeverReachO) {
  const int nq = 16, nk = 256, d = 32, left = 8;
  auto q = bench::random_values(static_cast<std::size_t>(nq) * d, 70);
  auto k = bench::random_values(static_cast<std::size_t>(nk) * d, 71);
  auto v = bench::random_values(static_cast<std::size_t>(nk) * d, 72);
  bench::Shape s;
  s.seqlen_q = nq;
  s.seqlen_k = nk;
  s.head_dim = d;
  s.causal = true;
  s.window_left = left;
  const auto ref = bench::reference_attention(s, q, k, v);
  // row 0 sees keys >= nk - nq - left: every key before that is hidden from every row, in blocks
  // never visited (0..191) and inside the visited block 192..255 (192..231)
  for (int j = 0; j < (nk - nq - left) * d; ++j) k[j] = v[j] = std::numeric_limits<float>::quiet_NaN();
  DeviceTensor dq(Layout::BSHD, 1, nq, 1, d, &q), dk(Layout::BSHD, 1, nk, 1, d, &k), dv(Layout::BSHD, 1, nk, 1, d, &v);
  DeviceTensor dout(Layout::BSHD, 1, nq, 1, d, nullptr);
  ForwardArgs a;
  a.batch = a.heads = 1;
  a.seqlen_q = nq;
  a.seqlen_k = nk;
  a.head_dim = d;
  a.causal = true;
  a.window = {left, -1};
  a.algorithm = Algorithm::Standard;
  a.q = dq.view;
  a.k = dk.view;
  a.v = dv.view;
  a.o = dout.view;
  forward(session().queue(), a).wait();
  const auto err = bench::compare(dout.logical(), ref.out);
  EXPECT_EQ(err.non_finite, 0u) << "a hidden key's NaN reached O";
  EXPECT_LE(err.rel_norm, 1e-5);
}

}  // namespace
}  // namespace flashcl::test
