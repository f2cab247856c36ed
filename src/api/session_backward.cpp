// session_backward.cpp: Session::backward, the backward on host arrays: uploads Q, K, V, O, dO and
// the LSE (rounded to the storage dtype, as Session::forward does) and the variants' data, runs
// flashcl::backward on the session's queue and reads dQ, dK, dV (and the bias gradient) back.
#include <algorithm>
#include <memory>

#include "base/errors.hpp"

namespace flashcl {
namespace {

using detail::check_cl;
using detail::fail;

// Owns the buffers one call creates.
class Buffers {
 public:
  explicit Buffers(cl_context context) : context_(context) {}
  Buffers(const Buffers&) = delete;
  Buffers& operator=(const Buffers&) = delete;
  ~Buffers() {
    for (cl_mem m : held_) clReleaseMemObject(m);
  }
  // At least `bytes` (OpenCL has no empty buffers), filled from `data` when given.
  cl_mem make(std::size_t bytes, const void* data) {
    cl_int err = CL_SUCCESS;
    const cl_mem_flags flags = CL_MEM_READ_WRITE | (data != nullptr && bytes > 0 ? CL_MEM_COPY_HOST_PTR : 0);
    cl_mem m = clCreateBuffer(context_, flags, std::max<std::size_t>(bytes, 4),
                              bytes > 0 ? const_cast<void*>(data) : nullptr, &err);
    check_cl(err, "clCreateBuffer");
    held_.push_back(m);
    return m;
  }
  // A tensor of host floats in `dtype` storage (or uninitialised, for outputs).
  cl_mem tensor(DType dtype, std::size_t elems, const std::vector<float>* host) {
    if (host == nullptr || dtype == DType::F32)
      return make(elems * element_size(dtype), host != nullptr ? host->data() : nullptr);
    const std::vector<std::uint16_t> bits = to_storage(dtype, *host);
    return make(elems * 2, bits.data());
  }
  cl_mem optional(std::size_t bytes, const void* data) { return bytes == 0 ? nullptr : make(bytes, data); }

 private:
  cl_context context_;
  std::vector<cl_mem> held_;
};

std::vector<float> read_tensor(cl_command_queue queue, cl_mem mem, DType dtype, std::size_t elems, const char* name) {
  std::vector<float> out(elems);
  if (elems == 0) return out;
  if (dtype == DType::F32) {
    check_cl(clEnqueueReadBuffer(queue, mem, CL_TRUE, 0, elems * 4, out.data(), 0, nullptr, nullptr), name);
    return out;
  }
  std::vector<std::uint16_t> bits(elems);
  check_cl(clEnqueueReadBuffer(queue, mem, CL_TRUE, 0, elems * 2, bits.data(), 0, nullptr, nullptr), name);
  return from_storage(dtype, bits);
}

}  // namespace

Session::Gradients Session::backward(const BackwardArgs& shape, const std::vector<float>& q,
                                     const std::vector<float>& k, const std::vector<float>& v,
                                     const std::vector<float>& o, const std::vector<float>& d_o,
                                     const std::vector<float>& lse, const HostVariants& variants) {
  const ForwardArgs& f = shape.forward;
  if (f.batch < 1 || f.heads < 1 || f.seqlen_q < 1 || f.seqlen_k < 1 || f.head_dim < 1)
    fail(Status::InvalidArgument, "shape: batch, heads, seqlen_q, seqlen_k and head_dim must be >= 1");
  const bool varlen = !variants.cu_seqlens_q.empty() || !variants.cu_seqlens_k.empty();
  const std::size_t offsets = static_cast<std::size_t>(f.batch) + 1;
  if (varlen && (variants.cu_seqlens_q.size() != offsets || variants.cu_seqlens_k.size() != offsets))
    fail(Status::InvalidArgument, "cu_seqlens_q, cu_seqlens_k: expected batch + 1 = ", offsets, " offsets each");
  const std::size_t rows_q = varlen ? static_cast<std::size_t>(std::max(variants.cu_seqlens_q.back(), 0))
                                    : static_cast<std::size_t>(f.batch) * f.seqlen_q;
  const std::size_t rows_k = varlen ? static_cast<std::size_t>(std::max(variants.cu_seqlens_k.back(), 0))
                                    : static_cast<std::size_t>(f.batch) * f.seqlen_k;
  const int heads_kv = f.heads_kv > 0 ? f.heads_kv : f.heads;
  const std::size_t nq = rows_q * f.heads * f.head_dim, nk = rows_k * heads_kv * f.head_dim, nlse = rows_q * f.heads;
  const struct {
    const char* name;
    const std::vector<float>& data;
    std::size_t want;
  } inputs[] = {{"q", q, nq}, {"k", k, nk}, {"v", v, nk}, {"o", o, nq}, {"d_o", d_o, nq}, {"lse", lse, nlse}};
  for (const auto& in : inputs)
    if (in.data.size() != in.want)
      fail(Status::InvalidArgument, in.name, ": expected ", in.want, " floats, got ", in.data.size());
  const bool bool_mask = f.mask.kind == MaskKind::Bool, bias_mask = f.mask.kind == MaskKind::Bias;
  if (bool_mask != !variants.mask.empty() || bias_mask != !variants.bias.empty())
    fail(Status::InvalidArgument, "mask: shape.forward.mask.kind and the host array must agree");
  const bool want_dbias = shape.d_bias.kind != MaskKind::None;
  if (want_dbias && !bias_mask)
    fail(Status::InvalidArgument, "d_bias: needs an additive bias (forward.mask.kind Bias)");

  const DType dtype = f.dtype;
  Buffers buffers(context_);
  BackwardArgs args = shape;
  ForwardArgs& a = args.forward;
  auto view = [&](cl_mem mem, int heads) {  // packed rows with varlen, else dense
    return varlen ? Tensor{mem, 0, 0, std::int64_t{heads} * f.head_dim, f.head_dim} : Tensor{mem};
  };
  a.q = view(buffers.tensor(dtype, nq, &q), f.heads);
  a.k = view(buffers.tensor(dtype, nk, &k), heads_kv);
  a.v = view(buffers.tensor(dtype, nk, &v), heads_kv);
  a.o = view(buffers.tensor(dtype, nq, &o), f.heads);
  a.lse = buffers.make(nlse * sizeof(float), lse.data());
  a.workspace = nullptr;
  a.alibi_slopes = buffers.optional(variants.alibi_slopes.size() * sizeof(float), variants.alibi_slopes.data());
  a.mask.buffer = bool_mask ? buffers.optional(variants.mask.size(), variants.mask.data())
                            : buffers.optional(variants.bias.size() * sizeof(float), variants.bias.data());
  a.cu_seqlens_q = buffers.optional(variants.cu_seqlens_q.size() * sizeof(int), variants.cu_seqlens_q.data());
  a.cu_seqlens_k = buffers.optional(variants.cu_seqlens_k.size() * sizeof(int), variants.cu_seqlens_k.data());
  if (varlen) {  // this call blocks anyway: offsets that do not fit are errors, not clamped rows
    a.total_q = static_cast<int>(rows_q);
    a.check_device_data = true;
  }
  args.d_o = view(buffers.tensor(dtype, nq, &d_o), f.heads);
  args.d_q = view(buffers.tensor(dtype, nq, nullptr), f.heads);
  args.d_k = view(buffers.tensor(dtype, nk, nullptr), heads_kv);
  args.d_v = view(buffers.tensor(dtype, nk, nullptr), heads_kv);
  // the bias gradient: dense in the bias's own broadcast shape
  const std::size_t dbias_elems = want_dbias ? static_cast<std::size_t>(shape.d_bias.batch > 0 ? shape.d_bias.batch
                                                                        : f.mask.batch > 0     ? f.mask.batch
                                                                                               : f.batch) *
                                                   (shape.d_bias.heads > 0 ? shape.d_bias.heads
                                                    : f.mask.heads > 0     ? f.mask.heads
                                                                           : f.heads) *
                                                   f.seqlen_q * f.seqlen_k
                                             : 0;
  if (want_dbias) {
    args.d_bias.buffer = buffers.make(dbias_elems * sizeof(float), nullptr);
    args.d_bias.offset = args.d_bias.batch_stride = args.d_bias.head_stride = args.d_bias.row_stride = 0;
  }
  args.workspace = nullptr;
  flashcl::backward(queue_, args).wait();

  Gradients g;
  g.d_q = read_tensor(queue_, args.d_q.buffer, dtype, nq, "clEnqueueReadBuffer(d_q)");
  g.d_k = read_tensor(queue_, args.d_k.buffer, dtype, nk, "clEnqueueReadBuffer(d_k)");
  g.d_v = read_tensor(queue_, args.d_v.buffer, dtype, nk, "clEnqueueReadBuffer(d_v)");
  if (want_dbias)
    g.d_bias = read_tensor(queue_, args.d_bias.buffer, DType::F32, dbias_elems, "clEnqueueReadBuffer(d_bias)");
  return g;
}

}  // namespace flashcl
