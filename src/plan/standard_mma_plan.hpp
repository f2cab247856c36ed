// standard_mma_plan.hpp: the standard path on NVIDIA tensor cores (kernels/nvidia/standard_mma.cl,
// launched by launch_standard_mma.cpp): whether a call qualifies (algorithm standard, fp32/fp16/bf16,
// d <= 128, an NVIDIA GPU of compute capability >= 8.0 or any device with FLASHCL_STANDARD_MMA=1,
// every variant; never with FLASHCL_MMA=0 or FLASHCL_STANDARD_MMA=0, nor with a caller's forced
// tile), the work-group shape per operand type
// and head dim, its grids and its program. The softmax between the products is the portable one,
// with the portable plan's shape, so the candidate is made from the portable plan it falls back to.
// Pure functions of device facts, arguments and overrides, so tests plan for simulated devices.
#pragma once

#include <vector>

#include "flashcl/flashcl.hpp"
#include "plan/call_plan.hpp"
#include "plan/device_facts.hpp"
#include "plan/overrides.hpp"
#include "plan/tile_planner.hpp"

namespace flashcl::detail {

// Whether the device, the arguments and the overrides let the tensor-core standard take the call.
bool standard_mma_may_take(const DeviceFacts& facts, const ForwardArgs& a, const Overrides& o);

// The candidate for a call standard_mma_may_take accepted, its softmax shaped as `portable` (the
// portable standard's plan); empty when its __local memory does not fit the device.
std::vector<StandardMmaCandidate> plan_standard_mma(const DeviceFacts& facts, const ForwardArgs& a,
                                                    const TilePlan& portable, const Overrides& o);

}  // namespace flashcl::detail
