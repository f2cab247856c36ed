// launch_fa2.cpp: enqueues FlashAttention-2: one work-group per (Q block, head, batch).
#include "errors.hpp"
#include "launchers.hpp"

namespace flashcl::detail {

void launch_fa2(cl_command_queue queue, const Problem& p, const std::vector<cl_event>& wait, Launch& launch) {
  const ForwardArgs& a = p.args;
  const TilePlan plan = plan_for(*p.facts, a);
  cl::Kernel kernel = make_kernel(p, {"attn_args.h", "common.cl", "team.cl", "fa2.cl"}, flash_options(a, plan),
                                  "fa2_forward");
  const Fa2Grid grid = fa2_grid(p, plan);
  set_args(kernel, a.q.buffer, a.k.buffer, a.v.buffer, a.o.buffer, a.lse, a.cu_seqlens_q, a.cu_seqlens_k,
           a.alibi_slopes, a.mask.buffer, grid.args);
  enqueue(queue, kernel, grid.global, grid.local, wait, launch);
}

}  // namespace flashcl::detail
