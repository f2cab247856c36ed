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

namespace flashcl::detail {
namespace {

// PoCL 3.1, 2-core EPYC (AVX-512), fp32, B = 1, H = 8, N = 2048: docs/perf/pocl-cpu.md, standard.
constexpr int kBlockRows = 64, kBlockCols = 64;

int vector_width(const DeviceFacts& device) {
  return device.float_vector_width >= 16 ? 16 : device.float_vector_width >= 8 ? 8 : 4;
}

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
  StandardCpuPlan plan;
  const int vw = vector_width(device);
  int dv = (head_dim + vw - 1) / vw, cg = dv;
  if (dv > 5) {  // as fa2_cpu: whole groups of 3 or 4 column vectors
    if (dv % 4 != 0 && dv % 3 != 0) dv = (dv + 3) / 4 * 4;
    cg = dv % 4 == 0 ? 4 : 3;
  }
  const int rm = vw >= 16 ? 4 : 2, d_pad = dv * vw;
  int br = kBlockRows, bc = kBlockCols;
  while (standard_cpu_local_bytes(br, bc, d_pad) > device.local_mem_bytes) {
    if (bc > 4)
      bc /= 2;
    else if (br > rm)
      br /= 2;
    else
      fail(Status::OutOfResources, "head_dim: the CPU-shaped standard with d=", head_dim, " needs ",
           standard_cpu_local_bytes(br, bc, d_pad), " bytes of local memory, the device has ",
           device.local_mem_bytes);
  }
  TilePlan& t = plan.tiles;
  t.block_rows = br;
  t.block_cols = bc;
  t.rows_per_team = rm;
  t.team_size = 1;
  t.padded_head_dim = d_pad;
  t.work_group_size = 1;
  t.local_bytes = standard_cpu_local_bytes(br, bc, d_pad);
  t.reason = concat("standard CPU form: one work-item per ", br, "-row panel, ", bc, "-key blocks, float", vw,
                    " vectors, ", rm, "x", cg, "-vector P.V register blocks");
  plan.vector_width = vw;
  plan.column_vectors = cg;
  return plan;
}

}  // namespace flashcl::detail
