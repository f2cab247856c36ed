// plan_fa2_cpu.cpp: the CPU-shaped fa2's tiles and register blocks (see plan_fa2_cpu.hpp).
//  - Vector width VW: the device's preferred float width (16 on AVX-512, 8 on AVX2), 4 at least.
//  - Register blocks sized to the vector registers: with 32 (VW = 16) 4 keys x RM = 4 row vectors
//    of scores (64 rows in the lanes) and 4 rows x CG <= 5 column vectors of O, about 26 live
//    vectors in P.V; with 16 registers (narrower vectors) RM = 2.
//  - Head dim padded to whole vectors; past 5 vectors, to a multiple of 3 or 4 so CG divides it.
//  - Tiles (BR rows per work-item, BC keys per staged block) from a per-class table, then halved
//    until the four tiles fit the budget: the device's local memory, and on CPUs a core's share of
//    L2 (kCpuTileBytes: half of 1 MiB), since PoCL keeps __local in ordinary memory.
#include "plan/plan_fa2_cpu.hpp"

#include <algorithm>

#include "base/errors.hpp"
#include "plan/head_dims.hpp"
#include "plan/plan_counts.hpp"

namespace flashcl::detail {
namespace {

constexpr std::size_t kCpuTileBytes = 512 * 1024;

struct TileRow {
  int max_head_dim, block_rows, block_cols;
};

// PoCL 3.1, 2-core EPYC (AVX-512), fp32, B = 1, H = 8, N = 2048, GFLOP/s from the CPU time spent
// in the kernel (perf samples, x 2 cores; docs/perf/pocl-cpu.md): d = 64 with 64 rows per
// work-item ~90 (before V was read in place), 128 rows 96, 256 rows 113; d = 128 with 128 rows 101,
// 256 rows 122. Rows per work-item amortised the transposed staging of K then (a quarter of the
// kernel's time at 64 rows); since scores are K.Q^T (Q transposed once per work-group) they
// amortise that transpose and the K/V blocks' passes through the cache. Rechecked with that form
// (d = 64, N = 2048, non-causal / causal, one run each, load 4-6): 128 rows 162 / 159, 512 rows
// 171 / 158, 256 rows x 128 keys 173 / 156, 256 x 64 174 / 163: the rows stay.
const TileRow kCpuTiles[] = {{64, 256, 64}, {128, 256, 64}, {256, 128, 64}};
// Other devices (the oclgrind checks): the same rows; the budget halves them to fit.
const TileRow* tile_row(int head_dim) {
  for (const TileRow& row : kCpuTiles)
    if (head_dim <= row.max_head_dim) return &row;
  return &kCpuTiles[sizeof kCpuTiles / sizeof kCpuTiles[0] - 1];
}

int vector_width(const DeviceFacts& device) {
  return device.float_vector_width >= 16 ? 16 : device.float_vector_width >= 8 ? 8 : 4;
}

}  // namespace

bool fa2_cpu_takes(const DeviceFacts& device, const ForwardArgs& a, const Overrides& o) {
  if (a.algorithm != Algorithm::FA2 && a.algorithm != Algorithm::Auto) return false;
  if (a.tile.block_rows != 0 || a.tile.block_cols != 0 || !o.tile.empty()) return false;
  // fp8 inputs too (staged dequantised, docs/FP8.md), but not a transposed V: its rows are columns
  if (is_fp8(a.dtype) && a.fp8.v_transposed) return false;
  if (o.fa2_cpu == "0") return false;
  return o.fa2_cpu == "1" || device.kind == DeviceKind::CPU;
}

std::size_t fa2_cpu_local_bytes(int block_rows, int block_cols, int padded_head_dim) {
  return (2 * static_cast<std::size_t>(block_rows) + 2 * static_cast<std::size_t>(block_cols)) * padded_head_dim *
         sizeof(float);
}

CpuShape fit_cpu_shape(const DeviceFacts& device, int head_dim, int block_rows, int block_cols, int min_block_cols,
                       std::size_t budget, std::size_t (*local_bytes)(int, int, int), const char* form) {
  const int vw = vector_width(device);
  int dv = (head_dim + vw - 1) / vw, cg = dv;
  if (dv > 5) {
    if (dv % 4 != 0 && dv % 3 != 0) dv = (dv + 3) / 4 * 4;
    cg = dv % 4 == 0 ? 4 : 3;
  }
  const int rm = vw >= 16 ? 4 : 2, d_pad = dv * vw;
  int br = block_rows, bc = block_cols;
  while (local_bytes(br, bc, d_pad) > budget) {
    if (bc > min_block_cols)
      bc /= 2;
    else if (br > rm)
      br /= 2;
    else
      fail(Status::OutOfResources, "head_dim: the CPU-shaped ", form, " with d=", head_dim, " needs ",
           local_bytes(br, bc, d_pad), " bytes of local memory, the device has ", budget);
  }
  CpuShape shape;
  TilePlan& t = shape.tiles;
  t.block_rows = br;
  t.block_cols = bc;
  t.rows_per_team = rm;
  t.team_size = 1;
  t.padded_head_dim = d_pad;
  t.work_group_size = 1;
  t.local_bytes = local_bytes(br, bc, d_pad);
  shape.vector_width = vw;
  shape.column_vectors = cg;
  return shape;
}

Fa2CpuPlan plan_fa2_cpu(const DeviceFacts& device, int head_dim) {
  count_plan(plan_counts().fa2_cpu);
  if (head_dim < 1 || head_dim > kMaxHeadDim)
    fail(Status::InvalidArgument, "head_dim: must be in 1..", kMaxHeadDim, ", got ", head_dim);
  const TileRow* row = tile_row(head_dim);
  std::size_t budget = device.local_mem_bytes;
  if (device.kind == DeviceKind::CPU) budget = std::min(budget, kCpuTileBytes);
  // BC stays a multiple of the key vectors a register block takes (min(4, BC / VW) of VW keys)
  const int vw = vector_width(device);
  const CpuShape shape =
      fit_cpu_shape(device, head_dim, row->block_rows, row->block_cols, vw, budget, fa2_cpu_local_bytes, "fa2");
  Fa2CpuPlan plan;
  plan.tiles = shape.tiles;
  const TilePlan& t = plan.tiles;
  plan.tiles.reason = concat("fa2 CPU form: one work-item per ", t.block_rows, " rows, ", t.block_cols,
                             "-key blocks, float", shape.vector_width, " vectors, ", t.rows_per_team, "x",
                             shape.column_vectors, "-vector register blocks (tiles within ", budget, " bytes)");
  plan.vector_width = shape.vector_width;
  plan.column_vectors = shape.column_vectors;
  return plan;
}

}  // namespace flashcl::detail
