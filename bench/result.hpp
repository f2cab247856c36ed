// result.hpp: plain records the runner fills and the reporters print: one Result per
// (algorithm, shape) row and one Context per run (device, versions, date, ceilings, command).
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "ceilings.hpp"
#include "flashcl/flashcl.hpp"
#include "io_model.hpp"
#include "problem.hpp"
#include "tiles.hpp"

namespace flashcl::bench {

enum class RowStatus { Ok, Skipped, Error };

// A row that a library error ended: out of resources (the device cannot hold or run it) is a skip,
// anything else a failure; the rule of every mode's rows.
inline RowStatus row_status(const Error& e) {
  return e.status() == Status::OutOfResources ? RowStatus::Skipped : RowStatus::Error;
}

struct Result {
  Shape shape;
  DType dtype = DType::F32;  // storage of Q, K, V, O (arithmetic is fp32)
  std::string algo;          // as asked for ("auto" stays "auto")
  std::string resolved;      // the algorithm that ran
  RowStatus status = RowStatus::Ok;
  std::string note;  // why a row was skipped or failed

  // Device time of the timed runs (profiling events).
  std::vector<double> runs_ms;
  double median_ms = 0.0, min_ms = 0.0, max_ms = 0.0;
  std::vector<double> kernel_ms;  // each kernel of the run closest to the median
  bool first_call_timed = false;  // --row-budget: the first call (nothing built) was the one run

  // The first call of this row: wall time (build or cache load + enqueue + run) and how its
  // programs were obtained (flashcl::cache_stats() before and after).
  double first_wall_ms = 0.0, first_device_ms = 0.0;
  std::size_t builds = 0, disk_hits = 0, memory_hits = 0;
  std::string build_kind;  // "cold build", "disk cache", "in memory"

  Tiles tiles;
  IoModel io;
  std::size_t device_bytes = 0;  // flashcl::device_bytes(): Q, K, V, O, LSE and workspace
  std::size_t workspace_bytes = 0;
  int input_sets = 1;

  double tflops = 0.0, gbs = 0.0;                          // FA convention FLOPs; modelled bytes
  double pct_fma = 0.0, pct_bw = 0.0, pct_roofline = 0.0;  // 0 when no ceilings
  double speedup = 0.0;                                    // standard's median / this median; 0: no standard row
  double probe_gflops = 0.0;                               // FMA probe around the timed runs; 0: not run

  bool checked = false;
  ErrorStats error;
  int rows_checked = 0, rows_total = 0;
};

struct Context {
  DeviceInfo device;
  std::string device_version;
  std::size_t max_alloc_bytes = 0, cache_bytes = 0, max_memory = 0;
  std::string library_version, git_commit, date, command;
  Ceilings ceilings;
  bool roofline = false;
  int repeat = 0, warmup = 0;
  double row_budget_s = 0.0;
  std::string variants;  // "window (128,0), softcap 30"; empty: plain attention
  bool check = false;
  double check_macs = 0.0;
};

}  // namespace flashcl::bench
