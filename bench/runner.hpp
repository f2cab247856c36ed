// runner.hpp: runs one shape for every requested algorithm and fills a Result per row: inputs
// (random, rotated over several sets when they would sit in cache), limits (rows that cannot fit
// are skipped with the bytes they need), the first call's build cost, timed runs, derived
// throughput and roofline figures, and the optional reference check.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "options.hpp"
#include "result.hpp"

namespace flashcl::bench {

struct RowHooks {
  std::function<void(const Result&)> starting;  // before a row runs (progress line)
  std::function<void(const Result&)> done;      // after it ran or was skipped
};

// Device time of each kernel of a finished launch (start to end, enqueue order), in ms; throws
// Error(OpenCLError) when the queue has no profiling.
std::vector<double> kernel_ms(const Launch& launch);

class Runner {
 public:
  Runner(Session& session, const Options& options, const Context& context);

  // Every algorithm of options.algos on `shape` stored as `dtype`; `shape_index` varies the seeds.
  void run_shape(const Shape& shape, DType dtype, int shape_index, const RowHooks& hooks);

  // The highest FMA probe of the run (0 without ceilings).
  double best_probe_gflops() const { return best_probe_; }

 private:
  Session& session_;
  const Options& options_;
  const Context& context_;
  std::unique_ptr<FmaProbe> probe_;  // with ceilings: what share of the device each row had
  double best_probe_ = 0.0;
};

}  // namespace flashcl::bench
