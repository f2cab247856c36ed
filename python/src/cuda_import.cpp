// cuda_import.cpp: imports of PyTorch's own physical allocations into the bridge's OpenCL context
// (see cuda_import.hpp). Per tensor and call: cuMemRetainAllocationHandle on its first byte (fails
// for memory not mapped by cuMemMap, i.e. the default allocator's cudaMalloc segments) and
// cuMemGetAddressRange (the one cuMemMap'd chunk that holds it: PyTorch maps every physical handle
// of an expandable segment by itself, 20 MiB each in its large pool and 2 MiB in its small one by
// default, `large_segment_size_mb` where PyTorch has it); the tensor must lie wholly inside that
// chunk. A handle seen before (the cache is keyed by the handle, whose reference this file keeps, so
// its value cannot be reused by another allocation meanwhile) serves a cached sub-buffer; a new one
// is exported as a POSIX fd (PyTorch asks cuMemCreate for that handle type, for its IPC; a FABRIC
// handle or none cannot be exported so) and imported with clCreateBufferWithProperties, exactly as
// the pool's allocations are (cuda_interop.cpp). The chunk is assumed mapped at offset 0 of its
// handle, as PyTorch's ExpandableSegment maps them (cuMemMap offset 0); the float64 tests on the
// card check the addressing.
// Lifetime: an import holds a reference on the handle (the retain) and OpenCL holds the memory;
// when PyTorch unmaps and releases the chunk (empty_cache, out-of-memory retries: always after
// synchronising its stream, which our calls are ordered before), the handle is no longer mapped at
// the import's base: such imports are dropped on the next new import and by release_imports(), so
// the physical memory goes back to the driver then. Fds: the exported fd is duplicated for the
// import and closed; the duplicate too unless the OpenCL driver owns it (probed by the bridge).
#include "cuda_import.hpp"

#include <CL/cl_ext.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <vector>

#include "cuda_driver.hpp"

namespace flashcl_py::cuda {
namespace {

#ifndef CL_EXTERNAL_MEMORY_HANDLE_OPAQUE_FD_KHR
#define CL_EXTERNAL_MEMORY_HANDLE_OPAQUE_FD_KHR 0x2060
#endif

constexpr std::size_t kMaxViews = 256;     // sub-buffers kept per import, oldest dropped first
constexpr std::size_t kMaxImports = 1024;  // imports kept, least recently used dropped first

struct Import {
  CUmemHandle handle = 0;  // retained here (one reference)
  CUdeviceptr base = 0;    // where PyTorch maps it
  std::size_t size = 0;
  cl_mem mem = nullptr;
  int fd = -1;  // the imported duplicate when the OpenCL driver does not own it
  cl_command_queue queue = nullptr;
  std::size_t base_align = 1;
  std::map<std::pair<std::size_t, std::size_t>, cl_mem> views;  // (offset, bytes) -> sub-buffer
  std::deque<std::pair<std::size_t, std::size_t>> order;        // oldest first
  std::uint64_t used = 0;                                       // last use (the LRU clock)
};

std::mutex mutex;
std::map<CUmemHandle, Import> imports;
std::uint64_t clock_ = 0;
std::atomic<std::size_t> created{0}, reused{0}, refused{0}, dropped{0};

bool initially_enabled() {
  const char* v = std::getenv("FLASHCL_CUDA_IMPORT");
  return v == nullptr || std::strcmp(v, "0") != 0;
}
std::atomic<bool> enabled{initially_enabled()};

std::string name(CUresult r) {
  const char* n = nullptr;
  driver().cuGetErrorName(r, &n);
  return std::string(n ? n : "an unknown CUDA error") + " (" + std::to_string(r) + ")";
}

// Releases everything an import holds (the mutex held; its queue finished by the caller).
void drop(Import& im) {
  for (auto& [range, sub] : im.views) clReleaseMemObject(sub);
  im.views.clear();
  if (im.mem) clReleaseMemObject(im.mem);
  if (im.fd >= 0) close(im.fd);
  driver().cuMemRelease(im.handle);
  dropped.fetch_add(1, std::memory_order_relaxed);
}

// Whether the import's handle is still the one mapped at its base (PyTorch has not unmapped it).
bool still_mapped(const Import& im) {
  const ImportDriver& m = import_driver();
  CUmemHandle h = 0;
  if (m.cuMemRetainAllocationHandle(&h, reinterpret_cast<void*>(im.base)) != 0) return false;
  driver().cuMemRelease(h);
  return h == im.handle;
}

// Drops the imports `pick` selects, their queues finished first (mutex held).
template <typename Pick>
std::size_t drop_if(Pick&& pick) {
  std::vector<CUmemHandle> gone;
  for (auto& [h, im] : imports)
    if (pick(im)) gone.push_back(h);
  if (gone.empty()) return 0;
  std::vector<cl_command_queue> finished;
  for (CUmemHandle h : gone) {
    Import& im = imports.at(h);
    if (std::find(finished.begin(), finished.end(), im.queue) == finished.end()) {
      clFinish(im.queue);  // a kernel of ours may still read it
      finished.push_back(im.queue);
    }
    drop(im);
    imports.erase(h);
  }
  return gone.size();
}

// A new import of `handle` (retained by the caller, released here on failure); empty why on success.
std::string import_handle(CUmemHandle handle, CUdeviceptr base, std::size_t size, const ImportTarget& t, Import& out) {
  const Driver& d = driver();
  int fd = -1;
  const CUresult r = d.cuMemExportToShareableHandle(&fd, handle, kHandlePosixFd, 0);
  if (r != 0) return "cuMemExportToShareableHandle (POSIX fd) failed with " + name(r);
  const int imported = dup(fd);
  close(fd);
  if (imported < 0) return "dup of the exported fd failed (out of descriptors)";
  const cl_ulong props[] = {CL_EXTERNAL_MEMORY_HANDLE_OPAQUE_FD_KHR, static_cast<cl_ulong>(imported), 0};
  cl_int err = CL_SUCCESS;
  cl_mem mem = t.create_buffer(t.context, props, CL_MEM_READ_WRITE, size, nullptr, &err);
  if (mem == nullptr || err != CL_SUCCESS) {
    close(imported);  // a failed import takes nothing
    return "clCreateBufferWithProperties (opaque fd, " + std::to_string(size) + " bytes) failed with " +
           std::to_string(err);
  }
  out.handle = handle;
  out.base = base;
  out.size = size;
  out.mem = mem;
  out.fd = t.driver_owns_fd ? -1 : imported;
  out.queue = t.queue;
  out.base_align = t.base_align;
  return {};
}

}  // namespace

Imported import_view(std::uintptr_t address, std::size_t bytes) {
  Imported res;
  const auto refuse = [&](std::string why) {
    refused.fetch_add(1, std::memory_order_relaxed);
    res.why = std::move(why);
    return res;
  };
  if (!enabled.load()) return refuse("imports are off (FLASHCL_CUDA_IMPORT=0 or set_imports(False))");
  const ImportDriver* m = nullptr;
  try {
    m = &import_driver();
  } catch (const std::exception& e) {
    return refuse(e.what());
  }
  if (!m->missing.empty()) return refuse("libcuda lacks " + m->missing);
  const Driver& d = driver();
  bytes = std::max<std::size_t>(bytes, 1);
  CUmemHandle handle = 0;
  CUresult r = m->cuMemRetainAllocationHandle(&handle, reinterpret_cast<void*>(address));
  if (r != 0)
    return refuse("not memory mapped with cuMemMap (cuMemRetainAllocationHandle: " + name(r) +
                  "): PyTorch's default segments come from cudaMalloc; PYTORCH_CUDA_ALLOC_CONF="
                  "expandable_segments:True, set before CUDA starts, makes them importable");
  CUdeviceptr base = 0;
  std::size_t size = 0;
  r = m->cuMemGetAddressRange(&base, &size, address);
  if (r != 0) {
    d.cuMemRelease(handle);
    return refuse("cuMemGetAddressRange failed with " + name(r));
  }
  if (address - base > size || bytes > size - (address - base)) {
    d.cuMemRelease(handle);
    return refuse("the tensor straddles two physical chunks (its first lies at " + std::to_string(address - base) +
                  " of " + std::to_string(size) + " bytes; PyTorch's large_segment_size_mb sets the chunk size)");
  }
  const std::size_t offset = static_cast<std::size_t>(address - base);
  std::lock_guard<std::mutex> lock(mutex);
  auto it = imports.find(handle);
  if (it != imports.end() && it->second.base != base) {  // remapped elsewhere: start again
    drop_if([&](const Import& im) { return im.handle == handle; });
    it = imports.end();
  }
  if (it != imports.end()) {
    d.cuMemRelease(handle);  // the import keeps its own reference
    reused.fetch_add(1, std::memory_order_relaxed);
  } else {
    AllocationProp prop{};
    r = m->cuMemGetAllocationPropertiesFromHandle(&prop, handle);
    if (r != 0 || !(prop.requested_handle_types & kHandlePosixFd) || prop.location.type != kLocationDevice) {
      d.cuMemRelease(handle);
      return refuse(r != 0 ? "cuMemGetAllocationPropertiesFromHandle failed with " + name(r)
                           : "its physical allocation cannot be exported as a POSIX fd (handle types " +
                                 std::to_string(prop.requested_handle_types) +
                                 "; PyTorch asks for FABRIC where the system has it)");
    }
    ImportTarget target;
    if (!import_target(prop.location.id, target)) {
      d.cuMemRelease(handle);
      return refuse("the bridge of CUDA device " + std::to_string(prop.location.id) + " is not open");
    }
    // Chunks PyTorch has handed back since, and the least recently used past the bound, go first.
    drop_if([](const Import& im) { return !still_mapped(im); });
    if (imports.size() >= kMaxImports) {
      std::uint64_t oldest = UINT64_MAX;
      for (auto& [h, im] : imports) oldest = std::min(oldest, im.used);
      drop_if([&](const Import& im) { return im.used == oldest; });
    }
    Import fresh;
    std::string why = import_handle(handle, base, size, target, fresh);
    if (!why.empty()) {
      d.cuMemRelease(handle);
      return refuse(why);
    }
    it = imports.emplace(handle, std::move(fresh)).first;
    created.fetch_add(1, std::memory_order_relaxed);
  }
  Import& im = it->second;
  im.used = ++clock_;
  if (offset % im.base_align != 0)
    return refuse("the tensor starts at " + std::to_string(offset) + " bytes into its chunk, not a multiple of " +
                  std::to_string(im.base_align) + " (CL_DEVICE_MEM_BASE_ADDR_ALIGN)");
  const std::pair<std::size_t, std::size_t> range{offset, bytes};
  auto found = im.views.find(range);
  if (found != im.views.end()) {
    res.mem = found->second;
  } else {
    const cl_buffer_region region{offset, bytes};
    cl_int err = CL_SUCCESS;
    cl_mem sub = clCreateSubBuffer(im.mem, CL_MEM_READ_WRITE, CL_BUFFER_CREATE_TYPE_REGION, &region, &err);
    if (sub == nullptr || err != CL_SUCCESS) return refuse("clCreateSubBuffer failed with " + std::to_string(err));
    if (im.order.size() >= kMaxViews) {
      clReleaseMemObject(im.views[im.order.front()]);  // OpenCL keeps it until its commands finish
      im.views.erase(im.order.front());
      im.order.pop_front();
    }
    im.views.emplace(range, sub);
    im.order.push_back(range);
    res.mem = sub;
  }
  clRetainMemObject(res.mem);  // the caller's reference
  return res;
}

ImportCounts import_counts() {
  ImportCounts c;
  c.created = created.load();
  c.reused = reused.load();
  c.refused = refused.load();
  c.dropped = dropped.load();
  std::lock_guard<std::mutex> lock(mutex);
  c.live = imports.size();
  for (const auto& [h, im] : imports) c.bytes += im.size;
  return c;
}

std::size_t release_imports(bool all) {
  std::lock_guard<std::mutex> lock(mutex);
  if (imports.empty()) return 0;
  return drop_if([&](const Import& im) { return all || !still_mapped(im); });
}

bool set_imports_enabled(bool on) { return enabled.exchange(on); }

bool imports_enabled() { return enabled.load(); }

std::optional<std::pair<std::uintptr_t, std::size_t>> mapping_range(std::uintptr_t address) {
  try {
    const ImportDriver& m = import_driver();
    if (!m.missing.empty()) return std::nullopt;
    CUdeviceptr base = 0;
    std::size_t size = 0;
    if (m.cuMemGetAddressRange(&base, &size, address) != 0) return std::nullopt;
    return std::make_pair(static_cast<std::uintptr_t>(base), size);
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

}  // namespace flashcl_py::cuda
