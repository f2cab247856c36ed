// test_decode_probe.cpp: decode_mma's device probe (src/launch/decode_probe.hpp) on the OpenCL
// device here. Where the kernel can build (an NVIDIA GPU of compute capability >= 8.0, or a CPU
// device under tests/emulated_mma's operand files in FLASHCL_KERNEL_DIR; another kernel tree there
// is skipped) it must pass for fp16 and bf16; elsewhere it must fail with a reason, without throwing
// (PoCL's CPU in CI: the build log, as OpenCL C there has no inline PTX), and a second ask must give
// the remembered answer. The calls it guards are checked by the decode suites (decode_mma_emulated
// forces the form, so every call there runs behind this probe).
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>

#include "flashcl/flashcl.hpp"
#include "launch/decode_probe.hpp"
#include "plan/device_facts.hpp"
#include "plan/plan_decode.hpp"  // decode_mma_local_bytes

namespace flashcl::detail {
namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

TEST(DecodeMmaProbe, PassesWhereTheKernelBuildsElseSaysWhy) {
  Session session;
  const DeviceFacts& facts = device_facts(session.device());
  const bool tensor_cores = facts.is_nvidia() && facts.nv_compute_major >= 8;
  // tests/emulated_mma's operand files in FLASHCL_KERNEL_DIR stand in for the PTX on a CPU device;
  // another kernel tree there (an A/B run's) has no known answer here
  const char* kernel_dir = std::getenv("FLASHCL_KERNEL_DIR");
  const bool emulated = kernel_dir != nullptr && facts.kind == DeviceKind::CPU &&
                        read_file(std::string(kernel_dir) + "/nvidia/mma_ptx.cl") ==
                            read_file(FLASHCL_SOURCE_DIR "/tests/emulated_mma/mma_ptx.cl");
  if (kernel_dir != nullptr && !emulated && !tensor_cores)
    GTEST_SKIP() << "FLASHCL_KERNEL_DIR holds a kernel tree other than tests/emulated_mma's on this device";
  // the probe's tiles (d 64, 32 keys, two stages) as the planner sizes them, against the device's memory
  if (emulated && facts.local_mem_bytes < decode_mma_local_bytes(32, 64, 2, false))
    GTEST_SKIP() << "the probe's decode_mma tiles need " << decode_mma_local_bytes(32, 64, 2, false)
                 << " bytes of local memory; the device has " << facts.local_mem_bytes;
  for (DType dtype : {DType::F16, DType::BF16}) {
    SCOPED_TRACE(to_string(dtype));
    std::string why;
    const bool passed = decode_mma_probe(session.context(), session.device(), dtype, &why) == ProbeResult::Pass;
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
    EXPECT_EQ(decode_mma_probe(session.context(), session.device(), dtype, &again) == ProbeResult::Pass, passed);
    EXPECT_EQ(again, why);
  }
}

}  // namespace
}  // namespace flashcl::detail
