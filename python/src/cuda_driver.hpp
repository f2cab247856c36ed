// cuda_driver.hpp: the few CUDA driver API entry points the CUDA-tensor path needs, loaded at run
// time from libcuda.so.1 (dlopen), so the package builds and imports on machines without CUDA. The
// types are the driver's ABI spelled out here (checked against cuda.h 13.0's layouts): no CUDA
// header or library is needed to build. Errors become flashcl::Error: a missing driver is
// DeviceNotFound, out of memory OutOfResources, anything else InternalError naming the call and
// the driver's error name. FLASHCL_CUDA_HIDE (a comma-separated list of entry-point names, read once)
// makes the loader treat those as missing, so a test can see a fallback engage on a driver that has
// them.
#pragma once

#include <cstddef>
#include <string>

namespace flashcl_py::cuda {

using CUresult = int;
using CUdevice = int;
using CUdeviceptr = unsigned long long;
using CUmemHandle = unsigned long long;  // CUmemGenericAllocationHandle
using CUcontext = void*;
using CUstream = void*;
using CUevent = void*;
using CUexternalSemaphore = void*;

// CUmemLocation, CUmemAllocationProp and CUmemAccessDesc as cuda.h lays them out.
struct MemLocation {
  int type;  // CU_MEM_LOCATION_TYPE_DEVICE = 1
  int id;    // the device ordinal
};
struct AllocationProp {
  int type;                    // CU_MEM_ALLOCATION_TYPE_PINNED = 1
  int requested_handle_types;  // CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR = 1
  MemLocation location;
  void* win32_handle_meta_data;
  struct {
    unsigned char compression_type;
    unsigned char gpu_direct_rdma_capable;
    unsigned short usage;
    unsigned char reserved[4];
  } alloc_flags;
};
struct AccessDesc {
  MemLocation location;
  int flags;  // CU_MEM_ACCESS_FLAGS_PROT_READWRITE = 3
};

// CUDA_EXTERNAL_SEMAPHORE_HANDLE_DESC, _SIGNAL_PARAMS and _WAIT_PARAMS as cuda.h lays them out
// (only the opaque-fd handle and zeroed parameters are used: binary semaphores have no value).
struct SemaphoreHandleDesc {
  int type;  // CU_EXTERNAL_SEMAPHORE_HANDLE_TYPE_OPAQUE_FD = 1
  union {
    int fd;
    struct {
      void* handle;
      const void* name;
    } win32;
    const void* nv_sci_sync_obj;
  } handle;
  unsigned int flags;
  unsigned int reserved[16];
};
struct SemaphoreSignalParams {
  unsigned long long fence_value;
  unsigned long long nv_sci_sync;
  unsigned long long keyed_mutex_key;
  unsigned int reserved_params[12];
  unsigned int flags;
  unsigned int reserved[16];
};
struct SemaphoreWaitParams {
  unsigned long long fence_value;
  unsigned long long nv_sci_sync;
  unsigned long long keyed_mutex_key;
  unsigned int keyed_mutex_timeout_ms;
  unsigned int reserved_params[11];  // the keyedMutex struct's padding, then reserved[10]
  unsigned int flags;
  unsigned int reserved[16];
};
static_assert(sizeof(SemaphoreHandleDesc) == 96, "CUDA_EXTERNAL_SEMAPHORE_HANDLE_DESC is 96 bytes");
static_assert(sizeof(SemaphoreSignalParams) == 144, "CUDA_EXTERNAL_SEMAPHORE_SIGNAL_PARAMS is 144 bytes");
static_assert(sizeof(SemaphoreWaitParams) == 144, "CUDA_EXTERNAL_SEMAPHORE_WAIT_PARAMS is 144 bytes");

constexpr int kLocationDevice = 1;
constexpr int kAllocationPinned = 1;
constexpr int kHandlePosixFd = 1;
constexpr int kAccessReadWrite = 3;
constexpr int kGranularityRecommended = 1;
constexpr int kSemaphoreOpaqueFd = 1;        // CU_EXTERNAL_SEMAPHORE_HANDLE_TYPE_OPAQUE_FD
constexpr unsigned kEventDisableTiming = 2;  // CU_EVENT_DISABLE_TIMING
constexpr unsigned kStreamNonBlocking = 1;   // CU_STREAM_NON_BLOCKING
constexpr CUresult kNotReady = 600;          // CUDA_ERROR_NOT_READY
constexpr unsigned kWaitValueGeq = 0;        // CU_STREAM_WAIT_VALUE_GEQ: (int32_t)(*addr - value) >= 0
constexpr int kAttributeStreamMemOpsV1 = 92; // CU_DEVICE_ATTRIBUTE_CAN_USE_STREAM_MEM_OPS_V1

// The entry points, `_v2` where the driver has one (the unversioned symbols of those take 32-bit
// pointers or an older ABI).
struct Driver {
  CUresult (*cuInit)(unsigned);
  CUresult (*cuDeviceGet)(CUdevice*, int);
  CUresult (*cuDeviceGetUuid)(unsigned char*, CUdevice);  // cuDeviceGetUuid_v2: 16 bytes
  CUresult (*cuCtxGetCurrent)(CUcontext*);
  CUresult (*cuCtxSetCurrent)(CUcontext);
  CUresult (*cuDevicePrimaryCtxRetain)(CUcontext*, CUdevice);
  CUresult (*cuMemGetAllocationGranularity)(std::size_t*, const AllocationProp*, int);
  CUresult (*cuMemCreate)(CUmemHandle*, std::size_t, const AllocationProp*, unsigned long long);
  CUresult (*cuMemExportToShareableHandle)(void*, CUmemHandle, int, unsigned long long);
  CUresult (*cuMemAddressReserve)(CUdeviceptr*, std::size_t, std::size_t, CUdeviceptr, unsigned long long);
  CUresult (*cuMemMap)(CUdeviceptr, std::size_t, std::size_t, CUmemHandle, unsigned long long);
  CUresult (*cuMemSetAccess)(CUdeviceptr, std::size_t, const AccessDesc*, std::size_t);
  CUresult (*cuMemUnmap)(CUdeviceptr, std::size_t);
  CUresult (*cuMemAddressFree)(CUdeviceptr, std::size_t);
  CUresult (*cuMemRelease)(CUmemHandle);
  CUresult (*cuStreamSynchronize)(CUstream);
  CUresult (*cuGetErrorName)(CUresult, const char**);
};

// What GPU-side ordering between a stream and the OpenCL queue needs (external semaphores, and an
// event to chain calls made on different streams). Optional: any of them missing (nullptr) leaves
// calls ordered by host waits; `missing` names them.
struct SemaphoreDriver {
  CUresult (*cuImportExternalSemaphore)(CUexternalSemaphore*, const SemaphoreHandleDesc*);
  CUresult (*cuSignalExternalSemaphoresAsync)(const CUexternalSemaphore*, const SemaphoreSignalParams*, unsigned,
                                              CUstream);
  CUresult (*cuWaitExternalSemaphoresAsync)(const CUexternalSemaphore*, const SemaphoreWaitParams*, unsigned, CUstream);
  CUresult (*cuDestroyExternalSemaphore)(CUexternalSemaphore);
  CUresult (*cuEventCreate)(CUevent*, unsigned);
  CUresult (*cuEventRecord)(CUevent, CUstream);
  CUresult (*cuEventQuery)(CUevent);
  CUresult (*cuEventDestroy)(CUevent);  // cuEventDestroy_v2
  CUresult (*cuStreamWaitEvent)(CUstream, CUevent, unsigned);
  CUresult (*cuStreamCreate)(CUstream*, unsigned);
  CUresult (*cuStreamDestroy)(CUstream);  // cuStreamDestroy_v2
  std::string missing;                    // empty when every entry point resolved
};

// What the flag ordering needs (cuda_interop.cpp: the stream waits on the device for a value the
// OpenCL queue writes last). cuStreamWaitValue32 is the `_v2` entry point where the driver has it
// (CUDA 11.7 on: available on every platform); `v2` false means only the v1 symbol resolved, which
// works only where CU_DEVICE_ATTRIBUTE_CAN_USE_STREAM_MEM_OPS_V1 says so (NVreg_EnableStreamMemOPs=1).
// The stream, event and context calls serve the one-time probe and the wrap-around drain. Any
// missing (nullptr) leaves that ordering off; `missing` names them.
struct FlagDriver {
  CUresult (*cuStreamWaitValue32)(CUstream, CUdeviceptr, unsigned, unsigned);
  CUresult (*cuDeviceGetAttribute)(int*, int, CUdevice);
  CUresult (*cuCtxSynchronize)();
  CUresult (*cuEventCreate)(CUevent*, unsigned);
  CUresult (*cuEventRecord)(CUevent, CUstream);
  CUresult (*cuEventQuery)(CUevent);
  CUresult (*cuEventDestroy)(CUevent);
  CUresult (*cuStreamCreate)(CUstream*, unsigned);
  CUresult (*cuStreamDestroy)(CUstream);
  bool v2 = false;
  std::string missing;  // empty when every entry point resolved
};

// What importing PyTorch's own allocations needs (cuda_import.cpp: memory its caching allocator maps
// with cuMemMap under expandable_segments). Optional: any missing leaves plain tensors staged.
struct ImportDriver {
  CUresult (*cuMemRetainAllocationHandle)(CUmemHandle*, void*);
  CUresult (*cuMemGetAddressRange)(CUdeviceptr*, std::size_t*, CUdeviceptr);  // cuMemGetAddressRange_v2
  CUresult (*cuMemGetAllocationPropertiesFromHandle)(AllocationProp*, CUmemHandle);
  std::string missing;  // empty when every entry point resolved
};

// The driver, loaded and initialised (cuInit) on first use; throws DeviceNotFound when
// libcuda.so.1 or one of the entry points is missing, or cuInit fails (no GPU, no driver).
const Driver& driver();

// The semaphore entry points of the same library (driver() must have succeeded first).
const SemaphoreDriver& semaphore_driver();

// The flag ordering's entry points of the same library (driver() must have succeeded first).
const FlagDriver& flag_driver();

// The import entry points of the same library (driver() must have succeeded first).
const ImportDriver& import_driver();

// Throws the named flashcl::Error for a failed call; `what` names the call.
void check(CUresult result, const char* what);

// Makes a context of `device` current on this thread when none is (PyTorch's is the device's
// primary context, so this finds it current in PyTorch's threads and retains the same one elsewhere).
void ensure_context(CUdevice device);

}  // namespace flashcl_py::cuda
