// host_kvcache.cpp: forward_kvcache on host arrays through a Session (see host_kvcache.hpp). Every
// array is copied into a buffer of its own (CL_MEM_COPY_HOST_PTR: simple and correct on every
// device, where buffers over the caller's memory would need map/unmap to be seen on the host),
// the call is enqueued and waited for, and the outputs are read back with blocking reads. Buffers
// are released whatever happens.
#include "host_kvcache.hpp"

#include <string>
#include <vector>

namespace flashcl_py {
namespace {

using flashcl::Error;
using flashcl::Status;

// Releases the call's buffers on every path out.
struct Buffers {
  std::vector<cl_mem> list;
  Buffers() = default;
  Buffers(const Buffers&) = delete;
  Buffers& operator=(const Buffers&) = delete;
  ~Buffers() {
    for (cl_mem m : list) clReleaseMemObject(m);
  }

  // A buffer for `a` (nullptr when a is absent): its bytes copied in when `copy_in`, else only sized.
  cl_mem make(cl_context context, const HostBytes& a, cl_mem_flags access, bool copy_in, const char* name) {
    if (a.data == nullptr) return nullptr;
    if (a.bytes == 0) throw Error(Status::InvalidArgument, std::string(name) + ": empty arrays are not supported");
    cl_int err = CL_SUCCESS;
    cl_mem m = clCreateBuffer(context, access | (copy_in ? CL_MEM_COPY_HOST_PTR : 0), a.bytes,
                              copy_in ? a.data : nullptr, &err);
    if (err != CL_SUCCESS || m == nullptr) {
      const bool memory = err == CL_MEM_OBJECT_ALLOCATION_FAILURE || err == CL_OUT_OF_RESOURCES ||
                          err == CL_OUT_OF_HOST_MEMORY || err == CL_INVALID_BUFFER_SIZE;
      throw Error(memory ? Status::OutOfResources : Status::OpenCLError,
                  std::string(name) + ": clCreateBuffer of " + std::to_string(a.bytes) + " bytes failed (" +
                      std::to_string(err) + ")");
    }
    list.push_back(m);
    return m;
  }
};

void read_back(cl_command_queue queue, cl_mem m, const HostBytes& a, const char* name) {
  const cl_int err = clEnqueueReadBuffer(queue, m, CL_TRUE, 0, a.bytes, a.data, 0, nullptr, nullptr);
  if (err != CL_SUCCESS)
    throw Error(Status::OpenCLError, std::string(name) + ": clEnqueueReadBuffer failed (" + std::to_string(err) + ")");
}

}  // namespace

void forward_kvcache_host(flashcl::Session& session, const flashcl::KvCacheArgs& shape,
                          const HostKvCacheArrays& arrays) {
  const cl_context ctx = session.context();
  const bool append = arrays.k_new.data != nullptr;
  Buffers buffers;
  const auto input = [&](const HostBytes& a, const char* name) {
    return buffers.make(ctx, a, CL_MEM_READ_ONLY, true, name);
  };
  flashcl::KvCacheArgs a = shape;
  a.q.buffer = input(arrays.q, "q");
  // The caches are written only when k_new is appended into them.
  const cl_mem_flags cache_access = append ? CL_MEM_READ_WRITE : CL_MEM_READ_ONLY;
  a.k_cache.buffer = buffers.make(ctx, arrays.k_cache, cache_access, true, "k_cache");
  a.v_cache.buffer = buffers.make(ctx, arrays.v_cache, cache_access, true, "v_cache");
  a.o.buffer = buffers.make(ctx, arrays.o, CL_MEM_WRITE_ONLY, false, "o");
  a.lse = buffers.make(ctx, arrays.lse, CL_MEM_WRITE_ONLY, false, "lse");
  a.cache_seqlens = input(arrays.cache_seqlens, "cache_seqlens");
  a.cache_batch_idx = input(arrays.cache_batch_idx, "cache_batch_idx");
  a.block_table = input(arrays.block_table, "block_table");
  a.k_new.buffer = input(arrays.k_new, "k_new");
  a.v_new.buffer = input(arrays.v_new, "v_new");
  a.rotary_cos = input(arrays.rotary_cos, "rotary_cos");
  a.rotary_sin = input(arrays.rotary_sin, "rotary_sin");
  a.alibi_slopes = input(arrays.alibi_slopes, "alibi_slopes");
  a.k_descale = a.v_descale = a.workspace = nullptr;  // fp8 caches take pyopencl Arrays (kvcache.py)

  const cl_command_queue queue = session.queue();
  flashcl::forward_kvcache(queue, a).wait();
  read_back(queue, a.o.buffer, arrays.o, "o");
  if (a.lse != nullptr) read_back(queue, a.lse, arrays.lse, "lse");
  if (append) {
    read_back(queue, a.k_cache.buffer, arrays.k_cache, "k_cache");
    read_back(queue, a.v_cache.buffer, arrays.v_cache, "v_cache");
  }
}

}  // namespace flashcl_py
