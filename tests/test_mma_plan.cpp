// test_mma_plan.cpp: the NVIDIA tensor-core plan (src/plan/mma_plan.cpp) as pure functions, on
// simulated NVIDIA GPUs of compute capability 8.0 and 9.0 with OpenCL's 48 KiB of local memory:
// which calls qualify, that every head dim, dtype and mask mode gets a plan that fits, the default
// shapes the H100 measurements chose, the exact __local bytes of each buffer scheme (what ptxas
// reports for the kernels), the FLASHCL_MMA / FLASHCL_WGMMA / FLASHCL_TILE / FLASHCL_MMA_TILE
// overrides, and the alignment rules behind the 16-byte copies and 4-byte Q/O pairs. The kernels
// themselves only run on NVIDIA hardware (bench/gpu/run.sh).
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "base/errors.hpp"
#include "plan/forward_programs.hpp"  // mma_program
#include "plan/mma_plan.hpp"
#include "plan/overrides.hpp"
#include "planner_calls.hpp"
#include "simulated_devices.hpp"

namespace flashcl::detail {
namespace {

// OpenCL's 48 KiB of local memory, as NVIDIA's driver reports it
DeviceFacts nvidia(int major, int minor) { return simulated_nvidia_gpu(48, major, minor); }

TEST(MmaPlan, EveryHeadDimFitsOpenClLocalMemory) {
  for (int major : {8, 9})
    for (DType dtype : {DType::F32, DType::F16, DType::BF16})
      for (bool causal : {false, true})
        for (int d = 1; d <= 128; ++d) {
          const DeviceFacts dev = nvidia(major, 0);
          const ForwardArgs a = dense_fa2_call(dtype, d, causal);
          SCOPED_TRACE("cc " + std::to_string(major) + " " + to_string(dtype) + " d=" + std::to_string(d) +
                       (causal ? " causal" : ""));
          ASSERT_TRUE(mma_eligible(dev, a));
          const TilePlan p = mma_plan(dev, a);
          EXPECT_LT(p.local_bytes, dev.local_mem_bytes);  // strictly: the driver adds its own bytes
          EXPECT_LE(p.work_group_size, dev.max_work_group_size);
          EXPECT_EQ(p.work_group_size % 32, 0u);
          EXPECT_EQ(p.block_rows % 16, 0);
          EXPECT_EQ(p.block_cols % 16, 0);
          EXPECT_GE(p.padded_head_dim, d);
          EXPECT_TRUE(p.stages == 1 || p.stages == 2);
          EXPECT_FALSE(p.reason.empty());
        }
}

TEST(MmaPlan, DefaultShapesAreTheMeasuredOnes) {
  // Hopper, fp16, d = 64: wgmma, 16 warps of 16 rows, 64-key blocks, two buffers; O rescaled
  // lazily only when causal
  TilePlan p = mma_plan(nvidia(9, 0), dense_fa2_call(DType::F16, 64));
  EXPECT_EQ(p.block_rows, 256);
  EXPECT_EQ(p.block_cols, 64);
  EXPECT_EQ(p.work_group_size, 512u);
  EXPECT_EQ(p.stages, 2);
  EXPECT_FALSE(p.lazy_rescale);
  EXPECT_TRUE(mma_plan(nvidia(9, 0), dense_fa2_call(DType::F16, 64, true)).lazy_rescale);
  EXPECT_NE(p.reason.find("wgmma"), std::string::npos) << p.reason;
  // d = 128: mma.sync, warps of two 16-row tiles, 32-key blocks, two buffers; 8 warps (256 rows)
  // when not causal, 4 when causal
  p = mma_plan(nvidia(9, 0), dense_fa2_call(DType::BF16, 128));
  EXPECT_EQ(p.block_rows, 256);
  EXPECT_EQ(p.block_cols, 32);
  EXPECT_EQ(p.work_group_size, 256u);
  EXPECT_EQ(p.stages, 2);
  EXPECT_NE(p.reason.find("mma.sync.m16n8k16"), std::string::npos) << p.reason;
  p = mma_plan(nvidia(9, 0), dense_fa2_call(DType::F16, 128, true));
  EXPECT_EQ(p.block_rows, 128);
  EXPECT_EQ(p.work_group_size, 128u);
  EXPECT_EQ(p.stages, 2);
  // fp32: 3xTF32 on mma.sync, one buffer
  p = mma_plan(nvidia(9, 0), dense_fa2_call(DType::F32, 64));
  EXPECT_EQ(p.stages, 1);
  EXPECT_NE(p.reason.find("3xTF32"), std::string::npos) << p.reason;
  // Ampere: no wgmma; causal fp16 at d = 64 takes one buffer with eager rescaling
  p = mma_plan(nvidia(8, 0), dense_fa2_call(DType::F16, 64, true));
  EXPECT_EQ(p.block_rows, 128);
  EXPECT_EQ(p.stages, 1);
  EXPECT_FALSE(p.lazy_rescale);
  EXPECT_FALSE(wgmma_wanted(nvidia(8, 0), dense_fa2_call(DType::F16, 64)));
  EXPECT_FALSE(wgmma_wanted(nvidia(9, 0), dense_fa2_call(DType::F32, 64)));
  EXPECT_TRUE(wgmma_wanted(nvidia(9, 0), dense_fa2_call(DType::F16, 64)));
  EXPECT_FALSE(wgmma_wanted(nvidia(9, 0), dense_fa2_call(DType::F16, 128)));
}

TEST(MmaPlan, LocalBytesCountEveryBuffer) {
  // wgmma d = 64: two 64-key K and V tiles of 64 columns (no padding), four 8-byte mbarriers,
  // one 4-byte word per work-item for WG_WAIT_AFTER
  EXPECT_EQ(plan_for_kind(dense_fa2_call(DType::F16, 64), MmaKind::Wgmma).local_bytes,
            2u * 64 * (64 + 64) * 2 + 32 + 4 * 512);
  // mma.sync d = 128: two 32-key tiles with rows padded by 8 elements, four mbarriers
  EXPECT_EQ(plan_for_kind(dense_fa2_call(DType::F16, 128), MmaKind::MmaSync).local_bytes,
            2u * 32 * (136 + 136) * 2 + 32);
  // 3xTF32 d = 64: one 32-key buffer, K rows padded to 72 and V rows to 68 floats, no mbarriers
  EXPECT_EQ(plan_for_kind(dense_fa2_call(DType::F32, 64), MmaKind::MmaSync).local_bytes, 1u * 32 * (72 + 68) * 4);
}

TEST(MmaPlan, PlainGqaWindowsAndPackedSequencesOnNvidiaGpusQualify) {
  const DeviceFacts hopper = nvidia(9, 0);
  const ForwardArgs plain = dense_fa2_call(DType::F16, 64);
  EXPECT_TRUE(mma_eligible(hopper, plain));
  ForwardArgs gqa = plain;
  gqa.heads_kv = 2;
  EXPECT_TRUE(mma_eligible(hopper, gqa));
  Overrides variants_on, variants_off;  // FLASHCL_TENSOR_CORE_VARIANTS=1 and =0
  variants_on.tensor_core_variants = true;
  variants_off.tensor_core_variants = false;
  for (auto [left, right] : {std::pair{16, -1}, std::pair{-1, 0}, std::pair{256, 64}}) {  // sliding windows too
    ForwardArgs window = gqa;
    window.window = {left, right};
    window.causal = right < 0;
    EXPECT_TRUE(mma_eligible(hopper, window, variants_on)) << left << "," << right;
    EXPECT_FALSE(mma_eligible(hopper, window, variants_off)) << left << "," << right;
  }

  EXPECT_FALSE(mma_eligible(nvidia(7, 5), plain));  // no cp.async / ldmatrix / bf16 mma
  DeviceFacts other = hopper;
  other.vendor = "Advanced Micro Devices, Inc.";
  EXPECT_FALSE(mma_eligible(other, plain));
  DeviceFacts cpu = hopper;
  cpu.kind = DeviceKind::CPU;
  EXPECT_FALSE(mma_eligible(cpu, plain));

  auto expect_not = [&](const char* what, auto change) {
    ForwardArgs a = plain;
    change(a);
    EXPECT_FALSE(mma_eligible(hopper, a, variants_on)) << what;  // not even with the variants on
  };
  expect_not("d > 128", [](ForwardArgs& a) { a.head_dim = 129; });
  expect_not("fa1", [](ForwardArgs& a) { a.algorithm = Algorithm::FA1; });
  expect_not("forced tile", [](ForwardArgs& a) { a.tile.block_rows = 64; });
  int dummy = 0;  // any non-null handle: the plan only looks at whether it is set
  ForwardArgs packed = gqa;  // packed sequences in 16 and 32 bits, not in fp8
  packed.cu_seqlens_q = packed.cu_seqlens_k = reinterpret_cast<cl_mem>(&dummy);
  for (DType t : {DType::F16, DType::BF16, DType::F32}) {
    packed.dtype = t;
    EXPECT_TRUE(mma_eligible(hopper, packed, variants_on)) << to_string(t);
    EXPECT_FALSE(mma_eligible(hopper, packed, variants_off)) << to_string(t);
  }
  expect_not("fp8 varlen", [&](ForwardArgs& a) {  // (under either setting)
    a.dtype = DType::E4M3;
    a.cu_seqlens_q = a.cu_seqlens_k = reinterpret_cast<cl_mem>(&dummy);
  });
  expect_not("fp8 window", [&](ForwardArgs& a) {
    a.dtype = DType::E4M3;
    a.window = {32, -1};
  });
}

// Softcap, ALiBi, masks and biases (fa2_mma.cl's SCORE_TRANSFORM) take the tensor cores in 16 and 32
// bits (by default; not with FLASHCL_TENSOR_CORE_TRANSFORMS=0 or the variants off, not in fp8), built
// with the scaled score (FOLD_SCALE=0), the softcap's ex2 tanh in 16 bits for caps in
// [kSoftcapEx2Min, kSoftcapEx2Max] unless FLASHCL_FWD_SOFTCAP_EX2=0; FLASHCL_MMA=any takes any device.
TEST(MmaPlan, ScoreTransformsWhenAskedFor) {
  const DeviceFacts hopper = nvidia(9, 0);
  Overrides on, off, variants_off, no_ex2;
  off.tensor_core_transforms = false;
  variants_off.tensor_core_variants = false;
  no_ex2.fwd_softcap_ex2 = false;
  int dummy = 0;  // any non-null handle: the plan only looks at whether it is set
  const auto with = [&](DType t, const char* what) {
    ForwardArgs a = dense_fa2_call(t, 128);
    const std::string w = what;
    if (w == "softcap") a.softcap = 30.0f;
    if (w == "wide softcap") a.softcap = 100.0f;
    if (w == "alibi") a.alibi_slopes = reinterpret_cast<cl_mem>(&dummy);
    if (w == "bool") a.mask.kind = MaskKind::Bool;
    if (w == "bias") a.mask.kind = MaskKind::Bias;
    return a;
  };
  for (const char* what : {"softcap", "wide softcap", "alibi", "bool", "bias"})
    for (DType t : {DType::F16, DType::BF16, DType::F32}) {
      const ForwardArgs a = with(t, what);
      const std::string where = std::string(what) + " " + to_string(t);
      EXPECT_FALSE(mma_eligible(hopper, a, off)) << where;
      EXPECT_FALSE(mma_eligible(hopper, a, variants_off)) << where;
      ASSERT_TRUE(mma_eligible(hopper, a, on)) << where;
      const TilePlan plan = mma_plan(hopper, a, on);
      const std::string options = mma_program(a, plan, MmaKind::MmaSync).options;
      EXPECT_NE(options.find("-DFOLD_SCALE=0"), std::string::npos) << where;
      const bool ex2 = std::string(what) == "softcap" && t != DType::F32;
      EXPECT_EQ(plan.softcap_ex2, ex2) << where;
      EXPECT_EQ(options.find("-DSOFTCAP_EX2=1") != std::string::npos, ex2) << where;
      EXPECT_FALSE(mma_plan(hopper, a, no_ex2).softcap_ex2) << where;
    }
  for (const char* what : {"softcap", "alibi", "bool", "bias"})  // no e4m3 kernel takes a transform
    EXPECT_FALSE(mma_eligible(hopper, with(DType::E4M3, what), on)) << what;
  const ForwardArgs fp8 = with(DType::E4M3, "softcap");
  ForwardArgs tiny = with(DType::F16, "softcap");  // below kSoftcapEx2Min: the library's tanh
  tiny.softcap = 0x1p-100f;
  EXPECT_FALSE(mma_plan(hopper, tiny, on).softcap_ex2);
  DeviceFacts cpu = hopper;
  cpu.vendor = "The pocl project";
  cpu.kind = DeviceKind::CPU;
  cpu.nv_compute_major = cpu.nv_compute_minor = 0;
  Overrides any = on;
  any.mma_any = true;
  EXPECT_FALSE(mma_eligible(cpu, with(DType::F16, "bias"), on));
  EXPECT_TRUE(mma_eligible(cpu, with(DType::F16, "bias"), any));
  EXPECT_FALSE(mma_eligible(cpu, fp8, any));  // e4m3 needs compute capability 8.9
}

TEST(MmaPlan, EnvironmentOverrides) {
  const DeviceFacts hopper = nvidia(9, 0);
  const Overrides none;
  EXPECT_TRUE(mma_eligible(hopper, dense_fa2_call(DType::F16, 64), none));
  EXPECT_FALSE(mma_eligible(hopper, dense_fa2_call(DType::F16, 64), env_overrides("FLASHCL_MMA", "0")));
  EXPECT_FALSE(
      mma_eligible(hopper, dense_fa2_call(DType::F16, 64), env_overrides("FLASHCL_TILE", "64x32")));  // portable tiles
  {
    const Overrides no_wgmma = env_overrides("FLASHCL_WGMMA", "0");
    EXPECT_TRUE(wgmma_wanted(hopper, dense_fa2_call(DType::F16, 64), none));
    EXPECT_FALSE(wgmma_wanted(hopper, dense_fa2_call(DType::F16, 64), no_wgmma));
    EXPECT_EQ(mma_plan(hopper, dense_fa2_call(DType::F16, 64), no_wgmma).block_rows, 128);  // mma.sync's shape
  }
  {
    const Overrides wgmma_everywhere = env_overrides("FLASHCL_WGMMA", "1");
    EXPECT_FALSE(wgmma_wanted(hopper, dense_fa2_call(DType::F16, 128), none));
    ASSERT_TRUE(wgmma_wanted(hopper, dense_fa2_call(DType::F16, 128), wgmma_everywhere));
    const TilePlan p = mma_plan(hopper, dense_fa2_call(DType::F16, 128), wgmma_everywhere);
    EXPECT_EQ(p.block_rows, 192);  // 12 warps, one K and one V buffer of 64 keys
    EXPECT_EQ(p.block_cols, 64);
    EXPECT_EQ(p.stages, 1);
    EXPECT_LT(p.local_bytes, hopper.local_mem_bytes);
  }
  {
    const TilePlan p = plan_for_kind(dense_fa2_call(DType::F16, 128), MmaKind::MmaSync,
                                     env_overrides("FLASHCL_MMA_TILE", "8x32x1x2x0"));
    EXPECT_EQ(p.work_group_size, 256u);
    EXPECT_EQ(p.block_rows, 128);
    EXPECT_EQ(p.block_cols, 32);
    EXPECT_EQ(p.stages, 2);
    EXPECT_FALSE(p.lazy_rescale);
  }
  for (const char* bad : {"4x64junk", "4x63", "0x64", "4x64x2x3", "4", "17x64", "4x64x2x2x1x1"}) {
    try {
      plan_for_kind(dense_fa2_call(DType::F16, 64), MmaKind::MmaSync, env_overrides("FLASHCL_MMA_TILE", bad));
      ADD_FAILURE() << bad << " was accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.status(), Status::InvalidArgument) << bad;
      EXPECT_NE(std::string(e.what()).find("FLASHCL_MMA_TILE"), std::string::npos) << e.what();
    }
  }
  // wgmma needs whole warpgroups
  EXPECT_THROW(
      plan_for_kind(dense_fa2_call(DType::F16, 64), MmaKind::Wgmma, env_overrides("FLASHCL_MMA_TILE", "6x64x1x2")),
      Error);
}

TEST(MmaPlan, AlignmentRules) {
  EXPECT_TRUE(rows_are_16_byte_aligned(dense_fa2_call(DType::F16, 64)));
  EXPECT_TRUE(rows_are_16_byte_aligned(dense_fa2_call(DType::F32, 68)));   // 4-float chunks
  EXPECT_FALSE(rows_are_16_byte_aligned(dense_fa2_call(DType::F16, 60)));  // 120-byte rows
  ForwardArgs shifted = dense_fa2_call(DType::F16, 64);
  shifted.v.offset = 4;  // 8-byte start
  EXPECT_FALSE(rows_are_16_byte_aligned(shifted));
  EXPECT_TRUE(rows_are_pair_aligned(shifted));  // V plays no part in the Q/O pairs

  EXPECT_TRUE(rows_are_pair_aligned(dense_fa2_call(DType::BF16, 40)));
  EXPECT_FALSE(rows_are_pair_aligned(dense_fa2_call(DType::F16, 33)));
  EXPECT_FALSE(rows_are_pair_aligned(dense_fa2_call(DType::F32, 64)));  // fp32 has no pairs
  ForwardArgs odd_stride = dense_fa2_call(DType::F16, 64);
  odd_stride.o.seq_stride += 1;
  EXPECT_FALSE(rows_are_pair_aligned(odd_stride));

  EXPECT_TRUE(o_rows_are_16_byte_aligned(dense_fa2_call(DType::F16, 128)));
  EXPECT_TRUE(o_rows_are_16_byte_aligned(dense_fa2_call(DType::BF16, 72)));
  EXPECT_FALSE(o_rows_are_16_byte_aligned(dense_fa2_call(DType::F16, 36)));   // 72-byte rows
  EXPECT_FALSE(o_rows_are_16_byte_aligned(dense_fa2_call(DType::F32, 128)));  // fp32 (3xTF32) keeps its own stores
  EXPECT_FALSE(o_rows_are_16_byte_aligned(odd_stride));
  ForwardArgs o_shifted = dense_fa2_call(DType::F16, 128);
  o_shifted.o.offset = 4;  // 8-byte start: pairs yes, 16-byte chunks no
  EXPECT_TRUE(rows_are_pair_aligned(o_shifted));
  EXPECT_FALSE(o_rows_are_16_byte_aligned(o_shifted));
  ForwardArgs q_shifted = dense_fa2_call(DType::F16, 128);
  q_shifted.q.offset = 4;  // Q plays no part in O's stores
  EXPECT_TRUE(o_rows_are_16_byte_aligned(q_shifted));
}

}  // namespace
}  // namespace flashcl::detail
