// test_bwd_mma_plan.cpp: the choice of the NVIDIA tensor-core backward (bwd_mma_plan.cpp) on
// simulated devices, as a pure function of device facts, the call and explicit overrides: taken on
// NVIDIA GPUs of compute capability >= 8.0 for fp16/bf16 fa2 calls (atomic dQ, or deterministic with
// the dQ kernel) at d = 64 and 128 and the head dims whose padded columns the planned shape divides
// as the kernel needs (32, 96, ...), plain, causal or GQA (fp32 too unless FLASHCL_BWD_TF32=0); left
// to the portable kernels on older or other devices, CPUs, other head dims, fa1, every other variant
// and FLASHCL_BWD_MMA=0. The default shapes fit 48 KiB of local memory; FLASHCL_BWD_MMA_TILE and
// FLASHCL_BWD_MMA_DQ_TILE set the shapes and reject malformed or uncompilable ones by name.
// FLASHCL_BWD_WGMMA moves the dQ pass (and with "1" the dK/dV kernel) onto wgmma on compute
// capability 9.0 only; the plan says whether the two kernels then share one program.
#include <gtest/gtest.h>

#include <cstdint>

#include "plan/backward_programs.hpp"
#include "plan/bwd_mma_plan.hpp"
#include "plan/forward_programs.hpp"  // common_options
#include "plan/plan_backward.hpp"
#include "plan/plan_bwd_cpu.hpp"
#include "simulated_devices.hpp"
#include "validate/backward_problem.hpp"  // backward_workspace_layout

namespace flashcl::detail {
namespace {

BackwardArgs call(DType dtype, int d, bool causal = false, int heads_kv = 8) {
  BackwardArgs b;
  ForwardArgs& a = b.forward;
  a.batch = 2;
  a.heads = 8;
  a.heads_kv = heads_kv;
  a.seqlen_q = a.seqlen_k = 1000;
  a.head_dim = d;
  a.causal = causal;
  a.dtype = dtype;
  a.algorithm = Algorithm::FA2;
  a.scale = 0.125f;
  return b;
}

Overrides with(const char* bwd_mma, const char* tile = "", const char* dq_tile = "", const char* dq = "") {
  Overrides o;
  o.bwd_mma = bwd_mma;
  o.bwd_mma_tile = tile;
  o.bwd_mma_dq_tile = dq_tile;
  o.bwd_mma_dq = dq;
  return o;
}

TEST(BwdMmaPlan, TakenOnAmpereAndLaterForHalfTypesAtD64And128) {
  for (auto [major, minor] : {std::pair{8, 0}, {8, 6}, {8, 9}, {9, 0}, {10, 0}})
    for (DType dtype : {DType::F16, DType::BF16})
      for (int d : {64, 128})
        for (bool causal : {false, true})
          for (int heads_kv : {8, 2, 1}) {
            SCOPED_TRACE(std::to_string(major) + "." + std::to_string(minor) + " d=" + std::to_string(d));
            EXPECT_TRUE(bwd_mma_eligible(simulated_nvidia_gpu(48, major, minor),
                                         call(dtype, d, causal, heads_kv), with("")));
            EXPECT_TRUE(bwd_mma_eligible(simulated_nvidia_gpu(48, major, minor), call(dtype, d), with("1")));
          }
}

// Other head dims up to 128 where the planned shape compiles (bwd_mma_plan.cpp's shape_compiles):
// the columns padded to the mma k (16 in 16 bits, 8 in fp32) in an even number of 8-column tiles a
// warp, for dK/dV and for dQ. The default shapes (two warps a dQ m-tile) take DPAD a multiple of 32;
// 16-bit atomic dQ at d <= 64 (8 warps, four a dQ m-tile) takes only DPAD 64; the opt-in wgmma
// forms stay at 64 and 128, where they were measured.
TEST(BwdMmaPlan, OtherHeadDimsWhereTheShapeCompiles) {
  const DeviceFacts hopper = simulated_nvidia_gpu(48, 9, 0);
  Overrides tf32 = with(""), atomic = with("", "", "", "atomic"), wgmma = with("1");
  tf32.bwd_tf32 = true;
  wgmma.bwd_wgmma = "1";
  for (DType dtype : {DType::F16, DType::BF16}) {
    for (int d : {17, 32, 50, 81, 96, 120, 127}) {
      SCOPED_TRACE(std::string(to_string(dtype)) + " d=" + std::to_string(d));
      const BackwardArgs b = call(dtype, d, true, 2);
      ASSERT_TRUE(bwd_mma_eligible(hopper, b, with("")));
      const BwdMmaChoice c = plan_bwd_mma(hopper, b, wgmma);
      EXPECT_FALSE(c.dq_wgmma || c.dkdv_wgmma);
      EXPECT_LE(c.shape.local_bytes, 48u * 1024);
      EXPECT_LE(c.shape.dq_local_bytes, 48u * 1024);
      EXPECT_EQ(d > 48, bwd_mma_eligible(hopper, b, atomic));  // 8 warps at d <= 64: DPAD 64 only
    }
    for (int d : {16, 33, 48, 80, 112}) EXPECT_FALSE(bwd_mma_eligible(hopper, call(dtype, d), with(""))) << d;
  }
  for (int d : {25, 32, 90, 96, 124}) EXPECT_TRUE(bwd_mma_eligible(hopper, call(DType::F32, d), tf32)) << d;
  for (int d : {24, 40, 72, 80, 112}) EXPECT_FALSE(bwd_mma_eligible(hopper, call(DType::F32, d), tf32)) << d;
  EXPECT_TRUE(bwd_mma_eligible(hopper, call(DType::F16, 64), atomic));
}

TEST(BwdMmaPlan, LeftToPortableKernelsElsewhere) {
  const DeviceFacts ampere = simulated_nvidia_gpu(48, 8, 0);
  EXPECT_FALSE(bwd_mma_eligible(simulated_nvidia_gpu(48, 7, 5), call(DType::F16, 64), with("")));
  EXPECT_FALSE(bwd_mma_eligible(simulated_nvidia_gpu(48), call(DType::F16, 64), with("")));  // no compute capability
  DeviceFacts amd = ampere;
  amd.vendor = "Advanced Micro Devices, Inc.";
  EXPECT_FALSE(bwd_mma_eligible(amd, call(DType::F16, 64), with("")));
  DeviceFacts cpu = ampere;
  cpu.kind = DeviceKind::CPU;
  EXPECT_FALSE(bwd_mma_eligible(cpu, call(DType::F16, 64), with("")));
  Overrides no_tf32 = with("");  // fp32 goes to the tensor cores only through 3xTF32 (below)
  no_tf32.bwd_tf32 = false;
  EXPECT_FALSE(bwd_mma_eligible(ampere, call(DType::F32, 64), no_tf32));
  for (int d : {16, 40, 80, 112, 129, 256}) EXPECT_FALSE(bwd_mma_eligible(ampere, call(DType::F16, d), with(""))) << d;
  EXPECT_FALSE(bwd_mma_eligible(ampere, call(DType::F16, 64), with("0")));
  EXPECT_FALSE(bwd_mma_eligible(simulated_nvidia_gpu(16, 8, 0), call(DType::F16, 128), with("")));  // 16 KiB

  BackwardArgs fa1 = call(DType::F16, 64);
  fa1.forward.algorithm = Algorithm::FA1;
  EXPECT_FALSE(bwd_mma_eligible(ampere, fa1, with("")));
  BackwardArgs bias_grad = call(DType::F16, 64), huge = bias_grad;
  bias_grad.forward.mask.kind = MaskKind::Bias;  // dS written out: the portable kernels' DBIAS
  bias_grad.d_bias.kind = MaskKind::Bias;
  huge.forward.scale = 3e38f;  // scale * log2 e past FLT_MAX
  for (const BackwardArgs* b : {&bias_grad, &huge}) EXPECT_FALSE(bwd_mma_eligible(ampere, *b, with("")));
}

// fp32 through 3xTF32 unless FLASHCL_BWD_TF32=0 (the default since an H100 ran its tests): d = 64
// and 128, dQ always by its pass (an atomic request changes nothing), BC = BQ, one m-tile a warp,
// every tile at one pitch, never wgmma, both kernels within 48 KiB; FLASHCL_BWD_MMA=any takes it on
// any device (the emulated run on PoCL), "0" on none.
TEST(BwdMmaPlan, Fp32ThroughTf32) {
  const DeviceFacts hopper = simulated_nvidia_gpu(48, 9, 0);
  Overrides on = with(""), on_any = with("any"), off = with("0"), atomic = with("", "", "", "atomic"),
            wgmma = with("1");
  for (Overrides* o : {&on, &on_any, &off, &atomic, &wgmma}) o->bwd_tf32 = true;
  wgmma.bwd_wgmma = "1";
  EXPECT_EQ(kTf32BackwardByDefault, bwd_mma_eligible(hopper, call(DType::F32, 64), with("")));
  for (int d : {64, 128})
    for (bool causal : {false, true}) {
      SCOPED_TRACE("d=" + std::to_string(d));
      const BackwardArgs b = call(DType::F32, d, causal, 2);
      ASSERT_TRUE(bwd_mma_eligible(hopper, b, on));
      for (const Overrides* o : {&on, &atomic}) {
        const BwdMmaPlan p = bwd_mma_plan(b.forward, *o);
        EXPECT_TRUE(p.dq_pass);
        EXPECT_TRUE(bwd_mma_takes_dq(hopper, b, *o));
        EXPECT_EQ(p.dq_keys, p.query_rows);
        EXPECT_EQ(1, p.key_mtiles);
        EXPECT_EQ(1, p.dq_mtiles);
        EXPECT_LE(p.local_bytes, 48u * 1024);
        EXPECT_LE(p.dq_local_bytes, 48u * 1024);
        EXPECT_NE(std::string::npos, bwd_mma_options(b, p).find("-DONE_PITCH=1"));
        EXPECT_NE(std::string::npos, bwd_mma_options(b, p).find("-DDQ_ATOMIC=0"));
        // d = 128: the dK/dV warps in pairs (K_w, dV_w | V_w, dK_w), 16 keys a pair, with each pair's
        // S^T handed over in __local memory (4 warps x 32 rows: 2 x 16 x 32 floats)
        EXPECT_EQ(d == 128, p.warp_pairs);
        EXPECT_EQ(d == 128, bwd_mma_options(b, p).find("-DWARP_PAIRS=1") != std::string::npos);
        EXPECT_EQ(p.local_bytes, bwd_tf32_local_bytes(p.query_rows, d, p.stages) + (d == 128 ? 4096u : 0u));
      }
      const BwdMmaChoice c = plan_bwd_mma(hopper, b, wgmma);
      EXPECT_FALSE(c.dq_wgmma || c.dkdv_wgmma);
      EXPECT_EQ(&programs::bwd_mma_tf32, c.program.files);
      EXPECT_FALSE(bwd_mma_eligible(hopper, b, off));
    }
  for (int d : {40, 80, 256}) EXPECT_FALSE(bwd_mma_eligible(hopper, call(DType::F32, d), on)) << d;
  const DeviceFacts pocl = simulated_pocl_cpu(16);
  EXPECT_FALSE(bwd_mma_eligible(pocl, call(DType::F32, 64), on));
  EXPECT_TRUE(bwd_mma_eligible(pocl, call(DType::F32, 64), on_any));
  EXPECT_TRUE(plan_bwd_mma(pocl, call(DType::F32, 64), on_any).required);
  // FLASHCL_BWD_MMA_TILE under bwd_mma.cl's compile-time rules (as for 16 bits) and up to 128 rows;
  // an MK of 2 (the 16-bit kernels') leaves fp32 at one m-tile a warp
  Overrides tile = on;
  for (const char* uncompilable : {"4x128", "1x32", "2x64", "8x16", "4x144", "4x32x3"}) {
    tile.bwd_mma_tile = uncompilable;
    EXPECT_THROW(bwd_mma_plan(call(DType::F32, 64).forward, tile), Error) << uncompilable;
  }
  tile.bwd_mma_tile = "4x32x1x2";
  EXPECT_EQ(1, bwd_mma_plan(call(DType::F32, 64).forward, tile).key_mtiles);
  tile.bwd_mma_tile = "2x16x2";
  const BwdMmaPlan small = bwd_mma_plan(call(DType::F32, 128).forward, tile);
  EXPECT_EQ(16, small.dq_keys);
  EXPECT_EQ(2, small.dq_stages);
}

// Two kernel forms, each one build option, made the default after an H100 A/B'd them
// (bench/gpu/bwd_kernels_ab.sh, 2026-12-07): the fp32 A fragments split at each product
// (-DSPLIT_A_EACH_PRODUCT=1) at d > 64 only, where it measured 1.11x (0.99x at d = 64), and
// FLASHCL_BWD_TF32_SPLIT=1 or 0 at every head dim; a 16-bit softcap's tanh from one ex2.approx
// (-DSOFTCAP_EX2=1, only on calls with a softcap up to kSoftcapEx2Max) unless
// FLASHCL_BWD_SOFTCAP_EX2=0.
TEST(BwdMmaPlan, KernelFormsAreOneBuildOptionEach) {
  Overrides plain = with(""), split = with(""), no_split = with(""), no_ex2 = with("");
  split.bwd_tf32_split = true;
  no_split.bwd_tf32_split = false;
  no_ex2.bwd_softcap_ex2 = false;
  const auto has = [](const BackwardArgs& b, const Overrides& o, const char* option) {
    return bwd_mma_options(b, bwd_mma_plan(b.forward, o)).find(option) != std::string::npos;
  };
  for (int d : {64, 128}) {
    BackwardArgs fp32 = call(DType::F32, d), capped = call(DType::F16, d);
    capped.forward.softcap = 30.0f;
    EXPECT_EQ(d > 64, has(fp32, plain, " -DSPLIT_A_EACH_PRODUCT=1")) << d;
    EXPECT_TRUE(has(fp32, split, " -DSPLIT_A_EACH_PRODUCT=1")) << d;
    EXPECT_FALSE(has(fp32, no_split, "SPLIT_A_EACH_PRODUCT")) << d;
    EXPECT_FALSE(has(capped, split, "SPLIT_A_EACH_PRODUCT")) << d;  // fp32 only
    EXPECT_TRUE(has(capped, plain, " -DSOFTCAP_EX2=1")) << d;
    EXPECT_FALSE(has(capped, no_ex2, "SOFTCAP_EX2")) << d;
    EXPECT_FALSE(has(call(DType::F16, d), plain, "SOFTCAP_EX2")) << d;  // no softcap
    BackwardArgs fp32_capped = fp32;
    fp32_capped.forward.softcap = 30.0f;
    EXPECT_FALSE(has(fp32_capped, plain, "SOFTCAP_EX2")) << d;  // fp32 keeps the library's tanh
    capped.forward.softcap = kSoftcapEx2Max * 2;  // the form's error grows with c: the library's tanh
    EXPECT_FALSE(has(capped, plain, "SOFTCAP_EX2")) << d;
  }
}

// Windows, softcaps, ALiBi, masks and packed sequences run on mma.sync (bwd_kv_steps.cl's
// BWD_VARIANTS) unless FLASHCL_TENSOR_CORE_VARIANTS=0, each alone and all together; the wgmma forms
// keep them off even when asked for.
TEST(BwdMmaPlan, VariantsRunOnMmaSyncOnly) {
  const DeviceFacts hopper = simulated_nvidia_gpu(48, 9, 0);
  const auto on = [](Overrides o) {  // FLASHCL_TENSOR_CORE_VARIANTS=1
    o.tensor_core_variants = true;
    return o;
  };
  BackwardArgs window = call(DType::F16, 64), softcap = window, alibi = window, mask = window, bias = window,
               varlen = window, all = window;
  window.forward.window.left = 16;
  softcap.forward.softcap = 30.0f;
  cl_mem fake = reinterpret_cast<cl_mem>(std::uintptr_t{0x1000});  // planning reads no buffer
  alibi.forward.alibi_slopes = fake;
  mask.forward.mask.kind = MaskKind::Bool;
  bias.forward.mask.kind = MaskKind::Bias;  // the bias itself, without its gradient
  varlen.forward.cu_seqlens_q = varlen.forward.cu_seqlens_k = fake;
  all.forward.window = {8, 0};
  all.forward.softcap = 5.0f;
  all.forward.alibi_slopes = all.forward.cu_seqlens_q = all.forward.cu_seqlens_k = fake;
  all.forward.mask.kind = MaskKind::Bias;
  all.forward.causal = true;
  BackwardArgs right_only = call(DType::F16, 64);
  right_only.forward.window = {-1, 5};
  for (const BackwardArgs* b : {&window, &right_only, &softcap, &alibi, &mask, &bias, &varlen, &all}) {
    EXPECT_TRUE(bwd_mma_has_variants(b->forward));
    // the kernels declare the variant arguments exactly when the program has one of these switches
    // (bwd_kv_steps.cl's BWD_VARIANTS), and the launcher sets them exactly when this holds
    const std::string options = common_options(b->forward);
    bool switches = false;
    for (const char* sw : {"-DVARLEN=1", "-DWINDOW=1", "-DSOFTCAP=1", "-DALIBI=1", "-DMASK_KIND="})
      switches = switches || options.find(sw) != std::string::npos;
    EXPECT_TRUE(switches) << options;
    for (int d : {64, 128}) {
      BackwardArgs at = *b;
      at.forward.head_dim = d;
      EXPECT_TRUE(bwd_mma_eligible(hopper, at, on(with("")))) << d;
      Overrides off = with("");
      off.tensor_core_variants = false;  // FLASHCL_TENSOR_CORE_VARIANTS=0: the portable kernels
      EXPECT_FALSE(bwd_mma_eligible(hopper, at, off)) << d;
      const BwdMmaPlan plan = bwd_mma_plan(at.forward, with(""));
      for (const char* form : {"1", "dq", "overlap"}) {
        Overrides o = on(with(""));
        o.bwd_wgmma = form;
        const BwdWgmmaKernels k = bwd_wgmma_kernels(hopper, at, plan, o);
        EXPECT_FALSE(k.dq || k.dkdv || k.dq_overlap) << form << " d " << d;
      }
    }
  }
  for (bool causal : {false, true})
    for (int heads_kv : {8, 2}) {  // causal and GQA are no variants here: their programs take no extra arguments
      const ForwardArgs plain = call(DType::F16, 64, causal, heads_kv).forward;
      EXPECT_FALSE(bwd_mma_has_variants(plain));
      const std::string options = common_options(plain);
      for (const char* sw : {"-DVARLEN", "-DWINDOW", "-DSOFTCAP", "-DALIBI", "-DMASK_KIND"})
        EXPECT_EQ(options.find(sw), std::string::npos) << options;
    }
}

TEST(BwdMmaPlan, DefaultShapesFitOpenClLocalMemory) {
  for (int d : {64, 128}) {
    const BwdMmaPlan p = bwd_mma_plan(call(DType::F16, d).forward, with(""));
    EXPECT_EQ(p.local_bytes, bwd_mma_local_bytes(p.warps * p.key_mtiles, p.query_rows, d, p.stages));
    EXPECT_LE(p.local_bytes, 48u * 1024) << d;
    // the fastest measured shapes (bwd_mma_plan.cpp): with the dQ pass (default) 4 warps x 32 rows,
    // at d = 64 two m-tiles a warp (32 keys) and two Q/dO buffers (H100), at d = 128 one and one
    // (H200); with atomic dQ 8 x 32 at d = 64
    EXPECT_TRUE(p.dq_pass);
    EXPECT_EQ(p.warps, 4);
    EXPECT_EQ(p.query_rows, 32);
    EXPECT_EQ(p.key_mtiles, d == 64 ? 2 : 1);
    EXPECT_EQ(p.stages, d == 64 ? 2 : 1);
    const BwdMmaPlan atomic = bwd_mma_plan(call(DType::F16, d).forward, with("", "", "", "atomic"));
    EXPECT_FALSE(atomic.dq_pass);
    EXPECT_EQ(atomic.warps, d == 64 ? 8 : 4);
    EXPECT_EQ(atomic.query_rows, 32);
    EXPECT_LE(atomic.local_bytes, 48u * 1024) << d;
  }
  for (const char* bad : {"Atomic", "1", "passes"}) {
    try {
      bwd_mma_plan(call(DType::F16, 64).forward, with("", "", "", bad));
      ADD_FAILURE() << bad << " accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.status(), Status::InvalidArgument) << bad;
      EXPECT_NE(std::string(e.what()).find("FLASHCL_BWD_MMA_DQ"), std::string::npos) << e.what();
    }
  }
  // K (64 x 72), Q and dO (64 x 72), dS^T (64 x 72) in 16 bits; LSE and D: 64 floats each
  EXPECT_EQ(bwd_mma_local_bytes(4, 64, 64), 2u * (64 * 72 * 4) + 512);
  // two stages: Q, dO, LSE and D twice
  EXPECT_EQ(bwd_mma_local_bytes(4, 32, 64, 2), 2u * (64 * 72 + 4 * 32 * 72 + 64 * 40) + 512);
}

TEST(BwdMmaPlan, TileOverride) {
  const ForwardArgs a = call(DType::F16, 64).forward;
  const BwdMmaPlan p = bwd_mma_plan(a, with("", "8x32"));
  EXPECT_EQ(p.warps, 8);
  EXPECT_EQ(p.query_rows, 32);
  // a forced shape that does not compile at a call's head dim leaves that call to the portable
  // kernels instead of failing it (8 warps x 32 rows: four warps a dQ m-tile, DPAD 64 only)
  const DeviceFacts hopper = simulated_nvidia_gpu(48, 9, 0);
  EXPECT_TRUE(bwd_mma_eligible(hopper, call(DType::F16, 64), with("", "8x32")));
  EXPECT_FALSE(bwd_mma_eligible(hopper, call(DType::F16, 32), with("", "8x32")));
  EXPECT_FALSE(bwd_mma_eligible(hopper, call(DType::F16, 96), with("", "8x32")));
  // a forced shape too large for the device leaves the call to the portable kernels
  EXPECT_FALSE(bwd_mma_eligible(simulated_nvidia_gpu(48, 8, 0), call(DType::F16, 128), with("", "8x64")));
  const BwdMmaPlan two = bwd_mma_plan(a, with("", "4x32x2"));
  EXPECT_EQ(two.stages, 2);
  EXPECT_EQ(two.local_bytes, bwd_mma_local_bytes(4, 32, 64, 2));
  EXPECT_LE(two.local_bytes, 48u * 1024);
  for (const char* bad : {"4", "4x", "4x64x3", "4x64x", "4x64x2x3", "4x64x2x0", "4x64x2x", "4x64x2x2x1", "x64", "4x20",
                          "3x64", "0x16", "32x16", "4x64junk"}) {
    try {
      bwd_mma_plan(a, with("", bad));
      ADD_FAILURE() << bad << " accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.status(), Status::InvalidArgument) << bad;
      EXPECT_NE(std::string(e.what()).find("FLASHCL_BWD_MMA_TILE"), std::string::npos) << e.what();
    }
  }
}

// Deterministic calls (and, by default, every call) take bwd_mma_dkdv without its dQ adds and then
// bwd_mma_dq, whose K/V buffers must fit the device as well; its build switches and its tile override.
TEST(BwdMmaPlan, DeterministicCallsTakeTheDqKernel) {
  const DeviceFacts ampere = simulated_nvidia_gpu(48, 8, 0), hopper = simulated_nvidia_gpu(48, 9, 0);
  for (int d : {64, 128})
    for (bool causal : {false, true})
      for (int heads_kv : {8, 2, 1}) {
        BackwardArgs det = call(DType::BF16, d, causal, heads_kv);
        det.deterministic = true;
        // (opt-in until the dQ kernel's tests passed on the H200)
        EXPECT_TRUE(bwd_mma_eligible(hopper, det, with(""))) << d;
        EXPECT_TRUE(bwd_mma_eligible(hopper, det, with("", "", "", "atomic"))) << d;
        EXPECT_TRUE(bwd_mma_eligible(ampere, det, with("1"))) << d;
        EXPECT_TRUE(bwd_mma_eligible(hopper, det, with("1"))) << d;
        BackwardArgs fp32 = det;
        fp32.forward.dtype = DType::F32;
        Overrides no_tf32 = with("1");
        no_tf32.bwd_tf32 = false;
        EXPECT_FALSE(bwd_mma_eligible(ampere, fp32, no_tf32)) << d;
      }
  for (int d : {64, 128}) {
    const BwdMmaPlan p = bwd_mma_plan(call(DType::F16, d).forward, with(""));
    EXPECT_EQ(p.dq_keys, 32);
    EXPECT_EQ(p.dq_stages, 2);
    EXPECT_EQ(p.dq_mtiles, d == 64 ? 2 : 1);
    EXPECT_EQ(p.dq_local_bytes, bwd_mma_dq_local_bytes(p.dq_keys, d, 2));
    EXPECT_LE(p.dq_local_bytes, 48u * 1024) << d;
  }
  // K_j and V_j: 64 rows of 64 + 8 16-bit elements, two buffers
  EXPECT_EQ(bwd_mma_dq_local_bytes(64, 64, 2), 2u * 2 * 2 * 64 * 72);
  // a dQ shape too large for the device leaves a call that needs the dQ pass to the portable kernels
  BackwardArgs det = call(DType::F16, 128);
  det.deterministic = true;
  EXPECT_FALSE(bwd_mma_eligible(ampere, det, with("1", "", "128x2")));
  EXPECT_FALSE(bwd_mma_eligible(ampere, call(DType::F16, 128), with("", "", "128x2")));
  EXPECT_TRUE(bwd_mma_eligible(ampere, call(DType::F16, 128), with("", "", "128x2", "atomic")));
  EXPECT_FALSE(bwd_mma_eligible(ampere, det, with("", "", "128x2", "atomic")));

  BwdMmaPlan p = bwd_mma_plan(det.forward, with(""));
  EXPECT_EQ(bwd_mma_options(det, p),
            " -DWARPS=4 -DBQ=32 -DQSTAGES=1 -DVEC_LOAD=1 -DPAIR_IO=1 -DDQ_ATOMIC=0 -DBC=32 -DDQ_STAGES=2");
  p = bwd_mma_plan(det.forward, with("", "", "64x1"));
  EXPECT_EQ(p.dq_keys, 64);
  EXPECT_EQ(p.dq_stages, 1);
  BackwardArgs odd = det;
  odd.d_q.offset = 1;  // dQ rows at odd elements: written element by element (the atomic form never writes dQ here)
  EXPECT_EQ(bwd_mma_options(odd, p),
            " -DWARPS=4 -DBQ=32 -DQSTAGES=1 -DVEC_LOAD=1 -DPAIR_IO=0 -DDQ_ATOMIC=0 -DBC=64 -DDQ_STAGES=1");
  odd.deterministic = false;  // the dQ pass by default, so the same
  EXPECT_EQ(bwd_mma_options(odd, p),
            " -DWARPS=4 -DBQ=32 -DQSTAGES=1 -DVEC_LOAD=1 -DPAIR_IO=0 -DDQ_ATOMIC=0 -DBC=64 -DDQ_STAGES=1");
  p = bwd_mma_plan(det.forward, with("", "", "64x1", "atomic"));
  EXPECT_EQ(bwd_mma_options(odd, p), " -DWARPS=4 -DBQ=32 -DQSTAGES=1 -DVEC_LOAD=1 -DPAIR_IO=1");
  BackwardArgs v_off = det;
  v_off.forward.v.offset = 4;  // V rows off 16 bytes: the dQ kernel copies K_j, V_j element-wise
  EXPECT_NE(bwd_mma_options(v_off, p).find("-DVEC_LOAD=0"), std::string::npos);
  for (const char* bad : {"64", "64x", "64x3", "48x0", "8x2", "272x1", "0x1", "64x2x3", "64x2x0", "64x2x", "64x2x2y",
                          "64x2junk", "x2"}) {
    try {
      bwd_mma_plan(det.forward, with("", "", bad));
      ADD_FAILURE() << bad << " accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.status(), Status::InvalidArgument) << bad;
      EXPECT_NE(std::string(e.what()).find("FLASHCL_BWD_MMA_DQ_TILE"), std::string::npos) << e.what();
    }
  }
}

// The dQ pass with two 16-row m-tiles a warp (the default at d = 64; FLASHCL_BWD_MMA_DQ_TILE=KEYSxSTAGESx2
// forces it there): -DMT=2 and 32 rows a warp at d = 64 only; d = 128 keeps one m-tile; a forced tile
// without the third field (or with 1) has the options of the two-field form.
// A call whose dQ the tensor cores write in their own pass needs no fp32 dQ accumulator in its
// workspace (B·H·Nq·d floats: 268 MB at B 8, H 16, N 4096, d 128); the atomic form, fa1 and the
// portable kernels' atomic fa2 keep it.
TEST(BwdMmaPlan, DqPassNeedsNoAccumulator) {
  const DeviceFacts hopper = simulated_nvidia_gpu(48, 9, 0);
  for (int d : {64, 128}) {
    const BackwardArgs b = call(DType::F16, d);
    const std::uint64_t rows = std::uint64_t{2} * 8 * 1000, d_floats = rows * sizeof(float);
    EXPECT_TRUE(bwd_mma_takes_dq(hopper, b, with(""))) << d;
    EXPECT_FALSE(bwd_mma_takes_dq(hopper, b, with("", "", "", "atomic"))) << d;
    EXPECT_FALSE(bwd_mma_takes_dq(hopper, b, with("0"))) << d;
    EXPECT_FALSE(bwd_mma_takes_dq(simulated_nvidia_gpu(48, 7, 5), b, with(""))) << d;
    EXPECT_EQ(backward_workspace_layout(b.forward, rows, true, false).bytes, d_floats) << "D only, d " << d;
    EXPECT_EQ(backward_workspace_layout(b.forward, rows, false, false).bytes, d_floats * (1 + d)) << d;
    ForwardArgs fa1 = b.forward;
    fa1.algorithm = Algorithm::FA1;
    EXPECT_EQ(backward_workspace_layout(fa1, rows, true, false).bytes, d_floats * (1 + d)) << "fa1, d " << d;
  }
}

TEST(BwdMmaPlan, DqPassTwoMTilesAtD64) {
  const DeviceFacts hopper = simulated_nvidia_gpu(48, 9, 0);
  const BackwardArgs d64 = call(DType::F16, 64, true), d128 = call(DType::F16, 128, true);
  BwdMmaPlan p = bwd_mma_plan(d64.forward, with("", "", "32x2x2"));
  EXPECT_EQ(p.dq_keys, 32);
  EXPECT_EQ(p.dq_stages, 2);
  EXPECT_EQ(p.dq_mtiles, 2);
  EXPECT_EQ(p.dq_local_bytes, bwd_mma_dq_local_bytes(32, 64, 2));
  EXPECT_TRUE(bwd_mma_eligible(hopper, d64, with("", "", "32x2x2")));
  EXPECT_EQ(bwd_mma_options(d64, p),  // with the default dK/dV shape (MK 2)
            " -DWARPS=4 -DBQ=32 -DQSTAGES=2 -DVEC_LOAD=1 -DPAIR_IO=1 -DDQ_ATOMIC=0 -DBC=32 -DDQ_STAGES=2 -DMT=2 -DMK=2");
  EXPECT_EQ(bwd_mma_options(d64, p), bwd_mma_options(d64, bwd_mma_plan(d64.forward, with(""))));
  EXPECT_EQ(bwd_mma_options(d64, bwd_mma_plan(d64.forward, with("", "", "32x2x1"))),
            bwd_mma_options(d64, bwd_mma_plan(d64.forward, with("", "", "32x2"))));
  EXPECT_EQ(bwd_mma_plan(d64.forward, with("", "", "32x2")).dq_mtiles, 1);
  // the atomic form has no dQ pass: no MT
  EXPECT_EQ(bwd_mma_options(d64, bwd_mma_plan(d64.forward, with("", "", "32x2x2", "atomic"))).find("-DMT"),
            std::string::npos);
  p = bwd_mma_plan(d128.forward, with("", "", "32x2x2"));
  EXPECT_EQ(p.dq_mtiles, 1);
  EXPECT_TRUE(bwd_mma_eligible(hopper, d128, with("", "", "32x2x2")));
  EXPECT_EQ(bwd_mma_options(d128, p),
            bwd_mma_options(d128, bwd_mma_plan(d128.forward, with(""))));  // d = 128's default dQ tile is 32x2
}

// The dK/dV kernel with two 16-key m-tiles a warp (d = 64's default; FLASHCL_BWD_MMA_TILE=WARPSxBQxSTAGESx2):
// -DMK=2, K/V blocks of 32 * warps keys (so the local bytes of twice the warps' keys) with the dQ
// pass at d = 64; d = 128 and the atomic form keep one m-tile and the options they had.
TEST(BwdMmaPlan, DkDvTwoMTilesAtD64) {
  const DeviceFacts hopper = simulated_nvidia_gpu(48, 9, 0);
  const BackwardArgs d64 = call(DType::F16, 64, true), d128 = call(DType::F16, 128, true);
  BwdMmaPlan p = bwd_mma_plan(d64.forward, with("", "4x32x2x2", "32x2x2"));
  EXPECT_EQ(p.key_mtiles, 2);
  EXPECT_EQ(p.local_bytes, bwd_mma_local_bytes(8, 32, 64, 2));
  EXPECT_LE(p.local_bytes, 48u * 1024);
  EXPECT_TRUE(bwd_mma_eligible(hopper, d64, with("", "4x32x2x2", "32x2x2")));
  EXPECT_EQ(bwd_mma_options(d64, p), " -DWARPS=4 -DBQ=32 -DQSTAGES=2 -DVEC_LOAD=1 -DPAIR_IO=1 -DDQ_ATOMIC=0 -DBC=32 "
                                     "-DDQ_STAGES=2 -DMT=2 -DMK=2");
  EXPECT_EQ(bwd_mma_options(d64, bwd_mma_plan(d64.forward, with("", "4x32x2x1"))),
            bwd_mma_options(d64, bwd_mma_plan(d64.forward, with("", "4x32x2"))));
  const BwdMmaPlan atomic = bwd_mma_plan(d64.forward, with("", "4x32x2x2", "", "atomic"));
  EXPECT_EQ(atomic.key_mtiles, 1);
  EXPECT_EQ(bwd_mma_options(d64, atomic).find("-DMK"), std::string::npos);
  p = bwd_mma_plan(d128.forward, with("", "4x32x1x2"));
  EXPECT_EQ(p.key_mtiles, 1);
  EXPECT_EQ(bwd_mma_options(d128, p), bwd_mma_options(d128, bwd_mma_plan(d128.forward, with(""))));
}

TEST(BwdMmaPlan, OverridesReadFromTheEnvironmentOnce) {
  const Overrides o = read_overrides([](const char* name) -> const char* {
    if (std::string(name) == "FLASHCL_BWD_MMA") return "0";
    if (std::string(name) == "FLASHCL_BWD_MMA_TILE") return "8x32";
    if (std::string(name) == "FLASHCL_BWD_MMA_DQ_TILE") return "32x1";
    if (std::string(name) == "FLASHCL_BWD_MMA_DQ") return "atomic";
    return nullptr;
  });
  EXPECT_EQ(o.bwd_mma_dq_tile, "32x1");
  EXPECT_EQ(o.bwd_mma, "0");
  EXPECT_EQ(o.bwd_mma_tile, "8x32");
  EXPECT_EQ(o.bwd_mma_dq, "atomic");
}

// FLASHCL_BWD_WGMMA: "dq" the dQ pass on wgmma, "1" the dK/dV kernel too, "overlap" as "1" with
// the dQ pass's product overlapped (programs.txt's bwd_mma_wgmma through retargeted PTX, the same
// options, -DWGMMA_DKDV=1 where its dK/dV kernel runs, -DDQ_OVERLAP=1), on compute capability 9.0 only, where the dQ pass runs with whole warpgroups and one
// m-tile a warp. Unasked, or elsewhere, nothing changes; another value is an error.
TEST(BwdMmaPlan, WgmmaOnlyWhenAskedOnHopper) {
  Overrides both = with(""), dq = with("");
  both.bwd_wgmma = "1";
  dq.bwd_wgmma = "dq";
  const DeviceFacts hopper = simulated_nvidia_gpu(48, 9, 0);
  for (DType dtype : {DType::F16, DType::BF16})
    for (int d : {64, 128}) {
      SCOPED_TRACE(std::string(to_string(dtype)) + " d=" + std::to_string(d));
      const BackwardArgs b = call(dtype, d, true);
      const BwdMmaPlan p = bwd_mma_plan(b.forward, both);
      EXPECT_TRUE(bwd_wgmma_kernels(hopper, b, p, both).dq);
      EXPECT_TRUE(bwd_wgmma_kernels(hopper, b, p, both).dkdv);
      EXPECT_TRUE(bwd_wgmma_kernels(hopper, b, p, dq).dq);
      EXPECT_FALSE(bwd_wgmma_kernels(hopper, b, p, dq).dkdv);
      for (const char* off : {"", "0"}) {
        Overrides o = with("");
        o.bwd_wgmma = off;
        EXPECT_FALSE(bwd_wgmma_kernels(hopper, b, p, o).dq);
        EXPECT_FALSE(bwd_wgmma_kernels(hopper, b, p, o).dkdv);
      }
      BwdMmaPlan wide = p;  // FLASHCL_BWD_MMA_DQ_TILE's blocks past 128 keys: more tiles than WG_TILES issues
      wide.dq_keys = 192;
      EXPECT_FALSE(bwd_wgmma_kernels(hopper, b, wide, both).dq);
      wide.dq_keys = 128;
      EXPECT_TRUE(bwd_wgmma_kernels(hopper, b, wide, both).dq);
      for (auto [major, minor] : {std::pair{8, 0}, {8, 9}, {9, 1}, {10, 0}}) {
        const DeviceFacts other = simulated_nvidia_gpu(48, major, minor);
        EXPECT_FALSE(bwd_wgmma_kernels(other, b, p, both).dq) << major << "." << minor;
        EXPECT_FALSE(bwd_wgmma_kernels(other, b, p, both).dkdv) << major << "." << minor;
      }

      const BwdMmaChoice defaults = plan_bwd_mma(hopper, b, with(""));
      ASSERT_TRUE(defaults.eligible && defaults.writes_dq);
      EXPECT_FALSE(defaults.dq_wgmma || defaults.dkdv_wgmma);
      EXPECT_STREQ(defaults.program.name, "bwd_mma_f16");
      EXPECT_STREQ(defaults.dq_program.name, "bwd_mma_f16");
      EXPECT_EQ(defaults.dq_program.options, defaults.program.options);
      // the wgmma forms keep one m-tile a warp: at d = 64 the shape the default had before two
      const BwdMmaChoice plain = plan_bwd_mma(hopper, b, d == 64 ? with("", "4x64", "64x2") : with(""));
      EXPECT_EQ(plain.program.options.find("-DMT"), std::string::npos);

      const BwdMmaChoice dq_only = plan_bwd_mma(hopper, b, dq);
      EXPECT_TRUE(dq_only.dq_wgmma && !dq_only.dkdv_wgmma);
      EXPECT_STREQ(dq_only.program.name, "bwd_mma_f16");
      EXPECT_EQ(dq_only.program.options, plain.program.options);
      EXPECT_FALSE(dq_only.program.arch_ptx);
      EXPECT_STREQ(dq_only.dq_program.name, "bwd_mma_wgmma");
      EXPECT_TRUE(dq_only.dq_program.arch_ptx);
      EXPECT_EQ(dq_only.dq_program.options, plain.program.options);

      const BwdMmaChoice all = plan_bwd_mma(hopper, b, both);
      EXPECT_TRUE(all.dq_wgmma && all.dkdv_wgmma);
      EXPECT_STREQ(all.program.name, "bwd_mma_wgmma");
      EXPECT_TRUE(all.program.arch_ptx);
      // two Q/dO buffers for the wgmma dK/dV kernel (no K tile, no padding: they fit)
      std::string two_buffers = plain.program.options;
      two_buffers.replace(two_buffers.find(" -DQSTAGES=1"), 12, " -DQSTAGES=2");
      EXPECT_EQ(all.program.options, two_buffers + " -DWGMMA_DKDV=1");
      EXPECT_EQ(all.shape.stages, 2);
      EXPECT_EQ(all.dq_program.options, all.program.options);  // one program for both kernels
      EXPECT_FALSE(all.shape.dq_overlap);

      Overrides ov = with("");
      ov.bwd_wgmma = "overlap";
      const BwdMmaChoice overlapped = plan_bwd_mma(hopper, b, ov);
      EXPECT_TRUE(overlapped.dq_wgmma && overlapped.dkdv_wgmma && overlapped.shape.dq_overlap);
      EXPECT_EQ(overlapped.program.options, all.program.options + " -DDQ_OVERLAP=1");
      EXPECT_EQ(overlapped.dq_program.options, overlapped.program.options);
      EXPECT_LE(bwd_wgmma_dq_overlap_local_bytes(p.dq_keys, d, p.warps), 48u * 1024);
      // three K buffers need room
      EXPECT_FALSE(bwd_wgmma_kernels(simulated_nvidia_gpu(32, 9, 0), b, p, ov).dq_overlap);
      EXPECT_FALSE(plan_bwd_mma(hopper, b, dq).shape.dq_overlap);
      EXPECT_LE(bwd_wgmma_dkdv_local_bytes(p.query_rows, d, p.stages), 48u * 1024);
    }
  // atomic dQ (no pass) unless the call is deterministic; two m-tiles a warp (d = 64) or 2 warps: mma.sync
  Overrides atomic = both;
  atomic.bwd_mma_dq = "atomic";
  BackwardArgs b = call(DType::F16, 64);
  EXPECT_FALSE(bwd_wgmma_kernels(hopper, b, bwd_mma_plan(b.forward, atomic), atomic).dq);
  EXPECT_FALSE(bwd_wgmma_kernels(hopper, b, bwd_mma_plan(b.forward, atomic), atomic).dkdv);
  b.deterministic = true;
  EXPECT_TRUE(bwd_wgmma_kernels(hopper, b, bwd_mma_plan(b.forward, atomic), atomic).dq);
  EXPECT_TRUE(bwd_wgmma_kernels(hopper, b, bwd_mma_plan(b.forward, atomic), atomic).dkdv);
  Overrides two_tiles = both;
  two_tiles.bwd_mma_dq_tile = "32x2x2";
  EXPECT_FALSE(bwd_wgmma_kernels(hopper, b, bwd_mma_plan(b.forward, two_tiles), two_tiles).dq);
  Overrides two_warps = both;
  two_warps.bwd_mma_tile = "2x32";
  EXPECT_FALSE(bwd_wgmma_kernels(hopper, b, bwd_mma_plan(b.forward, two_warps), two_warps).dq);
  Overrides two_key_tiles = both;
  two_key_tiles.bwd_mma_tile = "4x32x2x2";
  EXPECT_TRUE(bwd_wgmma_kernels(hopper, b, bwd_mma_plan(b.forward, two_key_tiles), two_key_tiles).dq);
  EXPECT_FALSE(bwd_wgmma_kernels(hopper, b, bwd_mma_plan(b.forward, two_key_tiles), two_key_tiles).dkdv);
  Overrides one_buffer = both;  // a chosen tile is kept as chosen
  one_buffer.bwd_mma_tile = "4x64x1";
  EXPECT_EQ(bwd_wgmma_dkdv_shape(hopper, bwd_mma_plan(b.forward, one_buffer), 64, one_buffer).stages, 1);
  EXPECT_EQ(bwd_wgmma_dkdv_shape(hopper, bwd_mma_plan(b.forward, both), 64, both).stages, 2);
  Overrides wrong = with("");
  wrong.bwd_wgmma = "yes";
  EXPECT_THROW(bwd_wgmma_kernels(hopper, b, bwd_mma_plan(b.forward, wrong), wrong), Error);
  EXPECT_EQ(read_overrides([](const char* name) -> const char* {
              return std::string(name) == "FLASHCL_BWD_WGMMA" ? "dq" : nullptr;
            }).bwd_wgmma,
            "dq");
}

// plan_bwd_mma decides FLASHCL_BWD_WGMMA's kernels once (bwd_wgmma_kernels, on the shape before the
// wgmma dK/dV kernel's two Q/dO buffers, which the dQ pass's decisions do not read: they hold on that
// shape too), over every value, device and dQ form; a bad value is still refused by name.
TEST(BwdMmaPlan, WgmmaKernelsDecidedOnceAreThePlans) {
  int dq_on = 0, dkdv_on = 0, overlap_on = 0;
  for (const DeviceFacts& dev : {simulated_nvidia_gpu(48, 9, 0), simulated_nvidia_gpu(32, 9, 0), simulated_nvidia_gpu(48, 8, 0)})
    for (const char* value : {"", "0", "dq", "1", "overlap"})
      for (const char* dq_form : {"", "atomic"})
        for (bool deterministic : {false, true})
          for (int d : {64, 128}) {
            SCOPED_TRACE(std::string(value) + " " + dq_form + (deterministic ? " deterministic" : "") +
                         " d=" + std::to_string(d) + " " + std::to_string(dev.local_mem_bytes) + " B cc " +
                         std::to_string(dev.nv_compute_major) + "." + std::to_string(dev.nv_compute_minor));
            Overrides o = with("", "", "", dq_form);
            o.bwd_wgmma = value;
            BackwardArgs b = call(DType::F16, d, true);
            b.deterministic = deterministic;
            const BwdMmaChoice c = plan_bwd_mma(dev, b, o);
            if (!c.eligible) continue;
            const BwdMmaPlan before = bwd_mma_plan(b.forward, o);
            const BwdWgmmaKernels k = bwd_wgmma_kernels(dev, b, before, o);
            EXPECT_EQ(c.dq_wgmma, k.dq);
            EXPECT_EQ(c.dkdv_wgmma, k.dkdv);
            EXPECT_EQ(c.shape.dq_overlap, k.dq_overlap);
            const BwdWgmmaKernels after = bwd_wgmma_kernels(dev, b, bwd_wgmma_dkdv_shape(dev, before, d, o), o);
            EXPECT_EQ(after.dq, k.dq);
            EXPECT_EQ(after.dq_overlap, k.dq_overlap);
            dq_on += k.dq;
            dkdv_on += k.dkdv;
            overlap_on += k.dq_overlap;
          }
  EXPECT_GT(dq_on, dkdv_on);  // "dq" takes the dQ pass alone
  EXPECT_GT(dkdv_on, overlap_on);
  EXPECT_GT(overlap_on, 0);
  Overrides wrong = with("");
  wrong.bwd_wgmma = "yes";
  for (const DeviceFacts& dev : {simulated_nvidia_gpu(48, 9, 0), simulated_nvidia_gpu(48, 8, 0)})
    try {
      plan_bwd_mma(dev, call(DType::F16, 64), wrong);
      ADD_FAILURE() << "FLASHCL_BWD_WGMMA=yes was accepted on cc " << dev.nv_compute_major;
    } catch (const Error& e) {
      EXPECT_EQ(e.status(), Status::InvalidArgument);
      EXPECT_NE(std::string(e.what()).find("FLASHCL_BWD_WGMMA"), std::string::npos) << e.what();
    }
}

// Whether bwd_mma_dkdv and bwd_mma_dq share one program is the plan's answer (BwdMmaPrograms::shared,
// which the device probe builds from): only the dQ pass alone on wgmma needs a second program, and
// the flag says exactly when the two programs named differ.
TEST(BwdMmaPlan, KernelProgramsSayWhetherTheyAreOne) {
  for (int d : {64, 128})
    for (bool dkdv_wgmma : {false, true})
      for (bool dq_wgmma : {false, true})
        for (bool overlap : {false, true}) {
          SCOPED_TRACE("d=" + std::to_string(d) + " dkdv_wgmma=" + std::to_string(dkdv_wgmma) +
                       " dq_wgmma=" + std::to_string(dq_wgmma) + " overlap=" + std::to_string(overlap));
          BackwardArgs b = call(DType::F16, d);
          b.deterministic = true;  // bwd_mma_dq runs
          BwdMmaPlan plan = bwd_mma_plan(b.forward, with(""));
          plan.dq_overlap = overlap;
          const BwdMmaPrograms p = bwd_mma_kernel_programs(b, plan, dkdv_wgmma, dq_wgmma);
          EXPECT_EQ(p.shared, !dq_wgmma || dkdv_wgmma);
          EXPECT_EQ(p.shared, p.dq.files == p.dkdv.files && p.dq.options == p.dkdv.options &&
                                  p.dq.arch_ptx == p.dkdv.arch_ptx);
        }
}

TEST(BwdMmaPlan, BuildOptionsFollowTheStrides) {
  BackwardArgs b = call(DType::BF16, 128);
  const BwdMmaPlan p = bwd_mma_plan(b.forward, with("", "", "", "atomic"));  // (dQ pass: the test above)
  EXPECT_EQ(bwd_mma_options(b, p), " -DWARPS=4 -DBQ=32 -DQSTAGES=1 -DVEC_LOAD=1 -DPAIR_IO=1");
  b.d_o.offset = 1;  // dO rows off 16 bytes: element-wise copies
  EXPECT_EQ(bwd_mma_options(b, p), " -DWARPS=4 -DBQ=32 -DQSTAGES=1 -DVEC_LOAD=0 -DPAIR_IO=1");
  b.d_k.seq_stride = 8 * 128 + 1;  // odd dK rows: element stores
  EXPECT_EQ(bwd_mma_options(b, p), " -DWARPS=4 -DBQ=32 -DQSTAGES=1 -DVEC_LOAD=0 -DPAIR_IO=0");
}

// A typo in FLASHCL_BWD_WGMMA is refused by name wherever a backward is planned, also on devices
// that never read the switch (CPUs return from plan_backward_programs before the tensor cores).
TEST(BwdMmaPlan, BadWgmmaSwitchRefusedOnEveryDevice) {
  for (const DeviceFacts& dev : {simulated_pocl_cpu(16), simulated_nvidia_gpu(48, 8, 0), simulated_nvidia_gpu(48, 9, 0)}) {
    const BackwardArgs b = call(dev.kind == DeviceKind::CPU ? DType::F32 : DType::F16, 64);
    Overrides o = with("");
    const BackwardPlan tiles = plan_backward(dev, 64);
    const BwdCpuPlan cpu = plan_bwd_cpu(dev, b.forward);
    EXPECT_NO_THROW(plan_backward_programs(dev, b, tiles, cpu, o));
    o.bwd_wgmma = "on";
    try {
      plan_backward_programs(dev, b, tiles, cpu, o);
      ADD_FAILURE() << "FLASHCL_BWD_WGMMA=on was accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.status(), Status::InvalidArgument);
      EXPECT_NE(std::string(e.what()).find("FLASHCL_BWD_WGMMA"), std::string::npos) << e.what();
    }
  }
}

// The portable backward adds dQ with NVIDIA's native fp32 add (-DNV_RED=1) on NVIDIA by default
// and never elsewhere; FLASHCL_BWD_RED=0 keeps the compare-and-swap loop on NVIDIA too (the A/B).
TEST(BwdMmaPlan, NativeAddOnNvidiaUnlessSwitchedOff) {
  for (const DeviceFacts& dev : {simulated_pocl_cpu(16), simulated_nvidia_gpu(48, 8, 0), simulated_nvidia_gpu(48, 9, 0)}) {
    const BackwardArgs b = call(DType::F32, 40);  // fp32, d 40: the portable kernels on every device
    const BackwardPlan tiles = plan_backward(dev, 40);
    const BwdCpuPlan cpu = plan_bwd_cpu(dev, b.forward);
    Overrides o = with("");
    const bool native = plan_backward_programs(dev, b, tiles, cpu, o).portable.options.find(" -DNV_RED=1") != std::string::npos;
    EXPECT_EQ(native, dev.is_nvidia()) << dev.name;
    o.bwd_red = false;
    EXPECT_EQ(plan_backward_programs(dev, b, tiles, cpu, o).portable.options.find("NV_RED"), std::string::npos) << dev.name;
  }
  EXPECT_FALSE(read_overrides([](const char* name) { return std::string(name) == "FLASHCL_BWD_RED" ? "0" : nullptr; }).bwd_red);
  EXPECT_TRUE(read_overrides([](const char*) -> const char* { return nullptr; }).bwd_red);
}

}  // namespace
}  // namespace flashcl::detail
