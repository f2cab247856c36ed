// host_buffers.hpp: what Session's host-array calls (session.cpp's forward, session_backward.cpp's
// backward) share: the row counts a shape and its varlen offsets imply, and the buffers one call
// makes for the caller's arrays. On a host-unified device (CPUs such as PoCL) an f32 array at
// CL_DEVICE_MEM_BASE_ADDR_ALIGN becomes a buffer over its own memory (CL_MEM_USE_HOST_PTR: nothing
// copied in, and the kernels' writes land in place, made visible by a blocking map). An f32 input
// that misses the alignment by a whole number of floats (numpy's large arrays start 16 bytes past a
// page) is used in place too: the buffer starts at its pointer rounded down to the alignment, the
// same page whenever the page size is a multiple of it (so those few bytes are mapped memory), and
// the array sits at an element offset in it; no kernel writes an input, so the bytes before the
// array are only ever covered, never touched. An array both read and written (in_out, below) is
// widened on the same terms when those bytes belong to no other array of the call: the kernels
// write only within the array, and finish() maps only the array's own range. Outputs get no such
// widening, nor does an input whose tensor has no offset (the backward's LSE). Anything else (16-bit storage, other misalignments, other devices) is copied in
// (COPY_HOST_PTR, rounded to the storage type) and read back. Since an output over the caller's
// memory is written while the kernels read the inputs, an output that overlaps any other array is
// a named error, raised while the buffers are made (before anything is enqueued); one that only
// meets the bytes an input's buffer adds before its array is copied instead (OpenCL leaves
// overlapping host regions undefined when one is written). An array both read and written (a KV
// cache that an append writes into: in_out) is handled as an output that starts with the caller's
// values: over the caller's memory on the same terms, widened as inputs are (no copy either way;
// torch's CPU tensors start 64 bytes into an allocation, short of PoCL's 128), else copied in,
// and only the element ranges the call writes copied back.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "flashcl/flashcl.hpp"

namespace flashcl::detail {

// The rows a host call's arrays hold, after the shape and the varlen offsets' count are checked.
struct HostRows {
  bool varlen = false;
  std::size_t rows_q = 0, rows_k = 0;  // B·S dense; the packed totals (cu_seqlens[B]) with varlen
  int heads_kv = 0;
  std::size_t nq = 0, nk = 0, nlse = 0;  // floats of Q/O, of K/V, of LSE
  int head_dim = 0;

  // The Tensor of an array of `heads` heads in `mem`, starting `offset` elements in (an input over
  // the caller's memory may start past its buffer's aligned start): packed rows with varlen (the
  // batch stride ignored), dense (B, S, H, d) otherwise.
  Tensor view(cl_mem mem, int heads, std::int64_t offset = 0) const {
    return varlen ? Tensor{mem, offset, 0, std::int64_t{heads} * head_dim, head_dim} : Tensor{mem, offset};
  }
};
HostRows host_rows(const ForwardArgs& shape, const HostVariants& variants);

// An input's buffer and where the array starts in it, in elements (a Tensor's offset).
struct HostInput {
  cl_mem mem = nullptr;
  std::int64_t offset = 0;
};

// Elements [first, first + count) of an array.
struct ElementRange {
  std::size_t first = 0, count = 0;
};

// The buffers of one call, released with it.
class HostBuffers {
 public:
  HostBuffers(cl_context context, cl_command_queue queue, bool host_unified, std::size_t host_align);
  HostBuffers(const HostBuffers&) = delete;
  HostBuffers& operator=(const HostBuffers&) = delete;
  ~HostBuffers();

  // n elements of `dtype` storage read from `data` (a read-only buffer when it lies over the
  // caller's memory). `offsettable`: the caller puts the returned offset in the array's view;
  // false (a bare cl_mem, such as LSE) keeps the offset 0, so a misaligned array is copied.
  HostInput input(const char* name, const float* data, std::size_t n, DType dtype, bool offsettable = true);
  // n elements of `dtype` storage that finish() leaves in `data`.
  cl_mem output(const char* name, float* data, std::size_t n, DType dtype);
  // n elements of `dtype` storage read from `data` and written back into it, at the returned
  // element offset of the buffer (a widened one starts before `data`): where a buffer over the
  // caller's memory cannot be made, a copy whose `written` ranges finish() brings back (the rest
  // of the caller's array is left as it was).
  HostInput in_out(const char* name, float* data, std::size_t n, DType dtype, std::vector<ElementRange> written);
  // A copy of raw bytes (the variants' data); no buffer when there are none.
  cl_mem optional(std::size_t bytes, const void* data);
  // Buffers that lie over the caller's memory so far.
  int over_host() const { return over_host_; }
  // Blocks until every output is in the caller's memory: a map for those over it, a read (and the
  // conversion from 16-bit storage) for the others.
  void finish();
  // (A call that throws before finish() is done still waits for its queue in the destructor: the
  // kernels enqueued before the failure may read or write the caller's arrays until they end, and
  // the caller may free those arrays as soon as the error reaches it.)

 private:
  struct Range {
    const char* name;
    const char* begin;  // the array's own bytes
    const char* end;
    const char* covered;  // where its buffer starts: before `begin` for a widened input
  };
  struct Output {
    cl_mem mem;
    float* data;
    std::size_t n;
    DType dtype;
    bool over_host;
    std::size_t lead;                   // elements of a widened buffer before `data`
    std::vector<ElementRange> written;  // what a copy brings back
  };
  cl_mem make(cl_mem_flags flags, std::size_t bytes, const void* data);
  // A buffer holding a copy of n elements of `data` in `dtype` storage (one element when empty).
  cl_mem copy_in(const float* data, std::size_t n, DType dtype);
  // An array the kernels write: the overlap check, then a buffer over it (widened when `read`) or
  // a copy (in when `read`), brought back by finish().
  HostInput writable(const char* name, float* data, std::size_t n, DType dtype, bool read,
                     std::vector<ElementRange> written);
  // Floats between `data` and the alignment below it where a buffer may start there instead:
  // whole floats, the same page, the caller's view able to carry an offset; else 0.
  std::size_t widening(const float* data, bool offsettable) const;
  // A buffer over [data - lead floats, data + n) when the device may use it in place; else none.
  cl_mem over_host(const float* data, std::size_t lead, std::size_t n, DType dtype, cl_mem_flags access);

  cl_context context_;
  cl_command_queue queue_;
  bool host_unified_;
  std::size_t host_align_;
  bool may_widen_;  // the page size is a multiple of host_align_: a rounded-down start stays in the page
  int over_host_ = 0;
  bool finished_ = false;  // finish() ran to its end
  std::vector<cl_mem> held_;
  std::vector<Range> ranges_;  // every array so far, for the overlap check of outputs
  std::vector<Output> outputs_;
};

}  // namespace flashcl::detail
