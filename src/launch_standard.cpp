// launch_standard.cpp: enqueues the baseline: scores, row softmax (in place), P·V; each kernel
// waits on the previous through the in-order queue or, for out-of-order queues, its event.
#include "errors.hpp"
#include "launchers.hpp"

namespace flashcl::detail {
namespace {

std::size_t round_up(std::size_t x, std::size_t m) { return (x + m - 1) / m * m; }

}  // namespace

void launch_standard(cl_command_queue queue, const Problem& p, cl_mem workspace, const std::vector<cl_event>& wait,
                     Launch& launch) {
  const ForwardArgs& a = p.args;
  const TilePlan plan = plan_for(*p.facts, a);
  const std::string options =
      concat(common_options(a), " -DTILE=", plan.block_rows, " -DSOFTMAX_WG=", plan.softmax_wg);
  const std::vector<std::string> files = {"attn_args.h", "common.cl", "standard.cl"};
  cl::Kernel scores = make_kernel(p, files, options, "standard_scores");
  cl::Kernel softmax = make_kernel(p, files, options, "standard_softmax");
  cl::Kernel pv = make_kernel(p, files, options, "standard_pv");

  set_args(scores, a.q.buffer, a.k.buffer, workspace, a.cu_seqlens_q, a.cu_seqlens_k, a.alibi_slopes, a.mask.buffer,
           p.kernel_args);
  set_args(softmax, workspace, a.lse, a.cu_seqlens_q, a.cu_seqlens_k, a.alibi_slopes, a.mask.buffer, p.kernel_args);
  set_args(pv, workspace, a.v.buffer, a.o.buffer, a.cu_seqlens_q, a.cu_seqlens_k, a.alibi_slopes, a.mask.buffer,
           p.kernel_args);

  const std::size_t tile = plan.block_rows, bh = static_cast<std::size_t>(a.batch) * a.heads;
  const std::size_t tile_local[3] = {tile, tile, 1};
  const std::size_t scores_global[3] = {round_up(a.seqlen_k, tile), round_up(a.seqlen_q, tile), bh};
  enqueue(queue, scores, scores_global, tile_local, wait, launch);

  const std::size_t softmax_local[3] = {static_cast<std::size_t>(plan.softmax_wg), 1, 1};
  const std::size_t softmax_global[3] = {static_cast<std::size_t>(plan.softmax_wg),
                                         static_cast<std::size_t>(a.seqlen_q), bh};
  enqueue(queue, softmax, softmax_global, softmax_local, {launch.last()}, launch);

  const std::size_t pv_global[3] = {round_up(a.head_dim, tile), round_up(a.seqlen_q, tile), bh};
  enqueue(queue, pv, pv_global, tile_local, {launch.last()}, launch);
}

}  // namespace flashcl::detail
