// problem.hpp: one validated attention call: the caller's arguments with defaults filled in
// (dense strides, scale, algorithm), the kernel argument block, and the device it runs on.
#pragma once

#include <CL/cl.h>

#include <cstddef>
#include <vector>

#include "attn_args.h"
#include "plan/device_facts.hpp"
#include "flashcl/flashcl.hpp"

namespace flashcl::detail {

static_assert(sizeof(AttnArgs) == FLASHCL_ATTN_ARGS_SIZE, "AttnArgs layout must match the kernels'");

struct Problem {
  ForwardArgs args;        // strides resolved, scale set, algorithm concrete
  AttnArgs kernel_args{};  // what every kernel receives
  cl_context context = nullptr;
  cl_device_id device = nullptr;
  const DeviceFacts* facts = nullptr;
};

// Checks every argument against the queue's context and device, before any kernel is enqueued
// (nothing is read back unless args.check_device_data). Throws Error naming the offending parameter.
Problem validate(cl_command_queue queue, const ForwardArgs& args, const std::vector<cl_event>& wait = {});

// Shape-only checks and defaults (no buffers), shared by validate() and the size queries.
ForwardArgs normalize_shape(cl_device_id device, const ForwardArgs& args);

}  // namespace flashcl::detail
