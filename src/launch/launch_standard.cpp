// launch_standard.cpp: enqueues the baseline: scores, row softmax (in place), P·V; each kernel
// waits on the previous through the in-order queue or, for out-of-order queues, its event. Two
// forms: the portable one (forward/standard.cl) and the CPU-shaped one (cpu/standard_cpu.cl,
// plan_standard_cpu.hpp), whose three kernels share one grid of row panels.
#include "base/errors.hpp"
#include "launch/launchers.hpp"

namespace flashcl::detail {

void launch_standard(cl_command_queue queue, const Problem& p, const CallPlan& call, cl_mem workspace,
                     const std::vector<cl_event>& wait, Launch& launch) {
  const ForwardArgs& a = p.args;
  cl::Kernel scores = make_kernel(p, call.program, "standard_scores");
  cl::Kernel softmax = make_kernel(p, call.program, "standard_softmax");
  cl::Kernel pv = make_kernel(p, call.program, "standard_pv");

  set_args(scores, a.q.buffer, a.k.buffer, workspace, a.cu_seqlens_q, a.cu_seqlens_k, a.alibi_slopes, a.mask.buffer,
           p.kernel_args);
  set_args(softmax, workspace, a.lse, a.cu_seqlens_q, a.cu_seqlens_k, a.alibi_slopes, a.mask.buffer, p.kernel_args);
  set_args(pv, workspace, a.v.buffer, a.o.buffer, a.cu_seqlens_q, a.cu_seqlens_k, a.alibi_slopes, a.mask.buffer,
           p.kernel_args);

  // the plan's grids: one work-group per block of S (scores) or O (P*V), one per row (softmax)
  enqueue(queue, scores, call.grids[0].global, call.grids[0].local, wait, launch);
  enqueue(queue, softmax, call.grids[1].global, call.grids[1].local, {launch.last()}, launch);
  enqueue(queue, pv, call.grids[2].global, call.grids[2].local, {launch.last()}, launch);
}

void launch_standard_cpu(cl_command_queue queue, const Problem& p, const CallPlan& call, cl_mem workspace,
                         const std::vector<cl_event>& wait, Launch& launch) {
  const ForwardArgs& a = p.args;
  cl::Kernel scores = make_kernel(p, call.program, "standard_cpu_scores");
  cl::Kernel softmax = make_kernel(p, call.program, "standard_cpu_softmax");
  cl::Kernel pv = make_kernel(p, call.program, "standard_cpu_pv");
  const Fa2Grid grid = with_args(p, call.grids[0]);  // the causal dispatch order, the same in all three

  set_args(scores, a.q.buffer, a.k.buffer, workspace, a.cu_seqlens_q, a.cu_seqlens_k, a.alibi_slopes, a.mask.buffer,
           grid.args);
  set_args(softmax, workspace, a.lse, a.cu_seqlens_q, a.cu_seqlens_k, a.alibi_slopes, a.mask.buffer, grid.args);
  set_args(pv, workspace, a.v.buffer, a.o.buffer, a.cu_seqlens_q, a.cu_seqlens_k, a.alibi_slopes, a.mask.buffer,
           grid.args);
  enqueue(queue, scores, grid.global, grid.local, wait, launch);
  enqueue(queue, softmax, grid.global, grid.local, {launch.last()}, launch);
  enqueue(queue, pv, grid.global, grid.local, {launch.last()}, launch);
}

}  // namespace flashcl::detail
