// validate_fp8.cpp: what an fp8 (e4m3/e5m2) forward call must satisfy beyond any other call: O's
// storage type, the one path that decodes fp8 (fa2), the block size and V layout of its descales,
// and, on request, descale values that are finite and positive. validate.cpp checks the descale
// buffers themselves (handles, context, sizes, flags, aliasing) with its own helpers.
#include "validate/validate_fp8.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "base/errors.hpp"

namespace flashcl::detail {

void normalize_fp8(ForwardArgs& a) {
  const Fp8Scales& f = a.fp8;
  if (!is_fp8(a.dtype)) {
    if (a.out_dtype && *a.out_dtype != a.dtype)
      fail(Status::InvalidArgument, "out_dtype: only an fp8 dtype takes one (O is stored as dtype ", to_string(a.dtype),
           "); leave it unset, got ", to_string(*a.out_dtype));
    if (f.q_descale != nullptr || f.k_descale != nullptr || f.v_descale != nullptr || f.quant_block != 0 ||
        f.v_transposed)
      fail(Status::InvalidArgument, "fp8: descales, quant_block and v_transposed are for dtype e4m3/e5m2, not ",
           to_string(a.dtype));
    a.out_dtype = a.dtype;
    return;
  }
  if (!a.out_dtype) a.out_dtype = DType::BF16;  // FlashAttention-3's default output for fp8 inputs
  const DType out = *a.out_dtype;
  if (out != DType::F32 && out != DType::F16 && out != DType::BF16)
    fail(Status::UnsupportedDType, "out_dtype: O is stored as f32, f16 or bf16, got ",
         is_fp8(out) ? to_string(out) : "an unknown value");
  if (a.algorithm == Algorithm::Standard || a.algorithm == Algorithm::FA1)
    fail(Status::UnsupportedDType, "algorithm: ", to_string(a.algorithm), " cannot take ", to_string(a.dtype),
         " inputs; fp8 runs on fa2 (and auto)");
  if (f.quant_block < 0) fail(Status::InvalidArgument, "fp8.quant_block: must be >= 0 (0: per (B, H_kv)), got ", f.quant_block);
  if (f.v_transposed) {
    if (a.cu_seqlens_q != nullptr || a.cu_seqlens_k != nullptr)
      fail(Status::InvalidArgument, "fp8.v_transposed: not with varlen (cu_seqlens); store V (total_k, H_kv, d)");
    Tensor& v = a.v;
    if (v.batch_stride == 0 && v.seq_stride == 0 && v.head_stride == 0) {  // dense (B, H_kv, d, Nk)
      v.seq_stride = a.seqlen_k;
      v.head_stride = std::int64_t{a.head_dim} * a.seqlen_k;
      v.batch_stride = v.head_stride * (a.heads_kv > 0 ? a.heads_kv : a.heads);
    }
  }
}

DescaleCounts descale_counts(const ForwardArgs& a) {
  const std::size_t b = static_cast<std::size_t>(a.batch), hkv = static_cast<std::size_t>(a.heads_kv > 0 ? a.heads_kv : a.heads);
  const int n = a.fp8.quant_block;
  if (n <= 0) return {b * hkv, b * hkv, b * hkv};
  // ceil(rows / n) in 64 bits (rows + n - 1 overflows int for a block near 2^31)
  const auto blocks = [n](int rows) { return (static_cast<std::size_t>(std::max(rows, 0)) + n - 1) / n; };
  return {b * a.heads * blocks(a.seqlen_q), b * hkv * blocks(a.seqlen_k), b * hkv * blocks(a.seqlen_k)};
}

void check_descale_values(cl_command_queue queue, const ForwardArgs& a, const std::vector<cl_event>& wait) {
  const DescaleCounts n = descale_counts(a);
  const std::pair<cl_mem, std::size_t> buffers[] = {{a.fp8.q_descale, n.q}, {a.fp8.k_descale, n.k}, {a.fp8.v_descale, n.v}};
  const char* names[] = {"fp8.q_descale", "fp8.k_descale", "fp8.v_descale"};
  for (int i = 0; i < 3; ++i) {
    std::vector<float> values(buffers[i].second);
    const cl_int err = clEnqueueReadBuffer(queue, buffers[i].first, CL_TRUE, 0, values.size() * sizeof(float), values.data(),
                                           static_cast<cl_uint>(wait.size()), wait.empty() ? nullptr : wait.data(), nullptr);
    if (err != CL_SUCCESS) fail(Status::OpenCLError, names[i], ": clEnqueueReadBuffer failed (", err, ")");
    for (std::size_t e = 0; e < values.size(); ++e)
      if (!(std::isfinite(values[e]) && values[e] > 0.0f))
        fail(Status::InvalidArgument, names[i], ": entry ", e, " is ", values[e], "; a descale must be finite and > 0");
  }
}

}  // namespace flashcl::detail
