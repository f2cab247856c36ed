// cuda_import.hpp: plain PyTorch CUDA tensors reaching NVIDIA's OpenCL device without a staging
// copy. Under PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True PyTorch's caching allocator maps its
// memory from physical allocations it makes with cuMemCreate, asking for a POSIX-fd handle (for its
// own IPC); such an allocation can be exported (cuMemRetainAllocationHandle on an address, then
// cuMemExportToShareableHandle) and imported into the bridge's OpenCL context with
// cl_khr_external_memory, as flashcl's own pool is. A tensor wholly inside one physical allocation
// is then addressed as a sub-buffer of that import at its offset; anything else (cudaMalloc'd
// segments, a tensor straddling two physical chunks, a handle that cannot be exported as an fd,
// a driver without the entry points, FLASHCL_CUDA_IMPORT=0) is refused with the reason, and the
// caller stages the tensor as before. Imports are cached per physical allocation; one whose
// allocation PyTorch has unmapped still holds its memory until the next new import or
// release_imports() drops it (nothing tells the package when PyTorch unmaps).
#pragma once

#ifndef CL_TARGET_OPENCL_VERSION
#define CL_TARGET_OPENCL_VERSION 120
#endif
#include <CL/cl.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>

namespace flashcl_py::cuda {

// OpenCL 3.0's clCreateBufferWithProperties (found at run time by the bridge).
using CreateBufferFn = cl_mem(CL_API_CALL*)(cl_context, const cl_ulong*, cl_mem_flags, std::size_t, void*, cl_int*);

// What an import needs of an open bridge.
struct ImportTarget {
  cl_context context = nullptr;
  cl_command_queue queue = nullptr;
  CreateBufferFn create_buffer = nullptr;
  bool driver_owns_fd = true;  // the OpenCL driver closes an imported fd with its buffer
  std::size_t base_align = 1;  // bytes a sub-buffer's origin must be a multiple of
};

// The open bridge of CUDA device `ordinal` as an import target; false when it is not open
// (defined in cuda_interop.cpp, which owns the bridges).
bool import_target(int ordinal, ImportTarget& out);

// A sub-buffer of an imported physical allocation covering exactly [address, address + bytes),
// retained for the caller (who releases it), or nullptr and why not.
struct Imported {
  cl_mem mem = nullptr;
  std::string why;
};
Imported import_view(std::uintptr_t address, std::size_t bytes);

// Since the process started: imports made, views served from a cached import, tensors refused,
// imports dropped; and now: live imports and their bytes.
struct ImportCounts {
  std::size_t created = 0, reused = 0, refused = 0, dropped = 0, live = 0, bytes = 0;
};
ImportCounts import_counts();

// Drops the imports whose physical allocation is no longer mapped where it was (PyTorch unmapped
// it: empty_cache, or an out-of-memory retry), or every import when `all`, after the bridges'
// queues have finished; returns how many were dropped.
std::size_t release_imports(bool all);

// On by default; FLASHCL_CUDA_IMPORT=0 (read once) starts it off. Returns the previous setting.
bool set_imports_enabled(bool enabled);
bool imports_enabled();

// The CUDA mapping (base, size) that holds `address` (cuMemGetAddressRange), for tests and
// diagnostics; nullopt when the driver has none.
std::optional<std::pair<std::uintptr_t, std::size_t>> mapping_range(std::uintptr_t address);

}  // namespace flashcl_py::cuda
