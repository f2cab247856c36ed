// cuda_interop.hpp: PyTorch's CUDA memory seen by NVIDIA's OpenCL driver without copies. For a
// CUDA device it opens a "bridge": the OpenCL device of the same GPU (matched by
// cl_khr_device_uuid against the CUDA device's UUID), a context and an in-order queue on it. Memory
// made through it (cuMemCreate with a POSIX-fd handle, exported, imported into that context with
// clCreateBufferWithProperties, mapped for CUDA) is registered by its CUDA address range, so a CUDA
// pointer inside it resolves to (cl_mem, byte offset). The exported C functions
// flashcl_cuda_alloc/flashcl_cuda_free make that allocator usable by PyTorch
// (torch.cuda.memory.CUDAPluggableAllocator under a torch.cuda.MemPool). run_forward, run_backward
// and run_forward_kvcache order a call between a CUDA stream and the OpenCL queue: on the GPU
// through external semaphores where the driver has them, else by a flag the queue writes last and
// the stream waits for on the GPU (a host wait before the call only), else by host waits (docs in
// the .cpp).
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "cuda_driver.hpp"
#include "flashcl/flashcl.hpp"

namespace flashcl_py::cuda {

// What a bridge is, for Python: the OpenCL objects as integers and what the import path uses.
struct BridgeInfo {
  int ordinal = 0;                   // the CUDA device
  std::string device_name;           // the OpenCL device's name
  std::uintptr_t device = 0;         // cl_device_id
  std::uintptr_t context = 0;        // cl_context
  std::uintptr_t queue = 0;          // cl_command_queue (in order)
  std::size_t granularity = 0;       // bytes every exported allocation is rounded up to
  std::size_t base_align = 0;        // bytes a sub-buffer's origin must be a multiple of
  bool acquire_release = false;      // clEnqueueAcquire/ReleaseExternalMemObjectsKHR around each call
  std::string note;                  // why acquire/release is off, when it is
};

// Opens the bridge of CUDA device `ordinal` once (later calls return the same one). Throws
// DeviceNotFound without libcuda, without an OpenCL device of that UUID, or when that device lacks
// cl_khr_external_memory_opaque_fd; OpenCLError/InternalError when the first import fails.
// `ordering` (FLASHCL_CUDA_ORDER, read by flashcl/cuda.py) applies when this call opens it:
// "auto" (or "") probes the semaphores once and uses them when they work, else probes the flag once
// and uses it when it works, else host waits; "host" probes nothing; "semaphore" and "flag" probe
// that one only and throw DeviceNotFound when it does not work (InvalidArgument for any other name).
const BridgeInfo& open_bridge(int ordinal, const std::string& ordering = "auto");

// How an open bridge orders calls: `ordering` "semaphore", "flag" or "host" ("" when not open),
// `note` why not the semaphores when not, `semaphores`/`flag` whether that ordering works here (its
// probe passed and no call of it has failed since; false as well when it was never probed).
struct OrderingInfo {
  std::string ordering;
  std::string note;
  bool semaphores = false;
  bool flag = false;
};
OrderingInfo ordering(int ordinal);
// Switches an open (or opened here) bridge to "host", "flag", "semaphore" or "auto" for later calls
// (probing what it needs once); "flag" and "semaphore" throw DeviceNotFound where they do not work.
OrderingInfo set_ordering(int ordinal, const std::string& ordering);

// Exportable device memory of at least `bytes` on CUDA device `ordinal`, registered; returns its
// CUDA address. Throws as open_bridge, or OutOfResources.
CUdeviceptr allocate(int ordinal, std::size_t bytes);
// Frees what allocate returned (unknown addresses are ignored and reported false), once `stream`
// (the one PyTorch last used the block on) and the OpenCL queue are done with it.
bool release(CUdeviceptr address, CUstream stream) noexcept;

// The registered allocation that holds the whole of [address, address + bytes).
struct Located {
  std::uintptr_t mem = 0;  // cl_mem; 0 when no allocation holds the range
  std::size_t offset = 0;  // bytes from the allocation's start
  int ordinal = -1;
};
Located locate(std::uintptr_t address, std::size_t bytes);

// The sub-buffer covering exactly [address, address + bytes), for a tensor argument (the
// library's aliasing checks then compare exactly the bytes each tensor covers): of registered
// memory (the pool's; made once per range and cached with its allocation, see Views in the .cpp),
// else, when `import` is set, of PyTorch's own physical allocation imported into OpenCL
// (cuda_import.hpp). This object holds a reference until it is destroyed. handle() is 0 when
// neither holds the range or its offset is not a multiple of the bridge's base_align (the caller
// then stages the tensor); kind() says which served it ("pool", "import" or ""), why() why not
// the import when it was tried and refused.
class View {
 public:
  View(std::uintptr_t address, std::size_t bytes, bool import = true);
  ~View();
  View(const View&) = delete;
  View& operator=(const View&) = delete;
  std::uintptr_t handle() const { return reinterpret_cast<std::uintptr_t>(mem_); }
  const char* kind() const { return kind_; }
  const std::string& why() const { return why_; }

 private:
  cl_mem mem_ = nullptr;
  const char* kind_ = "";
  std::string why_;
};

// Sub-buffers made, and views served from the cache, since the process started.
struct ViewCounts {
  std::size_t created = 0;
  std::size_t reused = 0;
};
ViewCounts view_counts();

// Registered allocations now: their number and bytes.
struct Usage {
  std::size_t allocations = 0;
  std::size_t bytes = 0;
};
Usage usage();

// One flashcl call on the bridge's queue, ordered after the work already on `stream` and before
// the work enqueued on it later (see the .cpp). Returns what ordered it: "semaphore" or "flag" (the
// call may still be running; the stream waits for it on the GPU) or "host" (it has finished).
std::string run_forward(int ordinal, std::uintptr_t stream, const flashcl::ForwardArgs& args);
std::string run_backward(int ordinal, std::uintptr_t stream, const flashcl::BackwardArgs& args);
// forward_kvcache the same way (the caches written in place when k_new is appended).
std::string run_forward_kvcache(int ordinal, std::uintptr_t stream, const flashcl::KvCacheArgs& args);

// Writes `value` into [address, address + bytes) through OpenCL (clEnqueueFillBuffer on the
// imported buffer) after `stream`'s work: shows that both sides see one memory.
std::string fill(std::uintptr_t address, std::size_t bytes, std::uint8_t value, std::uintptr_t stream);

// The message of the last failure inside flashcl_cuda_alloc (which can only return nullptr).
std::string last_alloc_error();

}  // namespace flashcl_py::cuda

// PyTorch's pluggable-allocator signatures (cudaStream_t as void*); exported from the module.
extern "C" __attribute__((visibility("default"))) void* flashcl_cuda_alloc(ssize_t size, int device, void* stream);
extern "C" __attribute__((visibility("default"))) void flashcl_cuda_free(void* ptr, ssize_t size, int device,
                                                                          void* stream);
