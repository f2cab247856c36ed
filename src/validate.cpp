// validate.cpp: every check on a forward call, in one place, before anything is enqueued: shapes,
// head dim, scale, dtype, handles (null, wrong context), strides that overrun a buffer, optional
// outputs and workspace sizes. Messages name the parameter.
#include <cmath>
#include <limits>

#include "errors.hpp"
#include "launchers.hpp"
#include "problem.hpp"

namespace flashcl::detail {
namespace {

constexpr int kMaxHeadDim = 256;

void resolve_strides(Tensor& t, const ForwardArgs& a, int seqlen, const char* name) {
  if (t.batch_stride < 0 || t.seq_stride < 0 || t.head_stride < 0 || t.offset < 0)
    fail(Status::InvalidArgument, name, ": offset and strides must be >= 0 (got offset ", t.offset, ", strides ",
         t.batch_stride, ", ", t.seq_stride, ", ", t.head_stride, ")");
  if (t.batch_stride == 0 && t.seq_stride == 0 && t.head_stride == 0) {  // dense (B, S, H, d)
    t.head_stride = a.head_dim;
    t.seq_stride = static_cast<std::int64_t>(a.heads) * a.head_dim;
    t.batch_stride = t.seq_stride * seqlen;
  }
}

// Largest element index a tensor's strides reach, plus one.
std::int64_t extent(const Tensor& t, const ForwardArgs& a, int seqlen) {
  return t.offset + (a.batch - 1) * t.batch_stride + (seqlen - 1) * t.seq_stride + (a.heads - 1) * t.head_stride +
         a.head_dim;
}

cl_context context_of(cl_mem buffer, const char* name) {
  cl_context ctx = nullptr;
  if (clGetMemObjectInfo(buffer, CL_MEM_CONTEXT, sizeof ctx, &ctx, nullptr) != CL_SUCCESS)
    fail(Status::InvalidHandle, name, ": not a valid cl_mem");
  return ctx;
}

std::size_t size_of(cl_mem buffer) {
  std::size_t size = 0;
  clGetMemObjectInfo(buffer, CL_MEM_SIZE, sizeof size, &size, nullptr);
  return size;
}

void check_buffer(cl_mem buffer, cl_context context, std::size_t need_bytes, const char* name) {
  if (buffer == nullptr) fail(Status::InvalidHandle, name, ": null cl_mem");
  if (context_of(buffer, name) != context)
    fail(Status::InvalidHandle, name, ": buffer belongs to another cl_context than the queue");
  const std::size_t have = size_of(buffer);
  if (need_bytes > have)
    fail(Status::InvalidArgument, name, ": shape and strides reach byte ", need_bytes, " but the buffer holds ", have);
}

}  // namespace

ForwardArgs normalize_shape(cl_device_id device, const ForwardArgs& in) {
  ForwardArgs a = in;
  if (a.batch < 1) fail(Status::InvalidArgument, "batch: must be >= 1, got ", a.batch);
  if (a.heads < 1) fail(Status::InvalidArgument, "heads: must be >= 1, got ", a.heads);
  if (a.seqlen_q < 1) fail(Status::InvalidArgument, "seqlen_q: must be >= 1, got ", a.seqlen_q);
  if (a.seqlen_k < 1) fail(Status::InvalidArgument, "seqlen_k: must be >= 1, got ", a.seqlen_k);
  if (a.head_dim < 1 || a.head_dim > kMaxHeadDim)
    fail(Status::InvalidArgument, "head_dim: must be in 1..", kMaxHeadDim, ", got ", a.head_dim);
  if (a.dtype != DType::F32 && a.dtype != DType::F16 && a.dtype != DType::BF16)
    fail(Status::UnsupportedDType, "dtype: unknown value ", static_cast<int>(a.dtype));
  if (a.batch > 65535 || a.heads > 65535)
    fail(Status::InvalidArgument, "batch/heads: at most 65535 each (work-group grid limit)");
  if (!a.scale) a.scale = 1.0f / std::sqrt(static_cast<float>(a.head_dim));
  if (!std::isfinite(*a.scale)) fail(Status::InvalidArgument, "scale: must be finite, got ", *a.scale);
  switch (a.algorithm) {
    case Algorithm::Auto: case Algorithm::Standard: case Algorithm::FA1: case Algorithm::FA2: break;
    default: fail(Status::InvalidArgument, "algorithm: unknown value ", static_cast<int>(a.algorithm));
  }
  if (a.algorithm == Algorithm::Auto) a.algorithm = resolve_algorithm(device, a);
  resolve_strides(a.q, a, a.seqlen_q, "q");
  resolve_strides(a.k, a, a.seqlen_k, "k");
  resolve_strides(a.v, a, a.seqlen_k, "v");
  resolve_strides(a.o, a, a.seqlen_q, "o");
  return a;
}

Problem validate(cl_command_queue queue, const ForwardArgs& args) {
  if (queue == nullptr) fail(Status::InvalidHandle, "queue: null cl_command_queue");
  Problem p;
  if (clGetCommandQueueInfo(queue, CL_QUEUE_CONTEXT, sizeof p.context, &p.context, nullptr) != CL_SUCCESS ||
      clGetCommandQueueInfo(queue, CL_QUEUE_DEVICE, sizeof p.device, &p.device, nullptr) != CL_SUCCESS)
    fail(Status::InvalidHandle, "queue: not a valid cl_command_queue");
  p.facts = &device_facts(p.device);
  p.args = normalize_shape(p.device, args);
  const ForwardArgs& a = p.args;

  const std::size_t elem = element_size(a.dtype);
  check_buffer(a.q.buffer, p.context, extent(a.q, a, a.seqlen_q) * elem, "q");
  check_buffer(a.k.buffer, p.context, extent(a.k, a, a.seqlen_k) * elem, "k");
  check_buffer(a.v.buffer, p.context, extent(a.v, a, a.seqlen_k) * elem, "v");
  check_buffer(a.o.buffer, p.context, extent(a.o, a, a.seqlen_q) * elem, "o");
  if (a.lse != nullptr)
    check_buffer(a.lse, p.context, static_cast<std::size_t>(a.batch) * a.heads * a.seqlen_q * sizeof(float), "lse");
  const std::size_t workspace = workspace_bytes_for(p.device, a);
  if (a.workspace != nullptr) check_buffer(a.workspace, p.context, workspace, "workspace");
  else if (workspace > p.facts->max_alloc_bytes)
    fail(Status::OutOfResources, "algorithm: ", to_string(a.algorithm), " needs a ", workspace,
         "-byte workspace but the device's largest buffer is ", p.facts->max_alloc_bytes, " bytes");

  AttnArgs& k = p.kernel_args;
  auto set = [](const Tensor& t, fcl_i64& offset, fcl_i64& batch, fcl_i64& seq, fcl_i64& head) {
    offset = t.offset;
    batch = t.batch_stride;
    seq = t.seq_stride;
    head = t.head_stride;
  };
  set(a.q, k.q_offset, k.q_batch_stride, k.q_seq_stride, k.q_head_stride);
  set(a.k, k.k_offset, k.k_batch_stride, k.k_seq_stride, k.k_head_stride);
  set(a.v, k.v_offset, k.v_batch_stride, k.v_seq_stride, k.v_head_stride);
  set(a.o, k.o_offset, k.o_batch_stride, k.o_seq_stride, k.o_head_stride);
  k.batch = a.batch;
  k.heads = a.heads;
  k.seqlen_q = a.seqlen_q;
  k.seqlen_k = a.seqlen_k;
  k.causal_shift = a.seqlen_k - a.seqlen_q;
  k.write_lse = a.lse != nullptr ? 1 : 0;
  k.scale = *a.scale;
  k.scale_log2 = static_cast<float>(static_cast<double>(*a.scale) * 1.4426950408889634);
  return p;
}

}  // namespace flashcl::detail
