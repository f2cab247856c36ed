// cuda_interop.cpp: the bridge between a CUDA device and NVIDIA's OpenCL device of the same GPU,
// the exportable allocations both sides address, and the ordering of a flashcl call between a
// CUDA stream and the OpenCL queue.
//
// Ordering by semaphores (the default where the driver has them and the bridge's one-time probe
// passed): two binary OpenCL semaphores, exported as opaque fds and imported into CUDA, "ready"
// and "done". A call enqueues, without waiting on the host: the caller's stream signals ready
// (after every kernel PyTorch queued before it) -> the bridge's in-order queue waits for ready ->
// flashcl's kernels (bracketed by clEnqueueAcquire/ReleaseExternalMemObjectsKHR where the driver
// takes them) -> the queue signals done (and is flushed, since nothing else would submit it) ->
// the stream waits for done, so PyTorch's later kernels on that stream see finished outputs. The
// caching allocator reuses memory in stream order, and every use flashcl makes of a tensor lies
// between that stream's signal and wait, so a block freed after the call (a staged copy, a
// workspace) is not rewritten before the kernels that read it have finished.
// Binary semaphores must alternate signal and wait, which one chain gives: calls are enqueued one
// at a time (Bridge::run) on an in-order queue, so OpenCL's wait of ready for a call precedes its
// signal of done; and a call's signal of ready follows the previous call's wait of done on the
// CUDA side (every call's stream first waits, by cuStreamWaitEvent, for an event recorded after
// that wait; on the same stream it is met already). So each semaphore has been waited for before
// it is signalled again. A failed semaphore call demotes the bridge to host waits for good (the
// pair's state is then unknown), and the call in hand is finished that way.
//
// Ordering by a flag (where the semaphores cannot be made, as on NVIDIA 580, and the driver has
// cuStreamWaitValue32; FLASHCL_CUDA_ORDER=flag forces it): OpenCL cannot wait for CUDA, so the
// caller's stream is still synchronised on the host before the call, but as late as possible (after
// the arguments are prepared, right before the first enqueue), so the host's work for call n+1
// overlaps call n's kernels. After the kernels the in-order queue writes the call's sequence number
// into a 4-byte flag in exportable memory both drivers address (clEnqueueFillBuffer, the number as
// the pattern), is flushed (without it the write might never be submitted and the stream would wait
// for ever), and the stream waits on the device for the flag to reach that number
// (cuStreamWaitValue32, GEQ), so PyTorch's later kernels on it see finished outputs without a host
// wait. Numbers only grow, 32-bit and compared cyclically (cuda_order.hpp), so one flag serves
// every stream: a stream waiting for an earlier call's number passes once any later call's is
// written. Failures never leave a wait that cannot pass: an enqueue failing before the flag write
// enqueues no wait (the queue is finished on the host and the error raised); a failed write or
// flush finishes the queue on the host; a failed cuStreamWaitValue32 too, and turns the flag off.
// The flag's memory lives as long as the bridge (the process), so no wait outlives it.
//
// Ordering by host waits (the last fallback, FLASHCL_CUDA_ORDER=host, or set_ordering("host")): the
// caller's stream is synchronised (cuStreamSynchronize) before the kernels are enqueued and the
// queue finished (clFinish) before returning: two host waits per call, the GPU idle meanwhile.
//
// File descriptors: each allocation's exported fd is duplicated for the import and the original
// closed at once. Whether the OpenCL driver takes ownership of the imported fd (as Vulkan and
// cuImportExternalMemory do) is probed on the bridge's first import; when it does not, the
// duplicate is closed with the allocation. A semaphore's fd belongs to CUDA once imported.
// The module, like the library, uses OpenCL 1.2 calls; 3.0 ones are looked up at run time.
#ifndef CL_TARGET_OPENCL_VERSION
#define CL_TARGET_OPENCL_VERSION 120
#endif
#include "cuda_interop.hpp"
#include "cuda_import.hpp"
#include "cuda_order.hpp"

#include <CL/cl.h>
#include <CL/cl_ext.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <tuple>
#include <utility>
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
using CreateBufferWithProperties = CreateBufferFn;  // cuda_import.hpp
using ExternalMemObjects = cl_int(CL_API_CALL*)(cl_command_queue, cl_uint, const cl_mem*, cl_uint, const cl_event*,
                                               cl_event*);

// cl_khr_semaphore and cl_khr_external_semaphore(_opaque_fd), spelt here (older headers lack
// them) and found through clGetExtensionFunctionAddressForPlatform.
using Semaphore = struct FlashclSemaphore*;  // cl_semaphore_khr
using SemaphoreProperty = cl_ulong;          // cl_semaphore_properties_khr
using CreateSemaphore = Semaphore(CL_API_CALL*)(cl_context, const SemaphoreProperty*, cl_int*);
using EnqueueSemaphores = cl_int(CL_API_CALL*)(cl_command_queue, cl_uint, const Semaphore*, const cl_ulong*, cl_uint,
                                               const cl_event*, cl_event*);
using GetSemaphoreHandle = cl_int(CL_API_CALL*)(Semaphore, cl_device_id, cl_uint, std::size_t, void*, std::size_t*);
using ReleaseSemaphore = cl_int(CL_API_CALL*)(Semaphore);
constexpr SemaphoreProperty kSemaphoreType = 0x203D;            // CL_SEMAPHORE_TYPE_KHR
constexpr SemaphoreProperty kSemaphoreBinary = 1;               // CL_SEMAPHORE_TYPE_BINARY_KHR
constexpr SemaphoreProperty kSemaphoreExportTypes = 0x203F;     // CL_SEMAPHORE_EXPORT_HANDLE_TYPES_KHR
constexpr SemaphoreProperty kSemaphoreOpaqueFd = 0x2055;        // CL_SEMAPHORE_HANDLE_OPAQUE_FD_KHR
constexpr SemaphoreProperty kDeviceHandleList = 0x2051;         // CL_DEVICE_HANDLE_LIST_KHR
constexpr cl_device_info kDeviceSemaphoreExportTypes = 0x204E;  // CL_DEVICE_SEMAPHORE_EXPORT_HANDLE_TYPES_KHR

void check_cl(cl_int code, const char* what) {
  if (code != CL_SUCCESS)
    throw Error(Status::OpenCLError, std::string(what) + " failed with OpenCL error " + std::to_string(code));
}

// GPU-side ordering's objects (see the top of the file).
struct Semaphores {
  CreateSemaphore create = nullptr;
  EnqueueSemaphores wait = nullptr, signal = nullptr;
  GetSemaphoreHandle handle = nullptr;
  ReleaseSemaphore release = nullptr;
  Semaphore ready = nullptr, done = nullptr;                  // OpenCL's
  CUexternalSemaphore cu_ready = nullptr, cu_done = nullptr;  // CUDA's imports of them
  CUevent after = nullptr;  // recorded after the last semaphore-ordered call's wait of done
  bool chained = false;     // `after` has been recorded
  bool probed = false;      // probe_semaphores ran (its verdict: Bridge::semaphores_ok)
};

// The flag ordering's objects (see the top of the file): the 4-byte flag at the start of one
// exportable allocation (not in the registry: no tensor can alias it), and the numbers written.
struct FlagState {
  CUdeviceptr address = 0;  // CUDA's address of the flag
  cl_mem mem = nullptr;     // OpenCL's buffer of the whole allocation
  FlagSequence seq;         // the flag holds seq.last() once the last write has run
  bool probed = false;      // probe_flag ran (its verdict: Bridge::flag_ok)
};

struct Bridge {
  BridgeInfo info;
  cl_platform_id platform = nullptr;
  cl_device_id device = nullptr;
  cl_context context = nullptr;
  cl_command_queue queue = nullptr;
  CreateBufferWithProperties create_buffer = nullptr;
  ExternalMemObjects acquire = nullptr, release = nullptr;
  bool driver_owns_fd = true;
  // Ordering, guarded by `run`: mode is the choice in force; semaphores_ok and flag_ok the probes'
  // verdicts (false again after a failed call of that kind), semaphore_note and flag_note why not;
  // order_note why the mode is not the semaphores, when it is not.
  Semaphores sem;
  FlagState flag;
  Mode mode = Mode::Host;
  bool semaphores_ok = false, flag_ok = false;
  std::string semaphore_note = "not probed", flag_note = "not probed";
  std::string order_note;
  std::mutex run;  // one call at a time on the queue (clFinish waits for that call only)
};

// The sub-buffers made of one allocation, kept for later calls (clCreateSubBuffer per tensor
// per call was a host cost of every call). At most kMaxViews, the oldest dropped first: a View
// holds its own reference, and OpenCL keeps a released sub-buffer until its commands finish.
struct Views {
  static constexpr std::size_t kMaxViews = 256;
  std::map<std::pair<std::size_t, std::size_t>, cl_mem> by_range;  // (offset, bytes) -> sub-buffer
  std::deque<std::pair<std::size_t, std::size_t>> order;           // oldest first
  Views() = default;
  Views(const Views&) = delete;
  Views& operator=(const Views&) = delete;
  ~Views() {
    for (auto& [range, mem] : by_range) clReleaseMemObject(mem);
  }
};

struct Allocation {
  std::size_t size;
  cl_mem mem;
  CUmemHandle handle;
  int fd;  // the imported duplicate, closed here when the driver does not own it; -1 otherwise
  int ordinal;
  std::size_t base_align;        // the bridge's: sub-buffer origins are multiples of it
  std::shared_ptr<Views> views;  // released before mem
};

std::atomic<std::size_t> views_created{0}, views_reused{0};

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
  Allocation a{size, nullptr, 0, -1, b.info.ordinal, b.info.base_align, std::make_shared<Views>()};
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

void destroy(CUdeviceptr address, Allocation& a) {
  const Driver& d = driver();
  a.views.reset();  // the sub-buffers before their parent
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

// ---- GPU-side ordering ---------------------------------------------------------------------------

std::string cuda_error(CUresult r) {
  const char* name = nullptr;
  driver().cuGetErrorName(r, &name);
  return std::string(name ? name : "an unknown CUDA error") + " (" + std::to_string(r) + ")";
}

template <typename Fn>
void lookup(cl_platform_id platform, const char* name, Fn& out, std::string& missing) {
  out = reinterpret_cast<Fn>(clGetExtensionFunctionAddressForPlatform(platform, name));
  if (out == nullptr) missing += std::string(missing.empty() ? "" : ", ") + name;
}

// A binary OpenCL semaphore exportable as an opaque fd, and CUDA's import of it; empty on success,
// else why not (nothing is left behind then).
std::string make_semaphore(Bridge& b, Semaphore& made, CUexternalSemaphore& imported) {
  Semaphores& s = b.sem;
  const SemaphoreProperty device = reinterpret_cast<SemaphoreProperty>(b.device);
  // The device list is optional for a one-device context; a driver that refuses it gets the
  // shorter list.
  const SemaphoreProperty with_device[] = {
      kSemaphoreType, kSemaphoreBinary, kDeviceHandleList, device, 0, kSemaphoreExportTypes, kSemaphoreOpaqueFd, 0, 0};
  const SemaphoreProperty without[] = {
      kSemaphoreType, kSemaphoreBinary, kSemaphoreExportTypes, kSemaphoreOpaqueFd, 0, 0};
  cl_int err = CL_SUCCESS;
  made = s.create(b.context, with_device, &err);
  if (made == nullptr || err != CL_SUCCESS) {
    const cl_int first = err;
    made = s.create(b.context, without, &err);
    if (made == nullptr || err != CL_SUCCESS) {
      made = nullptr;
      return "clCreateSemaphoreWithPropertiesKHR (binary, exporting an opaque fd) failed with " +
             std::to_string(first) + " / " + std::to_string(err);
    }
  }
  int fd = -1;
  err = s.handle(made, b.device, static_cast<cl_uint>(kSemaphoreOpaqueFd), sizeof fd, &fd, nullptr);
  if (err != CL_SUCCESS || fd < 0) {
    s.release(made);
    made = nullptr;
    return "clGetSemaphoreHandleForTypeKHR (opaque fd) failed with " + std::to_string(err);
  }
  SemaphoreHandleDesc desc{};
  desc.type = kSemaphoreOpaqueFd;
  desc.handle.fd = fd;
  const CUresult r = semaphore_driver().cuImportExternalSemaphore(&imported, &desc);
  if (r != 0) {
    close(fd);  // CUDA owns the fd only after a successful import
    s.release(made);
    made = nullptr;
    imported = nullptr;
    return "cuImportExternalSemaphore (opaque fd) failed with " + cuda_error(r);
  }
  return {};
}

void drop_semaphores(Bridge& b) {
  Semaphores& s = b.sem;
  const SemaphoreDriver& sd = semaphore_driver();
  if (s.after) sd.cuEventDestroy(s.after);
  for (CUexternalSemaphore e : {s.cu_ready, s.cu_done})
    if (e) sd.cuDestroyExternalSemaphore(e);
  for (Semaphore m : {s.ready, s.done})
    if (m) s.release(m);
  s.after = nullptr;
  s.cu_ready = s.cu_done = nullptr;
  s.ready = s.done = nullptr;
}

// Whether `event` completes within `limit`: empty when it did, else what happened.
std::string wait_event(cl_event event, std::chrono::milliseconds limit) {
  const auto end = std::chrono::steady_clock::now() + limit;
  for (;;) {
    cl_int status = CL_QUEUED;
    const cl_int err = clGetEventInfo(event, CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof status, &status, nullptr);
    if (err != CL_SUCCESS) return "clGetEventInfo failed with " + std::to_string(err);
    if (status == CL_COMPLETE) return {};
    if (status < 0) return "the command failed with " + std::to_string(status);
    if (std::chrono::steady_clock::now() > end)
      return "it did not finish within " + std::to_string(limit.count()) + " ms";
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
}

std::string wait_event(CUevent event, std::chrono::milliseconds limit, CUresult (*query)(CUevent) = nullptr) {
  if (query == nullptr) query = semaphore_driver().cuEventQuery;
  const auto end = std::chrono::steady_clock::now() + limit;
  for (;;) {
    const CUresult r = query(event);
    if (r == 0) return {};
    if (r != kNotReady) return "cuEventQuery failed with " + cuda_error(r);
    if (std::chrono::steady_clock::now() > end)
      return "it did not finish within " + std::to_string(limit.count()) + " ms";
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
}

// The one-time check of GPU-side ordering: the entry points and extensions, the two semaphores
// made and imported, and one round trip (CUDA signals ready, OpenCL waits and signals done, CUDA
// waits) on a queue and a stream of its own, each half under a deadline, so a driver that accepts
// the calls but never delivers leaves the bridge's queue and PyTorch's streams alone (the stuck
// probe queue and stream are then leaked, not released, as releasing them could wait for ever).
// Empty when it works, else why not; the semaphores are kept only on success.
std::string probe_semaphores(Bridge& b) {
  const SemaphoreDriver& sd = semaphore_driver();
  if (!sd.missing.empty()) return "libcuda.so.1 lacks " + sd.missing;
  for (const char* ext : {"cl_khr_semaphore", "cl_khr_external_semaphore", "cl_khr_external_semaphore_opaque_fd"})
    if (!has_extension(b.device, ext)) return "the OpenCL device lacks " + std::string(ext);
  Semaphores& s = b.sem;
  std::string missing;
  lookup(b.platform, "clCreateSemaphoreWithPropertiesKHR", s.create, missing);
  lookup(b.platform, "clEnqueueWaitSemaphoresKHR", s.wait, missing);
  lookup(b.platform, "clEnqueueSignalSemaphoresKHR", s.signal, missing);
  lookup(b.platform, "clGetSemaphoreHandleForTypeKHR", s.handle, missing);
  lookup(b.platform, "clReleaseSemaphoreKHR", s.release, missing);
  if (!missing.empty()) return "the OpenCL driver lacks " + missing;
  std::size_t bytes = 0;
  if (clGetDeviceInfo(b.device, kDeviceSemaphoreExportTypes, 0, nullptr, &bytes) == CL_SUCCESS && bytes > 0) {
    std::vector<cl_uint> types(bytes / sizeof(cl_uint));
    clGetDeviceInfo(b.device, kDeviceSemaphoreExportTypes, bytes, types.data(), nullptr);
    if (std::find(types.begin(), types.end(), static_cast<cl_uint>(kSemaphoreOpaqueFd)) == types.end())
      return "the OpenCL device does not export semaphores as opaque fds";
  }
  std::string why = make_semaphore(b, s.ready, s.cu_ready);
  if (why.empty()) why = make_semaphore(b, s.done, s.cu_done);
  if (why.empty()) {
    const CUresult r = sd.cuEventCreate(&s.after, kEventDisableTiming);
    if (r != 0) {
      s.after = nullptr;
      why = "cuEventCreate failed with " + cuda_error(r);
    }
  }
  if (!why.empty()) {
    drop_semaphores(b);
    return why;
  }

  cl_int err = CL_SUCCESS;
  cl_command_queue queue = clCreateCommandQueue(b.context, b.device, 0, &err);
  if (err != CL_SUCCESS) {
    drop_semaphores(b);
    return "clCreateCommandQueue (the probe's) failed with " + std::to_string(err);
  }
  CUstream stream = nullptr;
  CUresult r = sd.cuStreamCreate(&stream, kStreamNonBlocking);
  if (r != 0) {
    clReleaseCommandQueue(queue);
    drop_semaphores(b);
    return "cuStreamCreate failed with " + cuda_error(r);
  }
  constexpr std::chrono::milliseconds kLimit{5000};
  const SemaphoreSignalParams signal_params{};
  const SemaphoreWaitParams wait_params{};
  cl_event signalled = nullptr;
  bool stuck = false;
  // CUDA -> OpenCL -> (signal done).
  r = sd.cuSignalExternalSemaphoresAsync(&s.cu_ready, &signal_params, 1, stream);
  if (r != 0) {
    why = "cuSignalExternalSemaphoresAsync failed with " + cuda_error(r);
  } else if ((err = s.wait(queue, 1, &s.ready, nullptr, 0, nullptr, nullptr)) != CL_SUCCESS) {
    why = "clEnqueueWaitSemaphoresKHR failed with " + std::to_string(err);
    stuck = true;  // CUDA's signal may still be pending on the stream
  } else if ((err = s.signal(queue, 1, &s.done, nullptr, 0, nullptr, &signalled)) != CL_SUCCESS) {
    why = "clEnqueueSignalSemaphoresKHR failed with " + std::to_string(err);
    stuck = true;
  } else {
    clFlush(queue);
    why = wait_event(signalled, kLimit);
    if (!why.empty()) {
      why = "the OpenCL queue's wait for a semaphore CUDA signalled failed: " + why;
      stuck = true;
    }
  }
  // OpenCL -> CUDA: done is signalled by now; the stream's wait must pass.
  if (why.empty()) {
    r = sd.cuWaitExternalSemaphoresAsync(&s.cu_done, &wait_params, 1, stream);
    if (r == 0) r = sd.cuEventRecord(s.after, stream);
    if (r != 0) {
      why = "cuWaitExternalSemaphoresAsync failed with " + cuda_error(r);
    } else {
      why = wait_event(s.after, kLimit);
      if (!why.empty()) {
        why = "a CUDA stream's wait for a semaphore OpenCL signalled failed: " + why;
        stuck = true;
      }
    }
  }
  if (signalled) clReleaseEvent(signalled);
  if (stuck) {
    // Leaked on purpose: see above. The semaphores' state is unknown, so they are not used.
    s = Semaphores{};
    s.probed = true;
    return why + " (GPU-side ordering off; the probe's queue and stream are abandoned)";
  }
  clReleaseCommandQueue(queue);
  sd.cuStreamDestroy(stream);
  if (!why.empty()) {
    drop_semaphores(b);
    return why;
  }
  s.chained = false;  // the probe's stream is gone; its wait has finished
  return {};
}

// Runs the probe once and takes its verdict (Bridge::run held, or the bridge not yet shared).
void adopt_semaphores(Bridge& b) {
  if (!b.sem.probed) {
    b.sem.probed = true;
    ensure_context(b.info.ordinal);  // set_ordering may probe from a thread of its own
    b.semaphore_note = probe_semaphores(b);
    b.semaphores_ok = b.semaphore_note.empty();
  }
}

// The queue writes `value` into the flag (bracketed by acquire/release where the bridge uses them),
// not waiting for it. OpenCL's error, CL_SUCCESS when both were enqueued.
cl_int write_flag(Bridge& b, cl_uint value) {
  cl_int err = CL_SUCCESS;
  if (b.info.acquire_release) err = b.acquire(b.queue, 1, &b.flag.mem, 0, nullptr, nullptr);
  if (err != CL_SUCCESS) return err;
  err = clEnqueueFillBuffer(b.queue, b.flag.mem, &value, sizeof value, 0, sizeof value, 0, nullptr, nullptr);
  if (b.info.acquire_release) {
    const cl_int released = b.release(b.queue, 1, &b.flag.mem, 0, nullptr, nullptr);
    if (err == CL_SUCCESS) err = released;
  }
  return err;
}

// The one-time check of the flag ordering: the entry points (and, for a driver with only the v1
// cuStreamWaitValue32, the attribute that enables it), the flag's memory made, imported and zeroed,
// and one round trip on a stream of its own: the stream waits for 1 (and must not pass before it is
// written), the queue writes 1, the stream passes within a deadline. A stuck round trip abandons
// the stream and the memory (releasing them could wait for ever). Empty when it works, else why not.
std::string probe_flag(Bridge& b) {
  const FlagDriver& fd = flag_driver();
  const Driver& d = driver();
  if (!fd.missing.empty()) return "libcuda.so.1 lacks " + fd.missing;
  if (!fd.v2) {
    CUdevice device = 0;
    int enabled = 0;
    CUresult r = d.cuDeviceGet(&device, b.info.ordinal);
    if (r == 0) r = fd.cuDeviceGetAttribute(&enabled, kAttributeStreamMemOpsV1, device);
    if (r != 0 || !enabled)
      return "libcuda.so.1 has only the v1 cuStreamWaitValue32, which this device does not enable "
             "(CU_DEVICE_ATTRIBUTE_CAN_USE_STREAM_MEM_OPS_V1 is 0; NVreg_EnableStreamMemOPs=1 enables it)";
  }
  CUdeviceptr address = 0;
  Allocation a{};
  try {
    std::tie(address, a) = create(b, b.info.granularity);
  } catch (const std::exception& e) {
    return std::string("the flag's exportable memory could not be made: ") + e.what();
  }
  b.flag.mem = a.mem;
  cl_int err = write_flag(b, 0);  // cuMemCreate's memory starts undefined
  if (err == CL_SUCCESS) err = clFinish(b.queue);
  if (err != CL_SUCCESS) {
    b.flag.mem = nullptr;
    destroy(address, a);
    return "writing the flag (clEnqueueFillBuffer) failed with " + std::to_string(err);
  }
  const auto drop = [&](const std::string& why) {
    b.flag.mem = nullptr;
    destroy(address, a);
    return why;
  };
  CUstream stream = nullptr;
  CUevent passed = nullptr;
  CUresult r = fd.cuStreamCreate(&stream, kStreamNonBlocking);
  if (r != 0) return drop("cuStreamCreate failed with " + cuda_error(r));
  r = fd.cuEventCreate(&passed, kEventDisableTiming);
  if (r != 0) {
    fd.cuStreamDestroy(stream);
    return drop("cuEventCreate failed with " + cuda_error(r));
  }
  r = fd.cuStreamWaitValue32(stream, address, 1, kWaitValueGeq);
  if (r != 0) {
    fd.cuEventDestroy(passed);
    fd.cuStreamDestroy(stream);
    return drop("cuStreamWaitValue32 failed with " + cuda_error(r));
  }
  // A wait is enqueued from here on: the flag must be written, and unless the stream is seen to
  // pass, the stream, the event and the memory are abandoned (releasing them could wait for ever).
  std::string why;
  r = fd.cuEventRecord(passed, stream);
  if (r != 0) {
    why = "cuEventRecord failed with " + cuda_error(r);
  } else {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    if (fd.cuEventQuery(passed) == 0) why = "a CUDA stream's wait for the flag passed before the flag was written";
  }
  err = write_flag(b, 1);
  if (err == CL_SUCCESS) err = clFlush(b.queue);
  std::string waited = r != 0 ? "no event was recorded after the wait"
                     : err != CL_SUCCESS ? "writing the flag failed with " + std::to_string(err)
                                         : wait_event(passed, std::chrono::milliseconds(5000), fd.cuEventQuery);
  if (!waited.empty()) {
    b.flag.mem = nullptr;
    return (why.empty() ? "a CUDA stream's wait for the flag OpenCL wrote did not pass: " + waited : why) +
           " (flag ordering off; the probe's stream and flag memory are abandoned)";
  }
  fd.cuEventDestroy(passed);
  fd.cuStreamDestroy(stream);
  clFinish(b.queue);
  if (!why.empty()) return drop(why);
  b.flag.address = address;
  b.flag.seq = FlagSequence(1);  // the flag holds 1
  a.views.reset();  // kept for the process: the flag's memory is never released (see the top)
  return {};
}

void adopt_flag(Bridge& b) {
  if (!b.flag.probed) {
    b.flag.probed = true;
    ensure_context(b.info.ordinal);
    b.flag_note = probe_flag(b);
    b.flag_ok = b.flag_note.empty();
  }
}

// Why the mode in force is not the semaphores (empty when it is).
std::string describe(const Bridge& b, Order order) {
  if (b.mode == Mode::Semaphore) return {};
  if (order == Order::Host) return "host waits requested";
  if (b.mode == Mode::Flag && order == Order::Flag) return "flag ordering requested";
  std::string why;
  if (b.sem.probed && order != Order::Flag) why = "semaphores: " + b.semaphore_note;
  if (b.mode != Mode::Flag && b.flag.probed && order != Order::Semaphore)
    why += (why.empty() ? "flag: " : "; flag: ") + b.flag_note;
  return why;
}

// Takes `order` for later calls (Bridge::run held, or the bridge not yet shared): probes what it
// may use (each probe runs once per bridge), then the best mode that works (choose()).
void adopt_order(Bridge& b, Order order) {
  if (order == Order::Auto || order == Order::Semaphore) adopt_semaphores(b);
  if (order == Order::Flag || (order == Order::Auto && !b.semaphores_ok)) adopt_flag(b);
  b.mode = choose(order, b.semaphores_ok, b.flag_ok);
  b.order_note = describe(b, order);
}

// A semaphore call failed: the pair's state is unknown, so this bridge orders by host waits from
// now on (set_ordering("auto") may pick the flag), saying why.
void demote(Bridge& b, const std::string& why) {
  b.mode = Mode::Host;
  b.semaphores_ok = false;
  b.semaphore_note = why + " (semaphore ordering turned off for this process)";
  b.order_note = b.semaphore_note;
}

// The same for a failed flag call.
void demote_flag(Bridge& b, const std::string& why) {
  b.mode = Mode::Host;
  b.flag_ok = false;
  b.flag_note = why + " (flag ordering turned off for this process)";
  b.order_note = b.flag_note;
}

// After the call's kernels (and the release of its buffers): the queue writes the call's number
// into the flag and is flushed, and `stream` waits on the device for it. False when the stream was
// not made to wait (the caller then finishes the queue on the host): the write, the flush, the
// drain or the wait failed.
bool end_with_flag(Bridge& b, CUstream stream) {
  const FlagDriver& fd = flag_driver();
  FlagState& f = b.flag;
  const cl_uint value = f.seq.next();
  if (f.seq.drain()) {
    // Every wait issued so far passes (each one's write has been flushed) before the numbers
    // move 2^30 further: none can then fall 2^31 behind the flag (cuda_order.hpp).
    const CUresult r = fd.cuCtxSynchronize();
    if (r != 0) return false;
  }
  cl_int err = write_flag(b, value);
  if (err == CL_SUCCESS) err = clFlush(b.queue);  // nothing else would submit the write
  if (err != CL_SUCCESS) return false;
  const CUresult r = fd.cuStreamWaitValue32(stream, f.address, value, kWaitValueGeq);
  if (r != 0) {
    demote_flag(b, "cuStreamWaitValue32 failed with " + cuda_error(r));
    return false;
  }
  return true;
}

// The CUDA-to-OpenCL half: `stream` signals ready, the queue waits for it. False when a semaphore
// call failed and nothing of it is pending on the queue (the caller then synchronises the stream).
bool begin_on_gpu(Bridge& b, CUstream stream) {
  const SemaphoreDriver& sd = semaphore_driver();
  Semaphores& s = b.sem;
  // every call's stream waits for the last call's end, its own stream's too: a stream's handle
  // value cannot tell streams apart (a destroyed stream's value can come back; per-thread streams
  // share one), and on the same stream the wait is already met
  if (s.chained) {
    const CUresult r = sd.cuStreamWaitEvent(stream, s.after, 0);
    if (r != 0) {
      demote(b, "cuStreamWaitEvent failed with " + cuda_error(r));
      return false;
    }
  }
  const SemaphoreSignalParams params{};
  const CUresult r = sd.cuSignalExternalSemaphoresAsync(&s.cu_ready, &params, 1, stream);
  if (r != 0) {
    demote(b, "cuSignalExternalSemaphoresAsync failed with " + cuda_error(r));
    return false;
  }
  const cl_int err = s.wait(b.queue, 1, &s.ready, nullptr, 0, nullptr, nullptr);
  if (err != CL_SUCCESS) {
    demote(b, "clEnqueueWaitSemaphoresKHR failed with " + std::to_string(err));
    return false;
  }
  return true;
}

// The OpenCL-to-CUDA half, after the call's kernels: the queue signals done, `stream` waits for
// it. False when the stream could not be made to wait (the caller then finishes the queue).
bool end_on_gpu(Bridge& b, CUstream stream) {
  const SemaphoreDriver& sd = semaphore_driver();
  Semaphores& s = b.sem;
  cl_int err = s.signal(b.queue, 1, &s.done, nullptr, 0, nullptr, nullptr);
  if (err == CL_SUCCESS) err = clFlush(b.queue);  // nothing else would submit the signal
  if (err != CL_SUCCESS) {
    demote(b, "clEnqueueSignalSemaphoresKHR or clFlush failed with " + std::to_string(err));
    return false;
  }
  const SemaphoreWaitParams params{};
  CUresult r = sd.cuWaitExternalSemaphoresAsync(&s.cu_done, &params, 1, stream);
  if (r != 0) {
    demote(b, "cuWaitExternalSemaphoresAsync failed with " + cuda_error(r));
    return false;
  }
  r = sd.cuEventRecord(s.after, stream);
  if (r != 0) {
    demote(b, "cuEventRecord failed with " + cuda_error(r));  // this call is ordered; the chain is not
    return true;
  }
  s.chained = true;
  return true;
}

std::unique_ptr<Bridge> make_bridge(int ordinal, Order order) {
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
  try {  // from here every failure releases the queue and the context
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
    probe(*b);
    adopt_order(*b, order);  // under host waits nothing is probed
  } catch (...) {
    clReleaseCommandQueue(b->queue);
    clReleaseContext(b->context);
    throw;
  }
  return b;
}

// Opened bridges live for the process (allocations and PyTorch's pool refer to them).
// `order` applies when this call opens it.
Bridge& bridge(int ordinal, Order order = Order::Auto) {
  std::lock_guard<std::mutex> lock(bridges_mutex);
  auto it = bridges.find(ordinal);
  if (it == bridges.end()) it = bridges.emplace(ordinal, make_bridge(ordinal, order)).first;
  return *it->second;
}

Bridge* opened(int ordinal) {
  std::lock_guard<std::mutex> lock(bridges_mutex);
  auto it = bridges.find(ordinal);
  return it == bridges.end() ? nullptr : it->second.get();
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

// One call, ordered as the bridge's mode says (returned: the mode that ordered it, host when a
// GPU-side step failed and host waits stood in). Under the semaphores nothing waits on the host;
// under the flag the stream is synchronised right before the first enqueue and the stream waits
// for the flag after; under host waits the queue is finished as well.
template <typename Launch>
Mode run(int ordinal, std::uintptr_t stream_handle, const std::vector<cl_mem>& mems, Launch&& launch) {
  Bridge& b = bridge(ordinal);
  const Driver& d = driver();
  const CUstream stream = reinterpret_cast<CUstream>(stream_handle);
  std::lock_guard<std::mutex> lock(b.run);
  ensure_context(ordinal);
  Mode mode = b.mode;
  if (mode == Mode::Semaphore && !begin_on_gpu(b, stream)) mode = Mode::Host;
  const std::vector<cl_mem> external = roots(mems);
  const bool hand_off = b.info.acquire_release && !external.empty();
  // The host wait for the stream's work so far, as late as this layer can put it: after the
  // arguments are prepared and the bridge's state read, right before the first enqueue.
  if (mode != Mode::Semaphore) check(d.cuStreamSynchronize(stream), "cuStreamSynchronize");
  // The end of a call whose kernels are enqueued (or failed part-way): true when the stream was
  // made to wait on the GPU, else the queue has been finished on the host.
  const auto finish = [&]() {
    if (mode == Mode::Semaphore && end_on_gpu(b, stream)) return true;
    if (mode == Mode::Flag && end_with_flag(b, stream)) return true;
    clFinish(b.queue);
    return false;
  };
  Events events;
  std::vector<cl_event> wait;
  if (hand_off) {
    cl_event acquired = nullptr;
    const cl_int err =
        b.acquire(b.queue, static_cast<cl_uint>(external.size()), external.data(), 0, nullptr, &acquired);
    if (err != CL_SUCCESS) {
      // Nothing of this call is enqueued: no flag is written and the stream waits for nothing.
      if (mode == Mode::Flag) mode = Mode::Host;
      finish();
      check_cl(err, "clEnqueueAcquireExternalMemObjectsKHR");
    }
    events.list.push_back(acquired);
    wait.push_back(acquired);
  }
  try {
    launch(b.queue, wait);
  } catch (...) {
    // What was enqueued before the failure still finishes (and is handed back) before PyTorch's
    // next kernel on the stream: by the semaphores where they run, else by finishing the queue
    // (never by the flag: a failed call raises, and its error is the caller's to handle first).
    if (hand_off) b.release(b.queue, static_cast<cl_uint>(external.size()), external.data(), 0, nullptr, nullptr);
    if (mode == Mode::Flag) mode = Mode::Host;
    finish();
    throw;
  }
  cl_int released = CL_SUCCESS;
  if (hand_off)
    released = b.release(b.queue, static_cast<cl_uint>(external.size()), external.data(), 0, nullptr, nullptr);
  const bool on_gpu = finish();
  check_cl(released, "clEnqueueReleaseExternalMemObjectsKHR");
  return on_gpu ? mode : Mode::Host;
}

}  // namespace

namespace {

// The error for a forced mode the bridge could not take (Bridge::run held).
void require(const Bridge& b, Order order) {
  const bool missing = (order == Order::Semaphore && !b.semaphores_ok) || (order == Order::Flag && !b.flag_ok);
  if (missing)
    throw Error(Status::DeviceNotFound, "CUDA device " + std::to_string(b.info.ordinal) + ": " +
                                            (order == Order::Flag ? "flag" : "semaphore") +
                                            " ordering was requested but is unavailable: " +
                                            (order == Order::Flag ? b.flag_note : b.semaphore_note));
}

}  // namespace

const BridgeInfo& open_bridge(int ordinal, const std::string& ordering) {
  const Order order = parse_order(ordering);
  Bridge& b = bridge(ordinal, order);
  std::lock_guard<std::mutex> lock(b.run);
  require(b, order);
  return b.info;
}

OrderingInfo ordering(int ordinal) {
  Bridge* b = opened(ordinal);
  if (b == nullptr) return {"", "the bridge is not open", false, false};
  std::lock_guard<std::mutex> lock(b->run);
  return {mode_name(b->mode), b->order_note, b->semaphores_ok, b->flag_ok};
}

OrderingInfo set_ordering(int ordinal, const std::string& name) {
  const Order order = parse_order(name);
  Bridge& b = bridge(ordinal);
  {
    std::lock_guard<std::mutex> lock(b.run);
    const Mode before = b.mode;
    const std::string note = b.order_note;
    adopt_order(b, order);
    if ((order == Order::Semaphore && b.mode != Mode::Semaphore) || (order == Order::Flag && b.mode != Mode::Flag)) {
      // A refused request leaves the ordering as it was (a mode that failed is already Host).
      b.mode = before;
      b.order_note = note;
    }
    require(b, order);
  }
  return ordering(ordinal);
}

CUdeviceptr allocate(int ordinal, std::size_t bytes) {
  Bridge& b = bridge(ordinal);
  const std::size_t g = b.info.granularity;
  const std::size_t size = std::max<std::size_t>((bytes + g - 1) / g * g, g);
  auto [address, a] = create(b, size);
  std::lock_guard<std::mutex> lock(registry_mutex);
  registry.emplace(address, a);
  return address;
}

bool release(CUdeviceptr address, CUstream stream) noexcept {
  Allocation a{};
  {
    std::lock_guard<std::mutex> lock(registry_mutex);
    auto it = registry.find(address);
    if (it == registry.end()) return false;
    a = it->second;
    registry.erase(it);
  }
  try {
    // Calls ordered on the GPU may still be running when PyTorch hands a segment back (its
    // caching allocator frees in stream order, not after the OpenCL queue), and so may PyTorch's
    // own kernels: unlike cudaFree, which a custom allocator's free stands in for, unmapping does
    // not wait for them (PyTorch's expandable segments synchronise their stream first too).
    driver().cuStreamSynchronize(stream);
    if (Bridge* b = opened(a.ordinal)) clFinish(b->queue);
    destroy(address, a);
  } catch (...) {
    return false;  // only driver() can throw, and it cannot fail once an allocation exists
  }
  return true;
}

bool import_target(int ordinal, ImportTarget& out) {
  Bridge* b = opened(ordinal);
  if (b == nullptr) return false;
  out.context = b->context;
  out.queue = b->queue;
  out.create_buffer = b->create_buffer;
  out.driver_owns_fd = b->driver_owns_fd;
  out.base_align = b->info.base_align;
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

View::View(std::uintptr_t address, std::size_t bytes, bool import) {
  std::unique_lock<std::mutex> lock(registry_mutex);
  auto it = registry.upper_bound(address);
  const bool in_pool = it != registry.begin() && [&] {
    const auto& [base, a] = *std::prev(it);
    return address >= base && address - base <= a.size && bytes <= a.size - (address - base);
  }();
  if (!in_pool) {
    // Not the pool's: PyTorch's own memory, imported where its allocation can be (cuda_import.cpp).
    lock.unlock();
    if (!import) return;
    Imported got = import_view(address, bytes);
    mem_ = got.mem;  // already retained for this View
    why_ = std::move(got.why);
    if (mem_) kind_ = "import";
    return;
  }
  --it;
  const CUdeviceptr base = it->first;
  Allocation& a = it->second;
  const std::size_t offset = static_cast<std::size_t>(address - base);
  if (offset % a.base_align != 0) return;
  const std::pair<std::size_t, std::size_t> range{offset, std::max<std::size_t>(bytes, 1)};
  Views& views = *a.views;
  auto found = views.by_range.find(range);
  if (found != views.by_range.end()) {
    mem_ = found->second;
    views_reused.fetch_add(1, std::memory_order_relaxed);
  } else {
    const cl_buffer_region region{range.first, range.second};
    cl_int err = CL_SUCCESS;
    cl_mem sub = clCreateSubBuffer(a.mem, CL_MEM_READ_WRITE, CL_BUFFER_CREATE_TYPE_REGION, &region, &err);
    check_cl(err, "clCreateSubBuffer");
    if (views.order.size() >= Views::kMaxViews) {
      clReleaseMemObject(views.by_range[views.order.front()]);
      views.by_range.erase(views.order.front());
      views.order.pop_front();
    }
    views.by_range.emplace(range, sub);
    views.order.push_back(range);
    mem_ = sub;
    views_created.fetch_add(1, std::memory_order_relaxed);
  }
  clRetainMemObject(mem_);  // this View's own reference
  kind_ = "pool";
}

View::~View() {
  if (mem_) clReleaseMemObject(mem_);
}

ViewCounts view_counts() { return {views_created.load(), views_reused.load()}; }

std::string run_forward(int ordinal, std::uintptr_t stream, const flashcl::ForwardArgs& args) {
  return mode_name(run(ordinal, stream, forward_mems(args),
             [&](cl_command_queue queue, const std::vector<cl_event>& wait) { flashcl::forward(queue, args, wait); }));
}

std::string run_backward(int ordinal, std::uintptr_t stream, const flashcl::BackwardArgs& args) {
  std::vector<cl_mem> mems = forward_mems(args.forward);
  for (cl_mem m : {args.d_o.buffer, args.d_q.buffer, args.d_k.buffer, args.d_v.buffer, args.d_bias.buffer,
                   args.workspace})
    mems.push_back(m);
  return mode_name(run(ordinal, stream, mems, [&](cl_command_queue queue, const std::vector<cl_event>& wait) {
    flashcl::backward(queue, args, wait);
  }));
}

std::string run_forward_kvcache(int ordinal, std::uintptr_t stream, const flashcl::KvCacheArgs& a) {
  const std::vector<cl_mem> mems = {a.q.buffer, a.o.buffer, a.lse, a.k_cache.buffer, a.v_cache.buffer,
                                    a.cache_seqlens, a.cache_batch_idx, a.block_table, a.k_new.buffer,
                                    a.v_new.buffer, a.rotary_cos, a.rotary_sin, a.alibi_slopes, a.k_descale,
                                    a.v_descale, a.workspace};
  return mode_name(run(ordinal, stream, mems, [&](cl_command_queue queue, const std::vector<cl_event>& wait) {
    flashcl::forward_kvcache(queue, a, wait);
  }));
}

std::string fill(std::uintptr_t address, std::size_t bytes, std::uint8_t value, std::uintptr_t stream) {
  const Located at = locate(address, bytes);
  if (at.mem == 0)
    throw Error(Status::InvalidArgument, "fill: the range is not inside memory of flashcl's CUDA pool");
  cl_mem mem = reinterpret_cast<cl_mem>(at.mem);
  return mode_name(run(at.ordinal, stream, {mem}, [&](cl_command_queue queue, const std::vector<cl_event>& wait) {
    check_cl(clEnqueueFillBuffer(queue, mem, &value, 1, at.offset, bytes, static_cast<cl_uint>(wait.size()),
                                 wait.empty() ? nullptr : wait.data(), nullptr),
             "clEnqueueFillBuffer");
  }));
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

extern "C" void flashcl_cuda_free(void* ptr, ssize_t, int, void* stream) {
  flashcl_py::cuda::release(reinterpret_cast<flashcl_py::cuda::CUdeviceptr>(ptr),
                            static_cast<flashcl_py::cuda::CUstream>(stream));
}
