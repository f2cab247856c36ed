// test_fa2_cpu.cpp: the CPU-shaped fa2 (kernels/cpu/fa2_cpu.cl) on the test device, against the
// float64 reference with outputs poisoned with NaN (run_case). On a CPU device the planner gives
// it every plain fa2 call, so the Forward, Variants and LowPrecision suites run it too (and run the
// team kernel again under FLASHCL_FA2_CPU=0, tests/CMakeLists.txt); here: that it is the form
// chosen, query and key lengths around its tiles (64 rows, 64 keys), head dims that take each
// padding and register-block split (1, 17, 40, 80 = 5 vectors, 96 = 2 x 3, 112 padded to 128,
// 200, 256), that hidden keys holding NaN (blocks outside a window, and masked keys inside a
// visited block) never reach O, and that 16-bit storage converts exactly: kernels/cpu/cpu_io.cl
// converts by vectors (vcvtph2ps / vcvtps2ph on x86 hosts), and O must be bit-identical to the
// host's round-to-nearest-even of values the kernel computes exactly.
#include <cmath>
#include <limits>
#include <tuple>

#include "cpu_test_support.hpp"

namespace flashcl::test {
namespace {

bool cpu_form_runs() {
  return tile_info(session().device(), cpu_form_call()).reason.find("CPU form") != std::string::npos;
}

TEST(Fa2Cpu, ChosenOnCpuDevices) {
  if (!test_device_is_cpu() || std::getenv("FLASHCL_FA2_CPU") != nullptr)
    GTEST_SKIP() << "not a CPU device, or FLASHCL_FA2_CPU set";
  EXPECT_TRUE(cpu_form_runs());
  ForwardArgs tiled = cpu_form_call();
  tiled.tile = {64, 32};  // a forced tile stays the team kernel's
  EXPECT_EQ(tile_info(session().device(), tiled).reason, "override");
}

using Param = std::tuple<int, int, int, bool>;  // Nq, Nk, d, causal

class Fa2CpuShapes : public testing::TestWithParam<Param> {};

TEST_P(Fa2CpuShapes, MatchesFloat64Reference) {
  const auto [nq, nk, d, causal] = GetParam();
  const Case c = make_case(nq, nk, d, causal, 1, 2);
  expect_accurate(run_case(c, Algorithm::FA2), c.name());
}

// Lengths: one row, a register block's edge (3, 5), a tile's (63, 64, 65), two tiles and a bit.
INSTANTIATE_TEST_SUITE_P(Lengths, Fa2CpuShapes,
                         testing::Combine(testing::Values(1, 5, 63, 65, 130), testing::Values(3, 64, 129),
                                          testing::Values(64), testing::Bool()));
INSTANTIATE_TEST_SUITE_P(HeadDims, Fa2CpuShapes,
                         testing::Combine(testing::Values(67), testing::Values(70),
                                          testing::Values(1, 17, 40, 80, 96, 112, 200, 256), testing::Bool()));

TEST(Fa2Cpu, HiddenKeysHoldingNaNNeverReachO) { expect_hidden_nan_keys_never_reach_o(Algorithm::FA2, 60); }

// O = V with one key (p = 1, l = 1), and O = (v0 + v1) / 2 with two keys and Q = 0 (p = 1 for both:
// the fp32 sum and halving are exact), where v1 is v0's next 16-bit magnitude, so every O element is a
// tie that only round-to-nearest-even settles. d = 40: two 16-wide vectors and a scalar tail.
// Values: random ones, 16-bit subnormals (fp16), the largest finite value and the infinities.
class Fa2Cpu16Bit : public testing::TestWithParam<DType> {};

TEST_P(Fa2Cpu16Bit, ConvertsExactlyAndRoundsToNearestEven) {
  const DType dtype = GetParam();
  const int nq = 20, heads = 8, d = 40, n = heads * d;
  const auto stored = [&](const std::vector<float>& x) { return from_storage(dtype, to_storage(dtype, x)); };
  std::vector<float> v0 = bench::random_values(n, 70);
  for (float& x : v0) x *= 4.0f;
  v0 = stored(v0);
  v0[1] = std::numeric_limits<float>::infinity();
  v0[2] = -std::numeric_limits<float>::infinity();
  v0[3] = dtype == DType::F16 ? 65504.0f : from_storage(dtype, {0x7f7f})[0];  // the largest finite value
  if (dtype == DType::F16)
    for (int i = 4; i < 12; ++i) v0[i] = std::ldexp(static_cast<float>(i - 7), -24);  // -3..4 x 2^-24: subnormals and 0
  std::vector<std::uint16_t> up_bits = to_storage(dtype, v0);
  for (std::uint16_t& b : up_bits) b = static_cast<std::uint16_t>(b + 1);  // the next magnitude up, either sign
  std::vector<float> v1 = from_storage(dtype, up_bits);
  for (int i = 1; i < 4; ++i) v1[i] = v0[i];  // infinities and the largest value: no step past them

  for (int keys : {1, 2}) {
    std::vector<float> q(static_cast<std::size_t>(nq) * n, 0.0f), v(static_cast<std::size_t>(keys) * n);
    std::copy(v0.begin(), v0.end(), v.begin());
    if (keys == 2) std::copy(v1.begin(), v1.end(), v.begin() + n);
    const std::vector<float> k(v.size(), 0.5f);
    DeviceTensor dq(Layout::BSHD, 1, nq, heads, d, &q, dtype), dk(Layout::BSHD, 1, keys, heads, d, &k, dtype),
        dv(Layout::BSHD, 1, keys, heads, d, &v, dtype);
    DeviceTensor dout(Layout::BSHD, 1, nq, heads, d, nullptr, dtype);
    ForwardArgs a;
    a.batch = 1;
    a.heads = heads;
    a.seqlen_q = nq;
    a.seqlen_k = keys;
    a.head_dim = d;
    a.dtype = dtype;
    a.algorithm = Algorithm::FA2;
    a.q = dq.view;
    a.k = dk.view;
    a.v = dv.view;
    a.o = dout.view;
    forward(session().queue(), a).wait();
    std::vector<float> mean(n);
    for (int i = 0; i < n; ++i) mean[i] = keys == 1 ? v0[i] : (v0[i] + v1[i]) * 0.5f;
    const std::vector<float> want = stored(mean), got = dout.logical();
    for (int r = 0; r < nq; ++r)
      for (int i = 0; i < n; ++i) {
        const float g = got[static_cast<std::size_t>(r) * n + i];
        ASSERT_TRUE(g == want[i] && std::signbit(g) == std::signbit(want[i]))
            << to_string(dtype) << " keys " << keys << " row " << r << " element " << i << ": got " << g << ", want "
            << want[i] << " (v0 " << v0[i] << ", v1 " << v1[i] << ")";
      }
  }
}

INSTANTIATE_TEST_SUITE_P(Storage, Fa2Cpu16Bit, testing::Values(DType::F16, DType::BF16),
                         [](const testing::TestParamInfo<DType>& info) { return std::string(to_string(info.param)); });

}  // namespace
}  // namespace flashcl::test
