// tile_planner.hpp: the pure functions from device facts and problem to tile sizes, work-group
// shape and the causal dispatch tail. No OpenCL calls, so tests can plan for simulated devices.
#pragma once

#include <cstddef>
#include <string>

#include "plan/device_facts.hpp"
#include "flashcl/flashcl.hpp"

namespace flashcl::detail {

struct PlanRequest {
  Algorithm algorithm = Algorithm::FA2;  // Standard, FA1 or FA2 (Auto is resolved before)
  int head_dim = 64;
  DType dtype = DType::F32;
  bool causal = false;
  TileOverride tile;  // forced sizes (0 = planner's choice)
};

struct TilePlan {
  int block_rows = 0;      // Br (fa1/fa2) or GEMM tile edge (standard)
  int block_cols = 0;      // Bc (fa1/fa2) or GEMM tile edge (standard)
  int rows_per_team = 0;   // TM: query rows each team owns
  int team_size = 0;       // TPR: work-items sharing those rows
  int padded_head_dim = 0; // D_PAD
  int softmax_wg = 0;      // standard: work-items per softmax row
  int softmax_vw = 1;      // standard: elements each softmax work-item takes per step (vector width)
  // standard: the register-blocked GEMM of kernels/forward/gemm.cl, a gemm_wg_x x gemm_wg_y work-group whose
  // work-items own gemm_rm rows x gemm_rn columns each (block_rows x block_cols of the output) and
  // stage gemm_kp-long contraction panels, A transposed (gemm_a_t = 1) or as rows
  int gemm_wg_x = 0, gemm_wg_y = 0, gemm_rm = 0, gemm_rn = 0, gemm_kp = 0, gemm_a_t = 1;
  int stages = 1;            // K/V buffers (the tensor-core fa2)
  bool lazy_rescale = true;  // tensor-core fa2: rescale O only when a row's reference max moved
  bool q_local = false;      // tensor-core fa2, e4m3: Q's fragments read from __local memory (-DQ_LOCAL=1)
  bool softcap_ex2 = false;  // tensor-core fa2, 16 bits: the softcap's tanh in mma_ptx.cl's ex2 form (-DSOFTCAP_EX2=1)
  std::size_t work_group_size = 0;
  std::size_t local_bytes = 0;  // __local memory the kernel declares
  std::string reason;           // why these sizes
};

// Plans tiles; throws Error(OutOfResources) when nothing fits the device and
// Error(InvalidArgument) for an override the kernels cannot run.
TilePlan plan_tiles(const DeviceFacts& device, const PlanRequest& request);

// __local bytes an fa1/fa2 kernel with these sizes declares.
std::size_t flash_local_bytes(Algorithm algorithm, int block_rows, int block_cols, int team_size, int padded_head_dim);

// (batch, head) pairs whose Q blocks end a causal fa2 grid interleaved, longest first (common.cl's
// block_coordinates): enough for about two waves of work-groups, taking `items_per_unit` resident
// work-items per compute unit, so no compute unit is left running one long block while the
// others idle. At most `pairs`; 0 when a pair has a single Q block (nothing to reorder).
int causal_order_tail(int compute_units, std::size_t work_group_size, std::size_t q_blocks, std::size_t pairs,
                      std::size_t items_per_unit = 256);

// FLASHCL_TILE's text (Overrides::tile), "BRxBC" or "BRxBCxTPRxTM", parsed into an override (empty
// text: none); bad text is InvalidArgument naming FLASHCL_TILE.
TileOverride parse_tile_override(const std::string& text);

}  // namespace flashcl::detail
