// test_fp8_wgmma_plan.cpp: the e4m3 forward on Hopper's wgmma (kernels/nvidia/mma_wgmma_e4m3.cl,
// the default on compute capability 9.0 up to d = 128), as pure planner functions on simulated
// NVIDIA GPUs with OpenCL's 48 KiB of local memory: FLASHCL_FP8_WGMMA unset, "1" or "require" plan
// wgmma first (16 warps at d <= 64, 12 above; 64 keys; two K and two V^T buffers whose __local bytes
// fit), built as program fa2_mma_wgmma_e4m3 through retargeted PTX, with the e4m3 mma.sync plan
// behind it as the probe's fallback; "0" keeps mma.sync, other values are refused by name on every
// device; on cc 8.9, past d = 128, under FLASHCL_WGMMA=0 and for every other dtype the plans and
// program options are those of FLASHCL_FP8_WGMMA=0. A V stored transposed takes wgmma alone.
// The kernel itself runs only on the card (tests/test_fp8_wgmma.cpp, bench/gpu/fp8_wgmma_ab.sh).
#include <gtest/gtest.h>

#include <string>

#include "base/errors.hpp"
#include "plan/call_plan.hpp"
#include "plan/forward_programs.hpp"
#include "plan/mma_plan.hpp"
#include "plan/overrides.hpp"
#include "planner_calls.hpp"
#include "simulated_devices.hpp"

namespace flashcl::detail {
namespace {

bool has(const std::string& options, const std::string& flag) { return options.find(flag) != std::string::npos; }

TEST(Fp8WgmmaPlan, SwitchValues) {
  EXPECT_EQ(env_overrides("FLASHCL_FP8_WGMMA", "1").fp8_wgmma, "1");
  EXPECT_EQ(env_overrides("FLASHCL_FP8_WGMMA", "require").fp8_wgmma, "require");
  EXPECT_TRUE(env_overrides("FLASHCL_OTHER", "1").fp8_wgmma.empty());
  const DeviceFacts hopper = simulated_nvidia_gpu(48, 9, 0);
  const ForwardArgs a = dense_fa2_call(DType::E4M3, 128, false, 512);
  // the default (unset) and "1", "require" take wgmma; "0" keeps mma.sync; anything else is refused by name
  EXPECT_TRUE(wgmma_wanted(hopper, a, env_overrides("FLASHCL_OTHER", "1")));
  for (const char* on : {"", "1", "require"}) EXPECT_TRUE(wgmma_wanted(hopper, a, env_overrides("FLASHCL_FP8_WGMMA", on)));
  EXPECT_FALSE(wgmma_wanted(hopper, a, env_overrides("FLASHCL_FP8_WGMMA", "0")));
  const DeviceFacts ada = simulated_nvidia_gpu(48, 8, 9);  // no wgmma there, but a typo is still one
  for (const DeviceFacts* dev : {&hopper, &ada})
  for (const char* bad : {"yes", "2"}) {
    try {
      wgmma_wanted(*dev, a, env_overrides("FLASHCL_FP8_WGMMA", bad));
      ADD_FAILURE() << bad << " was accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.status(), Status::InvalidArgument) << bad;
      EXPECT_TRUE(has(e.what(), "FLASHCL_FP8_WGMMA")) << e.what();
    }
  }
}

TEST(Fp8WgmmaPlan, E4m3CallsOnHopperPlanWgmmaFirst) {
  const DeviceFacts dev = simulated_nvidia_gpu(48, 9, 0);
  const Overrides on = env_overrides("FLASHCL_OTHER", "1"), off = env_overrides("FLASHCL_FP8_WGMMA", "0");
  for (int d : {30, 32, 64, 72, 80, 96, 128})
    for (bool causal : {false, true}) {
      SCOPED_TRACE("d=" + std::to_string(d) + (causal ? " causal" : ""));
      const ForwardArgs a = dense_fa2_call(DType::E4M3, d, causal, 512);
      ASSERT_TRUE(mma_eligible(dev, a, on));
      ASSERT_TRUE(wgmma_wanted(dev, a, on));
      const TilePlan p = mma_plan(dev, a, on);
      const std::size_t warps = d <= 64 ? 16 : 12, dpad = (d + 31) / 32 * 32;
      EXPECT_EQ(p.work_group_size, 32 * warps);
      EXPECT_EQ(p.block_rows, static_cast<int>(16 * warps));  // one m-tile a warp
      EXPECT_EQ(p.block_cols, 64);
      EXPECT_EQ(p.stages, 2);
      EXPECT_FALSE(p.q_local);
      // two K and two V^T tiles of 64 x dpad bytes, six mbarriers, WG_WAIT_AFTER's words
      EXPECT_EQ(p.local_bytes, 2 * 64 * 2 * dpad + 6 * 8 + 4 * 32 * warps);
      EXPECT_LT(p.local_bytes, dev.local_mem_bytes);
      EXPECT_TRUE(has(p.reason, "wgmma.m64nNk32 e4m3")) << p.reason;
      const ProgramChoice program = mma_program(a, p, MmaKind::Wgmma);
      EXPECT_EQ(std::string(program.name), "fa2_mma_wgmma_e4m3");
      EXPECT_TRUE(program.arch_ptx);
      EXPECT_TRUE(has(program.options, " -DMT=1 ") && has(program.options, " -DBC=64 ") &&
                  has(program.options, " -DSTAGES=2 ") && has(program.options, " -DMBAR_TRY_WAIT=1"))
          << program.options;
      EXPECT_FALSE(has(program.options, "Q_LOCAL")) << program.options;
      // the call plan: wgmma, then the default mma.sync plan as the fallback of a failed probe
      const CallPlan call = plan_call(dev, a, on), base = plan_call(dev, a, off);
      ASSERT_EQ(call.tensor_cores.size(), 2u);
      ASSERT_EQ(base.tensor_cores.size(), 1u);
      EXPECT_EQ(call.tensor_cores[0].kind, MmaKind::Wgmma);
      EXPECT_EQ(call.tensor_cores[1].kind, MmaKind::MmaSync);
      EXPECT_EQ(std::string(call.tensor_cores[1].program.name), "fa2_mma_e4m3");
      EXPECT_EQ(call.tensor_cores[1].program.options, base.tensor_cores[0].program.options);
      EXPECT_EQ(call.tensor_cores[1].tiles.local_bytes, base.tensor_cores[0].tiles.local_bytes);
    }
}

// A V stored transposed (B, H_kv, d, Nk) goes to the wgmma kernel as stored (cp.async, no V^T
// mbarriers) with no mma.sync fallback, which reads V as stored only; where wgmma is not planned
// (cc 8.9, FLASHCL_FP8_WGMMA=0, past d = 128) the call stays on the portable fa2, as before.
TEST(Fp8WgmmaPlan, TransposedVTakesWgmmaOnly) {
  const DeviceFacts hopper = simulated_nvidia_gpu(48, 9, 0), ada = simulated_nvidia_gpu(48, 8, 9);
  const Overrides on = env_overrides("FLASHCL_OTHER", "1"), off = env_overrides("FLASHCL_FP8_WGMMA", "0");
  for (int d : {64, 128})
    for (bool causal : {false, true}) {
      SCOPED_TRACE("d=" + std::to_string(d) + (causal ? " causal" : ""));
      ForwardArgs a = dense_fa2_call(DType::E4M3, d, causal, 512);
      const TilePlan natural = mma_plan(hopper, a, on);
      a.fp8.v_transposed = true;
      a.v.seq_stride = 512;  // (B, H_kv, d, Nk): a d-row of Nk keys
      a.v.head_stride = std::int64_t{d} * 512;
      a.v.batch_stride = a.v.head_stride * a.heads;
      ASSERT_TRUE(mma_eligible(hopper, a, on));
      const CallPlan call = plan_call(hopper, a, on);
      ASSERT_EQ(call.tensor_cores.size(), 1u);
      EXPECT_EQ(call.tensor_cores[0].kind, MmaKind::Wgmma);
      const TilePlan& p = call.tensor_cores[0].tiles;
      EXPECT_EQ(p.local_bytes, natural.local_bytes - 2 * 8);  // no mbarriers for V^T stored by the warps
      EXPECT_TRUE(has(p.reason, "V^T as stored")) << p.reason;
      EXPECT_TRUE(has(call.tensor_cores[0].program.options, " -DV_TRANSPOSED=1")) << call.tensor_cores[0].program.options;
      EXPECT_TRUE(has(call.tensor_cores[0].program.options, " -DVEC_LOAD=1")) << call.tensor_cores[0].program.options;
      EXPECT_FALSE(mma_eligible(ada, a, on));
      EXPECT_FALSE(mma_eligible(hopper, a, off));
      EXPECT_TRUE(plan_call(hopper, a, off).tensor_cores.empty());
      a.v.seq_stride = 500;  // d-rows off 16 bytes: element-wise copies of K and V
      a.v.head_stride = std::int64_t{d} * 500;
      a.v.batch_stride = a.v.head_stride * a.heads;
      EXPECT_TRUE(has(plan_call(hopper, a, on).tensor_cores[0].program.options, " -DVEC_LOAD=0"));
    }
  Overrides d256 = on;
  d256.fp8_d256 = true;
  ForwardArgs wide = dense_fa2_call(DType::E4M3, 256, false, 512);
  wide.fp8.v_transposed = true;
  EXPECT_FALSE(mma_eligible(hopper, wide, d256));
}

TEST(Fp8WgmmaPlan, ElsewhereNothingChanges) {
  const Overrides on = env_overrides("FLASHCL_FP8_WGMMA", "require"), off = env_overrides("FLASHCL_FP8_WGMMA", "0");
  const DeviceFacts hopper = simulated_nvidia_gpu(48, 9, 0), ada = simulated_nvidia_gpu(48, 8, 9);
  // cc 8.9 (no wgmma), and every other dtype on cc 9.0
  for (int d : {64, 128})
    for (bool causal : {false, true}) {
      SCOPED_TRACE("d=" + std::to_string(d) + (causal ? " causal" : ""));
      const ForwardArgs e4m3 = dense_fa2_call(DType::E4M3, d, causal, 512);
      EXPECT_FALSE(wgmma_wanted(ada, e4m3, on));
      EXPECT_EQ(plan_call(ada, e4m3, on).tensor_cores.front().program.options,
                plan_call(ada, e4m3, off).tensor_cores.front().program.options);
      for (DType other : {DType::F16, DType::BF16, DType::F32}) {
        const ForwardArgs a = dense_fa2_call(other, d, causal, 512);
        EXPECT_EQ(wgmma_wanted(hopper, a, on), wgmma_wanted(hopper, a, off));
        const CallPlan with = plan_call(hopper, a, on), without = plan_call(hopper, a, off);
        ASSERT_EQ(with.tensor_cores.size(), without.tensor_cores.size());
        for (std::size_t i = 0; i < with.tensor_cores.size(); ++i)
          EXPECT_EQ(with.tensor_cores[i].program.options, without.tensor_cores[i].program.options);
      }
    }
  // FLASHCL_WGMMA=0 turns it off too; past d = 128 e4m3 stays on mma.sync
  Overrides no_wgmma = on;
  no_wgmma.wgmma = "0";
  EXPECT_FALSE(wgmma_wanted(hopper, dense_fa2_call(DType::E4M3, 64), no_wgmma));
  Overrides d256 = on;
  d256.fp8_d256 = true;
  const ForwardArgs wide = dense_fa2_call(DType::E4M3, 256, false, 512);
  EXPECT_FALSE(wgmma_wanted(hopper, wide, d256));
  ASSERT_TRUE(mma_eligible(hopper, wide, d256));
  EXPECT_TRUE(has(mma_plan(hopper, wide, d256).reason, "mma.sync.m16n8k32 e4m3"));
}

TEST(Fp8WgmmaPlan, ForcedShapes) {
  const DeviceFacts dev = simulated_nvidia_gpu(48, 9, 0);
  Overrides o = env_overrides("FLASHCL_FP8_WGMMA", "1");
  const ForwardArgs a = dense_fa2_call(DType::E4M3, 128, true, 512);
  o.mma_tile = "8x64x1x2x1";
  const TilePlan p = plan_for_kind(a, MmaKind::Wgmma, o);
  EXPECT_EQ(p.work_group_size, 256u);
  EXPECT_EQ(p.local_bytes, 2u * 64 * 2 * 128 + 6 * 8 + 4 * 256);
  // one buffer (the synchronous schedule has no V^T step), 16-key blocks or two m-tiles: refused by name
  for (const char* bad : {"12x64x1x1", "12x48x1x2", "8x64x2x2"}) {
    o.mma_tile = bad;
    try {
      plan_for_kind(a, MmaKind::Wgmma, o);
      ADD_FAILURE() << bad << " was accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.status(), Status::InvalidArgument) << bad;
      EXPECT_TRUE(has(e.what(), "FLASHCL_MMA_TILE")) << e.what();
    }
  }
  // Q in local memory (FLASHCL_FP8_QLOCAL) stays mma.sync's: the wgmma plan ignores it, the fallback keeps it
  Overrides both = env_overrides("FLASHCL_FP8_WGMMA", "1");
  both.fp8_q_local = true;
  EXPECT_FALSE(plan_for_kind(a, MmaKind::Wgmma, both).q_local);
  EXPECT_TRUE(plan_for_kind(a, MmaKind::MmaSync, both).q_local);
}

}  // namespace
}  // namespace flashcl::detail
