// backward_programs.hpp: the backward's programs and their -D build options, as pure functions of
// the normalised arguments and the planned tiles: the portable program that holds every kernel of
// the standard, fa1 and fa2 backward, the CPU-shaped fa2 backward's (bwd_cpu.cl) and the NVIDIA
// tensor-core program (bwd_mma.cl, with bwd_mma_dq.cl for its dQ pass).
#pragma once

#include "flashcl/flashcl.hpp"
#include "plan/bwd_mma_plan.hpp"
#include "plan/plan_backward.hpp"
#include "plan/plan_bwd_cpu.hpp"
#include "plan/program_choice.hpp"

namespace flashcl::detail {

// The portable backward program for the normalised forward call `a` with the fa1/fa2 tiles `plan`
// (one program for every path: fa2's dQ mode is a kernel argument, so switching path or
// determinism costs no compile); `dbias`: the bias gradient's kernels write dS.
ProgramChoice backward_program(const ForwardArgs& a, bool dbias, const BackwardPlan& plan);

// The CPU-shaped fa2 backward's program (bwd_cpu.cl with bwd_common.cl's preprocess and bias
// kernels) with the shape `cpu`.
ProgramChoice bwd_cpu_program(const ForwardArgs& a, bool dbias, const BwdCpuPlan& cpu);

// The tensor-core backward program for `args` (its forward part normalised) with `plan`'s shape:
// common_options() plus bwd_mma_options().
ProgramChoice bwd_mma_program(const BackwardArgs& args, const BwdMmaPlan& plan);

}  // namespace flashcl::detail
