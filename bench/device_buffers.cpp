// device_buffers.cpp: device buffers, random fills and read-back for flashcl-bench's modes
// (device_buffers.hpp).
#include "device_buffers.hpp"

#include <algorithm>
#include <string>

#include "problem.hpp"

namespace flashcl::bench {

Buffer::Buffer(cl_context context, std::size_t bytes) {
  cl_int err = CL_SUCCESS;
  mem_ = clCreateBuffer(context, CL_MEM_READ_WRITE, std::max<std::size_t>(bytes, 4), nullptr, &err);
  if (err != CL_SUCCESS) throw Error(Status::OutOfResources, "clCreateBuffer of " + std::to_string(bytes) + " bytes failed");
}

Buffer::~Buffer() { clReleaseMemObject(mem_); }

void check_cl(cl_int err, const char* what) {
  if (err != CL_SUCCESS) throw Error(Status::OpenCLError, std::string(what) + " failed: " + std::to_string(err));
}

void fill_random(cl_command_queue queue, cl_mem buffer, std::size_t elems, DType dtype, std::uint64_t seed) {
  const std::size_t block = std::min<std::size_t>(elems, std::size_t{1} << 20), elem = element_size(dtype);
  const std::vector<float> values = random_values(block, seed);
  std::vector<std::uint16_t> bits;
  if (dtype != DType::F32) bits = to_storage(dtype, values);
  const void* data = dtype == DType::F32 ? static_cast<const void*>(values.data()) : bits.data();
  for (std::size_t at = 0; at < elems; at += block) {
    const std::size_t n = std::min(block, elems - at);
    check_cl(clEnqueueWriteBuffer(queue, buffer, CL_TRUE, at * elem, n * elem, data, 0, nullptr, nullptr),
             "clEnqueueWriteBuffer");
  }
}

std::vector<float> read_floats(cl_command_queue queue, cl_mem buffer, std::size_t elems, DType dtype) {
  if (dtype == DType::F32) {
    std::vector<float> out(elems);
    check_cl(clEnqueueReadBuffer(queue, buffer, CL_TRUE, 0, elems * 4, out.data(), 0, nullptr, nullptr),
             "clEnqueueReadBuffer");
    return out;
  }
  std::vector<std::uint16_t> bits(elems);
  check_cl(clEnqueueReadBuffer(queue, buffer, CL_TRUE, 0, elems * 2, bits.data(), 0, nullptr, nullptr),
           "clEnqueueReadBuffer");
  return from_storage(dtype, bits);
}

}  // namespace flashcl::bench
