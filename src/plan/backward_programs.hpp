// backward_programs.hpp: the backward call's programs and their -D build options, planned once
// per call from the normalised arguments, the device's facts, the planned tiles and the overrides:
// the portable program that holds every kernel of the standard, fa1 and fa2 backward, the
// CPU-shaped fa2 backward's (bwd_cpu.cl) and whether the NVIDIA tensor-core program (bwd_mma.cl,
// with bwd_mma_dq.cl for its dQ pass) is tried, with its shape. Pure functions; the launchers
// (backward.cpp, launch_bwd_cpu.cpp, launch_bwd_mma.cpp) only read them.
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

// The programs of bwd_mma_dkdv and bwd_mma_dq for `args` (its forward part normalised) and `plan`:
// programs.txt's bwd_mma_f16 with common_options() plus bwd_mma_options() for both, or,
// for the kernels on wgmma (BwdWgmmaKernels), programs.txt's bwd_mma_wgmma through
// retargeted PTX with the same options (plus -DWGMMA_DKDV=1 where its dK/dV kernel is the one run,
// -DDQ_OVERLAP=1 where plan.dq_overlap); one program where both run on wgmma.
struct BwdMmaPrograms {
  ProgramChoice dkdv, dq;
  bool shared = true;  // dkdv and dq are one program (same files and options): built once for both kernels
};
BwdMmaPrograms bwd_mma_kernel_programs(const BackwardArgs& args, const BwdMmaPlan& plan, bool dkdv_wgmma,
                                       bool dq_wgmma);

// The tensor-core backward of a call: tried (after its device probe) when `eligible`.
struct BwdMmaChoice {
  bool eligible = false;  // bwd_mma_eligible: the call, the device and FLASHCL_BWD_MMA allow it
  bool required = false;  // FLASHCL_BWD_MMA=1: a failed probe is an error, not a fallback
  bool writes_dq = false;  // eligible, and bwd_mma_dq writes dQ (bwd_mma_writes_dq): no fp32 accumulator
  bool vec_load = false;   // 16-byte copies (bwd_mma_vec_load), which the probe's problem copies likewise
  bool dq_wgmma = false;    // bwd_mma_dq on wgmma (BwdWgmmaKernels::dq: FLASHCL_BWD_WGMMA 1, dq or overlap, cc 9.0)
  bool dkdv_wgmma = false;  // bwd_mma_dkdv on wgmma too (BwdWgmmaKernels::dkdv: FLASHCL_BWD_WGMMA 1 or overlap)
  BwdMmaPlan shape;       // (when eligible)
  ProgramChoice program;  // bwd_mma_dkdv's (when eligible)
  ProgramChoice dq_program;  // bwd_mma_dq's (where writes_dq): `program` unless only the dQ pass is on wgmma
};
BwdMmaChoice plan_bwd_mma(const DeviceFacts& facts, const BackwardArgs& args, const Overrides& o);

struct BackwardPrograms {
  ProgramChoice portable;      // standard, fa1, fa2 (bwd_common.cl, bwd_flash.cl, bwd_standard.cl)
  ProgramChoice cpu;           // the CPU-shaped fa2 backward, when its plan takes the call (else empty)
  BwdMmaChoice tensor_cores;   // fa2 on NVIDIA tensor cores, tried first when eligible
};

// The programs of a backward call: `args` with its forward part normalised, the fa1/fa2 tiles
// `tiles` and the CPU-shaped backward's plan `cpu` (cpu.chunks 0: not taken).
BackwardPrograms plan_backward_programs(const DeviceFacts& facts, const BackwardArgs& args, const BackwardPlan& tiles,
                                        const BwdCpuPlan& cpu, const Overrides& o);

}  // namespace flashcl::detail
