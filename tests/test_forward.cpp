// test_forward.cpp: every algorithm against the float64 reference on fresh random inputs, outputs
// poisoned with NaN first. The default sweep is a representative cross product of the sequence
// lengths, head dims, batch/head counts, causal, scale and layouts the issue names; the full
// cross product runs under the `full` label (ctest -L full).
#include <tuple>

#include "support.hpp"

namespace flashcl::test {
namespace {

const int kHeadDims[] = {1, 8, 16, 32, 40, 59, 64, 80, 96, 111, 128, 160, 256};
const int kSeqLens[] = {1, 7, 63, 64, 65, 97, 128, 200, 257, 1000, 1025};
// (Nq, Nk) pairs, equal and unequal both ways
const std::pair<int, int> kSeqPairs[] = {{1, 1},    {7, 7},     {63, 63},  {64, 64},  {65, 65},   {97, 97},
                                         {128, 128}, {200, 200}, {257, 257}, {1000, 1000}, {1025, 1025}, {7, 200},
                                         {200, 7},   {1, 1025},  {1025, 97}, {65, 257}, {257, 63},   {128, 1000}};

// Each head dim meets two (Nq, Nk) pairs, causal on and off, cycling batch/heads and layouts; long
// sequences get a single (batch, head) to keep the float64 reference cheap.
std::vector<Case> default_cases() {
  std::vector<Case> cases;
  const int n_pairs = sizeof kSeqPairs / sizeof kSeqPairs[0];
  int i = 0;
  for (int d : kHeadDims)
    for (bool causal : {false, true}) {
      const auto [nq, nk] = kSeqPairs[i % n_pairs];
      const bool long_seq = nq > 300 || nk > 300;
      const int b = long_seq ? 1 : 1 + i % 2, h = long_seq ? 1 : (i / 2) % 2 ? 3 : 1;
      cases.push_back(make_case(nq, nk, d, causal, b, h));
      ++i;
    }
  cases.push_back(make_case(128, 128, 64, false, 2, 3, Layout::BSHD, 0.37));
  cases.push_back(make_case(97, 200, 40, true, 2, 3, Layout::BHSD));
  cases.push_back(make_case(65, 63, 59, false, 2, 3, Layout::PaddedRows, 1.3));
  cases.push_back(make_case(200, 97, 128, true, 1, 3, Layout::PaddedRows));
  cases.push_back(make_case(1025, 1025, 64, true, 1, 2, Layout::BHSD));
  cases.push_back(make_case(1000, 1000, 128, false, 1, 1));
  return cases;
}

std::vector<Case> full_cases() {
  std::vector<Case> cases;
  for (int n : kSeqLens)
    for (int d : kHeadDims)
      for (bool causal : {false, true}) cases.push_back(make_case(n, n, d, causal, 1, 1));
  for (const auto& [nq, nk] : kSeqPairs)
    if (nq != nk)
      for (int d : {8, 64, 128, 256})
        for (bool causal : {false, true}) cases.push_back(make_case(nq, nk, d, causal, 2, 3));
  return cases;
}

using Param = std::tuple<Case, Algorithm>;

std::string param_name(const testing::TestParamInfo<Param>& info) {
  return std::string(to_string(std::get<1>(info.param))) + "_" + std::get<0>(info.param).name();
}

class Forward : public testing::TestWithParam<Param> {};
class FullSweep : public testing::TestWithParam<Param> {};

TEST_P(Forward, MatchesFloat64Reference) {
  const auto& [c, algorithm] = GetParam();
  expect_accurate(run_case(c, algorithm), c.name());
}

TEST_P(FullSweep, MatchesFloat64Reference) {
  const auto& [c, algorithm] = GetParam();
  expect_accurate(run_case(c, algorithm), c.name());
}

const auto kAlgorithms = testing::Values(Algorithm::Standard, Algorithm::FA1, Algorithm::FA2);
INSTANTIATE_TEST_SUITE_P(Sweep, Forward, testing::Combine(testing::ValuesIn(default_cases()), kAlgorithms),
                         param_name);
INSTANTIATE_TEST_SUITE_P(Sweep, FullSweep, testing::Combine(testing::ValuesIn(full_cases()), kAlgorithms),
                         param_name);

// Tile shapes that do and do not divide the sequence lengths, forced through the override.
TEST(ForwardTiles, OverriddenTilesStayExact) {
  const Case c = make_case(97, 65, 40, true, 1, 2);
  for (auto algorithm : {Algorithm::FA1, Algorithm::FA2})
    for (TileOverride t : {TileOverride{16, 16}, TileOverride{8, 32}, TileOverride{32, 8}, TileOverride{4, 8}})
      expect_accurate(run_case(c, algorithm, t),
                      std::string(to_string(algorithm)) + " tile " + std::to_string(t.block_rows) + "x" +
                          std::to_string(t.block_cols));
}

// The team shapes GPUs get (several work-items per row group, P through local memory, vector
// reads), forced on whatever device runs the tests: PoCL's own plan keeps one row per work-item.
TEST(ForwardTiles, GpuTeamShapesStayExact) {
  struct Forced {
    int nq, nk, d;
    bool causal;
    TileOverride tile;
  };
  const Forced cases[] = {
      {97, 65, 40, true, {32, 32, 8, 4}},   {130, 200, 64, false, {64, 32, 8, 4}}, {65, 63, 128, true, {16, 16, 16, 4}},
      {33, 47, 111, false, {16, 32, 16, 4}}, {70, 70, 8, true, {64, 64, 4, 4}},    {20, 9, 1, false, {8, 16, 2, 2}},
      {45, 100, 256, true, {4, 16, 16, 4}}, {100, 10, 59, true, {32, 16, 8, 4}},  {64, 64, 32, false, {32, 64, 4, 2}}};
  for (const auto& f : cases)
    for (auto algorithm : {Algorithm::FA1, Algorithm::FA2}) {
      Case c = make_case(f.nq, f.nk, f.d, f.causal, 2, 3);
      expect_accurate(run_case(c, algorithm, f.tile),
                      std::string(to_string(algorithm)) + " " + c.name() + " tile " + std::to_string(f.tile.block_rows) +
                          "x" + std::to_string(f.tile.block_cols) + "x" + std::to_string(f.tile.team_size) + "x" +
                          std::to_string(f.tile.rows_per_team));
    }
}

// fp16 and bf16 storage (fp32 arithmetic): every path, odd sizes, causal, strided layouts.
class LowPrecision : public testing::TestWithParam<std::tuple<DType, Algorithm>> {};

TEST_P(LowPrecision, WithinTwiceTheStorageRoundingOfTheReference) {
  const auto [dtype, algorithm] = GetParam();
  for (Case c : {make_case(97, 200, 40, true, 2, 3, Layout::BHSD), make_case(130, 64, 64, false, 1, 2),
                 make_case(65, 65, 128, true, 1, 1, Layout::PaddedRows), make_case(33, 17, 256, false, 1, 1)}) {
    c.dtype = dtype;
    expect_accurate(run_case(c, algorithm), c.name() + " " + to_string(algorithm), dtype);
  }
}

INSTANTIATE_TEST_SUITE_P(Storage, LowPrecision, testing::Combine(testing::Values(DType::F16, DType::BF16), kAlgorithms),
                         [](const testing::TestParamInfo<std::tuple<DType, Algorithm>>& info) {
                           return std::string(to_string(std::get<0>(info.param))) + "_" +
                                  to_string(std::get<1>(info.param));
                         });

// auto resolves to a concrete path and computes the same result.
TEST(ForwardAuto, AutoIsExact) { expect_accurate(run_case(make_case(130, 70, 64, true, 1, 2), Algorithm::Auto), "auto"); }

// Rows above the causal diagonal when Nq > Nk see no key at all: O = 0 and LSE = -inf.
TEST(ForwardCausal, RowsWithNoVisibleKeyAreZero) {
  const Case c = make_case(100, 10, 16, true, 1, 1);
  for (auto algorithm : {Algorithm::Standard, Algorithm::FA1, Algorithm::FA2}) {
    const auto r = run_case(c, algorithm);
    expect_accurate(r, to_string(algorithm));
    for (int i = 0; i < 90; ++i) {
      EXPECT_EQ(r.lse_values[i], -std::numeric_limits<float>::infinity()) << to_string(algorithm) << " row " << i;
      for (int j = 0; j < 16; ++j) EXPECT_EQ(r.o[i * 16 + j], 0.0f) << to_string(algorithm) << " row " << i;
    }
  }
}

// The same call twice gives bit-identical output (no races, no order-dependent reductions).
TEST(ForwardDeterminism, RepeatedRunsAreBitIdentical) {
  const Case c = make_case(257, 200, 64, true, 2, 3);
  for (auto algorithm : {Algorithm::Standard, Algorithm::FA1, Algorithm::FA2}) {
    const auto a = run_case(c, algorithm), b = run_case(c, algorithm);
    EXPECT_EQ(a.o, b.o) << to_string(algorithm);
    EXPECT_EQ(a.lse_values, b.lse_values) << to_string(algorithm);
  }
}

}  // namespace
}  // namespace flashcl::test
