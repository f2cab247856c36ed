// test_kvcache_fp8_plan.cpp: which KV-cache programs decode an fp8 cache by NVIDIA's own instruction
// (cvt.rn.f16x2.e4m3x2 / .e5m2x2, sm_89+): plan_kvcache adds -DNV_FP8_CVT=1 to the decode_lanes,
// decode_stream and decode_split programs of e4m3/e5m2 caches on NVIDIA GPUs of compute capability
// 8.9 or more (unless FLASHCL_FP8_CVT=0), and to nothing else (fp16 caches, cc 8.0, CPUs, decode_cpu).
#include <gtest/gtest.h>

#include <string>

#include "plan/kvcache_plan.hpp"
#include "planner_calls.hpp"
#include "simulated_devices.hpp"

namespace flashcl::detail {
namespace {

bool has_cvt(const KvCachePlan& p) { return p.program.options.find("-DNV_FP8_CVT=1") != std::string::npos; }

KvCachePlan plan(const DeviceFacts& f, const KvCacheArgs& a, const std::string& form = "", bool fp8_cvt = true) {
  Overrides o;
  o.decode = form;
  o.fp8_cvt = fp8_cvt;  // FLASHCL_FP8_CVT=0 gives false
  return plan_kvcache(f, a, o);
}

TEST(KvCacheFp8Plan, NvidiaCc90DecodesFp8ByItsInstruction) {
  for (const DeviceFacts& f : {simulated_nvidia_gpu(228, 9, 0), simulated_nvidia_gpu(100, 8, 9)})
    for (DType cache : {DType::E4M3, DType::E5M2}) {
      SCOPED_TRACE(std::to_string(f.nv_compute_major) + "." + std::to_string(f.nv_compute_minor) + " " +
                   to_string(cache));
      const KvCachePlan lanes = plan(f, decode_step_call(cache));
      EXPECT_STREQ(lanes.attention_kernel, "decode_lanes");
      EXPECT_STREQ(lanes.program.name, "decode_lanes_fp8");
      EXPECT_TRUE(has_cvt(lanes)) << lanes.program.options;
      // the option ends the string (after CACHE_DTYPE), so every other row stays as recorded
      const std::string& o = lanes.program.options;
      EXPECT_EQ(o.substr(o.size() - 14), "-DNV_FP8_CVT=1");
      for (const char* form : {"stream", "staged", "lanes"})
        EXPECT_TRUE(has_cvt(plan(f, decode_step_call(cache), form))) << form;
      EXPECT_TRUE(has_cvt(plan(f, decode_step_call(cache, 0, 32, 16))));  // chunked prefill: decode_split
      EXPECT_FALSE(has_cvt(plan(f, decode_step_call(cache), "cpu")));     // decode_cpu keeps its own decode
      EXPECT_FALSE(has_cvt(plan(f, decode_step_call(DType::F16))));
      EXPECT_FALSE(has_cvt(plan(f, decode_step_call(cache), "", false)));  // FLASHCL_FP8_CVT=0
    }
}

TEST(KvCacheFp8Plan, OlderNvidiaAndOtherDevicesKeepTheBitDecode) {
  for (const DeviceFacts& f : {simulated_nvidia_gpu(48, 8, 0), simulated_nvidia_gpu(48, 8, 6), simulated_nvidia_gpu(48),
                               simulated_pocl_cpu(16), simulated_pocl_cpu(8)})
    for (DType cache : {DType::E4M3, DType::E5M2, DType::F16})
      for (const char* form : {"", "lanes", "stream", "staged"}) {
        const KvCachePlan p = plan(f, decode_step_call(cache), form);
        EXPECT_FALSE(has_cvt(p)) << f.name << " " << to_string(cache) << " " << form << ": " << p.program.options;
      }
  DeviceFacts amd = simulated_nvidia_gpu(64, 9, 0);  // another vendor's GPU reporting a compute capability
  amd.vendor = "Advanced Micro Devices, Inc.";
  EXPECT_FALSE(has_cvt(plan(amd, decode_step_call(DType::E4M3))));
}

}  // namespace
}  // namespace flashcl::detail
