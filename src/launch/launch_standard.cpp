// launch_standard.cpp: enqueues the baseline: scores, row softmax (in place), P·V; each kernel
// waits on the previous through the in-order queue or, for out-of-order queues, its event.
#include "base/errors.hpp"
#include "launch/launchers.hpp"

namespace flashcl::detail {
namespace {

std::size_t round_up(std::size_t x, std::size_t m) { return (x + m - 1) / m * m; }

}  // namespace

void launch_standard(cl_command_queue queue, const Problem& p, cl_mem workspace, const std::vector<cl_event>& wait,
                     Launch& launch) {
  const ForwardArgs& a = p.args;
  const TilePlan plan = plan_for(*p.facts, a);
  const std::string options =
      concat(common_options(a), " -DGEMM_WG_X=", plan.gemm_wg_x, " -DGEMM_WG_Y=", plan.gemm_wg_y,
             " -DGEMM_RM=", plan.gemm_rm, " -DGEMM_RN=", plan.gemm_rn, " -DGEMM_KP=", plan.gemm_kp,
             " -DGEMM_A_T=", plan.gemm_a_t, " -DSOFTMAX_WG=", plan.softmax_wg, " -DSOFTMAX_VW=", plan.softmax_vw);
  const std::vector<std::string>& files = programs::standard;
  cl::Kernel scores = make_kernel(p, files, options, "standard_scores");
  cl::Kernel softmax = make_kernel(p, files, options, "standard_softmax");
  cl::Kernel pv = make_kernel(p, files, options, "standard_pv");

  set_args(scores, a.q.buffer, a.k.buffer, workspace, a.cu_seqlens_q, a.cu_seqlens_k, a.alibi_slopes, a.mask.buffer,
           p.kernel_args);
  set_args(softmax, workspace, a.lse, a.cu_seqlens_q, a.cu_seqlens_k, a.alibi_slopes, a.mask.buffer, p.kernel_args);
  set_args(pv, workspace, a.v.buffer, a.o.buffer, a.cu_seqlens_q, a.cu_seqlens_k, a.alibi_slopes, a.mask.buffer,
           p.kernel_args);

  // one work-group per block_rows x block_cols block of S (scores) or O (P*V)
  const std::size_t bm = plan.block_rows, bn = plan.block_cols, bh = static_cast<std::size_t>(a.batch) * a.heads;
  const std::size_t wg_x = plan.gemm_wg_x, wg_y = plan.gemm_wg_y;
  const std::size_t gemm_local[3] = {wg_x, wg_y, 1};
  const std::size_t scores_global[3] = {round_up(a.seqlen_k, bn) / bn * wg_x, round_up(a.seqlen_q, bm) / bm * wg_y, bh};
  enqueue(queue, scores, scores_global, gemm_local, wait, launch);

  const std::size_t softmax_local[3] = {static_cast<std::size_t>(plan.softmax_wg), 1, 1};
  const std::size_t softmax_global[3] = {static_cast<std::size_t>(plan.softmax_wg),
                                         static_cast<std::size_t>(a.seqlen_q), bh};
  enqueue(queue, softmax, softmax_global, softmax_local, {launch.last()}, launch);

  const std::size_t pv_global[3] = {round_up(a.head_dim, bn) / bn * wg_x, round_up(a.seqlen_q, bm) / bm * wg_y, bh};
  enqueue(queue, pv, pv_global, gemm_local, {launch.last()}, launch);
}

}  // namespace flashcl::detail
