// host_buffers.cpp: the row counts of a host call and the buffers over (or copied from) the
// caller's arrays (host_buffers.hpp says when each is used and why outputs may not overlap);
// arrays read and written (in_out) go the outputs' way, copied in when not over the caller's memory.
#include "api/host_buffers.hpp"

#include <algorithm>
#include <cstdint>
#include <utility>
#if __has_include(<unistd.h>)
#include <unistd.h>
#endif

#include "base/errors.hpp"

namespace flashcl::detail {
namespace {

// The host's page size, 0 when unknown (then no input is widened: its rounded-down start might lie
// in a page that is not mapped).
std::size_t page_size() {
#if defined(_SC_PAGESIZE)
  const long page = sysconf(_SC_PAGESIZE);
  return page > 0 ? static_cast<std::size_t>(page) : 0;
#else
  return 0;
#endif
}

}  // namespace

HostRows host_rows(const ForwardArgs& shape, const HostVariants& variants) {
  if (shape.batch < 1 || shape.heads < 1 || shape.seqlen_q < 1 || shape.seqlen_k < 1 || shape.head_dim < 1)
    fail(Status::InvalidArgument, "shape: batch, heads, seqlen_q, seqlen_k and head_dim must be >= 1");
  HostRows r;
  r.varlen = !variants.cu_seqlens_q.empty() || !variants.cu_seqlens_k.empty();
  const std::size_t offsets = static_cast<std::size_t>(shape.batch) + 1;
  if (r.varlen && (variants.cu_seqlens_q.size() != offsets || variants.cu_seqlens_k.size() != offsets))
    fail(Status::InvalidArgument, "cu_seqlens_q, cu_seqlens_k: expected batch + 1 = ", offsets, " offsets each, got ",
         variants.cu_seqlens_q.size(), " and ", variants.cu_seqlens_k.size());
  // the device checks the offsets themselves (check_device_data); only the totals size the arrays
  r.rows_q = r.varlen ? static_cast<std::size_t>(std::max(variants.cu_seqlens_q.back(), 0))
                      : static_cast<std::size_t>(shape.batch) * shape.seqlen_q;
  r.rows_k = r.varlen ? static_cast<std::size_t>(std::max(variants.cu_seqlens_k.back(), 0))
                      : static_cast<std::size_t>(shape.batch) * shape.seqlen_k;
  r.heads_kv = shape.heads_kv > 0 ? shape.heads_kv : shape.heads;  // GQA/MQA
  r.nq = r.rows_q * shape.heads * shape.head_dim;
  r.nk = r.rows_k * r.heads_kv * shape.head_dim;
  r.nlse = r.rows_q * shape.heads;
  r.head_dim = shape.head_dim;
  return r;
}

HostBuffers::HostBuffers(cl_context context, cl_command_queue queue, bool host_unified, std::size_t host_align)
    : context_(context), queue_(queue), host_unified_(host_unified), host_align_(std::max<std::size_t>(host_align, 1)) {
  const std::size_t page = page_size();
  may_widen_ = page != 0 && page % host_align_ == 0;
}

HostBuffers::~HostBuffers() {
  // a failed call: what it enqueued may still use buffers over the caller's memory (no error
  // can be reported from here, and none would change what the caller must do)
  if (!finished_ && over_host_ > 0) clFinish(queue_);
  for (cl_mem m : held_) clReleaseMemObject(m);
}

cl_mem HostBuffers::make(cl_mem_flags flags, std::size_t bytes, const void* data) {
  cl_int err = CL_SUCCESS;
  cl_mem m = clCreateBuffer(context_, flags, bytes, const_cast<void*>(data), &err);
  if (m != nullptr) held_.push_back(m);  // held before the check, so an injected fault leaks nothing
  check_cl(err, (flags & CL_MEM_USE_HOST_PTR) != 0 ? "clCreateBuffer(CL_MEM_USE_HOST_PTR)" : "clCreateBuffer");
  return m;
}

// A buffer over the caller's f32 memory from `lead` floats before `data` to its end, where the
// device shares host memory and that start meets the base address alignment; else none (an
// implementation would copy anyway). The start is an address, not a pointer into the array.
cl_mem HostBuffers::over_host(const float* data, std::size_t lead, std::size_t n, DType dtype, cl_mem_flags access) {
  const std::uintptr_t start = reinterpret_cast<std::uintptr_t>(data) - lead * sizeof(float);
  if (!host_unified_ || dtype != DType::F32 || n == 0 || data == nullptr || start % host_align_ != 0) return nullptr;
  cl_mem m = make(access | CL_MEM_USE_HOST_PTR, (lead + n) * sizeof(float), reinterpret_cast<const void*>(start));
  ++over_host_;
  return m;
}

std::size_t HostBuffers::widening(const float* data, bool offsettable) const {
  // Floats between the pointer rounded down to the alignment and the pointer: 0 when aligned; a
  // widened buffer only where the misalignment is whole floats (the offset counts elements) and
  // the rounded-down start is in the array's first page.
  const std::size_t misaligned = reinterpret_cast<std::uintptr_t>(data) % host_align_;
  const bool widen = misaligned != 0 && misaligned % sizeof(float) == 0 && offsettable && may_widen_;
  return widen ? misaligned / sizeof(float) : 0;
}

HostInput HostBuffers::input(const char* name, const float* data, std::size_t n, DType dtype, bool offsettable) {
  const char* begin = reinterpret_cast<const char*>(data);
  const char* end = data != nullptr ? begin + n * sizeof(float) : begin;
  const std::size_t lead = widening(data, offsettable);
  if (cl_mem m = over_host(data, lead, n, dtype, CL_MEM_READ_ONLY)) {
    ranges_.push_back({name, begin, end,
                       reinterpret_cast<const char*>(reinterpret_cast<std::uintptr_t>(begin) - lead * sizeof(float))});
    return {m, static_cast<std::int64_t>(lead)};
  }
  ranges_.push_back({name, begin, end, begin});
  return {copy_in(data, n, dtype)};
}

cl_mem HostBuffers::copy_in(const float* data, std::size_t n, DType dtype) {
  // OpenCL has no empty buffers (a varlen batch may hold no rows at all): one element then
  if (n == 0 || data == nullptr)
    return make(CL_MEM_READ_WRITE, std::max<std::size_t>(n, 1) * element_size(dtype), nullptr);
  if (dtype == DType::F32) return make(CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, n * sizeof(float), data);
  const std::vector<std::uint16_t> bits = to_storage(dtype, std::vector<float>(data, data + n));
  return make(CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, n * 2, bits.data());
}

cl_mem HostBuffers::output(const char* name, float* data, std::size_t n, DType dtype) {
  return writable(name, data, n, dtype, false, {{0, n}}).mem;
}

HostInput HostBuffers::in_out(const char* name, float* data, std::size_t n, DType dtype,
                           std::vector<ElementRange> written) {
  return writable(name, data, n, dtype, true, std::move(written));
}

HostInput HostBuffers::writable(const char* name, float* data, std::size_t n, DType dtype, bool read,
                                std::vector<ElementRange> written) {
  for (const ElementRange& r : written)
    if (r.first > n || r.count > n - r.first)
      fail(Status::InternalError, name, ": a written range [", r.first, ", +", r.count, ") past its ", n, " elements");
  const char* begin = reinterpret_cast<const char*>(data);
  const char* end = data != nullptr ? begin + n * sizeof(float) : begin;
  // an error only on the arrays' own bytes; the bytes a widened input's buffer adds before its
  // array keep the output off the caller's memory (a copy), as two host regions that overlap are
  // undefined in OpenCL once one is written
  bool shares_a_buffer = false;
  for (const Range& r : ranges_) {
    if (begin < r.end && r.begin < end)
      fail(Status::InvalidArgument, name, ": its memory overlaps ", r.name,
           "'s; an array the call writes needs memory of its own");
    shares_a_buffer = shares_a_buffer || (begin < r.end && r.covered < end);
  }
  // widened (an array read and written) only where the bytes before it are no other array's
  std::size_t lead = read ? widening(data, true) : 0;
  for (const Range& r : ranges_)
    if (begin - lead * sizeof(float) < r.end && r.covered < begin) lead = 0;
  cl_mem m = shares_a_buffer ? nullptr : over_host(data, lead, n, dtype, CL_MEM_READ_WRITE);
  const bool host = m != nullptr;
  if (!host) {
    lead = 0;
    m = read ? copy_in(data, n, dtype)
             : make(CL_MEM_READ_WRITE, std::max<std::size_t>(n, 1) * element_size(dtype), nullptr);
  }
  ranges_.push_back({name, begin, end, begin - lead * sizeof(float)});
  outputs_.push_back({m, data, n, dtype, host, lead, std::move(written)});
  return {m, static_cast<std::int64_t>(lead)};
}

cl_mem HostBuffers::optional(std::size_t bytes, const void* data) {
  return bytes == 0 ? nullptr : make(CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, bytes, data);
}

void HostBuffers::finish() {
  for (const Output& out : outputs_) {
    if (out.n == 0) continue;  // nothing to bring back
    const std::size_t elem = element_size(out.dtype);
    if (out.over_host) {  // the OpenCL rule for CL_MEM_USE_HOST_PTR: the writes show in place once mapped
      cl_int err = CL_SUCCESS;
      void* mapped = clEnqueueMapBuffer(queue_, out.mem, CL_TRUE, CL_MAP_READ, out.lead * elem, out.n * elem, 0,
                                        nullptr, nullptr, &err);
      check_cl(err, "clEnqueueMapBuffer");
      check_cl(clEnqueueUnmapMemObject(queue_, out.mem, mapped, 0, nullptr, nullptr), "clEnqueueUnmapMemObject");
      continue;
    }
    for (const ElementRange& r : out.written) {
      if (r.count == 0) continue;
      if (out.dtype == DType::F32) {
        check_cl(clEnqueueReadBuffer(queue_, out.mem, CL_TRUE, r.first * elem, r.count * elem, out.data + r.first, 0,
                                     nullptr, nullptr),
                 "clEnqueueReadBuffer");
        continue;
      }
      std::vector<std::uint16_t> bits(r.count);
      check_cl(clEnqueueReadBuffer(queue_, out.mem, CL_TRUE, r.first * elem, r.count * elem, bits.data(), 0, nullptr,
                                   nullptr),
               "clEnqueueReadBuffer");
      const std::vector<float> values = from_storage(out.dtype, bits);
      std::copy(values.begin(), values.end(), out.data + r.first);
    }
  }
  // the unmaps are enqueued, not done: wait for them before the buffers (and the caller's arrays) go
  check_cl(clFinish(queue_), "clFinish");
  finished_ = true;
}

}  // namespace flashcl::detail
