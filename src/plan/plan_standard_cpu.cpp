// plan_standard_cpu.cpp: the CPU-shaped standard's tiles and register blocks (plan_standard_cpu.hpp).
//  - Vector width VW, padded head dim D_PAD, RM and CG: fa2_cpu's rules (plan_fa2_cpu.cpp), as the
//    two products here are fa2_cpu's register blocks (K Q^T with the rows in the lanes; P V).
//  - BR rows per work-item and panel, BC keys per staged block: the first row of kTiles, then
//    halved (BC first, down to 4 keys; then BR, down to RM rows) until the tiles fit the device's
//    local memory (oclgrind's 48 KiB at large head dims).
#include "plan/plan_standard_cpu.hpp"

#include <algorithm>
#include <cstdint>

#include "base/errors.hpp"
#include "base/saturating.hpp"
#include "plan/head_dims.hpp"
#include "plan/plan_counts.hpp"
#include "plan/plan_fa2_cpu.hpp"

namespace flashcl::detail {
namespace {

// PoCL 3.1, 2-core EPYC (AVX-512), fp32, B = 1, H = 8, N = 2048: docs/perf/pocl-cpu.md, standard.
constexpr int kBlockRows = 64, kBlockCols = 64;

}  // namespace

bool standard_cpu_takes(const DeviceFacts& device, const ForwardArgs& a, const Overrides& o) {
  if (a.algorithm != Algorithm::Standard) return false;
  if (a.tile.block_rows != 0 || a.tile.block_cols != 0) return false;
  if (a.dtype != DType::F32 && a.dtype != DType::F16 && a.dtype != DType::BF16) return false;
  if (o.standard_cpu == "0") return false;
  return o.standard_cpu == "1" || device.kind == DeviceKind::CPU;
}

std::size_t standard_cpu_local_bytes(int block_rows, int block_cols, int padded_head_dim) {
  return (static_cast<std::size_t>(block_rows) + static_cast<std::size_t>(block_cols)) * padded_head_dim *
         sizeof(float);
}

std::size_t standard_cpu_workspace_bytes(const ForwardArgs& a, const TilePlan& t) {
  const auto n = [](long long x) { return static_cast<std::uint64_t>(x); };
  const long long row_blocks = (static_cast<long long>(a.seqlen_q) + t.block_rows - 1) / t.block_rows;
  const long long keys = (static_cast<long long>(a.seqlen_k) + t.block_cols - 1) / t.block_cols * t.block_cols;
  return saturating_bytes({n(a.batch), n(a.heads), n(row_blocks), n(t.block_rows), n(keys + 1), sizeof(float)});
}

StandardCpuPlan plan_standard_cpu(const DeviceFacts& device, int head_dim) {
  count_plan(plan_counts().tiles);  // standard's tiles, in the CPU form
  if (head_dim < 1 || head_dim > kMaxHeadDim)
    fail(Status::InvalidArgument, "head_dim: must be in 1..", kMaxHeadDim, ", got ", head_dim);
  const CpuShape shape = fit_cpu_shape(device, head_dim, kBlockRows, kBlockCols, 4, device.local_mem_bytes,
                                       standard_cpu_local_bytes, "standard");
  StandardCpuPlan plan;
  plan.tiles = shape.tiles;
  const TilePlan& t = plan.tiles;
  plan.tiles.reason = concat("standard CPU form: one work-item per ", t.block_rows, "-row panel, ", t.block_cols,
                             "-key blocks, float", shape.vector_width, " vectors, ", t.rows_per_team, "x",
                             shape.column_vectors, "-vector P.V register blocks");
  plan.vector_width = shape.vector_width;
  plan.column_vectors = shape.column_vectors;
  return plan;
}

}  // namespace flashcl::detail
