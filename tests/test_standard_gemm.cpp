// test_standard_gemm.cpp: the standard path's register-blocked GEMMs (kernels/forward/gemm.cl) and its
// vectorised softmax on shapes that divide none of their blocks, vectors or panels: lengths 1, 5,
// 17, 63, 65 and head dims 1, 5, 40, 256, equal and unequal lengths, causal on and off, against
// float64 with NaN-poisoned outputs. Both the form the planner picks for the test device (on PoCL:
// A panels as rows, float16 columns, one work-item per softmax row) and the GPU forms (A panels
// transposed, 4x4 per work-item, 128 work-items per softmax row), forced through the tile
// override, so the GPU's products are checked wherever the tests run.
#include "support.hpp"

namespace flashcl::test {
namespace {

const int kLengths[] = {1, 5, 17, 63, 65};
const int kHeadDims[] = {1, 5, 40, 256};

std::string tile_name(const TileOverride& t) {
  return std::to_string(t.block_rows) + "x" + std::to_string(t.block_cols) + "x" + std::to_string(t.team_size) + "x" +
         std::to_string(t.rows_per_team);
}

TEST(StandardGemm, PlannedFormOnOddShapes) {
  int i = 0;
  for (int n : kLengths)
    for (int d : kHeadDims) {
      const int nk = kLengths[(i + 2) % 5];  // unequal lengths both ways, and equal ones below
      const Case c = make_case(n, i % 3 == 0 ? n : nk, d, i % 2 == 1, 1 + i % 2, 2);
      expect_accurate(run_case(c, Algorithm::Standard), "planned " + c.name());
      ++i;
    }
}

TEST(StandardGemm, GpuFormsOnOddShapes) {
  struct Forced {
    int nq, nk, d;
    bool causal;
    TileOverride tile;
  };
  const Forced cases[] = {{65, 63, 40, true, {64, 64, 4, 4}},   {17, 65, 5, false, {64, 64, 4, 4}},
                          {63, 17, 256, false, {32, 64, 4, 4}}, {5, 5, 1, true, {32, 32, 4, 4}},
                          {65, 65, 40, false, {16, 8, 2, 2}},   {1, 63, 40, true, {8, 16, 16, 8}},
                          {17, 17, 5, false, {4, 4, 1, 1}},     {63, 65, 256, true, {16, 32, 8, 2}}};
  std::size_t max_work_group = 0;
  check(clGetDeviceInfo(session().device(), CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof(max_work_group), &max_work_group,
                        nullptr),
        "clGetDeviceInfo(CL_DEVICE_MAX_WORK_GROUP_SIZE)");
  int ran = 0;
  for (const Forced& f : cases) {
    // a block of (rows / rows_per_team) x (cols / team_size) work-items, which the planner rightly
    // refuses on a device whose work-groups are smaller (checked in the planner tests)
    const std::size_t work_items = static_cast<std::size_t>(f.tile.block_rows / f.tile.rows_per_team) *
                                   static_cast<std::size_t>(f.tile.block_cols / f.tile.team_size);
    if (work_items > max_work_group) continue;
    ++ran;
    const Case c = make_case(f.nq, f.nk, f.d, f.causal, 2, 3);
    expect_accurate(run_case(c, Algorithm::Standard, f.tile), "tile " + tile_name(f.tile) + " " + c.name());
  }
  if (ran == 0) GTEST_SKIP() << "the device runs work-groups of " << max_work_group << " work-items: no forced form fits";
}

TEST(StandardGemm, LowPrecisionOnOddShapes) {
  for (DType dtype : {DType::F16, DType::BF16})
    for (Case c : {make_case(17, 63, 40, true, 2, 3, Layout::BHSD), make_case(65, 5, 5, false, 1, 2)}) {
      c.dtype = dtype;
      expect_accurate(run_case(c, Algorithm::Standard), c.name() + " " + to_string(dtype), dtype);
      expect_accurate(run_case(c, Algorithm::Standard, {64, 64, 4, 4}), c.name() + " " + to_string(dtype) + " gpu",
                      dtype);
    }
}

}  // namespace
}  // namespace flashcl::test
