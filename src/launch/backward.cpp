// backward.cpp: the backward entry points (backward, backward_workspace_bytes) and the launchers
// of its three paths, in the order the kernels run:
//  - every path: [bias-gradient target cleared], preprocess (D = rowsum(dO ∘ O); the fp32 dQ
//    accumulator cleared where one is used);
//  - fa2: bwd_dkdv per (K/V block, K/V head, batch), then either bwd_convert_dq (atomic dQ) or
//    bwd_dq per (Q block, head, batch) (deterministic); on NVIDIA tensor cores (launch_bwd_mma.cpp)
//    bwd_mma_dkdv instead of bwd_dkdv, and for deterministic calls bwd_mma_dq instead of bwd_dq;
//  - fa1: bwd_fa1 per (K/V head, batch), then bwd_convert_dq;
//  - standard: bwd_std_scores (P and dS materialised), bwd_std_dkdv, bwd_std_dq;
//  - every path with a broadcast bias gradient: bwd_dbias_reduce.
// Each kernel waits on the one before it (its event), so out-of-order queues work too.
#include <algorithm>

#include "validate/backward_problem.hpp"
#include "base/errors.hpp"
#include "launch/call_workspace.hpp"
#include "launch/launchers.hpp"
#include "plan/backward_programs.hpp"

namespace flashcl {
namespace detail {
namespace {

// Enqueues `kernel` on the (x, y, z) grid with the runtime's choice of work-group (local null),
// after `wait` for the first kernel of the call and after the previous kernel otherwise.
void enqueue_grid(cl_command_queue queue, const cl::Kernel& kernel, std::size_t x, std::size_t y, std::size_t z,
                  const std::vector<cl_event>& wait, Launch& launch) {
  const std::size_t global[3] = {x, y, z};
  enqueue(queue, kernel, global, nullptr, launch.events().empty() ? wait : std::vector<cl_event>{launch.last()},
          launch);
}

}  // namespace

void launch_backward(cl_command_queue queue, const BackwardProblem& bp, const BackwardPrograms& programs,
                     cl_mem workspace, const std::vector<cl_event>& wait, Launch& launch) {
  if (bp.cpu.chunks > 0) return launch_bwd_cpu(queue, bp, programs.cpu, workspace, wait, launch);  // fa2 on CPUs
  const Problem& p = bp.forward;
  const ForwardArgs& a = p.args;
  const BackwardArgs& g = bp.args;
  const AttnArgs& ka = p.kernel_args;
  BwdArgs kb = bp.kernel_args;
  const bool dbias = g.d_bias.kind != MaskKind::None;
  const std::size_t B = a.batch, H = a.heads, Hkv = a.heads_kv, Nq = a.seqlen_q, Nk = a.seqlen_k, d = a.head_dim;
  // dQ: FA1 in its own loop (2); fa2 atomically into the fp32 accumulator (1), unless the call is
  // deterministic or the tensor cores write dQ in their own pass (0)
  const bool fa2_atomic_dq = a.algorithm == Algorithm::FA2 && !g.deterministic && !programs.tensor_cores.writes_dq;
  kb.dq_mode = a.algorithm == Algorithm::FA1 ? 2 : fa2_atomic_dq ? 1 : 0;
  const int dq_mode = kb.dq_mode;
  const ProgramChoice& program = programs.portable;
  const cl_mem ds_target = !dbias ? nullptr : bp.dbias_broadcast ? workspace : g.d_bias.buffer;
  const cl_mem q = a.q.buffer, k = a.k.buffer, v = a.v.buffer, o = a.o.buffer, lse = a.lse;
  const cl_mem cu_q = a.cu_seqlens_q, cu_k = a.cu_seqlens_k, slopes = a.alibi_slopes, mask = a.mask.buffer;

  if (dbias) {
    cl::Kernel clear = make_kernel(p, program, "bwd_dbias_clear");
    set_args(clear, ds_target, ka, kb);
    enqueue_grid(queue, clear, Nk, Nq, B * H, wait, launch);
  }
  cl::Kernel pre = make_kernel(p, program, "bwd_preprocess");
  set_args(pre, o, g.d_o.buffer, workspace, cu_q, cu_k, slopes, mask, ka, kb);
  enqueue_grid(queue, pre, Nq, H, B, wait, launch);

  if (a.algorithm == Algorithm::Standard) {
    cl::Kernel scores = make_kernel(p, program, "bwd_std_scores");
    set_args(scores, q, k, v, g.d_o.buffer, lse, workspace, ds_target, cu_q, cu_k, slopes, mask, ka, kb);
    enqueue_grid(queue, scores, Nk, Nq, B * H, wait, launch);
    cl::Kernel dkdv = make_kernel(p, program, "bwd_std_dkdv");
    set_args(dkdv, q, g.d_o.buffer, workspace, g.d_k.buffer, g.d_v.buffer, cu_q, cu_k, slopes, mask, ka, kb);
    enqueue_grid(queue, dkdv, d, Nk, B * Hkv, wait, launch);
    cl::Kernel dq = make_kernel(p, program, "bwd_std_dq");
    set_args(dq, k, workspace, g.d_q.buffer, cu_q, cu_k, slopes, mask, ka, kb);
    enqueue_grid(queue, dq, d, Nq, B * H, wait, launch);
  } else {
    const std::size_t wg = bp.plan.work_group_size;
    const std::size_t local[3] = {wg, 1, 1};
    const bool fa1 = a.algorithm == Algorithm::FA1;
    // fa2 on NVIDIA tensor cores where the call and the device qualify (deterministic: dQ too)
    const bool mma = !fa1 && try_launch_bwd_mma(queue, bp, programs.tensor_cores, workspace, kb, launch);
    if (!mma) {
      cl::Kernel main = make_kernel(p, program, fa1 ? "bwd_fa1" : "bwd_dkdv");
      set_args(main, q, k, v, g.d_o.buffer, lse, g.d_k.buffer, g.d_v.buffer, workspace, ds_target, cu_q, cu_k, slopes,
               mask, ka, kb);
      const std::size_t kv_blocks = fa1 ? 1 : (Nk + bp.plan.block_cols - 1) / bp.plan.block_cols;
      const std::size_t main_global[3] = {kv_blocks * wg, Hkv, B};
      enqueue(queue, main, main_global, local, {launch.last()}, launch);
    }
    if (dq_mode == 0) {
      if (!mma) {  // (bwd_mma_dq already wrote dQ otherwise)
        cl::Kernel dq = make_kernel(p, program, "bwd_dq");
        set_args(dq, q, k, v, g.d_o.buffer, lse, g.d_q.buffer, workspace, cu_q, cu_k, slopes, mask, ka, kb);
        const std::size_t q_blocks = (Nq + bp.plan.block_rows - 1) / bp.plan.block_rows;
        const std::size_t dq_global[3] = {q_blocks * wg, H, B};
        enqueue(queue, dq, dq_global, local, {launch.last()}, launch);
      }
    } else {
      cl::Kernel convert = make_kernel(p, program, "bwd_convert_dq");
      set_args(convert, workspace, g.d_q.buffer, cu_q, cu_k, slopes, mask, ka, kb);
      enqueue_grid(queue, convert, Nq, H, B, wait, launch);
    }
  }

  if (bp.dbias_broadcast) {
    cl::Kernel reduce = make_kernel(p, program, "bwd_dbias_reduce");
    set_args(reduce, workspace, g.d_bias.buffer, ka, kb);
    enqueue_grid(queue, reduce, Nk, Nq, static_cast<std::size_t>(g.d_bias.batch) * g.d_bias.heads, wait, launch);
  }
}

}  // namespace detail

std::size_t backward_workspace_bytes(cl_device_id device, const BackwardArgs& args) {
  const ForwardArgs a = detail::normalize_shape(device, args.forward);
  const auto n = [](int x) { return static_cast<std::uint64_t>(x); };
  const bool varlen = a.cu_seqlens_q != nullptr;
  // Varlen without total_q: the kernels take cu_seqlens_q[B] rows, clamped to what the buffers hold
  // (LSE's among them, validate.cpp), so LSE's rows bound it; B·seqlen_q alone can fall short (the
  // offsets need not start at 0).
  std::uint64_t packed_rows = a.total_q > 0 ? n(a.total_q) : n(a.batch) * n(a.seqlen_q);
  std::size_t lse_bytes = 0;
  if (varlen && a.total_q <= 0 && a.lse != nullptr &&
      clGetMemObjectInfo(a.lse, CL_MEM_SIZE, sizeof lse_bytes, &lse_bytes, nullptr) == CL_SUCCESS)
    packed_rows = std::max<std::uint64_t>(packed_rows, lse_bytes / (sizeof(float) * n(a.heads)));
  const std::uint64_t lse_rows = varlen ? n(a.heads) * packed_rows : n(a.batch) * n(a.heads) * n(a.seqlen_q);
  const bool dbias = args.d_bias.kind != MaskKind::None && a.mask.kind == MaskKind::Bias;
  const int db_batch = args.d_bias.batch != 0 ? args.d_bias.batch : a.mask.batch;
  const int db_heads = args.d_bias.heads != 0 ? args.d_bias.heads : a.mask.heads;
  const bool broadcast = dbias && (db_batch != a.batch || db_heads != a.heads);
  const detail::DeviceFacts& facts = detail::device_facts(device);
  detail::BwdCpuPlan cpu;
  if (detail::bwd_cpu_takes(facts, a, detail::process_overrides())) cpu = detail::plan_bwd_cpu(facts, a);
  BackwardArgs resolved = args;
  resolved.forward = a;
  const bool dq_pass = args.deterministic || detail::bwd_mma_takes_dq(facts, resolved, detail::process_overrides());
  return detail::backward_workspace_layout(a, lse_rows, dq_pass, broadcast, &cpu).bytes;
}

BackwardTileInfo backward_tile_info(cl_device_id device, const BackwardArgs& args) {
  const ForwardArgs a = detail::normalize_shape(device, args.forward);
  const detail::DeviceFacts& facts = detail::device_facts(device);
  const detail::Overrides& o = detail::process_overrides();
  BackwardArgs resolved = args;
  resolved.forward = a;
  BackwardTileInfo info;
  if (a.algorithm == Algorithm::Standard) {
    info.kernels = "standard";
    info.reason = "standard backward: P and dS materialised, one work-item per entry";
    return info;
  }
  if (a.algorithm == Algorithm::FA2 && detail::bwd_cpu_takes(facts, a, o)) {
    const detail::BwdCpuPlan cpu = detail::plan_bwd_cpu(facts, a);
    info.kernels = "fa2 CPU form";
    info.block_rows = cpu.block_rows;
    info.block_cols = cpu.block_cols;
    info.dq_partials = cpu.chunks;
    info.reason = cpu.reason;
    return info;
  }
  if (detail::bwd_mma_eligible(facts, resolved, o)) {
    const detail::BwdMmaPlan mma = detail::bwd_mma_plan(a, o);
    info.kernels = "fa2 tensor cores";
    info.block_rows = mma.query_rows;
    info.block_cols = detail::bwd_mma_block_keys(mma);
    info.dq_pass = detail::bwd_mma_writes_dq(mma, resolved);
    info.dq_block_rows = info.dq_pass ? detail::bwd_mma_dq_block_rows(mma) : 0;
    info.dq_block_cols = info.dq_pass ? mma.dq_keys : 0;
    info.reason = mma.reason;
    return info;
  }
  const detail::BackwardPlan plan = detail::plan_backward(facts, a.head_dim);
  info.kernels = to_string(a.algorithm);
  info.block_rows = plan.block_rows;
  info.block_cols = plan.block_cols;
  info.dq_pass = a.algorithm == Algorithm::FA2 && args.deterministic;  // bwd_dq over the same blocks
  info.dq_block_rows = info.dq_pass ? plan.block_rows : 0;
  info.dq_block_cols = info.dq_pass ? plan.block_cols : 0;
  info.reason = plan.reason;
  return info;
}

Launch backward(cl_command_queue queue, const BackwardArgs& args, const std::vector<cl_event>& wait_list) {
  for (cl_event e : wait_list)
    if (e == nullptr) detail::fail(Status::InvalidHandle, "wait_list: null cl_event");
  const detail::BackwardProblem bp = detail::validate_backward(queue, args, wait_list);
  BackwardArgs resolved = bp.args;  // the gradients' strides and the forward part, normalised
  resolved.forward = bp.forward.args;
  const detail::BackwardPrograms programs =
      detail::plan_backward_programs(*bp.forward.facts, resolved, bp.plan, bp.cpu, detail::process_overrides());

  Launch launch;
  // never empty: D always has a row per LSE row (at least one float)
  const detail::CallWorkspace workspace(bp.forward.context, args.workspace, std::max<std::size_t>(bp.workspace.bytes, 4));
  detail::with_cl_errors([&] { detail::launch_backward(queue, bp, programs, workspace.get(), wait_list, launch); });
  return launch;
}

}  // namespace flashcl
