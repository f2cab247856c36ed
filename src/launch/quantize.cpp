// quantize.cpp: flashcl::quantize_fp8, fp32/fp16/bf16 → e4m3/e5m2 with amax scaling per tensor, per
// (batch, head group) or per block of rows, optionally after the random-sign Hadamard transform
// (FlashAttention-3's incoherent processing), writing the fp8 tensor and the descales in the layout
// ForwardArgs::fp8 takes. Validates first (named errors), then enqueues kernels/forward/quantize_fp8.cl's
// three kernels on a zeroed amax scratch, which is allocated per call and released once enqueued
// (OpenCL frees it when the kernels are done). Varlen inputs (packed rows and cu_seqlens) get their
// scales per sequence.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <utility>
#include <vector>

#include "base/cl_bindings.hpp"
#include "base/errors.hpp"
#include "base/fault_injection.hpp"
#include "base/saturating.hpp"
#include "program/program_cache.hpp"
#include "program/programs.hpp"
#include "quant_args.h"
#include "validate/problem.hpp"

namespace flashcl {
namespace {

static_assert(sizeof(QuantArgs) == FLASHCL_QUANT_ARGS_SIZE, "QuantArgs layout must match the kernels'");

using detail::concat;
using detail::fail;
using detail::check_aliasing;
using detail::check_no_self_overlap;
using detail::Span;
using detail::span_of;

// amax slots: one per descale, except per tensor (one shared by every descale entry)
std::size_t slots_of(const QuantizeArgs& a) {
  return a.granularity == QuantGranularity::Tensor ? 1 : quantize_descale_count(a);
}

// A tensor's (count, stride) axes in elements, the contiguous one included.
using Axes = std::vector<std::pair<std::int64_t, std::int64_t>>;

// Largest element index + 1 reached by offset + Σ (count − 1)·stride + 1, in 128 bits, capped.
std::int64_t reach(std::int64_t offset, const Axes& axes) {
  __int128 e = __int128{offset} + 1;
  for (const auto& [count, stride] : axes) e += __int128{count - 1} * stride;
  const __int128 cap = __int128{1} << 60;
  return static_cast<std::int64_t>(e > cap ? cap : e);
}

void check_mem(cl_mem buffer, cl_context context, std::size_t need, const char* name, bool written) {
  if (buffer == nullptr) fail(Status::InvalidHandle, name, ": null cl_mem");
  cl_context ctx = nullptr;
  cl_mem_object_type type = 0;
  cl_mem_flags flags = 0;
  std::size_t have = 0;
  if (clGetMemObjectInfo(buffer, CL_MEM_CONTEXT, sizeof ctx, &ctx, nullptr) != CL_SUCCESS ||
      clGetMemObjectInfo(buffer, CL_MEM_TYPE, sizeof type, &type, nullptr) != CL_SUCCESS ||
      clGetMemObjectInfo(buffer, CL_MEM_FLAGS, sizeof flags, &flags, nullptr) != CL_SUCCESS ||
      clGetMemObjectInfo(buffer, CL_MEM_SIZE, sizeof have, &have, nullptr) != CL_SUCCESS)
    fail(Status::InvalidHandle, name, ": not a valid cl_mem");
  if (ctx != context) fail(Status::InvalidHandle, name, ": buffer belongs to another cl_context than the queue");
  if (type != CL_MEM_OBJECT_BUFFER) fail(Status::InvalidHandle, name, ": an image or pipe, not a buffer");
  if (written && (flags & CL_MEM_READ_ONLY) != 0) fail(Status::InvalidArgument, name, ": a CL_MEM_READ_ONLY buffer, but it is written");
  if (!written && (flags & CL_MEM_WRITE_ONLY) != 0) fail(Status::InvalidArgument, name, ": a CL_MEM_WRITE_ONLY buffer, but it is read");
  if (need > have) fail(Status::InvalidArgument, name, ": shape and strides reach byte ", need, " but the buffer holds ", have);
}

// The arguments with defaults resolved (dense strides) and every host-side check done.
QuantizeArgs checked(const QuantizeArgs& in, cl_context context) {
  QuantizeArgs a = in;
  if (a.batch < 1 || a.seqlen < 1 || a.heads < 1)
    fail(Status::InvalidArgument, "batch/seqlen/heads: must be >= 1, got ", a.batch, ", ", a.seqlen, ", ", a.heads);
  if (a.head_dim < 1 || a.head_dim > 256) fail(Status::InvalidArgument, "head_dim: must be in 1..256, got ", a.head_dim);
  const bool varlen = a.cu_seqlens != nullptr;
  if (varlen) {
    if (a.total < 1) fail(Status::InvalidArgument, "total: the packed rows must be >= 1 with cu_seqlens, got ", a.total);
    if (std::int64_t{a.total} * a.heads > std::numeric_limits<int>::max())
      fail(Status::InvalidArgument, "total*heads: at most 2^31 - 1 rows");
    if (a.transposed)
      fail(Status::InvalidArgument, "transposed: not with cu_seqlens (the varlen attention takes V as (total, H_kv, d))");
  } else if (a.total != 0) {
    fail(Status::InvalidArgument, "total: only with cu_seqlens (varlen), got ", a.total);
  }
  if (detail::saturating_bytes({std::uint64_t(a.batch), std::uint64_t(a.seqlen), std::uint64_t(a.heads)}) >
      std::uint64_t{std::numeric_limits<int>::max()})  // (an int64 product of three ints can overflow)
    fail(Status::InvalidArgument, "batch*seqlen*heads: at most 2^31 - 1 rows");
  if (a.in_dtype != DType::F32 && a.in_dtype != DType::F16 && a.in_dtype != DType::BF16)
    fail(Status::UnsupportedDType, "in_dtype: must be f32, f16 or bf16, got ", to_string(a.in_dtype));
  if (!is_fp8(a.out_dtype)) fail(Status::UnsupportedDType, "out_dtype: must be e4m3 or e5m2, got ", to_string(a.out_dtype));
  switch (a.granularity) {
    case QuantGranularity::Tensor: case QuantGranularity::Head:
      if (a.head_group < 1 || a.heads % a.head_group != 0)
        fail(Status::InvalidArgument, "head_group: must divide heads (", a.heads, "), got ", a.head_group);
      if (a.block != 0) fail(Status::InvalidArgument, "block: only with granularity Block, got ", a.block);
      break;
    case QuantGranularity::Block:
      if (a.block < 1) fail(Status::InvalidArgument, "block: rows per scale must be >= 1 with granularity Block, got ", a.block);
      if (a.head_group != 1) fail(Status::InvalidArgument, "head_group: block scales are per head (1), got ", a.head_group);
      break;
    default: fail(Status::InvalidArgument, "granularity: unknown value ", static_cast<int>(a.granularity));
  }
  if (a.hadamard && (a.head_dim & (a.head_dim - 1)) != 0)
    fail(Status::InvalidArgument, "hadamard: head_dim must be a power of two, got ", a.head_dim);
  for (const auto& [t, name] : {std::pair<Tensor*, const char*>{&a.in, "in"}, {&a.out, "out"}})
    if (t->offset < 0 || t->batch_stride < 0 || t->seq_stride < 0 || t->head_stride < 0)
      fail(Status::InvalidArgument, name, ": offset and strides must be >= 0");
  const std::int64_t d = a.head_dim, row = std::int64_t{a.heads} * d;
  if (varlen) {  // packed rows: the batch stride is not used (as the varlen attention)
    a.in.batch_stride = a.out.batch_stride = 0;
    if (a.in.seq_stride == 0 && a.in.head_stride == 0) a.in = {a.in.buffer, a.in.offset, 0, row, d};
    if (a.out.seq_stride == 0 && a.out.head_stride == 0) a.out = {a.out.buffer, a.out.offset, 0, row, d};
  }
  if (a.in.batch_stride == 0 && a.in.seq_stride == 0 && a.in.head_stride == 0)
    a.in = {a.in.buffer, a.in.offset, row * a.seqlen, row, d};
  if (a.out.batch_stride == 0 && a.out.seq_stride == 0 && a.out.head_stride == 0)
    a.out = a.transposed ? Tensor{a.out.buffer, a.out.offset, row * a.seqlen, a.seqlen, d * a.seqlen}
                         : Tensor{a.out.buffer, a.out.offset, row * a.seqlen, row, d};
  // A transposed out's d-rows hold S keys each: a smaller pitch would make rows write over each other
  // (in bounds, but racing: the docs' seq_stride >= S, now checked)
  if (a.transposed && a.out.seq_stride < a.seqlen)
    fail(Status::InvalidArgument, "out: a transposed out's seq_stride (the pitch of a d-row, ", a.out.seq_stride,
         ") must hold its ", a.seqlen, " keys");
  // Rows of storage: B x S, or the packed total (one batch entry) with cu_seqlens.
  const int store_batch = varlen ? 1 : a.batch, store_rows = varlen ? a.total : a.seqlen;
  const std::size_t in_elem = element_size(a.in_dtype);
  const Axes in_axes = {{store_batch, a.in.batch_stride}, {store_rows, a.in.seq_stride}, {a.heads, a.in.head_stride}, {d, 1}};
  const Axes out_axes =
      a.transposed ? Axes{{a.batch, a.out.batch_stride}, {a.heads, a.out.head_stride}, {a.head_dim, a.out.seq_stride},
                          {a.seqlen, 1}}
                   : Axes{{store_batch, a.out.batch_stride}, {store_rows, a.out.seq_stride}, {a.heads, a.out.head_stride},
                          {d, 1}};
  const std::int64_t in_reach = reach(a.in.offset, in_axes), out_reach = reach(a.out.offset, out_axes);
  check_mem(a.in.buffer, context, static_cast<std::size_t>(in_reach) * in_elem, "in", false);
  check_mem(a.out.buffer, context, static_cast<std::size_t>(out_reach), "out", true);
  check_mem(a.descale, context, quantize_descale_count(a) * sizeof(float), "descale", true);
  if (varlen)
    check_mem(a.cu_seqlens, context, (static_cast<std::size_t>(a.batch) + 1) * sizeof(cl_int), "cu_seqlens", false);
  // out's strides give each byte of it its own address, and neither output (out, descale) shares
  // bytes with an input or the other output: byte ranges in the allocation, so two sub-buffers of
  // one parent compare too (the attention's rule, buffer_checks.hpp)
  check_no_self_overlap("out", out_axes);
  std::vector<Span> spans = {
      span_of(a.in.buffer, static_cast<std::uint64_t>(a.in.offset) * in_elem,
              static_cast<std::uint64_t>(in_reach) * in_elem, "in", false),
      span_of(a.out.buffer, static_cast<std::uint64_t>(a.out.offset), static_cast<std::uint64_t>(out_reach), "out", true),
      span_of(a.descale, 0, quantize_descale_count(a) * sizeof(float), "descale", true)};
  if (varlen)
    spans.push_back(span_of(a.cu_seqlens, 0, (static_cast<std::uint64_t>(a.batch) + 1) * sizeof(cl_int), "cu_seqlens",
                            false));
  check_aliasing(spans);
  return a;
}

std::uint64_t splitmix64(std::uint64_t& state) {
  std::uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// The signs as bits (bit i of word i / 64 set: −1): splitmix64 from the seed, one word per 64 columns.
void sign_bits(std::uint64_t seed, std::uint64_t words[4]) {
  std::uint64_t state = seed;
  for (int w = 0; w < 4; ++w) words[w] = splitmix64(state);
}

}  // namespace

// Saturated at SIZE_MAX for shapes validation would refuse (a caller may ask before it does).
std::size_t quantize_descale_count(const QuantizeArgs& a) {
  const std::uint64_t b = static_cast<std::uint64_t>(std::max(a.batch, 0)), h = static_cast<std::uint64_t>(std::max(a.heads, 0));
  if (a.granularity == QuantGranularity::Block)
    return a.block > 0 ? detail::saturating_bytes({b, h, (static_cast<std::uint64_t>(std::max(a.seqlen, 0)) + a.block - 1) / a.block}) : 0;
  return a.head_group > 0 ? detail::saturating_bytes({b, h / a.head_group}) : 0;
}

std::vector<float> hadamard_signs(int head_dim, std::uint64_t seed) {
  if (head_dim < 1 || head_dim > 256) fail(Status::InvalidArgument, "head_dim: must be in 1..256, got ", head_dim);
  std::uint64_t words[4];
  sign_bits(seed, words);
  std::vector<float> signs(head_dim);
  for (int i = 0; i < head_dim; ++i) signs[i] = (words[i / 64] >> (i % 64)) & 1 ? -1.0f : 1.0f;
  return signs;
}

Launch quantize_fp8(cl_command_queue queue, const QuantizeArgs& args, const std::vector<cl_event>& wait) {
  if (queue == nullptr) fail(Status::InvalidHandle, "queue: null cl_command_queue");
  for (cl_event e : wait)
    if (e == nullptr) fail(Status::InvalidHandle, "wait_list: null cl_event");
  const detail::Problem p = detail::queue_problem(queue);
  const cl_context context = p.context;
  const cl_device_id device = p.device;
  const QuantizeArgs a = checked(args, context);

  QuantArgs k{};
  k.in_offset = a.in.offset;
  k.in_batch_stride = a.in.batch_stride;
  k.in_seq_stride = a.in.seq_stride;
  k.in_head_stride = a.in.head_stride;
  k.out_offset = a.out.offset;
  k.out_batch_stride = a.out.batch_stride;
  k.out_seq_stride = a.out.seq_stride;
  k.out_head_stride = a.out.head_stride;
  if (a.hadamard) sign_bits(a.hadamard_seed, k.signs);
  k.batch = a.batch;
  k.seqlen = a.seqlen;
  k.heads = a.heads;
  k.head_group = a.head_group;
  k.block = a.block;
  k.descales = static_cast<int>(quantize_descale_count(a));
  k.total = a.total;
  const bool varlen = a.cu_seqlens != nullptr;

  const std::string options =
      concat("-cl-std=CL1.2 -DIN_DTYPE=", static_cast<int>(a.in_dtype), " -DDTYPE=", static_cast<int>(a.out_dtype),
             " -DHEAD_DIM=", a.head_dim, " -DGRANULARITY=", static_cast<int>(a.granularity), " -DHADAMARD=", a.hadamard ? 1 : 0,
             " -DTRANSPOSED=", a.transposed ? 1 : 0, " -DVARLEN=", varlen ? 1 : 0);
  cl::Program program = detail::cached_program(context, device, detail::programs::quantize_fp8, options);
  auto kernel = [&](const char* name) {
    cl_int err = detail::injected_fault("clCreateKernel");
    cl_kernel kern = err == CL_SUCCESS ? clCreateKernel(program(), name, &err) : nullptr;
    detail::check_cl_result(err, "clCreateKernel");
    return cl::Kernel(kern);
  };
  cl::Kernel amax_kernel = kernel("quant_amax"), descale_kernel = kernel("quant_descales"),
             encode_kernel = kernel("quant_encode");

  // The amax scratch starts as zeros copied from the host, not a clEnqueueFillBuffer: oclgrind
  // 21.10 leaves filled memory marked uninitialised, so every atomic max on it was reported.
  const std::size_t slots = slots_of(a);
  std::vector<cl_uint> zeros(slots, 0);
  cl_int err = detail::injected_fault("clCreateBuffer");
  cl_mem amax = err == CL_SUCCESS ? clCreateBuffer(context, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR,
                                                   slots * sizeof(cl_uint), zeros.data(), &err)
                                  : nullptr;
  detail::check_cl_result(err, "clCreateBuffer(amax)");
  Launch launch;
  try {
    auto set = [](const cl::Kernel& kern, cl_uint index, std::size_t size, const void* value) {
      detail::check_cl(clSetKernelArg(kern(), index, size, value), "clSetKernelArg");
    };
    // cu_seqlens is read only in VARLEN builds; elsewhere the argument is a null buffer
    const cl_mem cu_seqlens = a.cu_seqlens;
    set(amax_kernel, 0, sizeof(cl_mem), &a.in.buffer);
    set(amax_kernel, 1, sizeof(cl_mem), &amax);
    set(amax_kernel, 2, sizeof(cl_mem), &cu_seqlens);
    set(amax_kernel, 3, sizeof k, &k);
    set(descale_kernel, 0, sizeof(cl_mem), &amax);
    set(descale_kernel, 1, sizeof(cl_mem), &a.descale);
    set(descale_kernel, 2, sizeof k, &k);
    set(encode_kernel, 0, sizeof(cl_mem), &a.in.buffer);
    set(encode_kernel, 1, sizeof(cl_mem), &a.out.buffer);
    set(encode_kernel, 2, sizeof(cl_mem), &amax);
    set(encode_kernel, 3, sizeof(cl_mem), &cu_seqlens);
    set(encode_kernel, 4, sizeof k, &k);

    const std::size_t local = 64;
    const auto rounded = [local](std::size_t n) { return (n + local - 1) / local * local; };
    const std::size_t rows = static_cast<std::size_t>(varlen ? a.total : a.batch * a.seqlen) * a.heads;
    auto run = [&](const cl::Kernel& kern, std::size_t items) {
      const std::size_t global = rounded(items);
      cl_event done = nullptr;
      // the first kernel after the caller's wait list, each next one after the previous
      const cl_event after = launch.last();
      const std::vector<cl_event> before = after != nullptr ? std::vector<cl_event>{after} : wait;
      detail::check_cl(clEnqueueNDRangeKernel(queue, kern(), 1, nullptr, &global, &local,
                                              static_cast<cl_uint>(before.size()), before.empty() ? nullptr : before.data(),
                                              &done),
                       "clEnqueueNDRangeKernel");
      launch.add(done);
    };
    run(amax_kernel, rows);
    run(descale_kernel, static_cast<std::size_t>(k.descales));
    run(encode_kernel, rows);
  } catch (...) {
    clReleaseMemObject(amax);
    throw;
  }
  clReleaseMemObject(amax);  // freed by OpenCL once the kernels are done with it
  return launch;
}

}  // namespace flashcl
