// launch_fa2.cpp: enqueues FlashAttention-2: one work-group per (Q block, head, batch); fp8 inputs
// take the same kernel with the fp8 tile loads (kernels/forward/fp8_tiles.cl) and three descale arguments.
#include "base/errors.hpp"
#include "launch/launchers.hpp"

namespace flashcl::detail {

void launch_fa2(cl_command_queue queue, const Problem& p, const CallPlan& call, const std::vector<cl_event>& wait,
                Launch& launch) {
  const ForwardArgs& a = p.args;
  // fp8 inputs (docs/FP8.md): the codec and the dequantising tile loads join the program
  // (forward_programs.cpp), the descales the arguments
  const bool fp8 = is_fp8(a.dtype);
  cl::Kernel kernel = make_kernel(p, call.program, "fa2_forward");
  const Fa2Grid grid = with_args(p, call.grids[0]);
  if (fp8)
    set_args(kernel, a.q.buffer, a.k.buffer, a.v.buffer, a.o.buffer, a.lse, a.cu_seqlens_q, a.cu_seqlens_k,
             a.alibi_slopes, a.mask.buffer, grid.args, a.fp8.q_descale, a.fp8.k_descale, a.fp8.v_descale);
  else
    set_args(kernel, a.q.buffer, a.k.buffer, a.v.buffer, a.o.buffer, a.lse, a.cu_seqlens_q, a.cu_seqlens_k,
             a.alibi_slopes, a.mask.buffer, grid.args);
  enqueue(queue, kernel, grid.global, grid.local, wait, launch);
}

}  // namespace flashcl::detail
