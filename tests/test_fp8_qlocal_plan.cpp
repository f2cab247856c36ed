// test_fp8_qlocal_plan.cpp: the opt-in form of the e4m3 tensor-core fa2 that keeps Q in __local
// memory (FLASHCL_FP8_QLOCAL=1, kernels/nvidia/mma_e4m3.cl's Q_LOCAL), as pure planner functions on
// simulated NVIDIA GPUs of compute capability 8.9 and 9.0 with OpenCL's 48 KiB of local memory: the
// switch is read only as "1"; with it an e4m3 call gets one m-tile a warp, 32 keys a block and
// -DQ_LOCAL=1, its __local bytes count Q's rows (at K's pitch) and fit; without it, and for every
// 16-bit or fp32 call, the plan and the program options are those of the default (so no recorded
// row of tests/data/plan_options.txt changes). Also FLASHCL_FP8_D256=1, the e4m3 tensor-core fa2 at
// head dims 129-256 (opt-in likewise). The kernel itself runs only on the card
// (bench/gpu/fp8_ab.sh); its register counts come from bench/gpu/ptxas_regs.py.
#include <gtest/gtest.h>

#include <string>

#include "plan/forward_programs.hpp"
#include "plan/mma_plan.hpp"
#include "plan/overrides.hpp"
#include "planner_calls.hpp"
#include "simulated_devices.hpp"

namespace flashcl::detail {
namespace {

bool has(const std::string& options, const std::string& flag) { return options.find(flag) != std::string::npos; }

TEST(Fp8QLocalPlan, SwitchIsReadOnlyAsOne) {
  EXPECT_TRUE(env_overrides("FLASHCL_FP8_QLOCAL", "1").fp8_q_local);
  for (const char* other : {"0", "", "yes", "2"})
    EXPECT_FALSE(env_overrides("FLASHCL_FP8_QLOCAL", other).fp8_q_local) << other;
  EXPECT_FALSE(env_overrides("FLASHCL_OTHER", "1").fp8_q_local);
}

// Q in __local memory is the mma.sync kernel's form: on cc 9.0 e4m3 takes wgmma up to d = 128
// unless FLASHCL_FP8_WGMMA=0
Overrides q_local_on_mma_sync() {
  Overrides o = env_overrides("FLASHCL_FP8_QLOCAL", "1");
  o.fp8_wgmma = "0";
  return o;
}

TEST(Fp8QLocalPlan, E4m3CallsTakeOneMTileAndQInLocalMemory) {
  const Overrides on = q_local_on_mma_sync();
  for (const DeviceFacts& dev : {simulated_nvidia_gpu(48, 9, 0), simulated_nvidia_gpu(48, 8, 9)})
    for (int d : {30, 64, 72, 80, 128})
      for (bool causal : {false, true}) {
        SCOPED_TRACE("cc " + std::to_string(dev.nv_compute_major) + "." + std::to_string(dev.nv_compute_minor) +
                     " d=" + std::to_string(d) + (causal ? " causal" : ""));
        const ForwardArgs a = dense_fa2_call(DType::E4M3, d, causal, 512);
        ASSERT_TRUE(mma_eligible(dev, a, on));
        const TilePlan p = mma_plan(dev, a, on);
        EXPECT_TRUE(p.q_local);
        EXPECT_EQ(p.work_group_size, 128u);
        EXPECT_EQ(p.block_rows, 64);  // 4 warps x one m-tile of 16 rows
        EXPECT_EQ(p.block_cols, 32);
        EXPECT_EQ(p.stages, 2);
        const std::size_t pitch = (d + 31) / 32 * 32 + 16;  // bytes per row: K, V and Q alike
        EXPECT_EQ(p.local_bytes, 2 * 32 * 2 * pitch + 4 * 8 + 64 * pitch);
        EXPECT_LT(p.local_bytes, dev.local_mem_bytes);
        const std::string options = mma_program(a, p, MmaKind::MmaSync).options;
        EXPECT_TRUE(has(options, " -DQ_LOCAL=1")) << options;
        EXPECT_TRUE(has(options, " -DMT=1 ") && has(options, " -DBC=32 ")) << options;
      }
}

TEST(Fp8QLocalPlan, WithoutTheSwitchAndForOtherDtypesNothingChanges) {
  const Overrides on = env_overrides("FLASHCL_FP8_QLOCAL", "1"), off = env_overrides("FLASHCL_OTHER", "1");
  const DeviceFacts dev = simulated_nvidia_gpu(48, 9, 0);
  for (DType dtype : {DType::E4M3, DType::F16, DType::BF16, DType::F32})
    for (int d : {64, 128})
      for (bool causal : {false, true}) {
        SCOPED_TRACE(std::string(to_string(dtype)) + " d=" + std::to_string(d) + (causal ? " causal" : ""));
        const ForwardArgs a = dense_fa2_call(dtype, d, causal, 512);
        const TilePlan base = mma_plan(dev, a, off);
        EXPECT_FALSE(base.q_local);
        const std::string base_options = mma_program(a, base, MmaKind::MmaSync).options;
        EXPECT_FALSE(has(base_options, "Q_LOCAL"));
        if (dtype == DType::E4M3) continue;  // the switch's own case, above
        const TilePlan p = mma_plan(dev, a, on);
        EXPECT_FALSE(p.q_local);
        EXPECT_EQ(p.block_rows, base.block_rows);
        EXPECT_EQ(p.block_cols, base.block_cols);
        EXPECT_EQ(p.local_bytes, base.local_bytes);
        EXPECT_EQ(mma_program(a, p, MmaKind::MmaSync).options, base_options);
      }
}

TEST(Fp8QLocalPlan, ForcedShapesCountQsRows) {
  // FLASHCL_MMA_TILE still chooses the shape; Q's BR rows join its bytes, so a shape that no longer
  // fits 48 KiB (two m-tiles, two buffers of 64 keys at d = 128: 36 KiB of K/V + 18 KiB of Q) is
  // seen as such by the launch's local-memory check
  Overrides o = q_local_on_mma_sync();
  const DeviceFacts dev = simulated_nvidia_gpu(48, 9, 0);
  o.mma_tile = "4x64x2x2x1";
  const TilePlan big = mma_plan(dev, dense_fa2_call(DType::E4M3, 128, false, 512), o);
  EXPECT_EQ(big.local_bytes, 2u * 64 * 2 * 144 + 32 + 128 * 144);
  EXPECT_GT(big.local_bytes, dev.local_mem_bytes);
  o.mma_tile = "4x32x2x2x1";
  const TilePlan fits = mma_plan(dev, dense_fa2_call(DType::E4M3, 128, false, 512), o);
  EXPECT_EQ(fits.local_bytes, 2u * 32 * 2 * 144 + 32 + 128 * 144);
  EXPECT_LT(fits.local_bytes, dev.local_mem_bytes);
}

// e4m3 calls of head dim 129-256 take the tensor cores at 4x32x1x2 by default (Q in registers; with
// Q in __local memory too the shape passes 48 KiB and the call stays portable); under
// FLASHCL_FP8_D256=0, or for other dtypes, d > 128 stays on the portable fa2.
TEST(Fp8QLocalPlan, HeadDimsTo256UnderTheirSwitch) {
  const DeviceFacts dev = simulated_nvidia_gpu(48, 9, 0);
  const Overrides on = env_overrides("FLASHCL_OTHER", "1"), off = env_overrides("FLASHCL_FP8_D256", "0");
  EXPECT_TRUE(on.fp8_d256);
  EXPECT_TRUE(env_overrides("FLASHCL_FP8_D256", "1").fp8_d256);
  EXPECT_FALSE(off.fp8_d256);
  for (int d : {129, 160, 200, 256})
    for (bool causal : {false, true}) {
      SCOPED_TRACE("d=" + std::to_string(d) + (causal ? " causal" : ""));
      const ForwardArgs a = dense_fa2_call(DType::E4M3, d, causal, 512);
      EXPECT_FALSE(mma_eligible(dev, a, off));
      for (DType other : {DType::F16, DType::BF16, DType::F32})
        EXPECT_FALSE(mma_eligible(dev, dense_fa2_call(other, d, causal, 512), on));
      ASSERT_TRUE(mma_eligible(dev, a, on));
      const TilePlan p = mma_plan(dev, a, on);
      EXPECT_FALSE(p.q_local);
      EXPECT_EQ(p.block_rows, 64);
      EXPECT_EQ(p.block_cols, 32);
      EXPECT_EQ(p.stages, 2);
      const std::size_t pitch = (d + 31) / 32 * 32 + 16;
      EXPECT_EQ(p.local_bytes, 2 * 32 * 2 * pitch + 4 * 8);
      const std::string options = mma_program(a, p, MmaKind::MmaSync).options;
      EXPECT_TRUE(has(options, " -DHEAD_DIM=" + std::to_string(d) + " ")) << options;
      EXPECT_FALSE(has(options, "Q_LOCAL")) << options;
    }
  EXPECT_FALSE(mma_eligible(dev, dense_fa2_call(DType::E4M3, 257, false, 512), on));  // the kernels' limit
  Overrides both = on;
  both.fp8_q_local = true;
  EXPECT_FALSE(mma_eligible(dev, dense_fa2_call(DType::E4M3, 256, false, 512), both));  // 52 KiB with Q's rows
  EXPECT_TRUE(mma_eligible(dev, dense_fa2_call(DType::E4M3, 160, false, 512), both));   // 192-byte rows: 39.2 KiB
}

}  // namespace
}  // namespace flashcl::detail
