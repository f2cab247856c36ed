// cuda_driver.hpp: the few CUDA driver API entry points the CUDA-tensor path needs, loaded at run
// time from libcuda.so.1 (dlopen), so the package builds and imports on machines without CUDA. The
// types are the driver's ABI spelled out here (checked against cuda.h 13.0's layouts): no CUDA
// header or library is needed to build. Errors become flashcl::Error: a missing driver is
// DeviceNotFound, out of memory OutOfResources, anything else InternalError naming the call and
// the driver's error name.
#pragma once

#include <cstddef>

namespace flashcl_py::cuda {

using CUresult = int;
using CUdevice = int;
using CUdeviceptr = unsigned long long;
using CUmemHandle = unsigned long long;  // CUmemGenericAllocationHandle
using CUcontext = void*;
using CUstream = void*;

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

constexpr int kLocationDevice = 1;
constexpr int kAllocationPinned = 1;
constexpr int kHandlePosixFd = 1;
constexpr int kAccessReadWrite = 3;
constexpr int kGranularityRecommended = 1;

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

// The driver, loaded and initialised (cuInit) on first use; throws DeviceNotFound when
// libcuda.so.1 or one of the entry points is missing, or cuInit fails (no GPU, no driver).
const Driver& driver();

// Throws the named flashcl::Error for a failed call; `what` names the call.
void check(CUresult result, const char* what);

// Makes a context of `device` current on this thread when none is (PyTorch's is the device's
// primary context, so this finds it current in PyTorch's threads and retains the same one elsewhere).
void ensure_context(CUdevice device);

}  // namespace flashcl_py::cuda
