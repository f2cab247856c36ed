// context.cpp: fills Context. The git commit comes from CMake (`git rev-parse --short HEAD` at
// configure time, "unknown" outside a checkout); the memory limit defaults to the device's global
// memory, since the bench's own buffers are all the device has to hold.
#include "context.hpp"

#include <cstdio>
#include <ctime>

#ifndef FLASHCL_BENCH_GIT_COMMIT
#define FLASHCL_BENCH_GIT_COMMIT "unknown"
#endif

namespace flashcl::bench {
namespace {

std::string utc_now() {
  char text[32];
  const std::time_t now = std::time(nullptr);
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  return text;
}

template <typename T>
T device_value(cl_device_id device, cl_device_info what) {
  T value{};
  clGetDeviceInfo(device, what, sizeof value, &value, nullptr);
  return value;
}

}  // namespace

Context make_context(const Session& session, const Options& options) {
  Context c;
  c.device = session.info();
  c.device_version = c.device.version;
  c.max_alloc_bytes = device_value<cl_ulong>(session.device(), CL_DEVICE_MAX_MEM_ALLOC_SIZE);
  c.cache_bytes = device_value<cl_ulong>(session.device(), CL_DEVICE_GLOBAL_MEM_CACHE_SIZE);
  c.max_memory = options.max_memory > 0 ? options.max_memory : c.device.global_mem_bytes;
  c.library_version = version();
  c.git_commit = FLASHCL_BENCH_GIT_COMMIT;
  c.date = utc_now();
  c.command = options.command;
  c.roofline = options.roofline;
  if (options.roofline)
    c.ceilings = device_ceilings(session.context(), session.queue(), session.device(), options.remeasure, c.max_memory,
                                 options.quiet);
  c.repeat = options.repeat;
  c.warmup = options.warmup;
  c.row_budget_s = options.row_budget_s;
  // Every variant the options turn on, so a variant run's table and JSON say what ran.
  const auto add = [&c](const std::string& variant) { c.variants += (c.variants.empty() ? "" : ", ") + variant; };
  if (options.window_left >= 0 || options.window_right >= 0)
    add("window (" + std::to_string(options.window_left) + "," + std::to_string(options.window_right) + ")");
  if (options.softcap > 0.0) {
    char text[48];
    std::snprintf(text, sizeof text, "softcap %g", options.softcap);
    add(text);
  }
  if (options.alibi) add("ALiBi");
  if (options.mask == MaskMode::Bool) add("bool mask");
  if (options.mask == MaskMode::Bias) add("bias mask");
  if (options.varlen) add("varlen (B packed sequences of lengths in [N/2, N])");
  c.check = options.check;
  c.check_macs = options.check_macs;
  return c;
}

}  // namespace flashcl::bench
