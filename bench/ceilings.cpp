// ceilings.cpp: measures and caches the roofline ceilings, and runs the FMA probe. Each
// measurement is sized so one launch takes >= 50 ms of device time (iterations doubled until it
// does); the best of 7 profiled launches is kept, and the best variant gets 3 s more: a ceiling is
// what the device can do, so the best run is the estimate (on a shared host, other runs lose time
// to neighbours; every variant's best is kept in the cache file as `samples` to show the spread).
// For the same reason --remeasure-ceilings keeps the higher of the cached and the new values;
// delete the file to start from scratch. The file's name hashes platform, device, driver and the
// kernels' text, so a new driver or changed kernels measure again.
#include "ceilings.hpp"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "flashcl/flashcl.hpp"

namespace flashcl::bench {
namespace {

#include "ceilings_cl.inc"  // kCeilingsSource: ceilings.cl, embedded at configure time

constexpr double kMinLaunchMs = 50.0;
constexpr int kTimedRuns = 7;
constexpr double kProbeMs = 20.0;
constexpr double kRefineSeconds = 3.0;

[[noreturn]] void fail_cl(const char* what, cl_int err) {
  throw Error(Status::OpenCLError,
              std::string("ceilings: ") + what + " failed with OpenCL error " + std::to_string(err));
}
void check(cl_int err, const char* what) {
  if (err != CL_SUCCESS) fail_cl(what, err);
}

// Owns one OpenCL handle of type T through its release function.
template <typename T, cl_int (*Release)(T)>
struct Handle {
  T h = nullptr;
  Handle() = default;
  explicit Handle(T v) : h(v) {}
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  ~Handle() {
    if (h != nullptr) Release(h);
  }
};
using Program = Handle<cl_program, clReleaseProgram>;
using Kernel = Handle<cl_kernel, clReleaseKernel>;
using Buffer = Handle<cl_mem, clReleaseMemObject>;
using Event = Handle<cl_event, clReleaseEvent>;

std::uint64_t fnv1a(const std::string& text) {
  std::uint64_t h = 1469598103934665603ull;
  for (unsigned char c : text) h = (h ^ c) * 1099511628211ull;
  return h;
}

std::string device_string(cl_device_id device, cl_device_info what) {
  char text[512] = {0};
  clGetDeviceInfo(device, what, sizeof text - 1, text, nullptr);
  return text;
}

std::string platform_name(cl_device_id device) {
  cl_platform_id platform = nullptr;
  char text[512] = {0};
  clGetDeviceInfo(device, CL_DEVICE_PLATFORM, sizeof platform, &platform, nullptr);
  if (platform != nullptr) clGetPlatformInfo(platform, CL_PLATFORM_NAME, sizeof text - 1, text, nullptr);
  return text;
}

std::string utc_now() {
  char text[32];
  const std::time_t now = std::time(nullptr);
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  return text;
}

cl_program build(cl_context context, cl_device_id device, const std::string& options) {
  const char* text = kCeilingsSource;
  cl_int err = CL_SUCCESS;
  cl_program program = clCreateProgramWithSource(context, 1, &text, nullptr, &err);
  check(err, "clCreateProgramWithSource");
  const std::string all = "-cl-std=CL1.2 " + options;
  if (clBuildProgram(program, 1, &device, all.c_str(), nullptr, nullptr) != CL_SUCCESS) {
    std::size_t size = 0;
    clGetProgramBuildInfo(program, device, CL_PROGRAM_BUILD_LOG, 0, nullptr, &size);
    std::string log(size, '\0');
    clGetProgramBuildInfo(program, device, CL_PROGRAM_BUILD_LOG, size, log.data(), nullptr);
    clReleaseProgram(program);
    throw Error(Status::BuildFailure, "ceilings: building ceilings.cl with '" + all + "' failed:\n" + log);
  }
  return program;
}

// Device milliseconds of one launch of `kernel` over `global` work-items.
double launch_ms(cl_command_queue queue, cl_kernel kernel, std::size_t global, const std::size_t* local) {
  Event event;
  check(clEnqueueNDRangeKernel(queue, kernel, 1, nullptr, &global, local, 0, nullptr, &event.h),
        "clEnqueueNDRangeKernel");
  check(clWaitForEvents(1, &event.h), "clWaitForEvents");
  cl_ulong start = 0, end = 0;
  check(clGetEventProfilingInfo(event.h, CL_PROFILING_COMMAND_START, sizeof start, &start, nullptr), "profiling");
  check(clGetEventProfilingInfo(event.h, CL_PROFILING_COMMAND_END, sizeof end, &end, nullptr), "profiling");
  return static_cast<double>(end - start) * 1e-6;
}

// Best of at least kTimedRuns launches and of every launch within `seconds` (after a warm-up).
double best_ms(cl_command_queue queue, cl_kernel kernel, std::size_t global, const std::size_t* local,
               double seconds = 0.0) {
  double best = launch_ms(queue, kernel, global, local);
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0;
       i < kTimedRuns || std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() < seconds; ++i)
    best = std::min(best, launch_ms(queue, kernel, global, local));
  return best;
}

struct Variant {
  std::string vec;
  int width, chains;
};

// Lanes of an OpenCL vector type name: "float8" -> 8, "float" -> 1.
int width_of(const std::string& vec) {
  const std::size_t digits = vec.find_first_of("0123456789");
  return digits == std::string::npos ? 1 : std::stoi(vec.substr(digits));
}

}  // namespace

// One built fma_peak variant with its output buffer and launch size (several work-groups per
// compute unit, so every unit stays busy).
class FmaKernel {
 public:
  FmaKernel(cl_context context, cl_device_id device, const Variant& v) : width_(v.width), chains_(v.chains) {
    program_.h = build(context, device, "-DVEC=" + v.vec + " -DCHAINS=" + std::to_string(v.chains));
    cl_int err = CL_SUCCESS;
    kernel_.h = clCreateKernel(program_.h, "fma_peak", &err);
    check(err, "clCreateKernel(fma_peak)");
    cl_uint units = 1;
    std::size_t max_wg = 1;
    clGetDeviceInfo(device, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof units, &units, nullptr);
    clGetDeviceInfo(device, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof max_wg, &max_wg, nullptr);
    local_ = std::min<std::size_t>(256, max_wg);
    global_ = local_ * 8 * std::max<cl_uint>(units, 1);
    out_.h = clCreateBuffer(context, CL_MEM_WRITE_ONLY, global_ * width_ * sizeof(float), nullptr, &err);
    check(err, "clCreateBuffer(fma)");
    const float a = 0.999f, b = 0.001f;  // chains converge to 1: no overflow, no denormals
    check(clSetKernelArg(kernel_.h, 0, sizeof out_.h, &out_.h), "clSetKernelArg");
    check(clSetKernelArg(kernel_.h, 1, sizeof a, &a), "clSetKernelArg");
    check(clSetKernelArg(kernel_.h, 2, sizeof b, &b), "clSetKernelArg");
  }

  double flops(int iters) const { return 2.0 * width_ * chains_ * static_cast<double>(iters) * global_; }

  double run_ms(cl_command_queue queue, int iters) {
    check(clSetKernelArg(kernel_.h, 3, sizeof iters, &iters), "clSetKernelArg");
    return launch_ms(queue, kernel_.h, global_, &local_);
  }

  double best_ms(cl_command_queue queue, int iters, double seconds) {
    check(clSetKernelArg(kernel_.h, 3, sizeof iters, &iters), "clSetKernelArg");
    return bench::best_ms(queue, kernel_.h, global_, &local_, seconds);
  }

 private:
  Program program_;
  Kernel kernel_;
  Buffer out_;
  int width_, chains_;
  std::size_t local_ = 1, global_ = 1;
};

namespace {

double measure_fma(cl_context context, cl_command_queue queue, cl_device_id device, const Variant& v, double seconds) {
  FmaKernel fma(context, device, v);
  int iters = 64;
  while (fma.run_ms(queue, iters) < kMinLaunchMs && iters < (1 << 24)) iters *= 2;
  return fma.flops(iters) / (fma.best_ms(queue, iters, seconds) * 1e-3) / 1e9;
}

double measure_copy(cl_context context, cl_command_queue queue, cl_device_id device, const Variant& v,
                    std::size_t buffer_bytes, double seconds) {
  Program program(build(context, device, "-DVEC=" + v.vec));
  cl_int err = CL_SUCCESS;
  Kernel kernel(clCreateKernel(program.h, "copy_peak", &err));
  check(err, "clCreateKernel(copy_peak)");
  const std::size_t local = 64, elem = v.width * sizeof(float);
  const std::size_t global = buffer_bytes / elem / local * local;
  Buffer src(clCreateBuffer(context, CL_MEM_READ_ONLY, global * elem, nullptr, &err));
  check(err, "clCreateBuffer(copy src)");
  Buffer dst(clCreateBuffer(context, CL_MEM_WRITE_ONLY, global * elem, nullptr, &err));
  check(err, "clCreateBuffer(copy dst)");
  const float one = 1.0f;  // touch every page before timing
  check(clEnqueueFillBuffer(queue, src.h, &one, sizeof one, 0, global * elem, 0, nullptr, nullptr), "fill");
  check(clEnqueueFillBuffer(queue, dst.h, &one, sizeof one, 0, global * elem, 0, nullptr, nullptr), "fill");
  check(clFinish(queue), "clFinish");
  check(clSetKernelArg(kernel.h, 0, sizeof src.h, &src.h), "clSetKernelArg");
  check(clSetKernelArg(kernel.h, 1, sizeof dst.h, &dst.h), "clSetKernelArg");
  const double ms = best_ms(queue, kernel.h, global, &local, seconds);
  return 2.0 * global * elem / (ms * 1e-3) / 1e9;
}

Ceilings measure(cl_context context, cl_command_queue queue, cl_device_id device, std::size_t max_bytes) {
  // Measured on PoCL/Zen (16 ymm registers): 4 float8 chains are latency-bound (half the peak),
  // 8-12 reach it, 16 spill. GPUs prefer scalar or float4 chains, so those are tried too.
  static const Variant kFma[] = {
      {"float", 1, 16}, {"float4", 4, 8}, {"float8", 8, 8}, {"float8", 8, 12}, {"float16", 16, 4}};
  static const Variant kCopy[] = {{"float4", 4, 0}, {"float16", 16, 0}};
  cl_ulong max_alloc = 0;
  clGetDeviceInfo(device, CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof max_alloc, &max_alloc, nullptr);
  // 256 MiB per buffer is far past any last-level cache; smaller only when the limits say so.
  const std::size_t buffer = std::min<std::size_t>({std::size_t(256) << 20, max_alloc, max_bytes / 2});
  // Every variant briefly, then the best one for kRefineSeconds more: on a shared machine the
  // share of the cores the bench gets changes from second to second.
  Ceilings c;
  const Variant* best_fma = &kFma[0];
  for (const Variant& v : kFma) {
    const double g = measure_fma(context, queue, device, v, 0.0);
    c.samples.push_back({"fma " + v.vec + " x " + std::to_string(v.chains), g});
    if (g > c.fma_gflops) {
      c.fma_gflops = g;
      best_fma = &v;
    }
  }
  c.fma_gflops = std::max(c.fma_gflops, measure_fma(context, queue, device, *best_fma, kRefineSeconds));
  c.fma_vec = best_fma->vec;
  c.fma_chains = best_fma->chains;
  c.fma_variant = best_fma->vec + " x " + std::to_string(best_fma->chains) + " chains";
  const Variant* best_copy = &kCopy[0];
  for (const Variant& v : kCopy) {
    const double g = measure_copy(context, queue, device, v, buffer, 0.0);
    c.samples.push_back({"copy " + v.vec, g});
    if (g > c.copy_gbs) {
      c.copy_gbs = g;
      best_copy = &v;
    }
  }
  c.copy_gbs = std::max(c.copy_gbs, measure_copy(context, queue, device, *best_copy, buffer, kRefineSeconds));
  c.copy_variant = best_copy->vec + " copy, " + std::to_string(buffer >> 20) + " MiB buffers";
  c.measured_at = utc_now();
  return c;
}

nlohmann::json samples_json(const Ceilings& c) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [name, value] : c.samples) j[name] = value;
  return j;
}

nlohmann::json to_json(const Ceilings& c, const std::string& key) {
  return {{"format", 2},
          {"key", key},
          {"fma_gflops", c.fma_gflops},
          {"fma_variant", c.fma_variant},
          {"fma_vec", c.fma_vec},
          {"fma_chains", c.fma_chains},
          {"copy_gbs", c.copy_gbs},
          {"copy_variant", c.copy_variant},
          {"measured_at", c.measured_at},
          {"samples", samples_json(c)}};
}

bool load(const std::string& path, const std::string& key, Ceilings& c) {
  std::ifstream in(path);
  if (!in) return false;
  const nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
  if (j.is_discarded() || !j.is_object() || j.value("format", 0) != 2 || j.value("key", "") != key) return false;
  c.fma_gflops = j.value("fma_gflops", 0.0);
  c.fma_variant = j.value("fma_variant", "");
  c.fma_vec = j.value("fma_vec", "");
  c.fma_chains = j.value("fma_chains", 0);
  c.copy_gbs = j.value("copy_gbs", 0.0);
  c.copy_variant = j.value("copy_variant", "");
  c.measured_at = j.value("measured_at", "");
  if (j.contains("samples") && j["samples"].is_object())
    for (const auto& [name, value] : j["samples"].items())
      if (value.is_number()) c.samples.push_back({name, value.get<double>()});
  return c.valid() && !c.fma_vec.empty() && c.fma_chains > 0;
}

bool store(const std::string& path, const nlohmann::json& j) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(fs::path(path).parent_path(), ec);
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp);
    if (!(out << j.dump(2) << '\n')) return false;
  }
  fs::rename(tmp, path, ec);  // atomic: a reader sees the old file or the new one
  return !ec;
}

// The cache key (platform, device, driver, kernels) and the file it names.
std::string cache_key(cl_device_id device) {
  return platform_name(device) + " | " + device_string(device, CL_DEVICE_NAME) + " | " +
         device_string(device, CL_DRIVER_VERSION) + " | " + device_string(device, CL_DEVICE_VERSION) + " | kernels " +
         std::to_string(fnv1a(kCeilingsSource));
}

std::string cache_path(const std::string& key) {
  char name[64];
  std::snprintf(name, sizeof name, "ceilings-%016llx.json", static_cast<unsigned long long>(fnv1a(key)));
  return (std::filesystem::path(disk_cache_dir()) / name).string();
}

}  // namespace

Ceilings device_ceilings(cl_context context, cl_command_queue queue, cl_device_id device, bool remeasure,
                         std::size_t max_bytes, bool quiet) {
  const std::string key = cache_key(device), path = cache_path(key);
  Ceilings cached;
  const bool have = load(path, key, cached);
  if (have && !remeasure) {
    cached.cache_file = path;
    cached.from_cache = true;
    return cached;
  }
  if (!quiet) std::fprintf(stderr, "flashcl-bench: measuring this device's FMA and copy ceilings (once; cached)...\n");
  Ceilings c = measure(context, queue, device, max_bytes);
  if (have) {  // a busy machine only makes a measurement slower: a ceiling never goes down
    if (cached.fma_gflops >= c.fma_gflops && cached.copy_gbs >= c.copy_gbs) c.measured_at = cached.measured_at;
    if (cached.fma_gflops > c.fma_gflops) {
      c.fma_gflops = cached.fma_gflops;
      c.fma_vec = cached.fma_vec;
      c.fma_chains = cached.fma_chains;
      c.fma_variant = cached.fma_variant;
    }
    if (cached.copy_gbs > c.copy_gbs) {
      c.copy_gbs = cached.copy_gbs;
      c.copy_variant = cached.copy_variant;
    }
  }
  if (store(path, to_json(c, key)))
    c.cache_file = path;
  else if (!quiet)
    std::fprintf(stderr, "flashcl-bench: note: could not write %s; ceilings not cached\n", path.c_str());
  return c;
}

bool raise_fma_ceiling(cl_device_id device, double gflops) {
  const std::string key = cache_key(device), path = cache_path(key);
  Ceilings cached;
  if (!load(path, key, cached) || gflops <= cached.fma_gflops) return false;
  cached.fma_gflops = gflops;  // the probe runs the cached best variant, so variant and chains stay
  cached.measured_at = utc_now();
  return store(path, to_json(cached, key));
}

FmaProbe::FmaProbe(cl_context context, cl_command_queue queue, cl_device_id device, const Ceilings& ceilings)
    : queue_(queue) {
  const Variant v{ceilings.fma_vec, width_of(ceilings.fma_vec), ceilings.fma_chains};
  kernel_ = std::make_unique<FmaKernel>(context, device, v);
  // Iterations for kProbeMs at the ceiling; the first launch also pays any work-group specialisation.
  iters_ = std::max(1, static_cast<int>(kProbeMs * 1e-3 * ceilings.fma_gflops * 1e9 / kernel_->flops(1)));
  kernel_->run_ms(queue_, iters_);
}

FmaProbe::~FmaProbe() = default;

double FmaProbe::gflops() { return kernel_->flops(iters_) / (kernel_->run_ms(queue_, iters_) * 1e-3) / 1e9; }

}  // namespace flashcl::bench
