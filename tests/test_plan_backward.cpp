// test_plan_backward.cpp: the backward tile planner (plan_backward.cpp) as a pure function on
// simulated devices: NVIDIA-like GPUs with 16 to 64 KiB of local memory and PoCL-like CPUs that
// report 256 KiB to 4 MiB. For every head dim 1..256 the plan fits the device's local memory and
// work-group limit, keeps the per-work-item accumulators within the register budget, and is the
// largest block that does; a device too small for a one-row block is an OutOfResources error.
#include <gtest/gtest.h>

#include "plan/plan_backward.hpp"
#include "simulated_devices.hpp"

namespace flashcl::detail {
namespace {

DeviceFacts cpu(std::size_t local_kib) {
  DeviceFacts f;
  f.name = "simulated PoCL CPU";
  f.kind = DeviceKind::CPU;
  f.local_mem_bytes = local_kib * 1024;
  f.max_work_group_size = 4096;
  f.work_group_multiple = 8;
  return f;
}

void expect_valid(const DeviceFacts& dev, int d) {
  SCOPED_TRACE(dev.name + " " + std::to_string(dev.local_mem_bytes) + " bytes, d=" + std::to_string(d));
  const BackwardPlan p = plan_backward(dev, d);
  const bool is_cpu = dev.kind == DeviceKind::CPU;
  const std::size_t budget = is_cpu ? std::min<std::size_t>(dev.local_mem_bytes, 64 * 1024) : dev.local_mem_bytes;
  EXPECT_EQ(p.local_bytes, backward_local_bytes(p.block_rows, p.block_cols, d));
  EXPECT_LE(p.local_bytes, budget);
  EXPECT_LE(p.work_group_size, dev.max_work_group_size);
  EXPECT_GE(p.block_rows, 1);
  EXPECT_LE(p.block_rows, 64);
  const int cap = is_cpu ? 64 : 32;
  if (p.block_rows > 1) EXPECT_LE(backward_accumulators(p.block_rows, d, p.work_group_size), cap);
  // the largest: twice the block would not fit the budget or the accumulators
  if (p.block_rows < 64) {
    const int twice = p.block_rows * 2;
    EXPECT_TRUE(backward_local_bytes(twice, twice, d) > budget ||
                backward_accumulators(twice, d, p.work_group_size) > cap);
  }
  EXPECT_FALSE(p.reason.empty());
}

TEST(PlanBackward, FitsEverySimulatedDevice) {
  for (std::size_t kib : {16, 32, 48, 64})
    for (int d = 1; d <= 256; d += (d < 16 ? 1 : 13)) expect_valid(simulated_nvidia_gpu(kib), d);
  for (std::size_t kib : {256, 1024, 4096})
    for (int d : {1, 40, 64, 128, 256}) expect_valid(cpu(kib), d);
}

TEST(PlanBackward, NvidiaBlocksAtCommonHeadDims) {
  const DeviceFacts nv = simulated_nvidia_gpu(48);
  EXPECT_EQ(plan_backward(nv, 64).block_rows, 32);   // (4·32·65 + 2·32² + 2·32) floats = 40.75 KiB
  EXPECT_EQ(plan_backward(nv, 128).block_rows, 16);  // 32 would need 66 KiB
  EXPECT_EQ(plan_backward(nv, 256).block_rows, 8);
}

TEST(PlanBackward, TooSmallDeviceIsAnError) {
  DeviceFacts tiny = simulated_nvidia_gpu(1);
  tiny.local_mem_bytes = 512;
  try {
    plan_backward(tiny, 256);
    ADD_FAILURE() << "planned a backward into 512 bytes";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), Status::OutOfResources);
  }
}

}  // namespace
}  // namespace flashcl::detail
