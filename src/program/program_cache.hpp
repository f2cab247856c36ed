// program_cache.hpp: compile on first use, cache everywhere. A program is identified by
// (context, device, build options, source hash); it lives in memory for the life of the process
// (thread-safe; the first stored copy wins) and as a binary on disk keyed by library version,
// source hash, options, device name and driver version.
#pragma once

#include <CL/cl.h>

#include <string>
#include <vector>

#include "base/cl_bindings.hpp"

namespace flashcl::detail {

// How source becomes a program. ArchPtx: built with -DARCH_PTX_RETARGET, its PTX retargeted to the
// arch-specific target (ptx_retarget.hpp) and built again from that PTX, for kernels that use
// instructions the compiler's base target lacks (NVIDIA only). Disk and memory keep the result.
enum class BuildRoute { Source, ArchPtx };

// The built program for `files` with `options` on (context, device).
cl::Program cached_program(cl_context context, cl_device_id device, const std::vector<std::string>& files,
                           const std::string& options, BuildRoute route = BuildRoute::Source);

// Builds `files` with `options` outside the caches, their counters and the fault hooks: for probes
// that decide whether a path exists on a device (their builds are not the caller's). Throws
// cl::Error when the build fails.
cl::Program build_uncached(cl_context context, cl_device_id device, const std::vector<std::string>& files,
                           const std::string& options, BuildRoute route = BuildRoute::Source);

// Releases the cached programs of contexts that nothing but the cache keeps alive (also done on
// every insert); Session's destructor calls it after releasing its context.
void drop_released_contexts();

// The key a program binary is stored under on disk (exposed for tests).
std::string disk_key(cl_device_id device, std::uint64_t source_hash, const std::string& options);

}  // namespace flashcl::detail
