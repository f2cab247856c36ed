// test_standard_mma_plan.cpp: the planning of the standard path on NVIDIA tensor cores
// (src/plan/standard_mma_plan.cpp) as pure functions over simulated devices: which calls it takes
// (algorithm standard, fp32/fp16/bf16, d <= 128, NVIDIA GPUs of compute capability >= 8.0, every
// variant; not a forced tile), the overrides (FLASHCL_STANDARD_MMA=0 and FLASHCL_MMA=0 give the
// portable form, =1 makes the probe required), that the portable standard stays planned behind it
// as the fallback, that its __local bytes fit or it steps aside, and that its grids cover S and O.
#include <gtest/gtest.h>

#include <string>

#include "plan/call_plan.hpp"
#include "plan/standard_mma_plan.hpp"
#include "simulated_devices.hpp"

namespace flashcl::detail {
namespace {

ForwardArgs standard_call(DType dtype, int d = 64, int nq = 1000, int nk = 777) {
  ForwardArgs a = simulated_call(Algorithm::Standard, dtype);
  a.batch = 2;
  a.heads = 3;
  a.seqlen_q = nq;
  a.seqlen_k = nk;
  a.head_dim = d;
  return a;
}

const DeviceFacts kH100 = simulated_nvidia_gpu(48, 9, 0);

TEST(StandardMmaPlan, SixteenBitAndFp32StandardOnTensorCores) {
  for (auto [dtype, program] : {std::pair{DType::F16, "standard_mma_f16"}, {DType::BF16, "standard_mma_f16"},
                                {DType::F32, "standard_mma_tf32"}})
    for (int d : {1, 30, 64, 72, 100, 128}) {
      SCOPED_TRACE(std::string(to_string(dtype)) + " d" + std::to_string(d));
      const CallPlan plan = plan_call(kH100, standard_call(dtype, d), Overrides{});
      ASSERT_EQ(plan.standard_mma.size(), 1u);
      const StandardMmaCandidate& c = plan.standard_mma.front();
      EXPECT_STREQ(c.program.name, program);
      EXPECT_FALSE(c.required);
      EXPECT_LE(c.tiles.local_bytes, kH100.local_mem_bytes);
      EXPECT_NE(reported_tiles(plan).reason.find("standard on tensor cores"), std::string::npos);
      // the portable standard stays planned behind it (a failed probe runs it)
      EXPECT_EQ(plan.path, ForwardPath::Standard);
      EXPECT_STREQ(plan.program.name, "standard");
      EXPECT_TRUE(plan.tensor_cores.empty());
      // the shared softmax runs with the portable plan's shape, on the same S workspace
      EXPECT_EQ(c.tiles.softmax_wg, plan.tiles.softmax_wg);
      EXPECT_NE(c.program.options.find(" -DSOFTMAX_WG=" + std::to_string(plan.tiles.softmax_wg)), std::string::npos);
      ASSERT_EQ(c.grids.size(), 3u);
      EXPECT_EQ(c.grids[1].global[1], plan.grids[1].global[1]);
      // scores: every key and row of S; P.V: every row of O, one work-group a block of rows and (batch, head)
      const std::size_t wg = c.tiles.work_group_size;
      EXPECT_GE(c.grids[0].global[0] / wg * c.score_blocks * c.tiles.block_cols, 777u);
      EXPECT_GE(c.grids[0].global[1] * c.tiles.block_rows, 1000u);
      EXPECT_EQ(c.grids[0].global[2], 6u);
      EXPECT_GE(c.grids[2].global[0] / wg * c.tiles.block_rows, 1000u);
      EXPECT_EQ(c.grids[2].global[2], 6u);
      EXPECT_EQ(c.grids[0].local[0], wg);
      EXPECT_EQ(c.grids[2].local[0], wg);
    }
}

TEST(StandardMmaPlan, OverridesGiveThePortableForm) {
  const ForwardArgs a = standard_call(DType::F16);
  Overrides off;
  off.standard_mma = "0";
  EXPECT_TRUE(plan_call(kH100, a, off).standard_mma.empty());
  EXPECT_EQ(plan_call(kH100, a, off).path, ForwardPath::Standard);
  Overrides no_mma;
  no_mma.mma_off = true;
  EXPECT_TRUE(plan_call(kH100, a, no_mma).standard_mma.empty());
  Overrides required;
  required.standard_mma = "1";
  ASSERT_EQ(plan_call(kH100, a, required).standard_mma.size(), 1u);
  EXPECT_TRUE(plan_call(kH100, a, required).standard_mma.front().required);
  // =1 on any device (its probe then decides: tests/emulated_mma/ on PoCL)
  EXPECT_TRUE(standard_mma_may_take(simulated_pocl_cpu(16), a, required));
  EXPECT_FALSE(standard_mma_may_take(simulated_pocl_cpu(16), a, Overrides{}));
  EXPECT_EQ(read_overrides([](const char* n) { return std::string(n) == "FLASHCL_STANDARD_MMA" ? "0" : nullptr; })
                .standard_mma,
            "0");
}

TEST(StandardMmaPlan, OnlyStandardOnTensorCoreDevices) {
  const Overrides none;
  EXPECT_FALSE(standard_mma_may_take(simulated_nvidia_gpu(48, 7, 5), standard_call(DType::F16), none));
  EXPECT_FALSE(standard_mma_may_take(simulated_nvidia_gpu(48), standard_call(DType::F16), none));  // no cc known
  EXPECT_FALSE(standard_mma_may_take(simulated_pocl_cpu(16), standard_call(DType::F16), none));
  EXPECT_TRUE(standard_mma_may_take(simulated_nvidia_gpu(48, 8, 0), standard_call(DType::BF16), none));
  EXPECT_FALSE(standard_mma_may_take(kH100, standard_call(DType::F16, 256), none));  // past the tensor-core head dims
  EXPECT_FALSE(standard_mma_may_take(kH100, simulated_call(Algorithm::FA2, DType::F16), none));
  EXPECT_FALSE(standard_mma_may_take(kH100, simulated_call(Algorithm::FA1, DType::F16), none));
  ForwardArgs tiled = standard_call(DType::F16);
  tiled.tile = {64, 64, 0, 0};  // a caller's forced tile is the portable GEMM's
  EXPECT_FALSE(standard_mma_may_take(kH100, tiled, none));
  // every variant: the scores go through final_score
  ForwardArgs variants = standard_call(DType::F16);
  variants.causal = true;
  variants.window = {32, 0};
  variants.softcap = 10.0f;
  variants.heads_kv = 1;
  EXPECT_TRUE(standard_mma_may_take(kH100, variants, none));
  // a GPU without tensor cores, or the tensor-core fa2's device kinds only
  EXPECT_TRUE(plan_call(simulated_nvidia_gpu(48, 7, 5), standard_call(DType::F16), none).standard_mma.empty());
}

// The softmax holds rows in registers: 32 a work-item up to 4096 keys (NVIDIA's 128 work-items a
// row), 64 up to 8192; longer rows take its loops (the switch is then inert).
TEST(StandardMmaPlan, SoftmaxRowsInRegisters) {
  for (auto [nk, option] : {std::pair{512, " -DSOFTMAX_REGS=32"}, {4096, " -DSOFTMAX_REGS=32"},
                            {4097, " -DSOFTMAX_REGS=64"}, {8192, " -DSOFTMAX_REGS=64"}, {8193, " -DSOFTMAX_REGS=32"}}) {
    const CallPlan plan = plan_call(kH100, standard_call(DType::F16, 64, 256, nk), Overrides{});
    ASSERT_EQ(plan.standard_mma.size(), 1u);
    ASSERT_EQ(plan.tiles.softmax_wg, 128);
    EXPECT_NE(plan.standard_mma.front().program.options.find(option), std::string::npos) << nk;
  }
}

TEST(StandardMmaPlan, StepsAsideWhereItsBuffersDoNotFit) {
  // two fp32 K buffers of 32 keys at d = 128 take 34 KiB: not on a 32 KiB device, where 16-bit does fit
  const DeviceFacts small = simulated_nvidia_gpu(32, 8, 0);
  EXPECT_TRUE(plan_call(small, standard_call(DType::F32, 128), Overrides{}).standard_mma.empty());
  EXPECT_EQ(plan_call(small, standard_call(DType::F16, 128), Overrides{}).standard_mma.size(), 1u);
}

}  // namespace
}  // namespace flashcl::detail
