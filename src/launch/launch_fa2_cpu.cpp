// launch_fa2_cpu.cpp: enqueues the CPU-shaped fa2 (kernels/cpu/fa2_cpu.cl): one single-work-item
// work-group per (Q block, head, batch), with the register blocks, tiles and grid of the call
// plan (plan_fa2_cpu.cpp, call_plan.cpp); fp8 inputs add the three descale arguments.
#include "launch/launchers.hpp"

namespace flashcl::detail {

void launch_fa2_cpu(cl_command_queue queue, const Problem& p, const CallPlan& call, const std::vector<cl_event>& wait,
                    Launch& launch) {
  const ForwardArgs& a = p.args;
  cl::Kernel kernel = make_kernel(p, call.program, "fa2_cpu_forward");
  const Fa2Grid grid = with_args(p, call.grids[0]);
  if (is_fp8(a.dtype))
    set_args(kernel, a.q.buffer, a.k.buffer, a.v.buffer, a.o.buffer, a.lse, a.cu_seqlens_q, a.cu_seqlens_k,
             a.alibi_slopes, a.mask.buffer, grid.args, a.fp8.q_descale, a.fp8.k_descale, a.fp8.v_descale);
  else
    set_args(kernel, a.q.buffer, a.k.buffer, a.v.buffer, a.o.buffer, a.lse, a.cu_seqlens_q, a.cu_seqlens_k,
             a.alibi_slopes, a.mask.buffer, grid.args);
  enqueue(queue, kernel, grid.global, grid.local, wait, launch);
}

}  // namespace flashcl::detail
