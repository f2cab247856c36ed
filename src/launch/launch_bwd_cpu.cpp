// launch_bwd_cpu.cpp: enqueues the CPU-shaped fa2 backward (kernels/cpu/bwd_cpu.cl, planned by
// plan_bwd_cpu.cpp), the whole call, each kernel after the one before it:
//   [bwd_dbias_clear] -> bwd_preprocess (D) -> bwd_cpu_dkdv per (chunk, K/V head, batch), one
//   work-item each -> bwd_cpu_dq (the chunks' dQ partials summed in order) -> [bwd_dbias_reduce].
// The preprocess and bias-gradient kernels are bwd_common.cl's, built into the bwd_cpu program so a
// call compiles one program; they run as in backward.cpp's portable path, with dq_mode 0 (the
// dK/dV kernel zeroes its own dQ partial, so the preprocess clears nothing).
#include "launch/launchers.hpp"
#include "validate/backward_problem.hpp"

namespace flashcl::detail {
namespace {

// (x, y, z) with the runtime's work-group, after `wait` for the call's first kernel, else the last.
void enqueue_after(cl_command_queue queue, const cl::Kernel& kernel, std::size_t x, std::size_t y, std::size_t z,
                   const std::size_t* local, const std::vector<cl_event>& wait, Launch& launch) {
  const std::size_t global[3] = {x, y, z};
  enqueue(queue, kernel, global, local, launch.events().empty() ? wait : std::vector<cl_event>{launch.last()},
          launch);
}

}  // namespace

void launch_bwd_cpu(cl_command_queue queue, const BackwardProblem& bp, const ProgramChoice& program, cl_mem workspace,
                    const std::vector<cl_event>& wait, Launch& launch) {
  const Problem& p = bp.forward;
  const ForwardArgs& a = p.args;
  const BackwardArgs& g = bp.args;
  const AttnArgs& ka = p.kernel_args;
  BwdArgs kb = bp.kernel_args;
  kb.dq_mode = 0;
  const bool dbias = g.d_bias.kind != MaskKind::None;
  const std::size_t B = a.batch, H = a.heads, Hkv = a.heads_kv != 0 ? a.heads_kv : a.heads, Nq = a.seqlen_q,
                    Nk = a.seqlen_k;
  const cl_mem ds_target = !dbias ? nullptr : bp.dbias_broadcast ? workspace : g.d_bias.buffer;
  const cl_mem cu_q = a.cu_seqlens_q, cu_k = a.cu_seqlens_k, slopes = a.alibi_slopes, mask = a.mask.buffer;
  const cl_int chunks = bp.cpu.chunks;
  const cl_long chunk_stride = bp.workspace.dq_chunk_stride;

  if (dbias) {
    cl::Kernel clear = make_kernel(p, program, "bwd_dbias_clear");
    set_args(clear, ds_target, ka, kb);
    enqueue_after(queue, clear, Nk, Nq, B * H, nullptr, wait, launch);
  }
  cl::Kernel pre = make_kernel(p, program, "bwd_preprocess");
  set_args(pre, a.o.buffer, g.d_o.buffer, workspace, cu_q, cu_k, slopes, mask, ka, kb);
  enqueue_after(queue, pre, Nq, H, B, nullptr, wait, launch);

  cl::Kernel dkdv = make_kernel(p, program, "bwd_cpu_dkdv");
  set_args(dkdv, a.q.buffer, a.k.buffer, a.v.buffer, g.d_o.buffer, a.lse, g.d_k.buffer, g.d_v.buffer, workspace,
           ds_target, cu_q, cu_k, slopes, mask, ka, kb, chunk_stride);
  const std::size_t one[3] = {1, 1, 1};
  enqueue_after(queue, dkdv, static_cast<std::size_t>(chunks), Hkv, B, one, wait, launch);

  cl::Kernel dq = make_kernel(p, program, "bwd_cpu_dq");
  set_args(dq, workspace, g.d_q.buffer, cu_q, cu_k, slopes, mask, ka, kb, chunks, chunk_stride);
  enqueue_after(queue, dq, Nq, H, B, nullptr, wait, launch);

  if (bp.dbias_broadcast) {
    cl::Kernel reduce = make_kernel(p, program, "bwd_dbias_reduce");
    set_args(reduce, workspace, g.d_bias.buffer, ka, kb);
    enqueue_after(queue, reduce, Nk, Nq, static_cast<std::size_t>(g.d_bias.batch) * g.d_bias.heads, nullptr, wait,
                  launch);
  }
}

}  // namespace flashcl::detail
