// test_decode_probe.cpp: decode_mma's device probe (src/launch/decode_probe.hpp) on the OpenCL
// device here. Where the kernel can build (an NVIDIA GPU of compute capability >= 8.0, or any device
// under tests/emulated_mma's operand files, FLASHCL_KERNEL_DIR) it must pass for fp16 and bf16;
// elsewhere it must fail with a reason, without throwing (PoCL's CPU in CI: the build log, as OpenCL C
// there has no inline PTX), and a second ask must give the remembered answer. The calls it guards are checked by the
// decode suites (decode_mma_emulated forces the form, so every call there runs behind this probe).
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "flashcl/flashcl.hpp"
#include "launch/decode_probe.hpp"
#include "plan/device_facts.hpp"

namespace flashcl::detail {
namespace {

TEST(DecodeMmaProbe, PassesWhereTheKernelBuildsElseSaysWhy) {
  Session session;
  const DeviceFacts& facts = device_facts(session.device());
  const bool emulated = std::getenv("FLASHCL_KERNEL_DIR") != nullptr;
  const bool tensor_cores = facts.is_nvidia() && facts.nv_compute_major >= 8;
  for (DType dtype : {DType::F16, DType::BF16}) {
    SCOPED_TRACE(to_string(dtype));
    std::string why;
    const bool passed = decode_mma_probe_passes(session.context(), session.device(), dtype, &why);
    if (tensor_cores || emulated) {
      EXPECT_TRUE(passed) << why;
      EXPECT_TRUE(why.empty()) << why;
    } else {
      EXPECT_FALSE(passed);
      EXPECT_FALSE(why.empty());
      // a CPU device builds OpenCL C without inline PTX; other GPUs (NVIDIA before cc 8.0) are not
      // planned onto the kernel at all, and say so
      if (facts.kind == DeviceKind::CPU) EXPECT_NE(why.find("build failed"), std::string::npos) << why;
    }
    std::string again;
    EXPECT_EQ(decode_mma_probe_passes(session.context(), session.device(), dtype, &again), passed);
    EXPECT_EQ(again, why);
  }
}

}  // namespace
}  // namespace flashcl::detail
