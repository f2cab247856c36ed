// backward_programs.cpp: the backward's programs and -D options (backward_programs.hpp), byte for
// byte the strings the launchers composed before (tests/data/plan_options.txt), and which of them a
// call runs.
#include "plan/backward_programs.hpp"

#include "plan/forward_programs.hpp"

namespace flashcl::detail {

ProgramChoice backward_program(const ForwardArgs& a, bool dbias, const BackwardPlan& plan) {
  std::string options = common_options(a);
  if (dbias) options += " -DDBIAS=1";
  return choose_program(programs::backward, options + concat(" -DBR=", plan.block_rows, " -DBC=", plan.block_cols,
                                                             " -DBWD_WG=", plan.work_group_size));
}

ProgramChoice bwd_cpu_program(const ForwardArgs& a, bool dbias, const BwdCpuPlan& c) {
  std::string options = common_options(a);
  if (dbias) options += " -DDBIAS=1";
  return choose_program(programs::bwd_cpu,
                        options + concat(" -DD_PAD=", c.padded_head_dim, " -DBR=", c.block_rows, " -DBC=", c.block_cols,
                                         " -DRM=", c.rows_per_block, " -DCG=", c.column_vectors, " -DVW=", c.vector_width));
}

BwdMmaPrograms bwd_mma_kernel_programs(const BackwardArgs& args, const BwdMmaPlan& plan, bool dkdv_wgmma,
                                       bool dq_wgmma) {
  // composed once: every form below is these options over one of the two file lists
  const std::string options = common_options(args.forward) + bwd_mma_options(args, plan);
  BwdMmaPrograms p;
  const auto& mma_sync = args.forward.dtype == DType::F32 ? programs::bwd_mma_tf32 : programs::bwd_mma_f16;
  p.dkdv = dkdv_wgmma ? choose_program(programs::bwd_mma_wgmma, options + " -DWGMMA_DKDV=1", true)
                      : choose_program(mma_sync, options);
  p.shared = !dq_wgmma || dkdv_wgmma;  // only a dQ pass alone on wgmma needs a program of its own
  p.dq = p.shared ? p.dkdv : choose_program(programs::bwd_mma_wgmma, options, true);
  if (dq_wgmma && plan.dq_overlap) {
    p.dq.options += " -DDQ_OVERLAP=1";
    if (p.shared) p.dkdv = p.dq;
  }
  return p;
}

BwdMmaChoice plan_bwd_mma(const DeviceFacts& facts, const BackwardArgs& args, const Overrides& o) {
  BwdMmaChoice c;
  c.required = o.bwd_mma == "1" || o.bwd_mma == "any";
  c.eligible = bwd_mma_eligible(facts, args, o);
  if (c.eligible) {
    c.shape = bwd_mma_plan(args.forward, o);
    c.writes_dq = bwd_mma_writes_dq(c.shape, args);
    c.vec_load = bwd_mma_vec_load(args, c.shape);
    // decided once, on the shape before the wgmma dK/dV kernel's: that changes only its Q/dO
    // buffers and __local bytes, which the dQ pass's decisions do not read
    const BwdWgmmaKernels wgmma = bwd_wgmma_kernels(facts, args, c.shape, o);
    c.dq_wgmma = wgmma.dq;
    c.dkdv_wgmma = wgmma.dkdv;
    if (c.dkdv_wgmma) c.shape = bwd_wgmma_dkdv_shape(facts, c.shape, args.forward.head_dim, o);
    c.shape.dq_overlap = wgmma.dq_overlap;
    const BwdMmaPrograms programs = bwd_mma_kernel_programs(args, c.shape, c.dkdv_wgmma, c.dq_wgmma);
    c.program = programs.dkdv;
    c.dq_program = programs.dq;
  }
  return c;
}

BackwardPrograms plan_backward_programs(const DeviceFacts& facts, const BackwardArgs& args, const BackwardPlan& tiles,
                                        const BwdCpuPlan& cpu, const Overrides& o) {
  check_bwd_wgmma_switch(o);  // a typo is one on every device, not only where the switch is read
  const bool dbias = args.d_bias.kind != MaskKind::None;
  BackwardPrograms p;
  p.portable = backward_program(args.forward, dbias, tiles);
  if (o.bwd_red && facts.is_nvidia()) p.portable.options += " -DNV_RED=1";  // the native add (bwd_common.cl)
  if (cpu.chunks > 0) {
    p.cpu = bwd_cpu_program(args.forward, dbias, cpu);
    return p;  // (the CPU form runs the whole call)
  }
  p.tensor_cores = plan_bwd_mma(facts, args, o);
  return p;
}

}  // namespace flashcl::detail
