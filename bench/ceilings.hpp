// ceilings.hpp: the device's own compute and bandwidth ceilings, measured once by the bench with
// its kernels in ceilings.cl (best FMA throughput over float/float4/float8/float16 variants; best
// copy bandwidth over float4/float16 variants) and cached per device and driver in a JSON file next to
// flashcl's program cache, so every later run prints results as % of these peaks.
#pragma once

#include <CL/cl.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace flashcl::bench {

struct Ceilings {
  double fma_gflops = 0.0;  // 2 flops per FMA
  std::string fma_variant;  // which VEC x CHAINS reached it
  std::string fma_vec;      // that variant's OpenCL type ("float8") and chain count
  int fma_chains = 0;
  double copy_gbs = 0.0;  // (read + written bytes) / s, 1e9 bytes per GB
  std::string copy_variant;
  std::vector<std::pair<std::string, double>> samples;  // every variant's best (GFLOP/s or GB/s)
  std::string measured_at;                              // UTC ISO 8601
  std::string cache_file;                               // where they are cached ("" when not)
  bool from_cache = false;
  bool valid() const { return fma_gflops > 0.0 && copy_gbs > 0.0; }
};

// Cached ceilings of `device`, measured now when there are none or `remeasure` is set. Copy
// buffers never exceed `max_bytes` in total. Progress notes go to stderr unless `quiet`.
Ceilings device_ceilings(cl_context context, cl_command_queue queue, cl_device_id device, bool remeasure,
                         std::size_t max_bytes, bool quiet);

// Raises the cached FMA ceiling of `device` to `gflops` (a probe that beat it: the ceiling was
// measured while the machine was busy). True when the cache changed.
bool raise_fma_ceiling(cl_device_id device, double gflops);

class FmaKernel;

// A ~20 ms run of the best FMA variant: the FMA throughput the bench gets right now. On a shared
// machine it can sit far under the ceiling; rows record it so a reader can tell a slow kernel
// from a busy machine.
class FmaProbe {
 public:
  FmaProbe(cl_context context, cl_command_queue queue, cl_device_id device, const Ceilings& ceilings);
  ~FmaProbe();
  double gflops();

 private:
  cl_command_queue queue_;
  std::unique_ptr<FmaKernel> kernel_;
  int iters_ = 1;
};

}  // namespace flashcl::bench
