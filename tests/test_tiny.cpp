// test_tiny.cpp: every kernel on shapes small enough for oclgrind's simulator (which runs them with
// bounds, barrier-divergence, data-race and uninitialised-value checks; tests/CMakeLists.txt
// registers those runs under the label `oclgrind`). The same cases run on the default device in
// the ordinary suite. Coverage: each algorithm (standard, fa1, fa2), causal off and on, query and
// key lengths that do and do not divide the tiles (5, 8, 13, 16, 17; Nq < Nk, Nq > Nk), the
// planner's tiles and forced 8x8 / 4x8 tiles (standard: its GPU form, 8x8 blocks of 2 rows x 4
// columns per work-item), head dims that give one and several work-items per
// row team (d = 5 and d = 20), batch/heads > 1 and a strided layout whose gaps must stay
// untouched, LSE on, and each storage dtype (f32, f16, bf16).
#include <tuple>

#include "support.hpp"

namespace flashcl::test {
namespace {

struct Tiny {
  Algorithm algorithm;
  bool causal;
  int nq, nk, d;
  TileOverride tile;  // {0, 0}: the planner's
  int batch = 1, heads = 1;
  Layout layout = Layout::BSHD;
  DType dtype = DType::F32;
};

// Named, so GoogleTest does not print the struct's padding bytes.
void PrintTo(const Tiny& t, std::ostream* out) {
  *out << to_string(t.algorithm) << (t.causal ? " causal" : "") << " Nq=" << t.nq << " Nk=" << t.nk << " d=" << t.d
       << " tile=" << t.tile.block_rows << "x" << t.tile.block_cols << " B=" << t.batch << " H=" << t.heads << " "
       << to_string(t.dtype);
}

std::string tiny_name(const testing::TestParamInfo<Tiny>& info) {
  const Tiny& t = info.param;
  std::string name = std::string(to_string(t.algorithm)) + (t.causal ? "_causal" : "_full") + "_Nq" +
                     std::to_string(t.nq) + "_Nk" + std::to_string(t.nk) + "_d" + std::to_string(t.d);
  if (t.tile.block_rows != 0)
    name += "_tile" + std::to_string(t.tile.block_rows) + "x" + std::to_string(t.tile.block_cols);
  else
    name += "_planned";
  if (t.batch * t.heads > 1) name += "_B" + std::to_string(t.batch) + "H" + std::to_string(t.heads);
  if (t.layout == Layout::PaddedRows) name += "_padded";
  if (t.dtype != DType::F32) name += std::string("_") + to_string(t.dtype);
  return name;
}

std::vector<Tiny> tiny_cases() {
  // (Nq, Nk): 5 and 13/17 divide no tile; 8 and 16 divide 8x8 and 4x8 tiles.
  const std::pair<int, int> lengths[] = {{5, 5}, {13, 17}, {17, 13}, {8, 16}};
  std::vector<Tiny> cases;
  for (bool causal : {false, true}) {
    for (const auto& [nq, nk] : lengths) {
      const int d = nq == 13 || nq == 8 ? 20 : 5;
      cases.push_back({Algorithm::Standard, causal, nq, nk, d, {}});
      // standard's GPU form (A panels transposed, double-buffered panels) whatever the device
      cases.push_back({Algorithm::Standard, causal, nq, nk, d, TileOverride{8, 8, 4, 2}});
      for (Algorithm algorithm : {Algorithm::FA1, Algorithm::FA2})
        for (TileOverride tile : {TileOverride{}, TileOverride{8, 8}, TileOverride{4, 8}})
          cases.push_back({algorithm, causal, nq, nk, d, tile});
    }
    // Several (batch, head) work-groups and a strided layout with NaN gaps.
    for (Algorithm algorithm : {Algorithm::Standard, Algorithm::FA1, Algorithm::FA2})
      cases.push_back({algorithm, causal, 9, 6, 7, {}, 2, 2, Layout::PaddedRows});
    // 16-bit storage (fp32 arithmetic): the load/store paths of every kernel.
    for (DType dtype : {DType::F16, DType::BF16})
      for (Algorithm algorithm : {Algorithm::Standard, Algorithm::FA1, Algorithm::FA2})
        cases.push_back({algorithm, causal, 13, 17, 20, algorithm == Algorithm::Standard ? TileOverride{} : TileOverride{8, 8},
                         1, 2, Layout::PaddedRows, dtype});
    // ... and fa2 with the planner's tiles: on CPU devices (and under FLASHCL_FA2_CPU=1, the oclgrind
    // run) the CPU form's 16-wide conversions (kernels/cpu/cpu_io.cl), d = 20 taking a vector and a tail
    for (DType dtype : {DType::F16, DType::BF16})
      cases.push_back({Algorithm::FA2, causal, 13, 17, 20, {}, 1, 2, Layout::PaddedRows, dtype});
  }
  return cases;
}

class TinyKernels : public testing::TestWithParam<Tiny> {};

TEST_P(TinyKernels, MatchReference) {
  const Tiny& t = GetParam();
  Case c;
  c.shape.batch = t.batch;
  c.shape.heads = t.heads;
  c.shape.seqlen_q = t.nq;
  c.shape.seqlen_k = t.nk;
  c.shape.head_dim = t.d;
  c.shape.causal = t.causal;
  c.layout = t.layout;
  c.dtype = t.dtype;
  c.seed = static_cast<std::uint64_t>(t.nq * 31 + t.nk * 7 + t.d + (t.causal ? 1000 : 0));
  expect_accurate(run_case(c, t.algorithm, t.tile), tiny_name(testing::TestParamInfo<Tiny>(t, 0)), t.dtype);
}

INSTANTIATE_TEST_SUITE_P(Tiny, TinyKernels, testing::ValuesIn(tiny_cases()), tiny_name);

}  // namespace
}  // namespace flashcl::test
