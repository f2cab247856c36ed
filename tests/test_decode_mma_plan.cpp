// test_decode_mma_plan.cpp: the tensor-core decode form (decode_mma.cl; FLASHCL_DECODE=mma or
// mma-b<BC>s<RING> forces it; NVIDIA's default for more queries than one, and for one on contiguous caches and pages read in runs from 4096
// keys): which calls it takes (16-bit caches at 8 elements a load, any rows in blocks of 16, no rotary, its ring within
// the work-group's local memory), the default plan for every other call, its program and -D switches, its split count
// (whole waves of 3 work-groups a compute unit), the named error of a bad form, and the plan a failed
// device probe leaves (decode_probe.hpp).
#include <gtest/gtest.h>

#include <string>

#include "base/errors.hpp"
#include "plan/kvcache_plan.hpp"
#include "planner_calls.hpp"
#include "simulated_devices.hpp"

namespace flashcl::detail {
namespace {

DeviceFacts h100() {
  DeviceFacts f = simulated_nvidia_gpu(228, 9, 0);
  f.compute_units = 132;
  return f;
}

// An NVIDIA part before compute capability 8.0: no cp.async, no m16n8k16.
DeviceFacts turing() {
  DeviceFacts f = simulated_nvidia_gpu(48, 7, 5);
  f.compute_units = 40;
  return f;
}

TEST(DecodeMmaPlan, ForcedFormTakesTheCallsItCan) {
  for (DType dtype : {DType::F16, DType::BF16})
    for (int page : {0, 1, 6, 16, 256}) {
      KvCacheArgs a = decode_step_call(dtype, page);
      a.dtype = dtype;
      const KvCachePlan p = plan_decode_call(h100(), a, "mma");
      SCOPED_TRACE(p.program.options);
      EXPECT_TRUE(p.decode.mma);
      EXPECT_STREQ(p.attention_kernel, "decode_mma");
      EXPECT_TRUE(has_option(p, "-DWARPS=1") && has_option(p, "-DMT=1") && has_option(p, "-DBC=32") &&
                  has_option(p, "-DRING=2") && has_option(p, "-DVEC=8"));
      EXPECT_EQ(p.program.options.find("-DBR="), std::string::npos);  // mma_ptx.cl's geometry: 16 rows, 32 work-items
      EXPECT_EQ(p.decode.work_group_size, 32u);
      EXPECT_EQ(p.decode.row_blocks, 1);
      // 2 stages x (K, V) x 32 keys x (128 + 8) x 2 bytes; pages of 1 and 6 through the key table (two
      // tables of 2 x 32 offsets and 2 x 32 flags), pages of 16 and 256 in runs of 16 and 32 keys (a
      // contiguous cache's tile is one run inside the kernel: nothing planned)
      const bool table = page == 1 || page == 6;
      EXPECT_EQ(p.decode.local_bytes, 2u * 2 * 32 * 136 * 2 + (table ? 2u * 2 * 32 * 8 + 2 * 32 * 4 : 0u));
      EXPECT_EQ(p.decode.mma_run, page == 16 ? 16 : page == 256 ? 32 : 0);
      EXPECT_EQ(has_option(p, "-DDM_RUN=16"), page == 16);
      EXPECT_EQ(has_option(p, "-DDM_RUN=32"), page == 256);
    }
  // the ring's shapes
  const KvCachePlan b16 = plan_decode_call(h100(), decode_step_call(DType::F16), "mma-b16s4");
  EXPECT_TRUE(has_option(b16, "-DBC=16") && has_option(b16, "-DRING=4"));
  // any rows, a warp per 16-row block, up to 4 warps a work-group: a group of 16 at Nq = 1, Nq = 16
  // of an MHA head, 2 queries of a group of 4 (one warp), 32 rows (two), chunked prefill's 256 (four
  // warps, four work-groups of 64 rows)
  EXPECT_EQ(plan_decode_call(h100(), decode_step_call(DType::F16, 0, 128), "mma").decode.row_blocks, 1);
  EXPECT_EQ(plan_decode_call(h100(), decode_step_call(DType::F16, 16, 8, 16), "mma").decode.row_blocks, 1);
  EXPECT_EQ(plan_decode_call(h100(), decode_step_call(DType::F16, 0, 32, 2), "mma").decode.work_group_size, 32u);
  const KvCachePlan two = plan_decode_call(h100(), decode_step_call(DType::F16, 0, 256), "mma");
  EXPECT_EQ(two.decode.row_blocks, 1);
  EXPECT_TRUE(has_option(two, "-DWARPS=2"));
  const KvCachePlan prefill = plan_decode_call(h100(), decode_step_call(DType::F16, 16, 32, 64), "mma");
  EXPECT_TRUE(prefill.decode.mma);
  EXPECT_EQ(prefill.decode.row_blocks, 4);
  EXPECT_EQ(prefill.decode.work_group_size, 128u);
  EXPECT_TRUE(has_option(prefill, "-DWARPS=4"));
  EXPECT_EQ(prefill.decode.local_bytes,
            plan_decode_call(h100(), decode_step_call(DType::F16, 16), "mma").decode.local_bytes);
  // variants ride along: window, softcap, ALiBi, causal (the MHA rows)
  KvCacheArgs v = decode_step_call(DType::F16, 16, 8, 4);
  v.causal = true;
  v.window = {64, 0};
  v.softcap = 30.0f;
  v.alibi_slopes = some_buffer();
  const KvCachePlan pv = plan_decode_call(h100(), v, "mma");
  EXPECT_TRUE(pv.decode.mma);
  EXPECT_TRUE(has_option(pv, "-DCAUSAL=1") && has_option(pv, "-DWINDOW=1") && has_option(pv, "-DSOFTCAP=1") &&
              has_option(pv, "-DALIBI=1"));
}

TEST(DecodeMmaPlan, OtherCallsGetTheDefaultPlan) {
  const auto same_as_default = [](const KvCacheArgs& a, const DeviceFacts& f, const std::string& what) {
    const KvCachePlan forced = plan_decode_call(f, a, "mma"), unforced = plan_decode_call(f, a);
    EXPECT_FALSE(forced.decode.mma) << what;
    EXPECT_EQ(forced.program.options, unforced.program.options) << what;
    EXPECT_EQ(forced.decode.num_splits, unforced.decode.num_splits) << what;
  };
  KvCacheArgs fp32 = decode_step_call(DType::F32);
  fp32.dtype = DType::F32;
  same_as_default(fp32, h100(), "fp32 cache");
  DeviceFacts other_gpu = simulated_nvidia_gpu(64);
  other_gpu.vendor = "Advanced Micro Devices, Inc.";
  other_gpu.compute_units = 60;
  same_as_default(decode_step_call(DType::F16), turing(), "NVIDIA cc 7.5");
  same_as_default(decode_step_call(DType::F16), other_gpu, "another vendor's GPU: no PTX");
  same_as_default(decode_step_call(DType::E4M3), h100(), "fp8 cache");
  KvCacheArgs r = decode_step_call(DType::F16);
  r.rotary_cos = r.rotary_sin = some_buffer();
  r.rotary_dim = 128;
  r.rotary_seqlen = 4096;
  same_as_default(r, h100(), "rotary");
  KvCacheArgs narrow = decode_step_call(DType::F16);
  narrow.k_cache.seq_stride += 4;  // 4-element loads only
  same_as_default(narrow, h100(), "8-element loads not aligned");
  // a ring past the 48 KiB a work-group gets: 4 stages of 64 keys at d 128 is 136 KiB
  const KvCachePlan big = plan_decode_call(h100(), decode_step_call(DType::F16, 0, 32, 1, 2048), "mma-b64s4");
  EXPECT_FALSE(big.decode.mma);
  for (const char* bad : {"mma-b8s2", "mma-b32s1", "mma-b32s9", "mma-x", "mma-b32s2x"}) try {
      plan_decode_call(h100(), decode_step_call(DType::F16), bad);
      ADD_FAILURE() << bad << " was accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.status(), Status::InvalidArgument);
      EXPECT_NE(std::string(e.what()).find("FLASHCL_DECODE"), std::string::npos) << e.what();
    }
}

// The default on NVIDIA of compute capability >= 8.0: one query from 4096 keys a sequence on
// contiguous caches and on pages read in runs (other pages and shorter caches keep the async form),
// more queries on any cache; older parts, other devices and fp32 caches keep their forms.
TEST(DecodeMmaPlan, DefaultOnNvidiaForManyQueriesAndLongCaches) {
  // one query: from 4096 keys, contiguous or on pages of a multiple of 8 keys (read in runs); pages
  // of 12 (runs of 4) keep the async form
  for (int page : {0, 16, 256, 12}) {
    KvCacheArgs a = decode_step_call(DType::F16, page, 32, 1, 2048);
    EXPECT_FALSE(plan_decode_call(h100(), a).decode.mma) << "2048 keys, page " << page;
    if (page > 0) {
      a.max_pages *= 2;
      a.num_pages *= 2;
      a.block_table_stride = a.max_pages;
    } else {
      a.cache_seqlen *= 2;
      dense_strides(a.k_cache, a.cache_seqlen, a.heads_kv, a.head_dim);
      dense_strides(a.v_cache, a.cache_seqlen, a.heads_kv, a.head_dim);
    }
    const KvCachePlan p = plan_decode_call(h100(), a);
    EXPECT_EQ(p.decode.mma, page != 12) << "4096 keys, page " << page;
    if (page != 12) EXPECT_EQ(p.program.options, plan_decode_call(h100(), a, "mma").program.options);
    EXPECT_FALSE(plan_decode_call(turing(), a).decode.mma) << "cc 7.5";
    EXPECT_FALSE(plan_decode_call(simulated_pocl_cpu(16), a).decode.mma) << "PoCL";
    EXPECT_FALSE(plan_decode_call(h100(), a, "lanes-async").decode.mma) << "forced async form";
  }
  // the runs as the planned work-group takes them: a group of 32 at d 32 on pages of 8 needs 2 warps,
  // whose copy step (16 rows) does not divide a run of 8, so the key table: not the default
  KvCacheArgs wide = decode_step_call(DType::F16, 8, 32);
  wide.heads_kv = 1;
  wide.head_dim = 32;
  wide.max_pages *= 2;
  wide.num_pages = wide.batch * wide.max_pages;
  wide.block_table_stride = wide.max_pages;
  for (Tensor* t : {&wide.q, &wide.o}) dense_strides(*t, 1, wide.heads, wide.head_dim);
  for (Tensor* t : {&wide.k_cache, &wide.v_cache}) dense_strides(*t, 8, wide.heads_kv, wide.head_dim);
  EXPECT_EQ(plan_decode_call(h100(), wide, "mma").decode.mma_run, 0);
  EXPECT_FALSE(plan_decode_call(h100(), wide).decode.mma);
  // more queries than one: every cache, contiguous or paged, at any length
  for (int page : {0, 16})
    for (int nq : {2, 4, 16}) {
      const KvCacheArgs a = decode_step_call(DType::F16, page, 32, nq);
      EXPECT_TRUE(plan_decode_call(h100(), a).decode.mma) << "Nq " << nq << ", page " << page;
      EXPECT_FALSE(plan_decode_call(simulated_pocl_cpu(16), a).decode.mma) << "PoCL, Nq " << nq;
      KvCacheArgs fp32 = a;
      fp32.dtype = DType::F32;
      fp32.cache_dtype = DType::F32;
      EXPECT_FALSE(plan_decode_call(h100(), fp32).decode.mma) << "fp32, Nq " << nq;
    }
}

// A device where decode_mma failed its probe (decode.cpp re-plans with mma_failed): every call the
// default gives decode_mma gets the plan it would have without it, the same as forcing the async form
// where that is the default's next choice (one query, 4 rows a K/V head); a forced "mma" is not
// re-planned (decode.cpp raises the probe's error first), so mma_failed leaves it as it is.
TEST(DecodeMmaPlan, AFailedProbeLeavesTheDefaultToTheNextForm) {
  Overrides o;
  for (int page : {0, 16, 256})
    for (int nq : {1, 4}) {
      const KvCacheArgs a = decode_step_call(DType::F16, page, 32, nq, 8192);
      SCOPED_TRACE(::testing::Message() << "page " << page << ", Nq " << nq);
      ASSERT_TRUE(plan_kvcache(h100(), a, o).decode.mma);
      const KvCachePlan fallback = plan_kvcache(h100(), a, o, 0, true);
      EXPECT_FALSE(fallback.decode.mma);
      EXPECT_STRNE(fallback.attention_kernel, "decode_mma");
      if (nq == 1) {
        EXPECT_EQ(fallback.program.options, plan_decode_call(h100(), a, "lanes-async").program.options);
        EXPECT_EQ(fallback.decode.num_splits, plan_decode_call(h100(), a, "lanes-async").decode.num_splits);
      }
      Overrides forced;
      forced.decode = "mma";
      EXPECT_TRUE(plan_kvcache(h100(), a, forced, 0, true).decode.mma);
    }
}

// Whole waves of 3 work-groups a compute unit (132 on the simulated H100): B 8 x 8 K/V heads, one
// wave of 396 is 6 splits a head; B 1, 49, at most one per 256 keys.
TEST(DecodeMmaPlan, SplitCountsFillWholeWaves) {
  const KvCachePlan b8 = plan_decode_call(h100(), decode_step_call(DType::F16), "mma");
  EXPECT_EQ(b8.decode.num_splits, 6) << b8.decode.reason;
  KvCacheArgs one = decode_step_call(DType::F16);
  one.batch = 1;
  one.cache_batch = 1;
  const KvCachePlan b1 = plan_decode_call(h100(), one, "mma");
  EXPECT_EQ(b1.decode.num_splits, 16) << b1.decode.reason;  // 49 for the wave, at most 4096 / 256
  one.cache_seqlen = 32768;
  const KvCachePlan b1_32k = plan_decode_call(h100(), one, "mma");
  EXPECT_EQ(b1_32k.decode.num_splits, 49);
  // the merge (decode_merge.cl): under 32 splits the walk, 64 work-items at d 128; from 32 a group of
  // 32 work-items per 4 splits, up to 8
  for (const KvCachePlan* few : {&b8, &b1}) {
    EXPECT_TRUE(few->decode.merge_serial);
    EXPECT_EQ(few->decode.merge_wg, 64);
  }
  EXPECT_FALSE(b1_32k.decode.merge_serial);
  EXPECT_EQ(b1_32k.decode.merge_wg, 256);
  for (const auto& [splits, wg] : {std::pair{31, 64}, std::pair{32, 256}, std::pair{40, 256}}) {
    one.num_splits = splits;
    const KvCachePlan forced = plan_decode_call(h100(), one, "mma");
    EXPECT_EQ(forced.decode.merge_serial, splits < 32) << splits;
    EXPECT_EQ(forced.decode.merge_wg, wg) << splits;
  }
  one.num_splits = 0;
  // the workspace query plans the same count (no residency is read for this form)
  EXPECT_EQ(plan_kvcache(h100(), one, env_overrides("FLASHCL_DECODE", "mma"), kResidentForSizing).decode.num_splits,
            49);
}

}  // namespace
}  // namespace flashcl::detail
