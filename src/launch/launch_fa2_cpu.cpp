// launch_fa2_cpu.cpp: enqueues the CPU-shaped fa2 (kernels/cpu/fa2_cpu.cl): one single-work-item
// work-group per (Q block, head, batch), with the register blocks and tiles of plan_fa2_cpu.
#include "launch/launchers.hpp"
#include "plan/overrides.hpp"
#include "plan/plan_fa2_cpu.hpp"

namespace flashcl::detail {

bool try_launch_fa2_cpu(cl_command_queue queue, const Problem& p, const std::vector<cl_event>& wait, Launch& launch) {
  const ForwardArgs& a = p.args;
  if (!fa2_cpu_takes(*p.facts, a, process_overrides())) return false;
  const Fa2CpuPlan plan = plan_fa2_cpu(*p.facts, a.head_dim);
  const TilePlan& t = plan.tiles;
  const std::string options =
      concat(common_options(a), " -DD_PAD=", t.padded_head_dim, " -DBR=", t.block_rows, " -DBC=", t.block_cols,
             " -DRM=", t.rows_per_team, " -DCG=", plan.column_vectors, " -DVW=", plan.vector_width);
  cl::Kernel kernel = make_kernel(p, programs::fa2_cpu, options, "fa2_cpu_forward");
  const std::size_t q_blocks = (static_cast<std::size_t>(a.seqlen_q) + t.block_rows - 1) / t.block_rows;
  const std::size_t pairs = static_cast<std::size_t>(a.heads) * static_cast<std::size_t>(a.batch);
  const std::size_t global[3] = {q_blocks, static_cast<std::size_t>(a.heads), static_cast<std::size_t>(a.batch)};
  const std::size_t local[3] = {1, 1, 1};
  AttnArgs args = p.kernel_args;
  // each core runs one work-group at a time: the tail is sized for that many resident blocks
  if (a.causal) args.order_tail = causal_order_tail(p.facts->compute_units, 1, q_blocks, pairs, 1);
  set_args(kernel, a.q.buffer, a.k.buffer, a.v.buffer, a.o.buffer, a.lse, a.cu_seqlens_q, a.cu_seqlens_k,
           a.alibi_slopes, a.mask.buffer, args);
  enqueue(queue, kernel, global, local, wait, launch);
  return true;
}

}  // namespace flashcl::detail
