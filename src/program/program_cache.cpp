// program_cache.cpp: memory cache (map under a mutex; builds run outside the lock), disk cache of
// binaries, and build errors that carry device, options and the build log.
#include "program/program_cache.hpp"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <iterator>
#include <map>
#include <mutex>
#include <tuple>

#include "plan/device_facts.hpp"
#include "program/disk_cache.hpp"
#include "base/errors.hpp"
#include "base/fault_injection.hpp"
#include "program/kernel_source.hpp"
#include "plan/overrides.hpp"
#include "program/ptx_retarget.hpp"

namespace flashcl::detail {
namespace {

using MemoryKey = std::tuple<cl_context, cl_device_id, std::string, std::uint64_t>;

std::mutex g_mutex;
// Never destroyed: releasing programs from a static destructor at exit runs after the OpenCL
// runtime may have torn itself down (oclgrind aborts with heap corruption there). The OS reclaims
// everything at exit; clear_memory_cache() releases them while the runtime is alive.
std::map<MemoryKey, cl::Program>& g_programs = *new std::map<MemoryKey, cl::Program>;

// Context lifetimes. A cl_program retains its context, so a cached program keeps a context the
// caller has released alive (and a context destructor callback would never fire while the cache
// holds it). So on every insert, and when a Session closes, the cache compares each context's
// CL_CONTEXT_REFERENCE_COUNT with the references its own programs hold (what one program object
// adds to the count, measured once per context) and drops the programs of contexts nobody else
// holds. Drivers differ in what the count shows: PoCL counts the programs' references; NVIDIA's
// (580) counts only the caller's retains (1 for a context with queues, buffers and programs, seen
// on an H100), so where a program adds nothing the count reads 0 once the caller has released the
// context that the cache's programs keep alive, and that is when its programs go. Chosen over a
// size bound, which would still keep up to its bound of dead contexts, and over weak entries,
// which OpenCL cannot express. A miscounting driver errs safely: a live context's programs
// dropped cost a rebuild.
std::map<cl_context, cl_uint>& g_refs_per_program = *new std::map<cl_context, cl_uint>;

cl_uint reference_count(cl_context context) {
  cl_uint count = 0;
  if (clGetContextInfo(context, CL_CONTEXT_REFERENCE_COUNT, sizeof count, &count, nullptr) != CL_SUCCESS) return 0;
  return count;
}

// References one program object adds to `context`'s count (1 on PoCL, 0 on NVIDIA's driver),
// measured with a program that is created and released, never built. Called with g_mutex held.
cl_uint refs_per_program(cl_context context) {
  auto it = g_refs_per_program.find(context);
  if (it != g_refs_per_program.end()) return it->second;
  const char* text = "__kernel void flashcl_refcount_probe(void) {}";
  const cl_uint before = reference_count(context);
  cl_int err = CL_SUCCESS;
  cl_program probe = clCreateProgramWithSource(context, 1, &text, nullptr, &err);
  cl_uint refs = 0;  // unknown, or not counted: the context goes when its count reads 0
  if (err == CL_SUCCESS) {
    const cl_uint after = reference_count(context);
    refs = after > before ? after - before : 0;
    clReleaseProgram(probe);
  }
  return g_refs_per_program[context] = refs;
}

// Drops the programs of every context that only the cache keeps alive, except `in_use`'s (the
// context of the call inserting: alive, though on NVIDIA its count reads 0 when the caller has
// released its handle and kept a queue). Called with g_mutex held.
void drop_released_contexts_locked(cl_context in_use = nullptr) {
  std::map<cl_context, cl_uint> held;  // the cache's own references, per context
  for (const auto& entry : g_programs) held[std::get<0>(entry.first)] += refs_per_program(std::get<0>(entry.first));
  for (const auto& [context, refs] : held) {
    if (context == in_use) continue;
    if (reference_count(context) > refs) continue;  // someone else holds it (refs 0: the caller has not released it)
    g_refs_per_program.erase(context);  // before the release: the handle may be reused
    for (auto it = g_programs.begin(); it != g_programs.end();)
      it = std::get<0>(it->first) == context ? g_programs.erase(it) : std::next(it);
  }
}

struct Counters {
  std::atomic<std::size_t> memory_hits{0}, disk_hits{0}, builds{0}, disk_writes{0}, disk_rejects{0};
} g_counters;

std::string build_log(const cl::Program& program, const cl::Device& device) {
  std::string log;
  try {
    log = program.getBuildInfo<CL_PROGRAM_BUILD_LOG>(device);
  } catch (const cl::Error&) {
    log = "(no build log)";
  }
  return log;
}

// Builds `program`; on failure throws BuildFailure with device, options and log. With
// FLASHCL_BUILD_LOG=1 the log of successful builds goes to stderr too (e.g. ptxas's register
// report under FLASHCL_BUILD_OPTIONS=-cl-nv-verbose), unless `quiet` (the first step of the
// ArchPtx route, whose report is of a program with its arch-only instructions commented out).
void build_or_throw(const cl::Program& program, const cl::Device& device, const std::string& options,
                    bool quiet = false) {
  cl_int err = injected_fault("clBuildProgram");
  if (err == CL_SUCCESS) err = clBuildProgram(program(), 1, &device(), options.c_str(), nullptr, nullptr);
  if (err == CL_SUCCESS) {
    if (!quiet && process_overrides().build_log)
      std::fprintf(stderr, "flashcl: build log for '%s':\n%s\n", options.c_str(), build_log(program, device).c_str());
    return;
  }
  const DeviceFacts& facts = device_facts(device());
  fail(Status::BuildFailure, "kernel build failed (", cl_error_name(err), ") on device '", facts.name,
       "' (driver ", facts.driver, ") with options '", options, "':\n", build_log(program, device));
}

std::vector<unsigned char> program_binary(const cl::Program& program) {
  auto binaries = program.getInfo<CL_PROGRAM_BINARIES>();
  return binaries.empty() ? std::vector<unsigned char>{} : binaries.front();
}

// Tries the disk cache; returns a built program or a null one. A file that is invalid or whose
// binary the driver refuses is removed and counted as a reject; the caller rebuilds from source.
cl::Program load_from_disk(const cl::Context& context, const cl::Device& device, const std::string& key,
                           const std::string& options) {
  std::vector<unsigned char> binary;
  const DiskLookup found = disk_cache_load(key, binary);
  if (found == DiskLookup::Missing) return cl::Program();
  if (found == DiskLookup::Found) {
    cl_int status = CL_SUCCESS, err = injected_fault("clCreateProgramWithBinary");
    const unsigned char* data = binary.data();
    const std::size_t size = binary.size();
    cl_program raw = err == CL_SUCCESS
                         ? clCreateProgramWithBinary(context(), 1, &device(), &size, &data, &status, &err)
                         : nullptr;
    if (err == CL_SUCCESS && status == CL_SUCCESS) {
      cl::Program program(raw);  // takes ownership
      cl_int built = injected_fault("clBuildProgram");
      if (built == CL_SUCCESS) built = clBuildProgram(raw, 1, &device(), options.c_str(), nullptr, nullptr);
      if (built == CL_SUCCESS) {
        ++g_counters.disk_hits;
        return program;
      }
    } else if (raw != nullptr) {
      clReleaseProgram(raw);
    }
  }
  ++g_counters.disk_rejects;
  disk_cache_remove(key);
  return cl::Program();
}

// Builds `program` for `device`: through build_or_throw (fault hooks, log in the error) or, for
// the library's own probes, plainly (cl::Error on failure).
void build_step(const cl::Program& program, const cl::Device& device, const std::string& options, bool hooks,
                bool quiet = false) {
  if (hooks)
    build_or_throw(program, device, options, quiet);
  else
    program.build({device}, options.c_str());
}

// Source -> program by `route`, no caches. ArchPtx: the base build's PTX, retargeted, built again
// as a program binary.
cl::Program compile(const cl::Context& context, const cl::Device& device, const std::string& text,
                    const std::string& options, BuildRoute route, bool hooks) {
  cl::Program base(context, text);
  if (route == BuildRoute::Source) {
    build_step(base, device, options, hooks);
    return base;
  }
  build_step(base, device, options + " -DARCH_PTX_RETARGET", hooks, true);
  const std::vector<unsigned char> binary = program_binary(base);
  const std::string ptx = retarget_ptx(std::string(binary.begin(), binary.end()));
  const unsigned char* data = reinterpret_cast<const unsigned char*>(ptx.data());
  const std::size_t size = ptx.size();
  cl_int status = CL_SUCCESS, err = CL_SUCCESS;
  cl_program raw = clCreateProgramWithBinary(context(), 1, &device(), &size, &data, &status, &err);
  if (err == CL_SUCCESS && status != CL_SUCCESS) err = status;
  if (err != CL_SUCCESS && raw != nullptr) clReleaseProgram(raw);
  check_cl_result(err, "clCreateProgramWithBinary (retargeted PTX)");
  cl::Program program(raw);  // takes ownership
  build_step(program, device, options, hooks);
  return program;
}

std::string route_tag(BuildRoute route) { return route == BuildRoute::ArchPtx ? " [retargeted PTX]" : ""; }

cl::Program build_program(cl_context ctx, cl_device_id dev, const ProgramSource& source, const std::string& options,
                          BuildRoute route) {
  cl::Context context(ctx, true);
  cl::Device device(dev, true);
  const std::string key = disk_key(dev, source.hash, options + route_tag(route));
  cl::Program program = load_from_disk(context, device, key, options);
  if (program() != nullptr) return program;

  check_cl_result(injected_fault("clCreateProgramWithSource"), "clCreateProgramWithSource");
  program = compile(context, device, source.text, options, route, true);
  ++g_counters.builds;
  if (disk_cache_enabled() && disk_cache_store(key, program_binary(program))) ++g_counters.disk_writes;
  return program;
}

}  // namespace

cl::Program build_uncached(cl_context context, cl_device_id device, const std::vector<std::string>& files,
                           const std::string& options, BuildRoute route) {
  return compile(cl::Context(context, true), cl::Device(device, true), program_source(files).text, options, route,
                 false);
}

std::string disk_key(cl_device_id device, std::uint64_t source_hash, const std::string& options) {
  const DeviceFacts& facts = device_facts(device);
  return concat("flashcl ", version(), "\nsource ", source_hash, "\noptions ", options, "\ndevice ", facts.name,
                "\nvendor ", facts.vendor, "\ndriver ", facts.driver, "\nplatform ", facts.platform, "\n");
}

cl::Program cached_program(cl_context context, cl_device_id device, const std::vector<std::string>& files,
                           const std::string& base_options, BuildRoute route) {
  // FLASHCL_BUILD_OPTIONS appends compiler flags (part of every cache key) for kernel work.
  const std::string& extra = process_overrides().build_options;
  const std::string options = extra.empty() ? base_options : base_options + " " + extra;
  const MemoryKey key{context, device, options + route_tag(route), program_hash(files)};
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    auto it = g_programs.find(key);
    if (it != g_programs.end()) {
      ++g_counters.memory_hits;
      return it->second;
    }
  }
  // The text only on a miss: a hit (every call after the first) needs just the hash.
  const ProgramSource source = program_source(files);
  cl::Program program = build_program(context, device, source, options, route);
  std::lock_guard<std::mutex> lock(g_mutex);
  refs_per_program(context);  // measured now, while the caller's call holds `context`
  drop_released_contexts_locked(context);
  return g_programs.emplace(key, program).first->second;  // another thread's copy may win
}

void drop_released_contexts() {
  std::lock_guard<std::mutex> lock(g_mutex);
  drop_released_contexts_locked();
}

}  // namespace flashcl::detail

namespace flashcl {

void clear_memory_cache() {
  std::lock_guard<std::mutex> lock(detail::g_mutex);
  detail::g_programs.clear();
  detail::g_refs_per_program.clear();
}

CacheStats cache_stats() {
  CacheStats s;
  s.memory_hits = detail::g_counters.memory_hits;
  s.disk_hits = detail::g_counters.disk_hits;
  s.builds = detail::g_counters.builds;
  s.disk_writes = detail::g_counters.disk_writes;
  s.disk_rejects = detail::g_counters.disk_rejects;
  std::lock_guard<std::mutex> lock(detail::g_mutex);
  s.memory_entries = detail::g_programs.size();
  return s;
}

}  // namespace flashcl
