// call_plan.cpp: a forward call's one plan (call_plan.hpp). The tensor-core candidates come from
// mma_plan.cpp, the portable tiles from tile_planner.cpp, the CPU-shaped fa2's from
// plan_fa2_cpu.cpp; this file decides which of them a call needs, computes each once, and turns
// the chosen tiles into programs (forward_programs.cpp), grids and workspace bytes, so no launcher
// or size query plans again.
#include "plan/call_plan.hpp"

#include <cstdint>

#include "base/saturating.hpp"
#include "plan/forward_programs.hpp"
#include "plan/plan_counts.hpp"
#include "plan/plan_fa2_cpu.hpp"
#include "plan/plan_standard_cpu.hpp"
#include "plan/standard_mma_plan.hpp"

namespace flashcl::detail {
namespace {

std::size_t blocks(std::size_t n, std::size_t block) { return (n + block - 1) / block; }

// The portable planner's request: the caller's forced tile, else FLASHCL_TILE's (fa1 and fa2 only;
// standard's forms come from its own table unless the caller forces one).
PlanRequest portable_request(const ForwardArgs& a, const Overrides& o) {
  PlanRequest r;
  r.algorithm = a.algorithm;
  r.head_dim = a.head_dim;
  r.dtype = a.dtype;
  r.causal = a.causal;
  r.tile = a.tile;
  if (r.tile.block_rows == 0 && r.tile.block_cols == 0 && a.algorithm != Algorithm::Standard)
    r.tile = parse_tile_override(o.tile);
  return r;
}

// scores (one work-group per block of S), the row softmax, P.V (one per block of O)
std::vector<Grid> standard_grids(const ForwardArgs& a, const TilePlan& t) {
  const std::size_t bm = t.block_rows, bn = t.block_cols, wg_x = t.gemm_wg_x, wg_y = t.gemm_wg_y;
  const std::size_t bh = static_cast<std::size_t>(a.batch) * a.heads;
  const std::size_t rows = blocks(a.seqlen_q, bm) * wg_y;
  Grid scores{{blocks(a.seqlen_k, bn) * wg_x, rows, bh}, {wg_x, wg_y, 1}};
  const std::size_t sm = static_cast<std::size_t>(t.softmax_wg);
  Grid softmax{{sm, static_cast<std::size_t>(a.seqlen_q), bh}, {sm, 1, 1}};
  Grid pv{{blocks(a.head_dim, bn) * wg_x, rows, bh}, {wg_x, wg_y, 1}};
  return {scores, softmax, pv};
}

// fa2_cpu.cl (and standard_cpu.cl's three kernels): one single-work-item work-group per (Q block,
// head, batch); each core runs one work-group at a time, so the causal tail is sized for that many
// resident blocks
Grid fa2_cpu_grid(const DeviceFacts& facts, const ForwardArgs& a, const TilePlan& t) {
  const std::size_t q_blocks = blocks(a.seqlen_q, t.block_rows);
  const std::size_t pairs = static_cast<std::size_t>(a.heads) * static_cast<std::size_t>(a.batch);
  Grid grid{{q_blocks, static_cast<std::size_t>(a.heads), static_cast<std::size_t>(a.batch)}, {1, 1, 1}};
  if (a.causal) grid.order_tail = causal_order_tail(facts.compute_units, 1, q_blocks, pairs, 1);
  return grid;
}

}  // namespace

Grid fa2_grid(const DeviceFacts& facts, const ForwardArgs& a, const TilePlan& t) {
  const std::size_t q_blocks = blocks(a.seqlen_q, t.block_rows);
  const std::size_t pairs = static_cast<std::size_t>(a.heads) * static_cast<std::size_t>(a.batch);
  Grid grid{{q_blocks * t.work_group_size, static_cast<std::size_t>(a.heads), static_cast<std::size_t>(a.batch)},
            {t.work_group_size, 1, 1}};
  if (a.causal) grid.order_tail = causal_order_tail(facts.compute_units, t.work_group_size, q_blocks, pairs);
  return grid;
}

CallPlan plan_call(const DeviceFacts& facts, const ForwardArgs& a, const Overrides& o) {
  count_plan(plan_counts().calls);
  CallPlan plan;
  if (mma_may_take(facts, a, o)) {
    // the preferred instruction's plan decides eligibility (a default shape that does not fit
    // leaves the call to the portable kernel); with wgmma first, mma.sync is its fallback
    const bool wgmma = wgmma_wanted(facts, a, o);
    const MmaKind first = wgmma ? MmaKind::Wgmma : MmaKind::MmaSync;
    const TilePlan tiles = plan_for_kind(a, first, o);
    plan.mma_tile_forced = !o.mma_tile.empty();
    if (plan.mma_tile_forced || tiles.local_bytes <= facts.local_mem_bytes) {
      plan.tensor_cores.push_back({first, tiles, fa2_grid(facts, a, tiles), mma_program(a, tiles, first)});
      // FLASHCL_FP8_WGMMA=require: a failed e4m3 wgmma probe is an error, not a fallback to mma.sync
      // FLASHCL_MMA=any (the emulated kernels on PoCL): a failed probe is an error too
      plan.tensor_cores.back().required = (wgmma && is_fp8(a.dtype) && o.fp8_wgmma == "require") || o.mma_any;
      if (wgmma && mma_sync_reads_v(a)) {
        const TilePlan sync = plan_for_kind(a, MmaKind::MmaSync, o);
        plan.tensor_cores.push_back(
            {MmaKind::MmaSync, sync, fa2_grid(facts, a, sync), mma_program(a, sync, MmaKind::MmaSync)});
      }
    }
  }
  const auto n = [](int x) { return static_cast<std::uint64_t>(x); };
  if (fa2_cpu_takes(facts, a, o)) {  // fa2 only
    const Fa2CpuPlan cpu = plan_fa2_cpu(facts, a.head_dim);
    plan.path = ForwardPath::FA2Cpu;
    plan.tiles = cpu.tiles;
    plan.vector_width = cpu.vector_width;
    plan.column_vectors = cpu.column_vectors;
    plan.grids = {fa2_cpu_grid(facts, a, plan.tiles)};
    plan.program = forward_program(plan.path, a, plan.tiles, plan.vector_width, plan.column_vectors);
    return plan;
  }
  if (standard_cpu_takes(facts, a, o)) {  // standard's scores, softmax and P.V on one grid of row panels
    const StandardCpuPlan cpu = plan_standard_cpu(facts, a.head_dim);
    plan.path = ForwardPath::StandardCpu;
    plan.tiles = cpu.tiles;
    plan.vector_width = cpu.vector_width;
    plan.column_vectors = cpu.column_vectors;
    const Grid grid = fa2_cpu_grid(facts, a, plan.tiles);
    plan.grids = {grid, grid, grid};
    plan.workspace_bytes = standard_cpu_workspace_bytes(a, plan.tiles);
    plan.program = forward_program(plan.path, a, plan.tiles, plan.vector_width, plan.column_vectors);
    return plan;
  }
  plan.tiles = plan_tiles(facts, portable_request(a, o));
  switch (a.algorithm) {
    case Algorithm::Standard:  // S, then P in place
      plan.path = ForwardPath::Standard;
      plan.grids = standard_grids(a, plan.tiles);
      plan.workspace_bytes = saturating_bytes({n(a.batch), n(a.heads), n(a.seqlen_q), n(a.seqlen_k), sizeof(float)});
      // on NVIDIA tensor cores the two products run as standard_mma (same S workspace, same softmax)
      if (standard_mma_may_take(facts, a, o)) plan.standard_mma = plan_standard_mma(facts, a, plan.tiles, o);
      break;
    case Algorithm::FA1: {  // O, m, l; one work-group per (head, batch)
      plan.path = ForwardPath::FA1;
      const std::size_t wg = plan.tiles.work_group_size;
      plan.grids = {Grid{{wg, static_cast<std::size_t>(a.heads), static_cast<std::size_t>(a.batch)}, {wg, 1, 1}}};
      plan.workspace_bytes = saturating_bytes(
          {n(a.batch), n(a.heads), n(a.seqlen_q), n(plan.tiles.padded_head_dim) + 2, sizeof(float)});
      break;
    }
    default:
      plan.path = ForwardPath::FA2;
      plan.grids = {fa2_grid(facts, a, plan.tiles)};
      break;
  }
  plan.program = forward_program(plan.path, a, plan.tiles, plan.vector_width, plan.column_vectors);
  return plan;
}

const TilePlan& reported_tiles(const CallPlan& plan) {
  if (!plan.tensor_cores.empty()) return plan.tensor_cores.front().tiles;
  return plan.standard_mma.empty() ? plan.tiles : plan.standard_mma.front().tiles;
}

}  // namespace flashcl::detail
