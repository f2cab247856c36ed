// backward_problem.hpp: one validated backward call (the forward's validated Problem plus the
// gradients, the kernels' second argument block, the tile plan and the workspace layout), the
// validation that builds it and the launchers that enqueue it.
#pragma once

#include <CL/cl.h>

#include <cstdint>
#include <initializer_list>
#include <vector>

#include "attn_args.h"
#include "bwd_args.h"
#include "plan/backward_programs.hpp"
#include "plan/plan_backward.hpp"
#include "plan/plan_bwd_cpu.hpp"
#include "validate/problem.hpp"
#include "base/saturating.hpp"

namespace flashcl::detail {

static_assert(sizeof(BwdArgs) == FLASHCL_BWD_ARGS_SIZE, "BwdArgs layout must match the kernels'");

// Where each region of the fp32 workspace starts (in floats) and its total size in bytes.
struct BackwardWorkspace {
  std::int64_t d = 0;      // D = rowsum(dO ∘ O), one float per LSE row
  std::int64_t dq = 0;     // fp32 dQ accumulator, HEAD_DIM floats per LSE row (fa2 atomic, fa1); the
                           // CPU form: `dq_chunks` partials of D_PAD floats per LSE row, dq_chunk_stride apart
  std::int64_t dq_chunk_stride = 0;
  std::int64_t p = 0;      // standard: P, (B·H, Nq, Nk)
  std::int64_t ds = 0;     // standard: dS, (B·H, Nq, Nk)
  std::int64_t dbias = 0;  // broadcast d_bias: per-(batch, head) dS, dense (B, H, Nq, Nk)
  std::size_t bytes = 0;
};

// The layout for a normalised forward call; `lse_rows` is B·H·Nq, or H·total_q with varlen.
// `dq_pass`: dQ is written whole by a pass of its own (a deterministic call, or the tensor cores'
// dQ pass: bwd_mma_takes_dq), so fa2 needs no fp32 accumulator. `cpu`: the CPU-shaped backward's
// plan when it takes the call (its dQ partials replace the accumulator).
BackwardWorkspace backward_workspace_layout(const ForwardArgs& forward, std::uint64_t lse_rows, bool dq_pass,
                                            bool dbias_broadcast, const BwdCpuPlan* cpu = nullptr);

struct BackwardProblem {
  Problem forward;               // the forward call, validated: args resolved, AttnArgs for the kernels
  BackwardArgs args;             // gradients' strides resolved; d_bias resolved (kind None when off)
  BwdArgs kernel_args{};         // the kernels' second argument block (workspace offsets included)
  bool dbias_broadcast = false;  // d_bias broadcasts over batch or heads: dS goes to the workspace first
  BackwardPlan plan;             // fa1/fa2 tiles
  BwdCpuPlan cpu;                // the CPU-shaped backward (bwd_cpu.cl) when cpu.chunks > 0
  BackwardWorkspace workspace;
};

// Checks every argument of a backward call before anything is enqueued: the forward's own
// validation (validate()), then the gradients (shapes, strides, buffers, dtype), the LSE, d_bias,
// aliasing of outputs with inputs and the workspace. Throws Error naming the parameter.
BackwardProblem validate_backward(cl_command_queue queue, const BackwardArgs& args,
                                  const std::vector<cl_event>& wait = {});

// The per-path launchers (backward.cpp): enqueue the programs of the call's plan
// (plan_backward_programs) after `wait`, record events in `launch`.
void launch_backward(cl_command_queue queue, const BackwardProblem& bp, const BackwardPrograms& programs,
                     cl_mem workspace, const std::vector<cl_event>& wait, Launch& launch);

// The CPU-shaped fa2 backward (launch_bwd_cpu.cpp), the whole call when bp.cpu.chunks > 0, with
// its planned program.
void launch_bwd_cpu(cl_command_queue queue, const BackwardProblem& bp, const ProgramChoice& program, cl_mem workspace,
                    const std::vector<cl_event>& wait, Launch& launch);

// fa2's dK/dV (and dQ) step on NVIDIA tensor cores (launch_bwd_mma.cpp) as `mma` plans it:
// enqueued after `launch`'s last event with `kernel_args` when it is eligible and the device's
// probe passed; dQ by the dQ pass (mma.writes_dq: the caller set dq_mode 0) written in its dtype by
// bwd_mma_dq, or by atomic adds into the accumulator (dq_mode 1). False (nothing enqueued)
// otherwise, so the caller runs bwd_dkdv (and bwd_dq; with writes_dq and a failed probe, bwd_dq
// writes dQ instead).
bool try_launch_bwd_mma(cl_command_queue queue, const BackwardProblem& bp, const BwdMmaChoice& mma, cl_mem workspace,
                        const BwdArgs& kernel_args, Launch& launch);

}  // namespace flashcl::detail
