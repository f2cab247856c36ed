// plan_backward.cpp: tile choice for the fa1/fa2 backward (bwd_flash.cl). One square block size
// B = Br = Bc for every kernel of a call (the dK/dV kernel and the deterministic dQ kernel share
// their tiles): the largest power of two from 64 down that fits its device class's local-memory
// budget and keeps each work-item's private accumulators (dK and dV, or dQ) within the class's
// cap. The classes are a table (kGpu, kCpu below), each row with its reason; the work-group size
// is capped by the device's maximum, and the kernels stride over their tiles, so any size is
// correct.
#include "plan/plan_backward.hpp"

#include <algorithm>

#include "base/errors.hpp"

namespace flashcl::detail {
namespace {

// A device class's rules. Not measured against other values yet; each row says why it holds.
struct BackwardClass {
  std::size_t work_items;       // work-items per work-group, before the device's cap
  std::size_t planning_bytes;   // __local budget for the tiles (0: the device's local memory)
  int max_accumulators;         // private fp32 accumulators per work-item
};

// GPUs: the device's local memory (NVIDIA: 48 KiB); dK and dV (or dQ) must stay in registers,
// so at most 32 floats each per work-item, over 128 work-items.
constexpr BackwardClass kGpu{128, 0, 32};
// CPUs: __local memory is emulated in ordinary memory and may be reported as 1 MiB; at most
// 64 KiB so the working set stays in the core's L2 cache (as the forward planner does), 64
// accumulators, 64 work-items (PoCL runs a work-group as one loop).
constexpr BackwardClass kCpu{64, 64 * 1024, 64};

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
  const BackwardClass& c = device.kind == DeviceKind::CPU ? kCpu : kGpu;
  std::size_t wg = c.work_items;
  while (wg > 1 && wg > device.max_work_group_size) wg /= 2;
  const std::size_t budget =
      c.planning_bytes != 0 ? std::min(device.local_mem_bytes, c.planning_bytes) : device.local_mem_bytes;
  const int max_acc = c.max_accumulators;
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
