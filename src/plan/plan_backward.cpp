// plan_backward.cpp: tile choice for the fa1/fa2 backward (bwd_flash.cl). One square block size
// B = Br = Bc for every kernel of a call (the dK/dV kernel and the deterministic dQ kernel share
// their tiles), the largest power of two from 64 down that
//  - fits the local-memory budget: the device's local memory on GPUs (NVIDIA: 48 KiB); on CPUs,
//    whose __local memory is emulated in ordinary memory and may be reported as 1 MiB, at most
//    64 KiB so the working set stays in the core's L2 cache (as the forward planner does);
//  - keeps each work-item's private accumulators (dK and dV, or dQ) at most 32 floats on GPUs,
//    where they must stay in registers, 64 on CPUs.
// Work-groups are 128 work-items on GPUs and 64 on CPUs (capped by the device's maximum); the
// kernels stride over their tiles, so any size is correct.
#include "plan/plan_backward.hpp"

#include <algorithm>

#include "base/errors.hpp"

namespace flashcl::detail {
namespace {

constexpr std::size_t kCpuPlanningBytes = 64 * 1024;

}  // namespace

std::size_t backward_local_bytes(int block_rows, int block_cols, int head_dim) {
  const std::size_t br = block_rows, bc = block_cols, pitch = head_dim + 1;
  return sizeof(float) * (2 * br * pitch + 2 * bc * pitch + 2 * br * bc + 2 * br);
}

int backward_accumulators(int block, int head_dim, std::size_t work_group_size) {
  const std::size_t elems = static_cast<std::size_t>(block) * head_dim;
  return static_cast<int>((elems + work_group_size - 1) / work_group_size);
}

BackwardPlan plan_backward(const DeviceFacts& device, int head_dim) {
  const bool cpu = device.kind == DeviceKind::CPU;
  std::size_t wg = cpu ? 64 : 128;
  while (wg > 1 && wg > device.max_work_group_size) wg /= 2;
  const std::size_t budget = cpu ? std::min(device.local_mem_bytes, kCpuPlanningBytes) : device.local_mem_bytes;
  const int max_acc = cpu ? 64 : 32;
  for (int block = 64; block >= 1; block /= 2) {
    const std::size_t bytes = backward_local_bytes(block, block, head_dim);
    if (bytes > budget) continue;
    // the accumulator cap gives way only where nothing else fits (block 1 always passes it for d <= 256)
    if (backward_accumulators(block, head_dim, wg) > max_acc && block > 1) continue;
    BackwardPlan plan;
    plan.block_rows = plan.block_cols = block;
    plan.work_group_size = wg;
    plan.local_bytes = bytes;
    plan.reason = concat("backward: largest square block within ", budget, " bytes of local memory and ", max_acc,
                         " private accumulators per work-item (", wg, " work-items)");
    return plan;
  }
  fail(Status::OutOfResources, "device: the backward needs ", backward_local_bytes(1, 1, head_dim),
       " bytes of local memory at head_dim ", head_dim, ", the device has ", device.local_mem_bytes);
}

}  // namespace flashcl::detail
