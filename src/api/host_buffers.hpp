// host_buffers.hpp: what Session's host-array calls (session.cpp's forward, session_backward.cpp's
// backward) share: the row counts a shape and its varlen offsets imply, and the buffers one call
// makes for the caller's arrays. On a host-unified device (CPUs such as PoCL) an f32 array at
// CL_DEVICE_MEM_BASE_ADDR_ALIGN becomes a buffer over its own memory (CL_MEM_USE_HOST_PTR: nothing
// copied in, and the kernels' writes land in place, made visible by a blocking map); anything else
// (16-bit storage, misaligned arrays, other devices) is copied in (COPY_HOST_PTR, rounded to the
// storage type) and read back. Since an output over the caller's memory is written while the
// kernels read the inputs, an output that overlaps any other array is a named error, raised while
// the buffers are made (before anything is enqueued).
#pragma once

#include <cstddef>
#include <vector>

#include "flashcl/flashcl.hpp"

namespace flashcl::detail {

// The rows a host call's arrays hold, after the shape and the varlen offsets' count are checked.
struct HostRows {
  bool varlen = false;
  std::size_t rows_q = 0, rows_k = 0;  // B·S dense; the packed totals (cu_seqlens[B]) with varlen
  int heads_kv = 0;
  std::size_t nq = 0, nk = 0, nlse = 0;  // floats of Q/O, of K/V, of LSE
};
HostRows host_rows(const ForwardArgs& shape, const HostVariants& variants);

// The buffers of one call, released with it.
class HostBuffers {
 public:
  HostBuffers(cl_context context, cl_command_queue queue, bool host_unified, std::size_t host_align);
  HostBuffers(const HostBuffers&) = delete;
  HostBuffers& operator=(const HostBuffers&) = delete;
  ~HostBuffers();

  // n elements of `dtype` storage read from `data`; `access` flags the buffer when it lies over the
  // caller's memory (read-only, unless the call's checks want the flag of an output).
  cl_mem input(const char* name, const float* data, std::size_t n, DType dtype, cl_mem_flags access = CL_MEM_READ_ONLY);
  // n elements of `dtype` storage that finish() leaves in `data`.
  cl_mem output(const char* name, float* data, std::size_t n, DType dtype);
  // A copy of raw bytes (the variants' data); no buffer when there are none.
  cl_mem optional(std::size_t bytes, const void* data);
  // Buffers that lie over the caller's memory so far.
  int over_host() const { return over_host_; }
  // Blocks until every output is in the caller's memory: a map for those over it, a read (and the
  // conversion from 16-bit storage) for the others.
  void finish();

 private:
  struct Range {
    const char* name;
    const char* begin;
    const char* end;
  };
  struct Output {
    cl_mem mem;
    float* data;
    std::size_t n;
    DType dtype;
    bool over_host;
  };
  cl_mem make(cl_mem_flags flags, std::size_t bytes, const void* data);
  cl_mem over_host(const float* data, std::size_t n, DType dtype, cl_mem_flags access);

  cl_context context_;
  cl_command_queue queue_;
  bool host_unified_;
  std::size_t host_align_;
  int over_host_ = 0;
  std::vector<cl_mem> held_;
  std::vector<Range> ranges_;  // every array so far, for the overlap check of outputs
  std::vector<Output> outputs_;
};

}  // namespace flashcl::detail
