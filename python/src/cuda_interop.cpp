// cuda_interop.cpp: the bridge between a CUDA device and NVIDIA's OpenCL device of the same GPU,
// the exportable allocations both sides address, and the ordering of a flashcl call between a
// CUDA stream and the OpenCL queue.
//
// Ordering (no semaphores): run_forward/run_backward first synchronise the caller's CUDA stream
// (cuStreamSynchronize: every kernel PyTorch queued that writes an input, or last used an output's
// memory, has finished), then enqueue flashcl's kernels on the bridge's in-order queue, bracketed by
// clEnqueueAcquire/ReleaseExternalMemObjectsKHR where the driver takes them, and clFinish the queue
// before returning, so PyTorch's next kernel on any stream sees finished outputs and memory the
// caching allocator reuses is no longer read. The host waits twice per call (tens of
// microseconds); the GPU idles between PyTorch's work and flashcl's for that long.
//
// File descriptors: each allocation's exported fd is duplicated for the import and the original
// closed at once. Whether the OpenCL driver takes ownership of the imported fd (as Vulkan and
// cuImportExternalMemory do) is probed on the bridge's first import; when it does not, the
// duplicate is closed with the allocation.
// The module, like the library, uses OpenCL 1.2 calls; 3.0 ones are looked up at run time.
#ifndef CL_TARGET_OPENCL_VERSION
#define CL_TARGET_OPENCL_VERSION 120
#endif
#include "cuda_interop.hpp"

#include <CL/cl.h>
#include <CL/cl_ext.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

namespace flashcl_py::cuda {
namespace {

using flashcl::Error;
using flashcl::Status;

#ifndef CL_DEVICE_UUID_KHR
#define CL_DEVICE_UUID_KHR 0x106A
#endif
#ifndef CL_EXTERNAL_MEMORY_HANDLE_OPAQUE_FD_KHR
#define CL_EXTERNAL_MEMORY_HANDLE_OPAQUE_FD_KHR 0x2060
#endif

// OpenCL 3.0's clCreateBufferWithProperties, found in the ICD loader at run time (the library
// itself targets OpenCL 1.2, and a 1.2 loader lacks the symbol), and the external-memory hand-off.
using cl_mem_properties_t = cl_ulong;
using CreateBufferWithProperties = cl_mem(CL_API_CALL*)(cl_context, const cl_mem_properties_t*, cl_mem_flags,
                                                         std::size_t, void*, cl_int*);
using ExternalMemObjects = cl_int(CL_API_CALL*)(cl_command_queue, cl_uint, const cl_mem*, cl_uint, const cl_event*,
                                               cl_event*);

void check_cl(cl_int code, const char* what) {
  if (code != CL_SUCCESS)
    throw Error(Status::OpenCLError, std::string(what) + " failed with OpenCL error " + std::to_string(code));
}

struct Bridge {
  BridgeInfo info;
  cl_platform_id platform = nullptr;
  cl_device_id device = nullptr;
  cl_context context = nullptr;
  cl_command_queue queue = nullptr;
  CreateBufferWithProperties create_buffer = nullptr;
  ExternalMemObjects acquire = nullptr, release = nullptr;
  bool driver_owns_fd = true;
  std::mutex run;  // one call at a time on the queue (clFinish waits for that call only)
};

struct Allocation {
  std::size_t size;
  cl_mem mem;
  CUmemHandle handle;
  int fd;  // the imported duplicate, closed here when the driver does not own it; -1 otherwise
  int ordinal;
};

std::mutex bridges_mutex;
std::map<int, std::unique_ptr<Bridge>> bridges;
std::mutex registry_mutex;
std::map<CUdeviceptr, Allocation> registry;  // by CUDA base address
std::mutex alloc_error_mutex;
std::string alloc_error;

std::string device_string(cl_device_id device, cl_device_info what) {
  std::size_t size = 0;
  if (clGetDeviceInfo(device, what, 0, nullptr, &size) != CL_SUCCESS || size == 0) return {};
  std::string s(size, '\0');
  clGetDeviceInfo(device, what, size, s.data(), nullptr);
  s.resize(std::strlen(s.c_str()));
  return s;
}

bool has_extension(cl_device_id device, const std::string& name) {
  const std::string all = " " + device_string(device, CL_DEVICE_EXTENSIONS) + " ";
  return all.find(" " + name + " ") != std::string::npos;
}

std::string hex(const unsigned char* bytes, std::size_t n) {
  static const char digits[] = "0123456789abcdef";
  std::string s;
  for (std::size_t i = 0; i < n; ++i) s += {digits[bytes[i] >> 4], digits[bytes[i] & 15]};
  return s;
}

// The OpenCL GPU whose cl_khr_device_uuid equals the CUDA device's UUID.
void find_device(Bridge& b, const unsigned char (&uuid)[16]) {
  cl_uint platforms = 0;
  clGetPlatformIDs(0, nullptr, &platforms);
  std::vector<cl_platform_id> ids(platforms);
  if (platforms) clGetPlatformIDs(platforms, ids.data(), nullptr);
  std::string seen;
  for (cl_platform_id p : ids) {
    cl_uint n = 0;
    if (clGetDeviceIDs(p, CL_DEVICE_TYPE_GPU, 0, nullptr, &n) != CL_SUCCESS || n == 0) continue;
    std::vector<cl_device_id> devices(n);
    clGetDeviceIDs(p, CL_DEVICE_TYPE_GPU, n, devices.data(), nullptr);
    for (cl_device_id d : devices) {
      unsigned char id[16] = {};
      if (!has_extension(d, "cl_khr_device_uuid") ||
          clGetDeviceInfo(d, CL_DEVICE_UUID_KHR, sizeof id, id, nullptr) != CL_SUCCESS)
        continue;
      seen += (seen.empty() ? "" : ", ") + device_string(d, CL_DEVICE_NAME);
      if (std::memcmp(id, uuid, sizeof id) != 0) continue;
      if (!has_extension(d, "cl_khr_external_memory_opaque_fd"))
        throw Error(Status::DeviceNotFound, "CUDA device " + std::to_string(b.info.ordinal) + ": its OpenCL device '" +
                                                device_string(d, CL_DEVICE_NAME) +
                                                "' lacks cl_khr_external_memory_opaque_fd (CUDA memory cannot be imported)");
      b.platform = p;
      b.device = d;
      return;
    }
  }
  throw Error(Status::DeviceNotFound,
              "CUDA device " + std::to_string(b.info.ordinal) + " (UUID " + hex(uuid, 16) +
                  "): no OpenCL GPU with that cl_khr_device_uuid (GPUs with a UUID: " + (seen.empty() ? "none" : seen) +
                  "; NVIDIA's OpenCL driver must be registered with the ICD loader)");
}

AllocationProp allocation_prop(int ordinal) {
  AllocationProp prop{};
  prop.type = kAllocationPinned;
  prop.requested_handle_types = kHandlePosixFd;
  prop.location = {kLocationDevice, ordinal};
  return prop;
}

bool same_file(int a, int b) {
  struct stat sa {}, sb {};
  return fstat(a, &sa) == 0 && fstat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

// Exportable memory of `size` bytes (a multiple of the granularity), imported into the bridge's
// context and mapped for CUDA.
std::pair<CUdeviceptr, Allocation> create(Bridge& b, std::size_t size) {
  const Driver& d = driver();
  ensure_context(b.info.ordinal);
  const AllocationProp prop = allocation_prop(b.info.ordinal);
  Allocation a{size, nullptr, 0, -1, b.info.ordinal};
  check(d.cuMemCreate(&a.handle, size, &prop, 0), "cuMemCreate (exportable, POSIX fd)");
  CUdeviceptr address = 0;
  bool reserved = false, mapped = false;
  int fd = -1;
  try {
    check(d.cuMemExportToShareableHandle(&fd, a.handle, kHandlePosixFd, 0), "cuMemExportToShareableHandle");
    const int imported = dup(fd);
    close(fd);
    if (imported < 0) throw Error(Status::OutOfResources, "dup of an exported CUDA handle failed (out of descriptors)");
    const cl_mem_properties_t props[] = {CL_EXTERNAL_MEMORY_HANDLE_OPAQUE_FD_KHR,
                                         static_cast<cl_mem_properties_t>(imported), 0};
    cl_int err = CL_SUCCESS;
    a.mem = b.create_buffer(b.context, props, CL_MEM_READ_WRITE, size, nullptr, &err);
    if (a.mem == nullptr || err != CL_SUCCESS) {
      close(imported);  // a failed import takes nothing
      check_cl(err != CL_SUCCESS ? err : CL_INVALID_MEM_OBJECT,
               "clCreateBufferWithProperties (CL_EXTERNAL_MEMORY_HANDLE_OPAQUE_FD_KHR)");
    }
    a.fd = b.driver_owns_fd ? -1 : imported;
    check(d.cuMemAddressReserve(&address, size, 0, 0, 0), "cuMemAddressReserve");
    reserved = true;
    check(d.cuMemMap(address, size, 0, a.handle, 0), "cuMemMap");
    mapped = true;
    const AccessDesc access{{kLocationDevice, b.info.ordinal}, kAccessReadWrite};
    check(d.cuMemSetAccess(address, size, &access, 1), "cuMemSetAccess");
  } catch (...) {
    if (a.mem) clReleaseMemObject(a.mem);
    if (a.fd >= 0) close(a.fd);
    if (mapped) d.cuMemUnmap(address, size);
    if (reserved) d.cuMemAddressFree(address, size);
    d.cuMemRelease(a.handle);
    throw;
  }
  return {address, a};
}

void destroy(CUdeviceptr address, const Allocation& a) {
  const Driver& d = driver();
  clReleaseMemObject(a.mem);
  if (a.fd >= 0) close(a.fd);
  d.cuMemUnmap(address, a.size);
  d.cuMemAddressFree(address, a.size);
  d.cuMemRelease(a.handle);
}

// The first import: whether it works at all (a clean error at open, not inside PyTorch's
// allocator), whether the driver owns the imported fd, and whether acquire/release run.
void probe(Bridge& b) {
  const Driver& d = driver();
  const AllocationProp prop = allocation_prop(b.info.ordinal);
  CUmemHandle handle = 0;
  check(d.cuMemCreate(&handle, b.info.granularity, &prop, 0), "cuMemCreate (exportable, POSIX fd)");
  int fd = -1;
  const CUresult exported = d.cuMemExportToShareableHandle(&fd, handle, kHandlePosixFd, 0);
  if (exported != 0) {
    d.cuMemRelease(handle);
    check(exported, "cuMemExportToShareableHandle");
  }
  const int imported = dup(fd);
  const cl_mem_properties_t props[] = {CL_EXTERNAL_MEMORY_HANDLE_OPAQUE_FD_KHR,
                                       static_cast<cl_mem_properties_t>(imported), 0};
  cl_int err = CL_SUCCESS;
  cl_mem mem = b.create_buffer(b.context, props, CL_MEM_READ_WRITE, b.info.granularity, nullptr, &err);
  if (mem == nullptr || err != CL_SUCCESS) {
    close(imported);
    close(fd);
    d.cuMemRelease(handle);
    check_cl(err != CL_SUCCESS ? err : CL_INVALID_MEM_OBJECT,
             "clCreateBufferWithProperties (CL_EXTERNAL_MEMORY_HANDLE_OPAQUE_FD_KHR)");
  }
  if (b.acquire && b.release) {
    cl_event events[2] = {nullptr, nullptr};
    cl_int a = b.acquire(b.queue, 1, &mem, 0, nullptr, &events[0]);
    cl_int r = a == CL_SUCCESS ? b.release(b.queue, 1, &mem, 1, &events[0], &events[1]) : a;
    if (r == CL_SUCCESS) r = clFinish(b.queue);
    for (cl_event e : events)
      if (e) clReleaseEvent(e);
    b.info.acquire_release = r == CL_SUCCESS;
    if (r != CL_SUCCESS)
      b.info.note = "clEnqueueAcquire/ReleaseExternalMemObjectsKHR failed with " + std::to_string(r) +
                    " on a probe buffer: calls are ordered by synchronisation alone";
  } else {
    b.info.note = "the driver has no clEnqueueAcquire/ReleaseExternalMemObjectsKHR: calls are ordered by "
                  "synchronisation alone";
  }
  clReleaseMemObject(mem);
  clFinish(b.queue);
  // Still open and still the same file after the buffer's release: the driver did not take it.
  b.driver_owns_fd = !(fcntl(imported, F_GETFD) != -1 && same_file(imported, fd));
  if (!b.driver_owns_fd) close(imported);
  close(fd);
  d.cuMemRelease(handle);
}

std::unique_ptr<Bridge> make_bridge(int ordinal) {
  const Driver& d = driver();
  auto b = std::make_unique<Bridge>();
  b->info.ordinal = ordinal;
  CUdevice device = 0;
  check(d.cuDeviceGet(&device, ordinal), "cuDeviceGet");
  unsigned char uuid[16] = {};
  check(d.cuDeviceGetUuid(uuid, device), "cuDeviceGetUuid");
  ensure_context(device);
  find_device(*b, uuid);
  b->create_buffer = reinterpret_cast<CreateBufferWithProperties>(dlsym(RTLD_DEFAULT, "clCreateBufferWithProperties"));
  if (b->create_buffer == nullptr)
    throw Error(Status::DeviceNotFound, "the OpenCL ICD loader lacks clCreateBufferWithProperties (OpenCL 3.0), "
                                        "which importing CUDA memory needs");
  b->acquire = reinterpret_cast<ExternalMemObjects>(
      clGetExtensionFunctionAddressForPlatform(b->platform, "clEnqueueAcquireExternalMemObjectsKHR"));
  b->release = reinterpret_cast<ExternalMemObjects>(
      clGetExtensionFunctionAddressForPlatform(b->platform, "clEnqueueReleaseExternalMemObjectsKHR"));
  cl_int err = CL_SUCCESS;
  b->context = clCreateContext(nullptr, 1, &b->device, nullptr, nullptr, &err);
  check_cl(err, "clCreateContext");
  b->queue = clCreateCommandQueue(b->context, b->device, 0, &err);
  if (err != CL_SUCCESS) clReleaseContext(b->context);
  check_cl(err, "clCreateCommandQueue");
  cl_uint align_bits = 0;
  clGetDeviceInfo(b->device, CL_DEVICE_MEM_BASE_ADDR_ALIGN, sizeof align_bits, &align_bits, nullptr);
  const AllocationProp prop = allocation_prop(ordinal);
  check(d.cuMemGetAllocationGranularity(&b->info.granularity, &prop, kGranularityRecommended),
        "cuMemGetAllocationGranularity");
  b->info.device_name = device_string(b->device, CL_DEVICE_NAME);
  b->info.device = reinterpret_cast<std::uintptr_t>(b->device);
  b->info.context = reinterpret_cast<std::uintptr_t>(b->context);
  b->info.queue = reinterpret_cast<std::uintptr_t>(b->queue);
  b->info.base_align = std::max<std::size_t>(align_bits / 8, 1);
  try {
    probe(*b);
  } catch (...) {
    clReleaseCommandQueue(b->queue);
    clReleaseContext(b->context);
    throw;
  }
  return b;
}

// Opened bridges live for the process (allocations and PyTorch's pool refer to them).
Bridge& bridge(int ordinal) {
  std::lock_guard<std::mutex> lock(bridges_mutex);
  auto it = bridges.find(ordinal);
  if (it == bridges.end()) it = bridges.emplace(ordinal, make_bridge(ordinal)).first;
  return *it->second;
}

// The imported buffers an argument set touches (sub-buffers mapped to their parents), once each.
std::vector<cl_mem> roots(const std::vector<cl_mem>& mems) {
  std::vector<cl_mem> out;
  for (cl_mem m : mems) {
    if (m == nullptr) continue;
    cl_mem parent = nullptr;
    clGetMemObjectInfo(m, CL_MEM_ASSOCIATED_MEMOBJECT, sizeof parent, &parent, nullptr);
    if (parent) m = parent;
    if (std::find(out.begin(), out.end(), m) == out.end()) out.push_back(m);
  }
  return out;
}

std::vector<cl_mem> forward_mems(const flashcl::ForwardArgs& a) {
  return {a.q.buffer, a.k.buffer, a.v.buffer, a.o.buffer, a.lse, a.workspace, a.alibi_slopes, a.mask.buffer,
          a.cu_seqlens_q, a.cu_seqlens_k};
}

// Releases the events of one call whatever happens.
struct Events {
  std::vector<cl_event> list;
  ~Events() {
    for (cl_event e : list)
      if (e) clReleaseEvent(e);
  }
};

template <typename Launch>
void run(int ordinal, std::uintptr_t stream, const std::vector<cl_mem>& mems, Launch&& launch) {
  Bridge& b = bridge(ordinal);
  const Driver& d = driver();
  std::lock_guard<std::mutex> lock(b.run);
  ensure_context(ordinal);
  check(d.cuStreamSynchronize(reinterpret_cast<CUstream>(stream)), "cuStreamSynchronize");
  const std::vector<cl_mem> external = roots(mems);
  const bool hand_off = b.info.acquire_release && !external.empty();
  Events events;
  std::vector<cl_event> wait;
  if (hand_off) {
    cl_event acquired = nullptr;
    check_cl(b.acquire(b.queue, static_cast<cl_uint>(external.size()), external.data(), 0, nullptr, &acquired),
             "clEnqueueAcquireExternalMemObjectsKHR");
    events.list.push_back(acquired);
    wait.push_back(acquired);
  }
  try {
    launch(b.queue, wait);
  } catch (...) {
    // What was enqueued before the failure still finishes (and is handed back) before PyTorch goes on.
    if (hand_off) b.release(b.queue, static_cast<cl_uint>(external.size()), external.data(), 0, nullptr, nullptr);
    clFinish(b.queue);
    throw;
  }
  if (hand_off)
    check_cl(b.release(b.queue, static_cast<cl_uint>(external.size()), external.data(), 0, nullptr, nullptr),
             "clEnqueueReleaseExternalMemObjectsKHR");
  check_cl(clFinish(b.queue), "clFinish");
}

}  // namespace

const BridgeInfo& open_bridge(int ordinal) { return bridge(ordinal).info; }

CUdeviceptr allocate(int ordinal, std::size_t bytes) {
  Bridge& b = bridge(ordinal);
  const std::size_t g = b.info.granularity;
  const std::size_t size = std::max<std::size_t>((bytes + g - 1) / g * g, g);
  auto [address, a] = create(b, size);
  std::lock_guard<std::mutex> lock(registry_mutex);
  registry.emplace(address, a);
  return address;
}

bool release(CUdeviceptr address) noexcept {
  Allocation a{};
  {
    std::lock_guard<std::mutex> lock(registry_mutex);
    auto it = registry.find(address);
    if (it == registry.end()) return false;
    a = it->second;
    registry.erase(it);
  }
  try {
    destroy(address, a);
  } catch (...) {
    return false;  // only driver() can throw, and it cannot fail once an allocation exists
  }
  return true;
}

Located locate(std::uintptr_t address, std::size_t bytes) {
  std::lock_guard<std::mutex> lock(registry_mutex);
  auto it = registry.upper_bound(address);
  if (it == registry.begin()) return {};
  --it;
  const CUdeviceptr base = it->first;
  const std::size_t size = it->second.size;
  if (address - base > size || bytes > size - (address - base)) return {};
  return {reinterpret_cast<std::uintptr_t>(it->second.mem), static_cast<std::size_t>(address - base),
          it->second.ordinal};
}

Usage usage() {
  std::lock_guard<std::mutex> lock(registry_mutex);
  Usage u;
  for (const auto& [base, a] : registry) {
    ++u.allocations;
    u.bytes += a.size;
  }
  return u;
}

SubBuffer::SubBuffer(std::uintptr_t parent, std::size_t offset, std::size_t bytes) {
  cl_mem p = reinterpret_cast<cl_mem>(parent);
  cl_uint align_bits = 0;
  cl_device_id device = nullptr;
  cl_context context = nullptr;
  clGetMemObjectInfo(p, CL_MEM_CONTEXT, sizeof context, &context, nullptr);
  if (context) clGetContextInfo(context, CL_CONTEXT_DEVICES, sizeof device, &device, nullptr);
  if (device) clGetDeviceInfo(device, CL_DEVICE_MEM_BASE_ADDR_ALIGN, sizeof align_bits, &align_bits, nullptr);
  const std::size_t align = std::max<std::size_t>(align_bits / 8, 1);
  if (offset % align != 0)
    throw Error(Status::InvalidArgument, "sub-buffer origin " + std::to_string(offset) + " is not a multiple of the "
                                         "device's base address alignment (" + std::to_string(align) + " bytes)");
  const cl_buffer_region region{offset, std::max<std::size_t>(bytes, 1)};
  cl_int err = CL_SUCCESS;
  mem_ = clCreateSubBuffer(p, CL_MEM_READ_WRITE, CL_BUFFER_CREATE_TYPE_REGION, &region, &err);
  check_cl(err, "clCreateSubBuffer");
}

SubBuffer::~SubBuffer() {
  if (mem_) clReleaseMemObject(mem_);
}

void run_forward(int ordinal, std::uintptr_t stream, const flashcl::ForwardArgs& args) {
  run(ordinal, stream, forward_mems(args), [&](cl_command_queue queue, const std::vector<cl_event>& wait) {
    flashcl::forward(queue, args, wait);
  });
}

void run_backward(int ordinal, std::uintptr_t stream, const flashcl::BackwardArgs& args) {
  std::vector<cl_mem> mems = forward_mems(args.forward);
  for (cl_mem m : {args.d_o.buffer, args.d_q.buffer, args.d_k.buffer, args.d_v.buffer, args.d_bias.buffer,
                   args.workspace})
    mems.push_back(m);
  run(ordinal, stream, mems, [&](cl_command_queue queue, const std::vector<cl_event>& wait) {
    flashcl::backward(queue, args, wait);
  });
}

void fill(std::uintptr_t address, std::size_t bytes, std::uint8_t value, std::uintptr_t stream) {
  const Located at = locate(address, bytes);
  if (at.mem == 0)
    throw Error(Status::InvalidArgument, "fill: the range is not inside memory of flashcl's CUDA pool");
  cl_mem mem = reinterpret_cast<cl_mem>(at.mem);
  run(at.ordinal, stream, {mem}, [&](cl_command_queue queue, const std::vector<cl_event>& wait) {
    check_cl(clEnqueueFillBuffer(queue, mem, &value, 1, at.offset, bytes, static_cast<cl_uint>(wait.size()),
                                 wait.empty() ? nullptr : wait.data(), nullptr),
             "clEnqueueFillBuffer");
  });
}

std::string last_alloc_error() {
  std::lock_guard<std::mutex> lock(alloc_error_mutex);
  return alloc_error;
}

}  // namespace flashcl_py::cuda

// PyTorch calls these from its caching allocator: no exception may leave them. A failure returns
// nullptr (PyTorch then raises its out-of-memory error) and keeps the reason for Python to show.
extern "C" void* flashcl_cuda_alloc(ssize_t size, int device, void*) {
  using namespace flashcl_py::cuda;
  try {
    return reinterpret_cast<void*>(allocate(device, size > 0 ? static_cast<std::size_t>(size) : 1));
  } catch (const std::exception& e) {
    std::lock_guard<std::mutex> lock(alloc_error_mutex);
    alloc_error = e.what();
  } catch (...) {
    std::lock_guard<std::mutex> lock(alloc_error_mutex);
    alloc_error = "unknown error";
  }
  return nullptr;
}

extern "C" void flashcl_cuda_free(void* ptr, ssize_t, int, void*) {
  flashcl_py::cuda::release(reinterpret_cast<flashcl_py::cuda::CUdeviceptr>(ptr));
}
