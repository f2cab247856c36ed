// test_plan_fa2_cpu.cpp: the CPU-shaped fa2's planner (src/plan/plan_fa2_cpu.cpp) as a pure function:
// which calls it takes (CPU devices, FLASHCL_FA2_CPU, forced tiles, dtypes), and for every head
// dim on AVX-512-, AVX2- and GPU-like devices (the oclgrind checks force it there) a shape
// fa2_cpu.cl compiles (its #error conditions), registers that fit, and tiles within local memory.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include "plan/plan_fa2_cpu.hpp"
#include "plan_cpu_support.hpp"
#include "simulated_devices.hpp"

namespace flashcl::detail {
namespace {

DeviceFacts cpu(int float_width) { return simulated_pocl_cpu(float_width); }

Overrides with_fa2_cpu(const char* value) {
  Overrides o;
  o.fa2_cpu = value;
  return o;
}

ForwardArgs call(Algorithm algorithm = Algorithm::FA2, DType dtype = DType::F32) {
  return simulated_call(algorithm, dtype);
}

TEST(PlanFa2Cpu, TakesPlainFa2CallsOnCpusOnly) {
  const Overrides none;
  EXPECT_TRUE(fa2_cpu_takes(cpu(16), call(), none));
  EXPECT_TRUE(fa2_cpu_takes(cpu(16), call(Algorithm::Auto), none));
  EXPECT_TRUE(fa2_cpu_takes(cpu(16), call(Algorithm::FA2, DType::F16), none));
  EXPECT_TRUE(fa2_cpu_takes(cpu(16), call(Algorithm::FA2, DType::BF16), none));
  EXPECT_FALSE(fa2_cpu_takes(simulated_nvidia_gpu(48), call(), none));  // GPUs keep their kernels
  EXPECT_FALSE(fa2_cpu_takes(cpu(16), call(Algorithm::FA1), none));
  EXPECT_FALSE(fa2_cpu_takes(cpu(16), call(Algorithm::Standard), none));
  ForwardArgs tiled = call();
  tiled.tile = {64, 32, 0, 0};  // a forced tile is the team kernel's
  EXPECT_FALSE(fa2_cpu_takes(cpu(16), tiled, none));
  Overrides env_tile;
  env_tile.tile = "64x32";
  EXPECT_FALSE(fa2_cpu_takes(cpu(16), call(), env_tile));
}

TEST(PlanFa2Cpu, Override) {
  EXPECT_FALSE(fa2_cpu_takes(cpu(16), call(), with_fa2_cpu("0")));
  EXPECT_TRUE(fa2_cpu_takes(simulated_nvidia_gpu(48), call(), with_fa2_cpu("1")));
  EXPECT_TRUE(fa2_cpu_takes(cpu(16), call(), with_fa2_cpu("")));
  EXPECT_EQ(read_overrides([](const char* n) { return std::string(n) == "FLASHCL_FA2_CPU" ? "0" : nullptr; }).fa2_cpu,
            "0");
}

// fa2_cpu.cl's conditions, mirrored: BR % RM, BC % (KG * VW) with KG = min(4, BC / VW), D_PAD % VW,
// (D_PAD / VW) % CG; and at most 26 vectors live in a register block (32 with AVX-512), half that
// with narrower vectors (16 registers).
void expect_compilable(const DeviceFacts& dev, int d) {
  SCOPED_TRACE(dev.name + " d=" + std::to_string(d));
  const Fa2CpuPlan p = plan_fa2_cpu(dev, d);
  const TilePlan& t = p.tiles;
  const int vw = p.vector_width, rm = t.rows_per_team, cg = p.column_vectors;
  ASSERT_TRUE(vw == 4 || vw == 8 || vw == 16);
  ASSERT_GE(t.block_cols, vw);
  // scores are K.Q^T with rows in the lanes: row vectors of min(BR, VW) rows, up to RM of them
  const int rw = std::min(t.block_rows, vw), sg = std::min(t.block_rows / rw, rm), kj = 4;
  EXPECT_EQ(t.block_rows % rw, 0);
  EXPECT_EQ(t.block_rows % (sg * rw), 0);
  EXPECT_EQ((sg * rw) % rm, 0);
  EXPECT_EQ(t.block_cols % kj, 0);
  EXPECT_EQ(t.padded_head_dim % vw, 0);
  EXPECT_GE(t.padded_head_dim, d);
  EXPECT_LT(t.padded_head_dim - d, d / 3 + vw);  // padding stays a fraction of the row
  EXPECT_EQ((t.padded_head_dim / vw) % cg, 0);
  const int registers = vw >= 16 ? 32 : 16;
  EXPECT_LE(rm * cg + cg + 1, registers);  // P.V: accumulators, V vectors, the broadcast p
  EXPECT_LE(kj * sg + sg + 1, registers);  // K.Q^T: scores, Q^T vectors, the broadcast k
  EXPECT_EQ(t.work_group_size, 1u);
  EXPECT_EQ(t.local_bytes, fa2_cpu_local_bytes(t.block_rows, t.block_cols, t.padded_head_dim));
  EXPECT_LE(t.local_bytes, dev.local_mem_bytes);
  if (dev.kind == DeviceKind::CPU) EXPECT_LE(t.local_bytes, 512u * 1024);  // half a core's L2
  EXPECT_NE(t.reason.find("CPU form"), std::string::npos);
}

TEST(PlanFa2Cpu, EveryHeadDimCompilesAndFits) {
  DeviceFacts oclgrind_like = simulated_nvidia_gpu(48);
  oclgrind_like.name = "48 KiB GPU-like";
  for (const DeviceFacts& dev : {cpu(16), cpu(8), cpu(4), cpu(1), oclgrind_like})
    for (int d = 1; d <= 256; ++d) expect_compilable(dev, d);
}

TEST(PlanFa2Cpu, MeasuredShapesOnAvx512) {
  const Fa2CpuPlan d64 = plan_fa2_cpu(cpu(16), 64);
  EXPECT_EQ(d64.vector_width, 16);
  EXPECT_EQ(d64.tiles.rows_per_team, 4);
  EXPECT_EQ(d64.column_vectors, 4);
  EXPECT_EQ(d64.tiles.padded_head_dim, 64);
  const Fa2CpuPlan d128 = plan_fa2_cpu(cpu(16), 128);
  EXPECT_EQ(d128.tiles.padded_head_dim, 128);
  EXPECT_EQ(d128.column_vectors, 4);
  EXPECT_EQ(plan_fa2_cpu(cpu(16), 96).column_vectors, 3);  // 6 vectors: two passes of 3
}

TEST(PlanFa2Cpu, RejectsHeadDimOutOfRange) {
  expect_head_dim_out_of_range_rejected([](const DeviceFacts& f, int d) { return plan_fa2_cpu(f, d); });
}

TEST(PlanFa2Cpu, NothingFitsIsNamed) {
  expect_nothing_fits_named([](const DeviceFacts& f, int d) { return plan_fa2_cpu(f, d); });
}

}  // namespace
}  // namespace flashcl::detail
