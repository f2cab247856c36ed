// plan_backward.hpp: the pure function from device facts and problem to the backward kernels'
// tiles and work-group size. No OpenCL calls, so tests can plan for simulated devices.
#pragma once

#include <cstddef>
#include <string>

#include "plan/device_facts.hpp"
#include "flashcl/flashcl.hpp"

namespace flashcl::detail {

struct BackwardPlan {
  int block_rows = 0;               // Br: query rows per block (fa1, fa2)
  int block_cols = 0;               // Bc: keys per block
  std::size_t work_group_size = 0;  // work-items per work-group of the block kernels
  std::size_t local_bytes = 0;      // __local memory those kernels declare
  std::string reason;               // why these sizes
};

// __local bytes of bwd_flash.cl's kernels with these sizes: Q, dO (Br x (d+1)), K, V (Bc x (d+1)),
// P and dS (Br x Bc), LSE and D (Br), in fp32.
std::size_t backward_local_bytes(int block_rows, int block_cols, int head_dim);

// Private fp32 accumulators each work-item keeps (dK and dV each, or dQ): ceil(B x d / work-items).
int backward_accumulators(int block, int head_dim, std::size_t work_group_size);

// Plans the fa1/fa2 backward tiles for `head_dim` on `device`; throws Error(OutOfResources) when
// not even a one-row block fits.
BackwardPlan plan_backward(const DeviceFacts& device, int head_dim);

}  // namespace flashcl::detail
