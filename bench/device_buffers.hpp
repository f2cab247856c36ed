// device_buffers.hpp: what flashcl-bench's own modes (--decode, --backward) need to hold inputs
// on the device: an owning cl_mem, random fills in any storage dtype (never zeros: they hide
// unwritten outputs and can time faster than real data), uploads of small host vectors, read-back
// as floats, and a check that
// turns a failed OpenCL call into a flashcl::Error naming it.
#pragma once

#include <CL/cl.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "flashcl/flashcl.hpp"

namespace flashcl::bench {

// An owned device buffer of at least `bytes` (4 when 0, so empty tensors still have a handle).
class Buffer {
 public:
  Buffer(cl_context context, std::size_t bytes);
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer();
  cl_mem get() const { return mem_; }

 private:
  cl_mem mem_ = nullptr;
};

// Throws Error(OpenCLError) naming `what` when err is not CL_SUCCESS.
void check_cl(cl_int err, const char* what);

// `elems` storage elements of random values in [-1, 1): a 1 Mi-element random block repeated, so
// large buffers fill in seconds.
void fill_random(cl_command_queue queue, cl_mem buffer, std::size_t elems, DType dtype, std::uint64_t seed);

// `values` written from the start of `buffer` (a blocking write: slopes, offsets, tables).
template <typename T>
void upload(cl_command_queue queue, cl_mem buffer, const std::vector<T>& values) {
  check_cl(clEnqueueWriteBuffer(queue, buffer, CL_TRUE, 0, values.size() * sizeof(T), values.data(), 0, nullptr, nullptr),
           "clEnqueueWriteBuffer");
}

// `elems` storage elements read back and widened to float.
std::vector<float> read_floats(cl_command_queue queue, cl_mem buffer, std::size_t elems, DType dtype);

}  // namespace flashcl::bench
