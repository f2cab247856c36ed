// test_decode_wide_plan.cpp: decode_lanes' wide form (FLASHCL_DECODE=lanes-wide, lanes-wide-np,
// lanes-wide16 force it; docs/DECODE.md): which -D switches plan_kvcache gives it. LANE_PAGE_KPT only where the page size is a multiple of the keys per work-item;
// LANE_PREFETCH only on NVIDIA (PTX) and only contiguous or with such pages; VEC 16 only for fp8
// caches under lanes-wide16 and only where decode_lanes takes the call (else the usual width for
// the other kernels). The async form (the wide form with LANE_ASYNC, the ring of cp.async tiles) is
// the default for 16-bit caches on NVIDIA, contiguous or with whole KPT runs a page (fp8 caches keep
// the single form), and its forced shapes (lanes-async-k<K>s<S>).
#include <gtest/gtest.h>

#include <string>

#include "base/errors.hpp"
#include "plan/kvcache_plan.hpp"
#include "planner_calls.hpp"
#include "simulated_devices.hpp"

namespace flashcl::detail {
namespace {

const DeviceFacts h100 = simulated_nvidia_gpu(228, 9, 0);

// (one query under 4096 keys: from there decode_mma takes contiguous caches and pages read in runs)
TEST(DecodeWidePlan, DefaultPlansTakeTheAsyncFormFor16BitCachesOnNvidiaOnly) {
  for (DType cache : {DType::F16, DType::E4M3})
    for (int page : {0, 1, 16, 256}) {
      const KvCacheArgs call = decode_step_call(cache, page, 32, 1, 2048);
      const KvCachePlan p = plan_decode_call(h100, call);
      SCOPED_TRACE(p.program.options);
      EXPECT_STREQ(p.attention_kernel, "decode_lanes");
      EXPECT_FALSE(has_option(p, "-DVEC=16"));
      if (cache == DType::F16 && page % 4 == 0) {  // contiguous, or pages of whole KPT runs: as under lanes-async
        EXPECT_EQ(p.program.options, plan_decode_call(h100, call, "lanes-async").program.options);
        EXPECT_TRUE(has_option(p, "-DLANE_WIDE=1") && has_option(p, "-DLANE_ASYNC=2") && has_option(p, "-DKPT=4"));
        EXPECT_FALSE(has_option(p, "-DLANE_PREFETCH=2"));  // the ring replaces the L2 prefetch
        EXPECT_EQ(has_option(p, "-DLANE_PAGE_KPT=1"), page > 0);
        EXPECT_EQ(p.decode.local_bytes, 2u * 2 * 32 * 16 * 16);  // 2 stages x K, V x 32 keys x 16 lanes x 16 bytes
        continue;
      }
      EXPECT_EQ(p.program.options.find("LANE_WIDE"), std::string::npos);
      EXPECT_EQ(p.program.options.find("LANE_PAGE_KPT"), std::string::npos);
      EXPECT_EQ(p.program.options.find("LANE_PREFETCH"), std::string::npos);
      EXPECT_EQ(p.program.options.find("LANE_ASYNC"), std::string::npos);
    }
  // fp32 caches (unmeasured) keep the single form; other devices keep their kernels (PoCL: decode_cpu)
  EXPECT_EQ(plan_decode_call(h100, decode_step_call(DType::F32, 16)).program.options.find("LANE_WIDE"), std::string::npos);
  for (const DeviceFacts& f : {simulated_pocl_cpu(16), simulated_pocl_cpu(8)})
    EXPECT_EQ(plan_decode_call(f, decode_step_call(DType::F16, 16)).program.options.find("LANE_"), std::string::npos);
  // cp.async needs compute capability 8.0: older (or unknown) NVIDIA parts keep the single form
  for (const DeviceFacts& f : {simulated_nvidia_gpu(48, 7, 5), simulated_nvidia_gpu(48)})
    EXPECT_EQ(plan_decode_call(f, decode_step_call(DType::F16, 0)).program.options.find("LANE_ASYNC"), std::string::npos);
}

// The async form's forced shapes: KPT keys a work-item and the ring's stages from the name; a name
// out of the grammar is an error naming FLASHCL_DECODE; fp8 caches and pages that split a lane's
// keys keep the kernels they had.
TEST(DecodeWidePlan, AsyncFormsForcedByName) {
  const KvCachePlan k2s4 = plan_decode_call(h100, decode_step_call(DType::F16, 0), "lanes-async-k2s4");
  EXPECT_TRUE(has_option(k2s4, "-DKPT=2") && has_option(k2s4, "-DLANE_ASYNC=4") && has_option(k2s4, "-DBC=16"));
  EXPECT_EQ(k2s4.decode.local_bytes, 4u * 2 * 16 * 16 * 16);
  EXPECT_TRUE(has_option(plan_decode_call(h100, decode_step_call(DType::F16, 2), "lanes-async-k2s4"), "-DLANE_PAGE_KPT=1"));
  // calls the form cannot take get exactly the unforced plan: pages splitting a lane's keys, fp8
  // caches, CPUs, NVIDIA parts without cp.async
  const auto same_as_unforced = [](const DeviceFacts& f, const KvCacheArgs& a) {
    const KvCachePlan forced = plan_decode_call(f, a, "lanes-async"), unforced = plan_decode_call(f, a);
    EXPECT_STREQ(forced.attention_kernel, unforced.attention_kernel);
    EXPECT_EQ(forced.program.options, unforced.program.options);
    EXPECT_EQ(forced.decode.num_splits, unforced.decode.num_splits);
  };
  same_as_unforced(h100, decode_step_call(DType::F16, 2));  // 2 % 4
  same_as_unforced(h100, decode_step_call(DType::E4M3, 0));
  same_as_unforced(simulated_pocl_cpu(16), decode_step_call(DType::F16, 16));
  same_as_unforced(simulated_nvidia_gpu(48, 7, 5), decode_step_call(DType::F16, 0));
  for (const char* bad : {"lanes-async-k3s2", "lanes-async-k4s1", "lanes-async-k4s9", "lanes-async-x", "lanes-async-k4s2x"}) {
    try {
      plan_decode_call(h100, decode_step_call(DType::F16, 0), bad);
      ADD_FAILURE() << bad << " was accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("FLASHCL_DECODE"), std::string::npos) << e.what();
    }
  }
}

TEST(DecodeWidePlan, PageBasePerLaneOnlyWherePagesHoldWholeKeyRuns) {
  for (int page : {16, 256, 4, 12}) {  // multiples of KPT = 4: a page base per lane and tile, prefetch
    const KvCachePlan p = plan_decode_call(h100, decode_step_call(DType::F16, page), "lanes-wide");
    SCOPED_TRACE(p.program.options);
    EXPECT_TRUE(has_option(p, "-DLANE_WIDE=1") && has_option(p, "-DLANE_PAGE_KPT=1") && has_option(p, "-DLANE_PREFETCH=2"));
    EXPECT_TRUE(has_option(p, "-DKPT=4") && has_option(p, "-DLANE_SHUFFLE=1") && has_option(p, "-DVEC=8"));
    EXPECT_FALSE(has_option(p, "-DLANE_PIPELINE=1"));
  }
  for (int page : {1, 2, 7, 17}) {  // a lane's keys may cross a page: the per-key walk, no prefetch
    const KvCachePlan p = plan_decode_call(h100, decode_step_call(DType::F16, page), "lanes-wide");
    SCOPED_TRACE(p.program.options);
    EXPECT_TRUE(has_option(p, "-DLANE_WIDE=1"));
    EXPECT_EQ(p.program.options.find("LANE_PAGE_KPT"), std::string::npos);
    EXPECT_EQ(p.program.options.find("LANE_PREFETCH"), std::string::npos);
  }
  const KvCachePlan contiguous = plan_decode_call(h100, decode_step_call(DType::F16), "lanes-wide");
  EXPECT_TRUE(has_option(contiguous, "-DLANE_WIDE=1") && has_option(contiguous, "-DLANE_PREFETCH=2"));
  EXPECT_EQ(contiguous.program.options.find("LANE_PAGE_KPT"), std::string::npos);
  const KvCachePlan np = plan_decode_call(h100, decode_step_call(DType::F16, 16), "lanes-wide-np");
  EXPECT_TRUE(has_option(np, "-DLANE_WIDE=1") && has_option(np, "-DLANE_PAGE_KPT=1"));
  EXPECT_EQ(np.program.options.find("LANE_PREFETCH"), std::string::npos);
}

TEST(DecodeWidePlan, PrefetchOnlyOnNvidia) {
  for (const DeviceFacts& f : {simulated_pocl_cpu(16), simulated_pocl_cpu(8)}) {
    const KvCachePlan p = plan_decode_call(f, decode_step_call(DType::F16, 16), "lanes-wide");
    SCOPED_TRACE(p.program.options);
    EXPECT_STREQ(p.attention_kernel, "decode_lanes");  // the PTX-free form, for tests
    EXPECT_TRUE(has_option(p, "-DLANE_WIDE=1") && has_option(p, "-DLANE_PAGE_KPT=1"));
    EXPECT_EQ(p.program.options.find("LANE_SHUFFLE"), std::string::npos);
    EXPECT_EQ(p.program.options.find("LANE_PREFETCH"), std::string::npos);
  }
}

TEST(DecodeWidePlan, Fp8AtSixteenBytesOnlyUnderLanesWide16) {
  for (DType cache : {DType::E4M3, DType::E5M2}) {
    const KvCachePlan p = plan_decode_call(h100, decode_step_call(cache, 16), "lanes-wide16");
    SCOPED_TRACE(p.program.options);
    EXPECT_EQ(p.vec, 16);
    EXPECT_TRUE(has_option(p, "-DVEC=16") && has_option(p, "-DKPT=2") && has_option(p, "-DBC=32") && has_option(p, "-DWG_SIZE=128"));
    EXPECT_TRUE(has_option(p, "-DLANE_PAGE_KPT=1") && has_option(p, "-DLANE_PREFETCH=2") && has_option(p, "-DNV_FP8_CVT=1"));
    EXPECT_EQ(p.decode.local_bytes, decode_lanes_local_bytes(4, 32, 128, 16, 8, true));
    EXPECT_EQ(plan_decode_call(h100, decode_step_call(cache, 16), "lanes-wide").vec, 8);  // lanes-wide keeps 8 bytes
  }
  EXPECT_EQ(plan_decode_call(h100, decode_step_call(DType::F16), "lanes-wide16").vec, 8);  // fp16: already 16 bytes a load
  // 8 rows (H 64 over 8): 16 elements would take 128 query and 128 accumulator registers; VEC 8
  const KvCachePlan rows8 = plan_decode_call(h100, decode_step_call(DType::E4M3, 0, 64), "lanes-wide16");
  EXPECT_EQ(rows8.vec, 8);
  EXPECT_TRUE(has_option(rows8, "-DVEC=8") && has_option(rows8, "-DLANE_WIDE=1"));
  // chunked prefill: the staged kernel, at the usual width
  const KvCachePlan staged = plan_decode_call(h100, decode_step_call(DType::E4M3, 0, 32, 16), "lanes-wide16");
  EXPECT_STREQ(staged.attention_kernel, "decode_split");
  EXPECT_EQ(staged.vec, 8);
  EXPECT_TRUE(has_option(staged, "-DVEC=8"));
}

}  // namespace
}  // namespace flashcl::detail
