// launch_fa1.cpp: enqueues FlashAttention-1 (Algorithm 1): one work-group per (head, batch).
#include "base/errors.hpp"
#include "launch/launchers.hpp"

namespace flashcl::detail {

void launch_fa1(cl_command_queue queue, const Problem& p, cl_mem workspace, const std::vector<cl_event>& wait,
                Launch& launch) {
  const ForwardArgs& a = p.args;
  const TilePlan plan = plan_for(*p.facts, a);
  cl::Kernel kernel = make_kernel(p, programs::fa1, flash_options(a, plan), "fa1_forward");
  set_args(kernel, a.q.buffer, a.k.buffer, a.v.buffer, a.o.buffer, a.lse, a.cu_seqlens_q, a.cu_seqlens_k,
           a.alibi_slopes, a.mask.buffer, workspace, p.kernel_args);
  const std::size_t local[3] = {plan.work_group_size, 1, 1};
  const std::size_t global[3] = {plan.work_group_size, static_cast<std::size_t>(a.heads),
                                 static_cast<std::size_t>(a.batch)};
  enqueue(queue, kernel, global, local, wait, launch);
}

}  // namespace flashcl::detail
