// problem.hpp: one validated attention call: the caller's arguments with defaults filled in
// (dense strides, scale, algorithm), the kernel argument block, and the device it runs on.
#pragma once

#include <CL/cl.h>

#include <cstddef>
#include <vector>

#include "attn_args.h"
#include "flashcl/flashcl.hpp"
#include "plan/device_facts.hpp"
#include "validate/buffer_checks.hpp"

namespace flashcl::detail {

static_assert(sizeof(AttnArgs) == FLASHCL_ATTN_ARGS_SIZE, "AttnArgs layout must match the kernels'");

struct Problem {
  ForwardArgs args;        // strides resolved, scale set, algorithm concrete
  AttnArgs kernel_args{};  // what every kernel receives
  cl_context context = nullptr;
  cl_device_id device = nullptr;
  const DeviceFacts* facts = nullptr;
  std::vector<Span> spans;  // the bytes each buffer argument covers, for check_workspace's overlap check
};

// What a call does with the forward's O and LSE: the forward writes them; the backward only reads
// them, so there they may be CL_MEM_READ_ONLY and may share bytes with the other inputs.
// Gradients: the backward's view of its gradients (validate_backward.cpp), whose Q and O are dO
// (read) and dQ (written), and whose K, V and mask (when set) are dK, dV and d_bias: outputs,
// written and never read, so they may be CL_MEM_WRITE_ONLY and may not repeat elements.
enum class ForwardOutputs { Written, Read, Gradients };

// A Problem with only the context, device and device facts of `queue` (named errors for a null or
// invalid one): what every entry point on a queue starts from.
Problem queue_problem(cl_command_queue queue);

// Checks every argument against the queue's context and device, before any kernel is enqueued
// (nothing is read back unless args.check_device_data), but the workspace's size: that comes from
// the call's plan (check_workspace). Throws Error naming the offending parameter.
Problem validate(cl_command_queue queue, const ForwardArgs& args, const std::vector<cl_event>& wait = {},
                 ForwardOutputs outputs = ForwardOutputs::Written);

// The caller's workspace against the `bytes` the call's plan needs (handle, context, size, flags,
// no overlap with another argument); without one, that the device can allocate `bytes`.
void check_workspace(const Problem& p, std::size_t bytes);

// Shape-only checks and defaults (no buffers), shared by validate() and the size queries.
ForwardArgs normalize_shape(cl_device_id device, const ForwardArgs& args);

// A tensor's view as the kernels' argument blocks hold it (AttnArgs, BwdArgs, DecodeArgs): its
// offset and three strides, in elements.
inline void set_kernel_view(const Tensor& t, fcl_i64& offset, fcl_i64& batch, fcl_i64& seq, fcl_i64& head) {
  offset = t.offset;
  batch = t.batch_stride;
  seq = t.seq_stride;
  head = t.head_stride;
}

}  // namespace flashcl::detail
