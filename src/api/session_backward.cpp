// session_backward.cpp: Session::backward, the backward on host arrays: Q, K, V, O, dO and the
// forward's LSE in, dQ, dK, dV (and the bias gradient) out, through buffers over the caller's
// memory where the device shares it, else copies rounded to the storage dtype, as Session::forward
// does (host_buffers.hpp); the variants' data copied; flashcl::backward on the session's queue.
#include <algorithm>

#include "api/host_buffers.hpp"
#include "base/errors.hpp"

namespace flashcl {

using detail::fail;

std::size_t Session::d_bias_size(const BackwardArgs& shape) {
  const ForwardArgs& f = shape.forward;
  if (shape.d_bias.kind == MaskKind::None) return 0;
  // dense in the bias's broadcast shape: batch/heads 0 are the bias's, and the bias's 0 the call's
  const auto dim = [](int own, int bias, int call) {
    return static_cast<std::size_t>(own > 0 ? own : bias > 0 ? bias : call);
  };
  return dim(shape.d_bias.batch, f.mask.batch, f.batch) * dim(shape.d_bias.heads, f.mask.heads, f.heads) *
         static_cast<std::size_t>(std::max(f.seqlen_q, 0)) * static_cast<std::size_t>(std::max(f.seqlen_k, 0));
}

Session::Gradients Session::backward(const BackwardArgs& shape, const std::vector<float>& q,
                                     const std::vector<float>& k, const std::vector<float>& v,
                                     const std::vector<float>& o, const std::vector<float>& d_o,
                                     const std::vector<float>& lse, const HostVariants& variants) {
  const detail::HostRows r = detail::host_rows(shape.forward, variants);
  Gradients g;
  g.d_q.resize(r.nq);
  g.d_k.resize(r.nk);
  g.d_v.resize(r.nk);
  g.d_bias.resize(d_bias_size(shape));
  auto in = [](const std::vector<float>& x) { return HostView<const float>{x.data(), x.size()}; };
  auto out = [](std::vector<float>& x) { return HostView<float>{x.data(), x.size()}; };
  backward(shape, in(q), in(k), in(v), in(o), in(d_o), in(lse),
           GradientViews{out(g.d_q), out(g.d_k), out(g.d_v), out(g.d_bias)}, variants);
  return g;
}

void Session::backward(const BackwardArgs& shape, HostView<const float> q, HostView<const float> k,
                       HostView<const float> v, HostView<const float> o, HostView<const float> d_o,
                       HostView<const float> lse, const GradientViews& grads, const HostVariants& variants) {
  const ForwardArgs& f = shape.forward;
  const detail::HostRows r = detail::host_rows(f, variants);
  const std::size_t nq = r.nq, nk = r.nk, nlse = r.nlse;
  const char* layout = r.varlen ? " floats (packed rows,H,d)" : " floats (dense B,S,H,d)";
  const struct {
    const char* name;
    std::size_t size, want;
    const char* what;
  } arrays[] = {{"q", q.size, nq, layout},           {"k", k.size, nk, layout},
                {"v", v.size, nk, layout},           {"o", o.size, nq, layout},
                {"d_o", d_o.size, nq, layout},       {"lse", lse.size, nlse, " floats (H rows of Q)"},
                {"d_q", grads.d_q.size, nq, layout}, {"d_k", grads.d_k.size, nk, layout},
                {"d_v", grads.d_v.size, nk, layout}};
  for (const auto& a : arrays)
    if (a.size != a.want) fail(Status::InvalidArgument, a.name, ": expected ", a.want, a.what, ", got ", a.size);
  const bool bool_mask = f.mask.kind == MaskKind::Bool, bias_mask = f.mask.kind == MaskKind::Bias;
  if (bool_mask != !variants.mask.empty() || bias_mask != !variants.bias.empty())
    fail(Status::InvalidArgument, "mask: shape.forward.mask.kind and the host array must agree");
  const bool want_dbias = shape.d_bias.kind != MaskKind::None;
  if (want_dbias && !bias_mask)
    fail(Status::InvalidArgument, "d_bias: needs an additive bias (forward.mask.kind Bias)");
  const std::size_t dbias_elems = d_bias_size(shape);
  if (want_dbias && (grads.d_bias.data == nullptr || grads.d_bias.size != dbias_elems))
    fail(Status::InvalidArgument, "d_bias: expected ", dbias_elems, " floats (the bias's broadcast shape), got ",
         grads.d_bias.size);
  if (!want_dbias && grads.d_bias.size != 0)
    fail(Status::InvalidArgument, "d_bias: an array was given but shape.d_bias.kind is None");
  const DType dtype = f.dtype;
  if (is_fp8(dtype))
    fail(Status::UnsupportedDType, "dtype: Session::backward takes host arrays as f32, f16 or bf16, not ",
         to_string(dtype));

  // every array over the caller's memory where it can be (host_buffers.hpp), else a copy
  detail::HostBuffers buffers(context_, queue_, host_unified_, host_ptr_align_);
  BackwardArgs args = shape;
  ForwardArgs& a = args.forward;
  auto in = [&](const detail::HostInput& x, int heads) { return r.view(x.mem, heads, x.offset); };
  a.q = in(buffers.input("q", q.data, nq, dtype), f.heads);
  a.k = in(buffers.input("k", k.data, nk, dtype), r.heads_kv);
  a.v = in(buffers.input("v", v.data, nk, dtype), r.heads_kv);
  // LSE is a bare cl_mem, no offset: used in place only when aligned.
  a.o = in(buffers.input("o", o.data, nq, dtype), f.heads);
  args.d_o = in(buffers.input("d_o", d_o.data, nq, dtype), f.heads);
  a.lse = buffers.input("lse", lse.data, nlse, DType::F32, false).mem;
  args.d_q = r.view(buffers.output("d_q", grads.d_q.data, nq, dtype), f.heads);
  args.d_k = r.view(buffers.output("d_k", grads.d_k.data, nk, dtype), r.heads_kv);
  args.d_v = r.view(buffers.output("d_v", grads.d_v.data, nk, dtype), r.heads_kv);
  if (want_dbias) {  // dense, in the bias's own broadcast shape
    args.d_bias.buffer = buffers.output("d_bias", grads.d_bias.data, dbias_elems, DType::F32);
    args.d_bias.offset = args.d_bias.batch_stride = args.d_bias.head_stride = args.d_bias.row_stride = 0;
  }
  last_backward_host_buffers_ = buffers.over_host();
  a.workspace = nullptr;
  a.alibi_slopes = buffers.optional(variants.alibi_slopes.size() * sizeof(float), variants.alibi_slopes.data());
  a.mask.buffer = bool_mask ? buffers.optional(variants.mask.size(), variants.mask.data())
                            : buffers.optional(variants.bias.size() * sizeof(float), variants.bias.data());
  a.cu_seqlens_q = buffers.optional(variants.cu_seqlens_q.size() * sizeof(int), variants.cu_seqlens_q.data());
  a.cu_seqlens_k = buffers.optional(variants.cu_seqlens_k.size() * sizeof(int), variants.cu_seqlens_k.data());
  if (r.varlen) {  // this call blocks anyway: offsets that do not fit are errors, not clamped rows
    a.total_q = static_cast<int>(r.rows_q);
    a.check_device_data = true;
  }
  args.workspace = nullptr;
  flashcl::backward(queue_, args);
  buffers.finish();  // the gradients in the caller's memory, nothing pending on its buffers
}

}  // namespace flashcl
