// call_plan.hpp: the one plan of a forward call, made once from the validated arguments, the
// device's facts and the overrides, before any program is built or kernel enqueued: which path
// runs (the tensor-core candidates first, in order, then the portable or CPU-shaped kernel they
// fall back to), its tiles and work-group shape, the program each runs with its build options, the
// grid of each kernel, and the workspace bytes.
// The size queries (workspace_bytes, device_bytes, tile_info) read the same value. A pure
// function, so tests plan for simulated devices; plan_counts.hpp counts it.
#pragma once

#include <cstddef>
#include <vector>

#include "flashcl/flashcl.hpp"
#include "plan/device_facts.hpp"
#include "plan/mma_plan.hpp"
#include "plan/overrides.hpp"
#include "plan/program_choice.hpp"
#include "plan/tile_planner.hpp"

namespace flashcl::detail {

// The kernels that run when no tensor-core candidate does.
enum class ForwardPath { Standard, StandardCpu, FA1, FA2, FA2Cpu };

// One kernel's NDRange, and the causal dispatch tail its AttnArgs carry (common.cl's
// block_coordinates; 0 when not causal or nothing to reorder).
struct Grid {
  std::size_t global[3] = {1, 1, 1};
  std::size_t local[3] = {1, 1, 1};
  int order_tail = 0;
};

// A tensor-core shape the launcher may run once its probe passes on the device.
struct MmaCandidate {
  MmaKind kind = MmaKind::MmaSync;
  TilePlan tiles;
  Grid grid;
  ProgramChoice program;  // fa2_mma.cl over its operand file, with this shape's options
  // FLASHCL_FP8_WGMMA=require on the e4m3 wgmma candidate (tests, A/B runs): a failed probe is an
  // error, not a silent fallback to mma.sync
  bool required = false;
};

// The standard path on NVIDIA tensor cores (standard_mma_plan.hpp), tried before the portable
// standard once its one-time probe passed on the device (launch_standard_mma.cpp).
struct StandardMmaCandidate {
  TilePlan tiles;           // block_rows x block_cols per product step, work-group, __local bytes
  int score_blocks = 1;     // key blocks of block_cols per scores work-group
  std::vector<Grid> grids;  // scores, softmax, P.V
  ProgramChoice program;    // standard_mma_f16 or standard_mma_tf32 with its -D options
  bool required = false;    // FLASHCL_STANDARD_MMA=1: a failed probe is an error, not a fallback (tests, benches)
};

struct CallPlan {
  // Tried first, in this order (wgmma, then mma.sync), each after its one-time probe
  // (launch_fa2_mma.cpp); empty when the call or device does not qualify (mma_plan.hpp).
  std::vector<MmaCandidate> tensor_cores;
  std::vector<StandardMmaCandidate> standard_mma;  // algorithm standard: at most one, tried before `path`
  bool mma_tile_forced = false;  // FLASHCL_MMA_TILE: a candidate that does not fit is an error, not a fallback
  ForwardPath path = ForwardPath::FA2;
  TilePlan tiles;                           // path's tiles and work-group shape
  int vector_width = 0, column_vectors = 0;  // FA2Cpu, StandardCpu: VW and CG (plan_fa2_cpu.hpp)
  std::vector<Grid> grids;                  // path's kernels: standard's scores, softmax, P.V; else one
  ProgramChoice program;                    // path's program and its -D options (forward_programs.hpp)
  std::size_t workspace_bytes = 0;          // scratch the path needs (standard: S; fa1: O, m, l)
};

// The plan of a normalised call (normalize_shape: algorithm concrete, strides resolved). Throws
// Error(InvalidArgument) for a forced tile the kernels cannot run, Error(OutOfResources) when
// nothing fits the device.
CallPlan plan_call(const DeviceFacts& facts, const ForwardArgs& args, const Overrides& overrides);

// The tiles tile_info() reports: the first tensor-core candidate's (fa2's, else standard's), else the path's.
const TilePlan& reported_tiles(const CallPlan& plan);

// fa2's grid (the team, tensor-core and probe kernels): one work-group per (Q block, head, batch).
Grid fa2_grid(const DeviceFacts& facts, const ForwardArgs& args, const TilePlan& tiles);

}  // namespace flashcl::detail
