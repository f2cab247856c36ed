// test_plan_standard_cpu.cpp: the CPU-shaped standard's planner (src/plan/plan_standard_cpu.cpp) as
// a pure function: which calls it takes (CPU devices, FLASHCL_STANDARD_CPU, forced tiles, dtypes),
// and for every head dim on AVX-512-, AVX2- and GPU-like devices (the oclgrind checks force it
// there) a shape standard_cpu.cl compiles (its #error conditions) within local memory, and the
// workspace its panel layout needs.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "plan/plan_standard_cpu.hpp"
#include "plan_cpu_support.hpp"
#include "simulated_devices.hpp"

namespace flashcl::detail {
namespace {

DeviceFacts cpu(int float_width) { return simulated_pocl_cpu(float_width); }

Overrides with_standard_cpu(const char* value) {
  Overrides o;
  o.standard_cpu = value;
  return o;
}

ForwardArgs call(Algorithm algorithm = Algorithm::Standard, DType dtype = DType::F32) {
  return simulated_call(algorithm, dtype);
}

TEST(PlanStandardCpu, TakesStandardCallsOnCpusOnly) {
  const Overrides none;
  EXPECT_TRUE(standard_cpu_takes(cpu(16), call(), none));
  EXPECT_TRUE(standard_cpu_takes(cpu(8), call(Algorithm::Standard, DType::F16), none));
  EXPECT_TRUE(standard_cpu_takes(cpu(16), call(Algorithm::Standard, DType::BF16), none));
  EXPECT_FALSE(standard_cpu_takes(simulated_nvidia_gpu(48), call(), none));  // GPUs keep the GEMM form
  EXPECT_FALSE(standard_cpu_takes(cpu(16), call(Algorithm::FA2), none));
  EXPECT_FALSE(standard_cpu_takes(cpu(16), call(Algorithm::FA1), none));
  ForwardArgs tiled = call();
  tiled.tile = {64, 64, 0, 0};  // a forced tile is the portable GEMM's
  EXPECT_FALSE(standard_cpu_takes(cpu(16), tiled, none));
}

TEST(PlanStandardCpu, Override) {
  EXPECT_FALSE(standard_cpu_takes(cpu(16), call(), with_standard_cpu("0")));
  EXPECT_TRUE(standard_cpu_takes(simulated_nvidia_gpu(48), call(), with_standard_cpu("1")));
  EXPECT_TRUE(standard_cpu_takes(cpu(16), call(), with_standard_cpu("")));
  EXPECT_EQ(read_overrides([](const char* n) { return std::string(n) == "FLASHCL_STANDARD_CPU" ? "0" : nullptr; })
                .standard_cpu,
            "0");
}

// standard_cpu.cl's conditions, mirrored: BR % min(BR, VW), BR % SR, BR % RM, BC % 4, D_PAD % VW,
// (D_PAD / VW) % CG; register blocks within the vector registers; tiles within local memory.
void expect_compilable(const DeviceFacts& dev, int d) {
  SCOPED_TRACE(dev.name + " d=" + std::to_string(d));
  const StandardCpuPlan p = plan_standard_cpu(dev, d);
  const TilePlan& t = p.tiles;
  const int vw = p.vector_width, rm = t.rows_per_team, cg = p.column_vectors;
  ASSERT_TRUE(vw == 4 || vw == 8 || vw == 16);
  const int rw = std::min(t.block_rows, vw), sg = std::min(t.block_rows / rw, rm), kj = 4;
  EXPECT_TRUE(rw == 1 || rw == 2 || rw == 4 || rw == 8 || rw == 16);  // a vector type
  EXPECT_EQ(t.block_rows % rw, 0);
  EXPECT_EQ(t.block_rows % (sg * rw), 0);
  EXPECT_EQ(t.block_rows % rm, 0);
  EXPECT_EQ(t.block_cols % kj, 0);
  EXPECT_EQ(t.padded_head_dim % vw, 0);
  EXPECT_GE(t.padded_head_dim, d);
  EXPECT_EQ((t.padded_head_dim / vw) % cg, 0);
  const int registers = vw >= 16 ? 32 : 16;
  EXPECT_LE(rm * cg + cg + 1, registers);  // P.V: accumulators, V vectors, the broadcast p
  EXPECT_LE(kj * sg + sg + 1, registers);  // K.Q^T: scores, Q^T vectors, the broadcast k
  EXPECT_EQ(t.work_group_size, 1u);
  EXPECT_EQ(t.local_bytes, standard_cpu_local_bytes(t.block_rows, t.block_cols, t.padded_head_dim));
  EXPECT_LE(t.local_bytes, dev.local_mem_bytes);
  EXPECT_NE(t.reason.find("standard CPU form"), std::string::npos);
}

TEST(PlanStandardCpu, EveryHeadDimCompilesAndFits) {
  DeviceFacts oclgrind_like = simulated_nvidia_gpu(48);
  oclgrind_like.name = "48 KiB GPU-like";
  for (const DeviceFacts& dev : {cpu(16), cpu(8), cpu(4), cpu(1), oclgrind_like})
    for (int d = 1; d <= 256; ++d) expect_compilable(dev, d);
}

TEST(PlanStandardCpu, MeasuredShapesOnAvx512) {
  const StandardCpuPlan d64 = plan_standard_cpu(cpu(16), 64);
  EXPECT_EQ(d64.vector_width, 16);
  EXPECT_EQ(d64.tiles.block_rows, 64);
  EXPECT_EQ(d64.tiles.block_cols, 64);
  EXPECT_EQ(d64.tiles.rows_per_team, 4);
  EXPECT_EQ(d64.column_vectors, 4);
  EXPECT_EQ(plan_standard_cpu(cpu(16), 128).tiles.padded_head_dim, 128);
}

// B*H*ceil(Nq/BR) panels of BR rows x the keys rounded up to BC, plus BR maxima each.
TEST(PlanStandardCpu, WorkspaceIsThePanels) {
  const StandardCpuPlan p = plan_standard_cpu(cpu(16), 64);
  ForwardArgs a = call();
  a.batch = 2;
  a.heads = 3;
  a.seqlen_q = 65;  // two row blocks of 64
  a.seqlen_k = 70;  // two key blocks of 64: 128 keys a panel
  EXPECT_EQ(standard_cpu_workspace_bytes(a, p.tiles), std::size_t{2} * 3 * 2 * 64 * (128 + 1) * 4);
  a.seqlen_q = a.seqlen_k = 1 << 30;  // saturates instead of wrapping
  a.batch = a.heads = 1 << 20;
  EXPECT_EQ(standard_cpu_workspace_bytes(a, p.tiles), SIZE_MAX);
}

TEST(PlanStandardCpu, RejectsHeadDimOutOfRange) {
  expect_head_dim_out_of_range_rejected([](const DeviceFacts& f, int d) { return plan_standard_cpu(f, d); });
}

TEST(PlanStandardCpu, NothingFitsIsNamed) {
  expect_nothing_fits_named([](const DeviceFacts& f, int d) { return plan_standard_cpu(f, d); });
}

}  // namespace
}  // namespace flashcl::detail
