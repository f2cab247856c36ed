// plan_bwd_cpu.cpp: the CPU-shaped backward's tiles and dQ chunks (see plan_bwd_cpu.hpp).
//  - VW, D_PAD, RM and CG: as the CPU-shaped forward (plan_fa2_cpu), whose register blocks are
//    sized to the same vector registers.
//  - Tiles (BR query rows, BC keys) from kBwdCpuTiles, then halved until the tiles fit the
//    budget: the device's local memory, and on CPUs most of a core's L2 (kCpuTileBytes: 3/4 of
//    1 MiB), since PoCL keeps __local in ordinary memory and one work-item runs per core.
//  - Chunks: each (batch, K/V head) is split into this many work-items (interleaved K/V blocks),
//    each with its own fp32 dQ partial, so that there are at least kWorkItemsPerUnit work-items
//    per compute unit (idle cores at the end of the grid cost more than a partial's zeroing and
//    the fixed-order sum); at most one per K/V block, and the partials at most kMaxPartialBytes.
#include "plan/plan_bwd_cpu.hpp"

#include <algorithm>

#include "base/errors.hpp"
#include "plan/plan_fa2_cpu.hpp"

namespace flashcl::detail {
namespace {

constexpr std::size_t kCpuTileBytes = 768 * 1024;
constexpr int kWorkItemsPerUnit = 4;
constexpr std::uint64_t kMaxPartialBytes = 256ull << 20;

struct TileRow {
  int max_head_dim, block_rows, block_cols;
};

// PoCL 3.1, 2-core EPYC (AVX-512), fp32, B = 1, H = 8, N = 2048, not causal; backward GFLOP/s
// from the CPU time in the kernel's .so (perf samples x 2 cores; docs/perf/pocl-cpu.md). d = 64,
// 64-row Q blocks: 64-key blocks 146, 128 keys 158, 256 keys 169 (128-row Q blocks with 256 keys,
// 656 KiB of tiles: 170, no gain for the memory); keys per block amortise the Q and dO staging,
// which each (Q block, K/V block) pair pays (a fifth of the time at 64 keys). d = 128 (same
// method, one run each, back to back): 64 rows x 128 keys 169, 32 rows x 256 keys 174-178 (754
// KiB of tiles, hence the 768 KiB budget: within a core's 1 MiB L2). d > 128: untuned.
const TileRow kBwdCpuTiles[] = {{64, 64, 256}, {128, 32, 256}, {256, 32, 64}};

const TileRow& tile_row(int head_dim) {
  for (const TileRow& row : kBwdCpuTiles)
    if (head_dim <= row.max_head_dim) return row;
  return kBwdCpuTiles[sizeof kBwdCpuTiles / sizeof kBwdCpuTiles[0] - 1];
}

}  // namespace

bool bwd_cpu_takes(const DeviceFacts& device, const ForwardArgs& a, const Overrides& o) {
  if (a.algorithm != Algorithm::FA2) return false;
  if (a.dtype != DType::F32 && a.dtype != DType::F16 && a.dtype != DType::BF16) return false;
  if (o.bwd_cpu == "0") return false;
  return o.bwd_cpu == "1" || device.kind == DeviceKind::CPU;
}

std::size_t bwd_cpu_local_bytes(int block_rows, int block_cols, int padded_head_dim) {
  const std::size_t br = block_rows, bc = block_cols, d = padded_head_dim;
  return sizeof(float) * (2 * br * d + 5 * bc * d + 2 * br * bc + 2 * br);
}

BwdCpuPlan plan_bwd_cpu(const DeviceFacts& device, const ForwardArgs& a) {
  const Fa2CpuPlan fwd = plan_fa2_cpu(device, a.head_dim);  // VW, D_PAD, RM, CG (and the head-dim check)
  BwdCpuPlan plan;
  plan.vector_width = fwd.vector_width;
  plan.column_vectors = fwd.column_vectors;
  plan.rows_per_block = fwd.tiles.rows_per_team;
  plan.padded_head_dim = fwd.tiles.padded_head_dim;
  const int vw = plan.vector_width, rm = plan.rows_per_block, d_pad = plan.padded_head_dim;
  // BC stays a multiple of the key vectors a register block takes (min(4, BC / VW) of VW keys)
  const int min_bc = std::max(vw, rm);
  int br = tile_row(a.head_dim).block_rows, bc = std::max(tile_row(a.head_dim).block_cols, min_bc);
  std::size_t budget = device.local_mem_bytes;
  if (device.kind == DeviceKind::CPU) budget = std::min(budget, kCpuTileBytes);
  while (bwd_cpu_local_bytes(br, bc, d_pad) > budget) {
    if (br > rm)
      br /= 2;
    else if (bc > min_bc)
      bc /= 2;
    else
      fail(Status::OutOfResources, "head_dim: the CPU-shaped backward with d=", a.head_dim, " needs ",
           bwd_cpu_local_bytes(br, bc, d_pad), " bytes of local memory, the device has ", budget);
  }
  plan.block_rows = br;
  plan.block_cols = bc;
  plan.local_bytes = bwd_cpu_local_bytes(br, bc, d_pad);

  const int heads_kv = a.heads_kv != 0 ? a.heads_kv : a.heads;
  const std::uint64_t pairs = static_cast<std::uint64_t>(std::max(a.batch, 1)) * std::max(heads_kv, 1);
  const std::uint64_t units = static_cast<std::uint64_t>(std::max(device.compute_units, 1));
  const std::uint64_t kv_blocks = (static_cast<std::uint64_t>(std::max(a.seqlen_k, 1)) + bc - 1) / bc;
  std::uint64_t chunks = std::min((kWorkItemsPerUnit * units + pairs - 1) / pairs, kv_blocks);
  // one partial is B·H·Nq·D_PAD floats (varlen: no more than that bound)
  const std::uint64_t partial = static_cast<std::uint64_t>(std::max(a.batch, 1)) * a.heads *
                                std::max(a.seqlen_q, 1) * d_pad * sizeof(float);
  while (chunks > 1 && chunks * partial > kMaxPartialBytes) --chunks;
  plan.chunks = static_cast<int>(std::max<std::uint64_t>(chunks, 1));
  plan.reason = concat("backward CPU form: one work-item per ", bc, "-key block chunk (", plan.chunks,
                       " chunks per K/V head), ", br, "-row Q blocks, float", vw, " vectors, ", rm, "x",
                       plan.column_vectors, "-vector register blocks (tiles within ", budget, " bytes)");
  return plan;
}

}  // namespace flashcl::detail
