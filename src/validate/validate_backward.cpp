// validate_backward.cpp: every check on a backward call, before anything is enqueued. The forward
// part (shapes, variants, Q, K, V, O, the LSE) goes through the forward's own validate(); the
// gradients go through it too, as a view of the call whose Q, O, K, V and bias are dO, dQ, dK, dV
// and d_bias, so they get exactly the same stride, buffer and broadcast checks, with the messages
// renamed to the gradients' parameters. What is the backward's own: the LSE is required, d_bias
// must match an additive bias, outputs must not alias inputs (whole buffers, or the overlapping
// parts of one parent's sub-buffers), and the backward's workspace.
#include <cstring>
#include <iterator>
#include <string>
#include <utility>

#include "validate/backward_problem.hpp"
#include "validate/buffer_checks.hpp"  // check_use
#include "base/errors.hpp"
#include "plan/bwd_mma_plan.hpp"  // bwd_mma_takes_dq
#include "plan/overrides.hpp"

namespace flashcl::detail {
namespace {

// validate() on `view`; its messages start with the parameter they concern ("q: ..."), renamed
// here through `names` (forward name → gradient name; "mask" also covers "mask.batch" etc.).
Problem validate_renamed(cl_command_queue queue, const ForwardArgs& view,
                         const std::vector<std::pair<std::string, std::string>>& names) {
  try {
    return validate(queue, view, {}, ForwardOutputs::Gradients);
  } catch (const Error& e) {
    std::string message = e.what();
    const std::string name = message.substr(0, message.find(':'));
    for (const auto& [from, to] : names)
      if (name == from || name.rfind(from + ".", 0) == 0) {
        message = to + message.substr(from.size());
        break;
      }
    // the aliasing check names a second parameter: "<name>: overlaps <other> (..."
    for (const auto& [from, to] : names) {
      const std::string phrase = ": overlaps " + from + " (";
      const std::size_t at = message.find(phrase);
      if (at != std::string::npos) message.replace(at, phrase.size(), ": overlaps " + to + " (");
    }
    throw Error(e.status(), message);
  }
}

// The memory a buffer covers: its parent (sub-buffers) or itself, and the byte range in it.
struct Region {
  cl_mem root = nullptr;
  std::size_t begin = 0, end = 0;
};

Region region_of(cl_mem buffer) {
  Region r;
  cl_mem parent = nullptr;
  std::size_t origin = 0, size = 0;
  clGetMemObjectInfo(buffer, CL_MEM_ASSOCIATED_MEMOBJECT, sizeof parent, &parent, nullptr);
  clGetMemObjectInfo(buffer, CL_MEM_OFFSET, sizeof origin, &origin, nullptr);
  clGetMemObjectInfo(buffer, CL_MEM_SIZE, sizeof size, &size, nullptr);
  r.root = parent != nullptr ? parent : buffer;
  r.begin = parent != nullptr ? origin : 0;
  r.end = r.begin + size;
  return r;
}

bool overlap(cl_mem a, cl_mem b) {
  if (a == nullptr || b == nullptr) return false;
  if (a == b) return true;
  const Region x = region_of(a), y = region_of(b);
  return x.root == y.root && x.begin < y.end && y.begin < x.end;
}

}  // namespace

BackwardWorkspace backward_workspace_layout(const ForwardArgs& a, std::uint64_t lse_rows, bool dq_pass,
                                            bool dbias_broadcast, const BwdCpuPlan* cpu) {
  const auto n = [](int x) { return static_cast<std::uint64_t>(x); };
  const std::uint64_t square = saturating_bytes({n(a.batch), n(a.heads), n(a.seqlen_q), n(a.seqlen_k)});
  const bool cpu_form = cpu != nullptr && cpu->chunks > 0;
  const bool dq_acc = !cpu_form && (a.algorithm == Algorithm::FA1 || (a.algorithm == Algorithm::FA2 && !dq_pass));
  BackwardWorkspace w;
  std::uint64_t floats = 0;
  // every region in saturating arithmetic: a huge shape must fail the size checks, not wrap
  auto take = [&](std::uint64_t count) {
    const std::int64_t at = static_cast<std::int64_t>(std::min<std::uint64_t>(floats, INT64_MAX / 8));
    floats = count > SIZE_MAX / 8 - floats ? SIZE_MAX / 8 : floats + count;
    return at;
  };
  w.d = take(lse_rows);
  if (dq_acc) w.dq = take(saturating_bytes({lse_rows, n(a.head_dim)}));
  if (cpu_form) {
    w.dq_chunk_stride = static_cast<std::int64_t>(std::min<std::uint64_t>(
        saturating_bytes({lse_rows, n(cpu->padded_head_dim)}), INT64_MAX / 8));
    w.dq = take(saturating_bytes({lse_rows, n(cpu->padded_head_dim), n(cpu->chunks)}));
  }
  if (a.algorithm == Algorithm::Standard) {
    w.p = take(square);
    w.ds = take(square);
  }
  if (dbias_broadcast) w.dbias = take(square);
  w.bytes = saturating_bytes({floats, sizeof(float)});
  return w;
}

BackwardProblem validate_backward(cl_command_queue queue, const BackwardArgs& in, const std::vector<cl_event>& wait) {
  if (in.forward.lse == nullptr)
    fail(Status::InvalidArgument, "lse: the backward needs the forward's LSE output (forward.lse, fp32 (B, H, Nq), ",
         "varlen (H, total_q))");
  if (is_fp8(in.forward.dtype))
    fail(Status::UnsupportedDType, "dtype: the backward takes f32, f16 or bf16, not ", to_string(in.forward.dtype),
         " (fp8 attention is forward-only, docs/FP8.md)");
  BackwardProblem bp;
  bp.args = in;
  ForwardArgs forward = in.forward;
  forward.workspace = nullptr;  // the forward's scratch plays no part here
  forward.tile = TileOverride{};
  bp.forward = validate(queue, forward, wait, ForwardOutputs::Read);  // O and LSE are read here
  const Problem& p = bp.forward;
  const ForwardArgs& a = p.args;
  const bool varlen = a.cu_seqlens_q != nullptr;

  // d_bias: only an additive bias has a gradient; it takes the bias's broadcast shape
  Mask d_bias = in.d_bias;
  const bool want_dbias = d_bias.kind != MaskKind::None;
  if (want_dbias) {
    if (d_bias.kind != MaskKind::Bias)
      fail(Status::InvalidArgument, "d_bias.kind: must be Bias (fp32, the gradient of forward.mask's bias) or None");
    if (a.mask.kind != MaskKind::Bias)
      fail(Status::InvalidArgument, "d_bias: forward.mask is not an additive bias (kind Bias), so it has no gradient");
    if (d_bias.batch == 0) d_bias.batch = a.mask.batch;
    if (d_bias.heads == 0) d_bias.heads = a.mask.heads;
    if (d_bias.batch != a.mask.batch || d_bias.heads != a.mask.heads)
      fail(Status::InvalidArgument, "d_bias.batch/heads: (", d_bias.batch, ", ", d_bias.heads, ") must be the bias's (",
           a.mask.batch, ", ", a.mask.heads, ")");
  }

  // The gradients checked as the forward checks its tensors: dO as Q, dQ as O, dK as K, dV as V and
  // d_bias as the bias. The LSE and cu_seqlens were checked above (nothing is read back twice).
  ForwardArgs view = a;
  view.q = in.d_o;
  view.o = in.d_q;
  view.k = in.d_k;
  view.v = in.d_v;
  view.mask = want_dbias ? d_bias : Mask{};  // (the forward's mask, an input, was checked above)
  view.lse = nullptr;
  view.check_device_data = false;
  if (varlen) view.total_q = p.kernel_args.total_q;
  std::vector<std::pair<std::string, std::string>> names = {{"q", "d_o"}, {"o", "d_q"}, {"k", "d_k"}, {"v", "d_v"}};
  if (want_dbias) names.emplace_back("mask", "d_bias");
  const Problem gp = validate_renamed(queue, view, names);
  bp.args.d_o = gp.args.q;
  bp.args.d_q = gp.args.o;
  bp.args.d_k = gp.args.k;
  bp.args.d_v = gp.args.v;
  bp.args.d_bias = want_dbias ? gp.args.mask : Mask{};

  // Outputs must not share memory with anything the kernels read (or with the workspace).
  const std::pair<const char*, cl_mem> outputs[] = {
      {"d_q", in.d_q.buffer}, {"d_k", in.d_k.buffer}, {"d_v", in.d_v.buffer}, {"d_bias", bp.args.d_bias.buffer}};
  const std::pair<const char*, cl_mem> inputs[] = {{"q", a.q.buffer},
                                                   {"k", a.k.buffer},
                                                   {"v", a.v.buffer},
                                                   {"o", a.o.buffer},
                                                   {"d_o", in.d_o.buffer},
                                                   {"lse", a.lse},
                                                   {"mask", a.mask.buffer},
                                                   {"alibi_slopes", a.alibi_slopes},
                                                   {"cu_seqlens_q", a.cu_seqlens_q},
                                                   {"cu_seqlens_k", a.cu_seqlens_k},
                                                   {"workspace", in.workspace}};
  for (const auto& [out_name, out] : outputs)
    for (const auto& [in_name, input] : inputs)
      if (overlap(out, input))
        fail(Status::InvalidArgument, out_name, ": shares memory with ", in_name,
             " (outputs may not alias an input or the workspace)");
  if (in.workspace != nullptr)
    for (const auto& [in_name, input] : inputs)
      if (input != in.workspace && overlap(in.workspace, input))
        fail(Status::InvalidArgument, "workspace: shares memory with ", in_name);
  // Nor with each other (whole buffers, as the forward's rule for its outputs: a packed dQKV buffer
  // is refused). (The view above checked that each is writable, and that dO is readable.)
  for (std::size_t i = 0; i < std::size(outputs); ++i) {
    const auto& [name, out] = outputs[i];
    for (std::size_t j = 0; j < i; ++j)
      if (overlap(out, outputs[j].second))
        fail(Status::InvalidArgument, name, ": shares memory with ", outputs[j].first,
             " (each gradient needs its own memory)");
  }

  // The kernels' argument blocks: the forward's, with the packed rows the gradients hold too.
  AttnArgs& k = bp.forward.kernel_args;
  if (varlen) {
    // Fewer gradient rows than the forward's may not change what the forward's rows fixed: without
    // total_q the LSE's row pitch is cu_seqlens_q[B] clamped to rows_q (common.cl's q_total), and
    // with check_device_data the rows are cu_seqlens[B] read back, every one needed.
    if (gp.kernel_args.rows_q < k.rows_q && (k.total_q <= 0 || a.check_device_data))
      fail(Status::InvalidArgument, "d_q, d_o: hold ", gp.kernel_args.rows_q, " packed rows, fewer than the ",
           k.rows_q, a.check_device_data ? " of cu_seqlens_q[B]" : " that Q, O and LSE hold, which fix the LSE's row pitch "
           "without total_q (pass total_q, or gradient buffers of as many rows)");
    if (gp.kernel_args.rows_k < k.rows_k && a.check_device_data)
      fail(Status::InvalidArgument, "d_k, d_v: hold ", gp.kernel_args.rows_k, " packed rows, fewer than the ", k.rows_k,
           " of cu_seqlens_k[B]");
    k.rows_q = std::min(k.rows_q, gp.kernel_args.rows_q);
    k.rows_k = std::min(k.rows_k, gp.kernel_args.rows_k);
  }
  bp.dbias_broadcast = want_dbias && (d_bias.batch != a.batch || d_bias.heads != a.heads);
  const std::uint64_t lse_rows = varlen ? static_cast<std::uint64_t>(a.heads) * (k.total_q > 0 ? k.total_q : k.rows_q)
                                        : static_cast<std::uint64_t>(a.batch) * a.heads * a.seqlen_q;
  // fa2 on CPUs: the CPU-shaped backward (plan_bwd_cpu.hpp), whose dQ partials the workspace holds
  if (bwd_cpu_takes(*p.facts, a, process_overrides())) bp.cpu = plan_bwd_cpu(*p.facts, a);
  BackwardArgs resolved = in;  // (the forward part normalised, as the tensor cores' plan reads it)
  resolved.forward = a;
  const bool dq_pass = in.deterministic || bwd_mma_takes_dq(*p.facts, resolved, process_overrides());
  bp.workspace = backward_workspace_layout(a, lse_rows, dq_pass, bp.dbias_broadcast, &bp.cpu);
  if (in.workspace != nullptr) {
    cl_context context = nullptr;
    std::size_t size = 0;
    if (clGetMemObjectInfo(in.workspace, CL_MEM_CONTEXT, sizeof context, &context, nullptr) != CL_SUCCESS)
      fail(Status::InvalidHandle, "workspace: not a valid cl_mem");
    if (context != p.context)
      fail(Status::InvalidHandle, "workspace: buffer belongs to another cl_context than the queue");
    clGetMemObjectInfo(in.workspace, CL_MEM_SIZE, sizeof size, &size, nullptr);
    if (size < bp.workspace.bytes)
      fail(Status::InvalidArgument, "workspace: the backward needs ", bp.workspace.bytes, " bytes, the buffer holds ",
           size);
    check_use(in.workspace, "workspace", true, true);  // (an image or read-only workspace was accepted)
  } else if (bp.workspace.bytes > p.facts->max_alloc_bytes) {
    fail(Status::OutOfResources, "algorithm: the ", to_string(a.algorithm), " backward needs a ", bp.workspace.bytes,
         "-byte workspace but the device's largest buffer is ", p.facts->max_alloc_bytes, " bytes");
  }
  // fa1/fa2 need their tiles to fit; standard (whose program also holds their kernels, never
  // launched then) runs wherever its plain kernels do, so a device too small for any tile still
  // gets it, with one-row tiles in the build options.
  if (a.algorithm != Algorithm::Standard) {
    bp.plan = plan_backward(*p.facts, a.head_dim);
  } else {
    try {
      bp.plan = plan_backward(*p.facts, a.head_dim);
    } catch (const Error&) {
      bp.plan.block_rows = bp.plan.block_cols = 1;
      bp.plan.work_group_size = 1;
    }
  }

  BwdArgs& g = bp.kernel_args;
  set_kernel_view(bp.args.d_o, g.dout_offset, g.dout_batch_stride, g.dout_seq_stride, g.dout_head_stride);
  set_kernel_view(bp.args.d_q, g.dq_offset, g.dq_batch_stride, g.dq_seq_stride, g.dq_head_stride);
  set_kernel_view(bp.args.d_k, g.dk_offset, g.dk_batch_stride, g.dk_seq_stride, g.dk_head_stride);
  set_kernel_view(bp.args.d_v, g.dv_offset, g.dv_batch_stride, g.dv_seq_stride, g.dv_head_stride);
  const Mask& db = bp.args.d_bias;
  if (want_dbias) {
    g.dbias_offset = db.offset;
    g.dbias_batch_stride = db.batch_stride;
    g.dbias_head_stride = db.head_stride;
    g.dbias_row_stride = db.row_stride;
    g.dbias_batch = db.batch;
    g.dbias_heads = db.heads;
    if (bp.dbias_broadcast) {  // dense (B, H, Nq, Nk) in the workspace
      g.ds_offset = bp.workspace.dbias;
      g.ds_row_stride = a.seqlen_k;
      g.ds_head_stride = static_cast<std::int64_t>(a.seqlen_q) * a.seqlen_k;
      g.ds_batch_stride = g.ds_head_stride * a.heads;
    } else {  // straight into d_bias
      g.ds_offset = db.offset;
      g.ds_batch_stride = db.batch_stride;
      g.ds_head_stride = db.head_stride;
      g.ds_row_stride = db.row_stride;
    }
  }
  g.ws_d_offset = bp.workspace.d;
  g.ws_dq_offset = bp.workspace.dq;
  g.ws_p_offset = bp.workspace.p;
  g.ws_ds_offset = bp.workspace.ds;
  return bp;
}

}  // namespace flashcl::detail
