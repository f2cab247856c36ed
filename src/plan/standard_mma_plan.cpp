// standard_mma_plan.cpp: the shape, grids and program of the standard path on NVIDIA tensor cores
// (standard_mma_plan.hpp). The shapes follow the tensor-core fa2's (mma_plan.cpp) register
// budgets: two 16-row m-tiles a warp where the accumulators allow, 32-key blocks at d = 128 (P.V
// holds 128 accumulators and a block of P a lane) and for 3xTF32 (two fp32 buffers of 64 keys at
// d = 128 would pass OpenCL's 48 KiB). Not yet measured on a GPU: docs/perf/nvidia-h200.md,
// "standard on the tensor cores: the prediction".
#include "plan/standard_mma_plan.hpp"

#include <algorithm>
#include <string>

#include "base/errors.hpp"
#include "plan/forward_programs.hpp"
#include "plan/head_dims.hpp"
#include "plan/mma_plan.hpp"

namespace flashcl::detail {
namespace {

std::size_t blocks(std::size_t n, std::size_t block) { return (n + block - 1) / block; }

struct StandardMmaShape {
  int warps, m_tiles, block_cols, score_blocks;  // score_blocks x block_cols = 256 keys per scores work-group
};

StandardMmaShape shape_for(const ForwardArgs& a) {
  if (is_tf32(a)) return a.head_dim <= 64 ? StandardMmaShape{4, 2, 32, 8} : StandardMmaShape{4, 1, 32, 8};
  return a.head_dim <= 64 ? StandardMmaShape{4, 2, 64, 4} : StandardMmaShape{4, 2, 32, 8};
}

// Rows of up to SOFTMAX_WG x SOFTMAX_REGS keys are held in registers by the softmax (standard_softmax.cl:
// S read once instead of three times, the same bits): 32 a work-item (4096 keys with NVIDIA's 128
// work-items a row), 64 for rows up to twice that (no spills either way: bench/gpu/ptxas_regs.py);
// longer rows take its loops.
std::string softmax_regs_option(const ForwardArgs& a, const TilePlan& portable) {
  if (portable.softmax_vw != 1) return "";
  const long long per_item = 32, rows_of_32 = per_item * portable.softmax_wg;
  return a.seqlen_k > rows_of_32 && a.seqlen_k <= 2 * rows_of_32 ? " -DSOFTMAX_REGS=64" : " -DSOFTMAX_REGS=32";
}

}  // namespace

bool standard_mma_may_take(const DeviceFacts& facts, const ForwardArgs& a, const Overrides& o) {
  if (o.mma_off || o.standard_mma == "0") return false;
  if (a.algorithm != Algorithm::Standard || a.head_dim > kMaxMmaHeadDim || a.tile.block_rows != 0 ||
      a.tile.block_cols != 0)
    return false;
  // every variant: the scores go through common.cl's final_score as on the portable path
  if (a.dtype != DType::F32 && a.dtype != DType::F16 && a.dtype != DType::BF16) return false;
  // FLASHCL_STANDARD_MMA=1 asks for it on any device: elsewhere its probe fails (an error then),
  // unless FLASHCL_KERNEL_DIR gives the operand files an emulation (tests/emulated_mma/: how the
  // kernels' indexing is checked on PoCL)
  if (o.standard_mma == "1") return true;
  return facts.is_nvidia() && facts.kind == DeviceKind::GPU && facts.nv_compute_major >= 8;
}

std::vector<StandardMmaCandidate> plan_standard_mma(const DeviceFacts& facts, const ForwardArgs& a,
                                                    const TilePlan& portable, const Overrides& o) {
  const StandardMmaShape s = shape_for(a);
  // the operand files' padded head dim and __local row pitches (mma_half_io.cl + mma_f16.cl, mma_tf32.cl)
  const bool tf32 = is_tf32(a);
  const Tf32Tiles t = tf32_tiles(a.head_dim);
  const int d = tf32 ? t.padded_head_dim : (a.head_dim + 15) / 16 * 16;
  const int k_pitch = tf32 ? t.k_pitch : d + 8, v_pitch = tf32 ? t.v_pitch : d + 8;
  const std::size_t elem = tf32 ? 4 : 2;
  StandardMmaCandidate c;
  c.tiles.block_rows = 16 * s.m_tiles * s.warps;
  c.tiles.block_cols = s.block_cols;
  c.tiles.rows_per_team = 16 * s.m_tiles;
  c.tiles.team_size = 32;
  c.tiles.padded_head_dim = d;
  c.tiles.softmax_wg = portable.softmax_wg;
  c.tiles.softmax_vw = portable.softmax_vw;
  c.tiles.stages = 2;
  c.tiles.work_group_size = 32 * static_cast<std::size_t>(s.warps);
  // two K buffers (scores) or two V buffers (P.V); the softmax's reduction array is smaller
  c.tiles.local_bytes = std::max(2 * s.block_cols * k_pitch * elem, 2 * s.block_cols * v_pitch * elem);
  c.tiles.reason = concat("standard on tensor cores: ", s.warps, " warps x ", 16 * s.m_tiles, " rows, ",
                          s.block_cols, " keys per block, ", s.score_blocks * s.block_cols,
                          " keys per scores work-group, ", tf32 ? "mma.sync.m16n8k8 3xTF32" : "mma.sync.m16n8k16",
                          "; softmax ", portable.softmax_wg, " work-items x ", portable.softmax_vw, " per row");
  if (c.tiles.local_bytes > facts.local_mem_bytes) return {};
  c.score_blocks = s.score_blocks;
  c.required = o.standard_mma == "1";

  const std::size_t wg = c.tiles.work_group_size, bh = static_cast<std::size_t>(a.batch) * a.heads;
  const std::size_t q_blocks = blocks(a.seqlen_q, c.tiles.block_rows);
  const std::size_t key_groups = blocks(blocks(a.seqlen_k, s.block_cols), s.score_blocks);
  const std::size_t sm = static_cast<std::size_t>(portable.softmax_wg);
  c.grids = {Grid{{key_groups * wg, q_blocks, bh}, {wg, 1, 1}},                           // scores
             Grid{{sm, static_cast<std::size_t>(a.seqlen_q), bh}, {sm, 1, 1}},           // softmax, as portable
             Grid{{q_blocks * wg, 1, bh}, {wg, 1, 1}}};                                  // P.V
  c.program = choose_program(
      tf32 ? programs::standard_mma_tf32 : programs::standard_mma_f16,
      concat(common_options(a), " -DWARPS=", s.warps, " -DMT=", s.m_tiles, " -DBC=", s.block_cols,
             " -DSCORE_BLOCKS=", s.score_blocks, " -DVEC_LOAD=", rows_are_16_byte_aligned(a) ? 1 : 0,
             " -DPAIR_IO=", rows_are_pair_aligned(a) ? 1 : 0, " -DSOFTMAX_WG=", portable.softmax_wg,
             " -DSOFTMAX_VW=", portable.softmax_vw, softmax_regs_option(a, portable)));
  return {c};
}

}  // namespace flashcl::detail
