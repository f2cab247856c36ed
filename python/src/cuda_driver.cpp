// cuda_driver.cpp: loads libcuda.so.1 once (dlopen; never unloaded, as the process's CUDA state
// lives in it), resolves the entry points of cuda_driver.hpp, preferring each one's `_v2` symbol
// where the driver exports one, and calls cuInit. A failure is remembered, so every later call
// reports the same named error without trying again. The semaphore set (SemaphoreDriver) is
// optional: its missing names are kept for the bridge to report, not an error here; so are the flag
// set (FlagDriver) and the import set (ImportDriver). Names listed in FLASHCL_CUDA_HIDE resolve to
// nothing, as on a driver without them.
#include "cuda_driver.hpp"

#include <dlfcn.h>

#include <cstdlib>
#include <mutex>
#include <sstream>
#include <string>

#include "flashcl/flashcl.hpp"

namespace flashcl_py::cuda {
namespace {

// Whether FLASHCL_CUDA_HIDE lists `name` (comma-separated, spaces ignored).
bool hidden(const char* name) {
  const char* list = std::getenv("FLASHCL_CUDA_HIDE");
  if (list == nullptr) return false;
  std::stringstream in(list);
  for (std::string item; std::getline(in, item, ',');) {
    item.erase(0, item.find_first_not_of(' '));
    item.erase(item.find_last_not_of(' ') + 1);
    if (item == name) return true;
  }
  return false;
}

// The `_v2` symbol when the driver has one, else the plain one (nullptr when neither exists or
// FLASHCL_CUDA_HIDE lists the name); `versioned` says which.
void* symbol(void* library, const char* name, bool* versioned = nullptr) {
  if (hidden(name)) return nullptr;
  const std::string v2 = std::string(name) + "_v2";
  if (void* p = dlsym(library, v2.c_str())) {
    if (versioned) *versioned = true;
    return p;
  }
  if (versioned) *versioned = false;
  return dlsym(library, name);
}

template <typename Fn>
bool resolve(void* library, const char* name, Fn& out, std::string& missing) {
  out = reinterpret_cast<Fn>(symbol(library, name));
  if (out == nullptr) missing += std::string(missing.empty() ? "" : ", ") + name;
  return out != nullptr;
}

struct Loaded {
  Driver driver{};
  SemaphoreDriver semaphores{};
  FlagDriver flags{};
  ImportDriver imports{};
  std::string error;  // empty when loaded
};

Loaded load() {
  Loaded l;
  void* library = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (library == nullptr) {
    const char* why = dlerror();
    l.error = std::string("CUDA driver: libcuda.so.1 could not be loaded (") + (why ? why : "unknown") +
              "); CUDA tensors need NVIDIA's driver";
    return l;
  }
  Driver& d = l.driver;
  std::string missing;
  resolve(library, "cuInit", d.cuInit, missing);
  resolve(library, "cuDeviceGet", d.cuDeviceGet, missing);
  resolve(library, "cuDeviceGetUuid", d.cuDeviceGetUuid, missing);
  resolve(library, "cuCtxGetCurrent", d.cuCtxGetCurrent, missing);
  resolve(library, "cuCtxSetCurrent", d.cuCtxSetCurrent, missing);
  resolve(library, "cuDevicePrimaryCtxRetain", d.cuDevicePrimaryCtxRetain, missing);
  resolve(library, "cuMemGetAllocationGranularity", d.cuMemGetAllocationGranularity, missing);
  resolve(library, "cuMemCreate", d.cuMemCreate, missing);
  resolve(library, "cuMemExportToShareableHandle", d.cuMemExportToShareableHandle, missing);
  resolve(library, "cuMemAddressReserve", d.cuMemAddressReserve, missing);
  resolve(library, "cuMemMap", d.cuMemMap, missing);
  resolve(library, "cuMemSetAccess", d.cuMemSetAccess, missing);
  resolve(library, "cuMemUnmap", d.cuMemUnmap, missing);
  resolve(library, "cuMemAddressFree", d.cuMemAddressFree, missing);
  resolve(library, "cuMemRelease", d.cuMemRelease, missing);
  resolve(library, "cuStreamSynchronize", d.cuStreamSynchronize, missing);
  resolve(library, "cuGetErrorName", d.cuGetErrorName, missing);
  // Optional: without them the bridge orders calls by host waits (cuda_interop.cpp).
  SemaphoreDriver& s = l.semaphores;
  resolve(library, "cuImportExternalSemaphore", s.cuImportExternalSemaphore, s.missing);
  resolve(library, "cuSignalExternalSemaphoresAsync", s.cuSignalExternalSemaphoresAsync, s.missing);
  resolve(library, "cuWaitExternalSemaphoresAsync", s.cuWaitExternalSemaphoresAsync, s.missing);
  resolve(library, "cuDestroyExternalSemaphore", s.cuDestroyExternalSemaphore, s.missing);
  resolve(library, "cuEventCreate", s.cuEventCreate, s.missing);
  resolve(library, "cuEventRecord", s.cuEventRecord, s.missing);
  resolve(library, "cuEventQuery", s.cuEventQuery, s.missing);
  resolve(library, "cuEventDestroy", s.cuEventDestroy, s.missing);
  resolve(library, "cuStreamWaitEvent", s.cuStreamWaitEvent, s.missing);
  resolve(library, "cuStreamCreate", s.cuStreamCreate, s.missing);
  resolve(library, "cuStreamDestroy", s.cuStreamDestroy, s.missing);
  // Optional as well: the flag ordering (cuda_interop.cpp).
  FlagDriver& f = l.flags;
  f.cuStreamWaitValue32 = reinterpret_cast<decltype(f.cuStreamWaitValue32)>(
      symbol(library, "cuStreamWaitValue32", &f.v2));
  if (f.cuStreamWaitValue32 == nullptr) f.missing = "cuStreamWaitValue32";
  resolve(library, "cuDeviceGetAttribute", f.cuDeviceGetAttribute, f.missing);
  // The plain symbol: cuCtxSynchronize_v2 (CUDA 12.x) takes a context, a different signature.
  f.cuCtxSynchronize = hidden("cuCtxSynchronize") ? nullptr
                                                   : reinterpret_cast<decltype(f.cuCtxSynchronize)>(
                                                         dlsym(library, "cuCtxSynchronize"));
  if (f.cuCtxSynchronize == nullptr) f.missing += std::string(f.missing.empty() ? "" : ", ") + "cuCtxSynchronize";
  resolve(library, "cuEventCreate", f.cuEventCreate, f.missing);
  resolve(library, "cuEventRecord", f.cuEventRecord, f.missing);
  resolve(library, "cuEventQuery", f.cuEventQuery, f.missing);
  resolve(library, "cuEventDestroy", f.cuEventDestroy, f.missing);
  resolve(library, "cuStreamCreate", f.cuStreamCreate, f.missing);
  resolve(library, "cuStreamDestroy", f.cuStreamDestroy, f.missing);
  // Optional as well: importing PyTorch's expandable segments (cuda_import.cpp).
  ImportDriver& m = l.imports;
  resolve(library, "cuMemRetainAllocationHandle", m.cuMemRetainAllocationHandle, m.missing);
  resolve(library, "cuMemGetAddressRange", m.cuMemGetAddressRange, m.missing);
  resolve(library, "cuMemGetAllocationPropertiesFromHandle", m.cuMemGetAllocationPropertiesFromHandle, m.missing);
  if (!missing.empty()) {
    l.error = "CUDA driver: libcuda.so.1 lacks " + missing + " (a driver with the virtual memory API is needed)";
    return l;
  }
  const CUresult r = d.cuInit(0);
  if (r != 0) {
    const char* name = nullptr;
    d.cuGetErrorName(r, &name);
    l.error = "CUDA driver: cuInit failed with " + std::string(name ? name : "an unknown error") + " (" +
              std::to_string(r) + "): no usable CUDA device";
  }
  return l;
}

const Loaded& loaded() {
  static const Loaded once = load();  // thread-safe once
  if (!once.error.empty()) throw flashcl::Error(flashcl::Status::DeviceNotFound, once.error);
  return once;
}

}  // namespace

const Driver& driver() { return loaded().driver; }

const SemaphoreDriver& semaphore_driver() { return loaded().semaphores; }

const FlagDriver& flag_driver() { return loaded().flags; }

const ImportDriver& import_driver() { return loaded().imports; }

void check(CUresult result, const char* what) {
  if (result == 0) return;
  const char* name = nullptr;
  driver().cuGetErrorName(result, &name);
  const std::string message =
      std::string(what) + " failed with " + (name ? name : "an unknown CUDA error") + " (" + std::to_string(result) + ")";
  constexpr CUresult kOutOfMemory = 2;
  throw flashcl::Error(result == kOutOfMemory ? flashcl::Status::OutOfResources : flashcl::Status::InternalError,
                       message);
}

void ensure_context(CUdevice device) {
  const Driver& d = driver();
  CUcontext current = nullptr;
  check(d.cuCtxGetCurrent(&current), "cuCtxGetCurrent");
  if (current != nullptr) return;
  // Retained for the life of the process: the primary context is PyTorch's too, and releasing it
  // here could tear down the context PyTorch's tensors live in.
  check(d.cuDevicePrimaryCtxRetain(&current, device), "cuDevicePrimaryCtxRetain");
  check(d.cuCtxSetCurrent(current), "cuCtxSetCurrent");
}

}  // namespace flashcl_py::cuda
