// launch_fa1.cpp: enqueues FlashAttention-1 (Algorithm 1): one work-group per (head, batch).
#include "base/errors.hpp"
#include "launch/launchers.hpp"

namespace flashcl::detail {

void launch_fa1(cl_command_queue queue, const Problem& p, const CallPlan& call, cl_mem workspace,
                const std::vector<cl_event>& wait, Launch& launch) {
  const ForwardArgs& a = p.args;
  cl::Kernel kernel = make_kernel(p, call.program, "fa1_forward");
  set_args(kernel, a.q.buffer, a.k.buffer, a.v.buffer, a.o.buffer, a.lse, a.cu_seqlens_q, a.cu_seqlens_k,
           a.alibi_slopes, a.mask.buffer, workspace, p.kernel_args);
  enqueue(queue, kernel, call.grids[0].global, call.grids[0].local, wait, launch);
}

}  // namespace flashcl::detail
