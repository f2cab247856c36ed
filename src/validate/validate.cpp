// validate.cpp: every check on a forward call, in one place, before anything is enqueued: shapes,
// head dim, scale, dtype, handles (null, wrong context), strides that overrun a buffer, optional
// outputs and workspace sizes, and the variants (GQA heads, window, softcap, ALiBi slopes, masks
// that must broadcast and fit their buffer, cu_seqlens that must be non-decreasing and fit the
// maximum lengths and the buffers). Messages name the parameter. Nothing is read from the device:
// cu_seqlens are clamped by the kernels to the rows the buffers hold (rows_q, rows_k), unless the
// caller asks for check_device_data, the one blocking read (after every host-side check). The one
// argument judged later is the caller's workspace (check_workspace): its size comes from the call's
// plan, which is made from the validated arguments.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <utility>
#include <vector>

#include "validate/buffer_checks.hpp"  // check_use, span_of, check_aliasing
#include "base/errors.hpp"
#include "plan/head_dims.hpp"  // kMaxHeadDim
#include "validate/problem.hpp"
#include "validate/validate_fp8.hpp"

namespace flashcl::detail {
namespace {

// Nq + Nk bounds every row/key expression of every kernel (with a block of margin, < 2^24).
constexpr std::int64_t kMaxLengthSum = (std::int64_t{1} << 31) - (std::int64_t{1} << 24);

bool is_varlen(const ForwardArgs& a) { return a.cu_seqlens_q != nullptr || a.cu_seqlens_k != nullptr; }

void resolve_strides(Tensor& t, const ForwardArgs& a, int seqlen, int heads, const char* name) {
  if (t.batch_stride < 0 || t.seq_stride < 0 || t.head_stride < 0 || t.offset < 0)
    fail(Status::InvalidArgument, name, ": offset and strides must be >= 0 (got offset ", t.offset, ", strides ",
         t.batch_stride, ", ", t.seq_stride, ", ", t.head_stride, ")");
  if (is_varlen(a)) t.batch_stride = 0;  // packed (total, H, d): sequences start at their cu_seqlens row
  if (t.batch_stride == 0 && t.seq_stride == 0 && t.head_stride == 0) {  // dense (B, S, H, d)
    t.head_stride = a.head_dim;
    t.seq_stride = static_cast<std::int64_t>(heads) * a.head_dim;
    t.batch_stride = is_varlen(a) ? 0 : t.seq_stride * seqlen;
  }
}

// Reaches are computed in 128 bits and capped at 2^60: huge strides, offsets or shapes must fail
// the buffer-size check rather than overflow int64 (UB; found by fuzz_c_api) and wrap around to a
// reach that fits a small buffer, i.e. an out-of-bounds kernel.
struct Axis {
  int count;
  std::int64_t stride;
};

// Largest element index reached by offset + Σ (0 … count - 1)·stride + (0 … last - 1), plus one
// (0 when an axis is empty).
std::int64_t extent(std::int64_t offset, std::initializer_list<Axis> axes, std::int64_t last) {
  using Wide = __int128;
  Wide e = Wide{offset} + last;
  for (const Axis& axis : axes) {
    if (axis.count == 0) return 0;
    e += Wide{axis.count - 1} * axis.stride;
  }
  const Wide cap = Wide{1} << 60;
  return static_cast<std::int64_t>(e > cap ? cap : e);
}

std::int64_t extent(const Tensor& t, const ForwardArgs& a, int batch, int rows, int heads) {
  return extent(t.offset, {{batch, t.batch_stride}, {rows, t.seq_stride}, {heads, t.head_stride}}, a.head_dim);
}

cl_context context_of(cl_mem buffer, const char* name) {
  cl_context ctx = nullptr;
  if (clGetMemObjectInfo(buffer, CL_MEM_CONTEXT, sizeof ctx, &ctx, nullptr) != CL_SUCCESS)
    fail(Status::InvalidHandle, name, ": not a valid cl_mem");
  return ctx;
}

std::size_t size_of(cl_mem buffer) {
  std::size_t size = 0;
  clGetMemObjectInfo(buffer, CL_MEM_SIZE, sizeof size, &size, nullptr);
  return size;
}

void check_buffer(cl_mem buffer, cl_context context, std::size_t need_bytes, const char* name) {
  if (buffer == nullptr) fail(Status::InvalidHandle, name, ": null cl_mem");
  if (context_of(buffer, name) != context)
    fail(Status::InvalidHandle, name, ": buffer belongs to another cl_context than the queue");
  const std::size_t have = size_of(buffer);
  if (need_bytes > have)
    fail(Status::InvalidArgument, name, ": shape and strides reach byte ", need_bytes, " but the buffer holds ", have);
}

// Checks that a cu_seqlens buffer is usable (handle, context, B + 1 entries) without reading it.
void check_cu_buffer(cl_mem buffer, cl_context context, int batch, const char* name) {
  const std::size_t n = static_cast<std::size_t>(batch) + 1;
  if (buffer == nullptr) fail(Status::InvalidHandle, name, ": null cl_mem (cu_seqlens_q and cu_seqlens_k go together)");
  if (context_of(buffer, name) != context)
    fail(Status::InvalidHandle, name, ": buffer belongs to another cl_context than the queue");
  if (size_of(buffer) < n * sizeof(std::int32_t))
    fail(Status::InvalidArgument, name, ": needs batch + 1 = ", n, " int32 entries but the buffer holds ",
         size_of(buffer), " bytes");
}

// check_device_data only: reads cu_seqlens (B + 1 int32) after `wait` and rejects what the
// kernels would otherwise clamp; returns the total row count.
int read_cu_seqlens(cl_command_queue queue, cl_mem buffer, int batch, int max_len, const char* name,
                    const char* max_name, const std::vector<cl_event>& wait) {
  const std::size_t n = static_cast<std::size_t>(batch) + 1;
  std::vector<std::int32_t> cu(n);
  const cl_int err = clEnqueueReadBuffer(queue, buffer, CL_TRUE, 0, n * sizeof(std::int32_t), cu.data(),
                                         static_cast<cl_uint>(wait.size()), wait.empty() ? nullptr : wait.data(), nullptr);
  if (err != CL_SUCCESS) fail(Status::OpenCLError, name, ": clEnqueueReadBuffer failed (", err, ")");
  if (cu[0] < 0) fail(Status::InvalidArgument, name, ": entry 0 must be >= 0, got ", cu[0]);
  for (int b = 0; b < batch; ++b) {
    if (cu[b + 1] < cu[b])
      fail(Status::InvalidArgument, name, ": must be non-decreasing, but entry ", b + 1, " (", cu[b + 1],
           ") < entry ", b, " (", cu[b], ")");
    if (cu[b + 1] - cu[b] > max_len)
      fail(Status::InvalidArgument, name, ": sequence ", b, " has ", cu[b + 1] - cu[b], " rows, more than ", max_name,
           " (the maximum length) ", max_len);
  }
  return cu[batch];
}

// Packed rows (0, 1, ...) of `t` whose every element lies inside a buffer of `bytes`, capped at
// INT_MAX (a zero sequence stride repeats one row: all rows or none).
int rows_held(const Tensor& t, int heads, int head_dim, std::size_t elem, std::size_t bytes) {
  const std::int64_t elems = static_cast<std::int64_t>(bytes / elem);
  const std::int64_t one = extent(t.offset, {{1, t.seq_stride}, {heads, t.head_stride}}, head_dim);  // row 0's reach
  if (one > elems) return 0;
  if (t.seq_stride == 0) return std::numeric_limits<int>::max();
  return static_cast<int>(std::min<std::int64_t>((elems - one) / t.seq_stride + 1, std::numeric_limits<int>::max()));
}

}  // namespace

ForwardArgs normalize_shape(cl_device_id device, const ForwardArgs& in) {
  ForwardArgs a = in;
  if (a.batch < 1) fail(Status::InvalidArgument, "batch: must be >= 1, got ", a.batch);
  if (a.heads < 1) fail(Status::InvalidArgument, "heads: must be >= 1, got ", a.heads);
  if (a.seqlen_q < 1) fail(Status::InvalidArgument, "seqlen_q: must be >= 1, got ", a.seqlen_q);
  if (a.seqlen_k < 1) fail(Status::InvalidArgument, "seqlen_k: must be >= 1, got ", a.seqlen_k);
  if (a.head_dim < 1 || a.head_dim > kMaxHeadDim)
    fail(Status::InvalidArgument, "head_dim: must be in 1..", kMaxHeadDim, ", got ", a.head_dim);
  if (a.dtype != DType::F32 && a.dtype != DType::F16 && a.dtype != DType::BF16 && !is_fp8(a.dtype))
    fail(Status::UnsupportedDType, "dtype: unknown value ", static_cast<int>(a.dtype));
  if (a.batch > 65535 || a.heads > 65535)
    fail(Status::InvalidArgument, "batch/heads: at most 65535 each (work-group grid limit)");
  // The kernels' 32-bit index arithmetic (the audit in docs/CHECKS.md): a (batch, head) pair and
  // row/key bounds (at most Nq + Nk plus a block) must fit an int.
  if (std::int64_t{a.batch} * a.heads > std::numeric_limits<int>::max())
    fail(Status::InvalidArgument, "batch*heads: at most 2^31 - 1 (batch ", a.batch, ", heads ", a.heads, ")");
  if (std::int64_t{a.seqlen_q} + a.seqlen_k > kMaxLengthSum)
    fail(Status::InvalidArgument, "seqlen_q + seqlen_k: at most 2^31 - 2^24 (got ", a.seqlen_q, " + ", a.seqlen_k,
         "): the kernels index rows and keys in 32 bits");
  if (a.heads_kv == 0) a.heads_kv = a.heads;
  const std::pair<int, const char*> tile_fields[] = {{a.tile.block_rows, "tile.block_rows"},
                                                     {a.tile.block_cols, "tile.block_cols"},
                                                     {a.tile.team_size, "tile.team_size"},
                                                     {a.tile.rows_per_team, "tile.rows_per_team"}};
  for (const auto& [value, name] : tile_fields)
    if (value < 0) fail(Status::InvalidArgument, name, ": must be >= 0 (0: the planner's choice), got ", value);
  if (a.heads_kv < 0 || a.heads % a.heads_kv != 0)
    fail(Status::InvalidArgument, "heads_kv: heads (", a.heads, ") must be a multiple of heads_kv (", a.heads_kv,
         ") for GQA/MQA");
  if (a.window.left < -1) fail(Status::InvalidArgument, "window.left: must be >= -1 (-1: unbounded), got ", a.window.left);
  if (a.window.right < -1)
    fail(Status::InvalidArgument, "window.right: must be >= -1 (-1: unbounded), got ", a.window.right);
  if (!std::isfinite(a.softcap) || a.softcap < 0.0f)
    fail(Status::InvalidArgument, "softcap: must be finite and >= 0 (0: off), got ", a.softcap);
  if ((a.cu_seqlens_q == nullptr) != (a.cu_seqlens_k == nullptr))
    fail(Status::InvalidArgument, a.cu_seqlens_q == nullptr ? "cu_seqlens_q" : "cu_seqlens_k",
         ": cu_seqlens_q and cu_seqlens_k must be given together");
  if (a.alibi_slopes == nullptr) a.alibi_per_batch = false;
  Mask& m = a.mask;
  switch (m.kind) {
    case MaskKind::None: m = Mask{}; break;
    case MaskKind::Bool: case MaskKind::Bias: break;
    default: fail(Status::InvalidArgument, "mask.kind: unknown value ", static_cast<int>(m.kind));
  }
  if (m.kind != MaskKind::None) {
    if (m.batch == 0) m.batch = a.batch;
    if (m.heads == 0) m.heads = a.heads;
    if (m.batch != 1 && m.batch != a.batch)
      fail(Status::InvalidArgument, "mask.batch: ", m.batch, " does not broadcast to batch ", a.batch, " (use 1 or ",
           a.batch, ")");
    if (m.heads != 1 && m.heads != a.heads)
      fail(Status::InvalidArgument, "mask.heads: ", m.heads, " does not broadcast to heads ", a.heads, " (use 1 or ",
           a.heads, ")");
    if (m.offset < 0 || m.batch_stride < 0 || m.head_stride < 0 || m.row_stride < 0)
      fail(Status::InvalidArgument, "mask: offset and strides must be >= 0");
    if (m.batch_stride == 0 && m.head_stride == 0 && m.row_stride == 0) {  // dense (mask.batch, mask.heads, Nq, Nk)
      // each stride is the extent of one slice below it, capped like any reach: H·Nq·Nk can pass 2^63
      m.row_stride = a.seqlen_k;
      m.head_stride = extent(0, {{a.seqlen_q, m.row_stride}}, a.seqlen_k);
      m.batch_stride = extent(0, {{m.heads, m.head_stride}}, m.head_stride);
    }
    if (m.batch == 1) m.batch_stride = 0;  // broadcast
    if (m.heads == 1) m.head_stride = 0;
  }
  if (!a.scale) a.scale = 1.0f / std::sqrt(static_cast<float>(a.head_dim));
  if (!std::isfinite(*a.scale)) fail(Status::InvalidArgument, "scale: must be finite, got ", *a.scale);
  switch (a.algorithm) {
    case Algorithm::Auto: case Algorithm::Standard: case Algorithm::FA1: case Algorithm::FA2: break;
    default: fail(Status::InvalidArgument, "algorithm: unknown value ", static_cast<int>(a.algorithm));
  }
  normalize_fp8(a);  // out_dtype resolved; fp8: path, quant_block, V's layout
  if (a.algorithm == Algorithm::Auto) a.algorithm = resolve_algorithm(device, a);
  resolve_strides(a.q, a, a.seqlen_q, a.heads, "q");
  resolve_strides(a.k, a, a.seqlen_k, a.heads_kv, "k");
  resolve_strides(a.v, a, a.seqlen_k, a.heads_kv, "v");
  resolve_strides(a.o, a, a.seqlen_q, a.heads, "o");
  return a;
}

Problem queue_problem(cl_command_queue queue) {
  if (queue == nullptr) fail(Status::InvalidHandle, "queue: null cl_command_queue");
  Problem p;
  if (clGetCommandQueueInfo(queue, CL_QUEUE_CONTEXT, sizeof p.context, &p.context, nullptr) != CL_SUCCESS ||
      clGetCommandQueueInfo(queue, CL_QUEUE_DEVICE, sizeof p.device, &p.device, nullptr) != CL_SUCCESS)
    fail(Status::InvalidHandle, "queue: not a valid cl_command_queue");
  p.facts = &device_facts(p.device);
  return p;
}

Problem validate(cl_command_queue queue, const ForwardArgs& args, const std::vector<cl_event>& wait,
                 ForwardOutputs outputs) {
  const bool writes_outputs = outputs != ForwardOutputs::Read;
  const bool gradients = outputs == ForwardOutputs::Gradients;  // K, V and the mask are written only
  Problem p = queue_problem(queue);
  p.args = normalize_shape(p.device, args);
  const ForwardArgs& a = p.args;

  // varlen: packed rows (one "batch" of total_q / total_k rows); else (B, S) rows. The totals are
  // the caller's total_q (when given) or, with check_device_data, cu_seqlens[B]; otherwise only
  // the handles are checked here and the kernels keep to the rows the buffers hold (rows_q/k).
  const bool varlen = is_varlen(a);
  const std::size_t elem = element_size(a.dtype), o_elem = element_size(*a.out_dtype);  // fp8: O differs
  const int tensor_batch = varlen ? 1 : a.batch;
  // V's reach: (B, S, H_kv, d), or transposed (B, H_kv, d, S) for fp8 (Fp8Scales::v_transposed)
  auto v_extent = [&](int batch, int rows) {
    return a.fp8.v_transposed
               ? extent(a.v.offset, {{batch, a.v.batch_stride}, {a.heads_kv, a.v.head_stride}, {a.head_dim, a.v.seq_stride}}, rows)
               : extent(a.v, a, batch, rows, a.heads_kv);
  };
  if (a.total_q < 0) fail(Status::InvalidArgument, "total_q: must be >= 0, got ", a.total_q);
  int total_q = varlen ? a.total_q : a.seqlen_q, total_k = a.seqlen_k;
  if (varlen) {
    check_cu_buffer(a.cu_seqlens_q, p.context, a.batch, "cu_seqlens_q");
    check_cu_buffer(a.cu_seqlens_k, p.context, a.batch, "cu_seqlens_k");
    total_k = 0;  // nothing required of K and V until cu_seqlens_k is known
  }
  check_buffer(a.q.buffer, p.context, extent(a.q, a, tensor_batch, total_q, a.heads) * elem, "q");
  check_buffer(a.k.buffer, p.context, extent(a.k, a, tensor_batch, total_k, a.heads_kv) * elem, "k");
  check_buffer(a.v.buffer, p.context, v_extent(tensor_batch, total_k) * elem, "v");
  check_buffer(a.o.buffer, p.context, extent(a.o, a, tensor_batch, total_q, a.heads) * o_elem, "o");
  auto check_lse = [&](int rows) {  // in 128 bits: B·H·Nq·4 can pass 2^64 and must not wrap to a small size
    const unsigned __int128 bytes = static_cast<unsigned __int128>(tensor_batch) * a.heads * rows * sizeof(float);
    check_buffer(a.lse, p.context, bytes > SIZE_MAX ? SIZE_MAX : static_cast<std::size_t>(bytes), "lse");
  };
  if (a.lse != nullptr) check_lse(total_q);
  else if (varlen) total_q = 0;  // no LSE: no layout to fix
  if (a.alibi_slopes != nullptr)
    check_buffer(a.alibi_slopes, p.context,
                 static_cast<std::size_t>(a.alibi_per_batch ? a.batch : 1) * a.heads * sizeof(float), "alibi_slopes");
  const Mask& m = a.mask;
  if (m.kind != MaskKind::None) {
    const std::int64_t reach =
        extent(m.offset, {{m.batch, m.batch_stride}, {m.heads, m.head_stride}, {a.seqlen_q, m.row_stride}}, a.seqlen_k);
    if (m.buffer == nullptr) fail(Status::InvalidHandle, "mask: null cl_mem with mask.kind set");
    check_buffer(m.buffer, p.context, reach * (m.kind == MaskKind::Bool ? 1 : sizeof(float)), "mask");
  }
  // Packed rows the kernels may touch. check_device_data: the device's offsets, checked last so
  // that every host-side error comes before the only wait (the read-back).
  int rows_q = total_q, rows_k = total_k;
  if (varlen) {
    rows_q = std::min(rows_held(a.q, a.heads, a.head_dim, elem, size_of(a.q.buffer)),
                      rows_held(a.o, a.heads, a.head_dim, o_elem, size_of(a.o.buffer)));
    if (a.lse != nullptr)  // LSE (H, rows): without total_q the kernels take rows = cu_seqlens_q[B], clamped here
      rows_q = std::min<std::int64_t>(rows_q, size_of(a.lse) / (sizeof(float) * a.heads));
    if (total_q > 0) rows_q = total_q;  // the buffers hold it (checked above)
    rows_k = std::min(rows_held(a.k, a.heads_kv, a.head_dim, elem, size_of(a.k.buffer)),
                      rows_held(a.v, a.heads_kv, a.head_dim, elem, size_of(a.v.buffer)));
  }

  // What each buffer is used for, and no output sharing bytes with another argument.
  const int rows_batch = varlen ? 1 : a.batch;
  auto tensor_span = [&](const Tensor& t, int rows, int heads, const char* name, bool output, std::size_t size = 0) {
    const std::size_t e = size != 0 ? size : elem;
    const std::uint64_t lo = static_cast<std::uint64_t>(t.offset) * e;
    return span_of(t.buffer, lo, static_cast<std::uint64_t>(extent(t, a, rows_batch, rows, heads)) * e, name, output);
  };
  std::vector<Span> spans = {tensor_span(a.q, rows_q, a.heads, "q", false),
                             tensor_span(a.k, rows_k, a.heads_kv, "k", false),
                             a.fp8.v_transposed ? span_of(a.v.buffer, static_cast<std::uint64_t>(a.v.offset) * elem,
                                                          static_cast<std::uint64_t>(v_extent(rows_batch, rows_k)) * elem,
                                                          "v", false)
                                                : tensor_span(a.v, rows_k, a.heads_kv, "v", false),
                             tensor_span(a.o, rows_q, a.heads, "o", writes_outputs, o_elem)};
  if (is_fp8(a.dtype)) {  // the descales: fp32 inputs (validate_fp8.hpp has their sizes)
    const DescaleCounts counts = descale_counts(a);
    const std::pair<cl_mem, std::size_t> descales[] = {
        {a.fp8.q_descale, counts.q}, {a.fp8.k_descale, counts.k}, {a.fp8.v_descale, counts.v}};
    const char* names[] = {"fp8.q_descale", "fp8.k_descale", "fp8.v_descale"};
    for (int i = 0; i < 3; ++i) {
      if (descales[i].first == nullptr)
        fail(Status::InvalidArgument, names[i], ": required with dtype ", to_string(a.dtype), " (fp32 ",
             a.fp8.quant_block > 0 ? "per block of rows" : "(B, H_kv)", " descales; docs/FP8.md)");
      check_buffer(descales[i].first, p.context, descales[i].second * sizeof(float), names[i]);
      check_use(descales[i].first, names[i], true, false);
      spans.push_back(span_of(descales[i].first, 0, descales[i].second * sizeof(float), names[i], false));
    }
  }
  check_use(a.q.buffer, "q", true, false);
  check_use(a.k.buffer, "k", !gradients, gradients);
  check_use(a.v.buffer, "v", !gradients, gradients);
  check_use(a.o.buffer, "o", !writes_outputs, writes_outputs);
  // outputs may not repeat elements (inputs may: a broadcast K is a zero stride)
  auto distinct = [&](const char* name, const Tensor& t, int rows, int heads) {
    check_no_self_overlap(name, {{rows_batch, t.batch_stride}, {rows, t.seq_stride}, {heads, t.head_stride},
                                 {a.head_dim, 1}});
  };
  if (writes_outputs) distinct("o", a.o, rows_q, a.heads);
  if (gradients) {
    distinct("k", a.k, rows_k, a.heads_kv);
    distinct("v", a.v, rows_k, a.heads_kv);
  }
  if (a.lse != nullptr) {
    check_use(a.lse, "lse", !writes_outputs, writes_outputs);
    spans.push_back(
        span_of(a.lse, 0, std::uint64_t{sizeof(float)} * rows_batch * a.heads * rows_q, "lse", writes_outputs));
  }
  if (m.kind != MaskKind::None) {
    const std::uint64_t bytes = m.kind == MaskKind::Bool ? 1 : sizeof(float);
    const std::int64_t reach =
        extent(m.offset, {{m.batch, m.batch_stride}, {m.heads, m.head_stride}, {a.seqlen_q, m.row_stride}}, a.seqlen_k);
    check_use(m.buffer, "mask", !gradients, gradients);
    if (gradients)
      check_no_self_overlap("mask", {{m.batch, m.batch_stride}, {m.heads, m.head_stride}, {a.seqlen_q, m.row_stride},
                                     {a.seqlen_k, 1}});
    spans.push_back(span_of(m.buffer, m.offset * bytes, reach * bytes, "mask", false));
  }
  if (a.alibi_slopes != nullptr) {
    check_use(a.alibi_slopes, "alibi_slopes", true, false);
    spans.push_back(span_of(a.alibi_slopes, 0, std::uint64_t{sizeof(float)} * (a.alibi_per_batch ? a.batch : 1) * a.heads,
                            "alibi_slopes", false));
  }
  if (varlen) {
    const std::uint64_t bytes = sizeof(std::int32_t) * (std::uint64_t{1} + a.batch);
    check_use(a.cu_seqlens_q, "cu_seqlens_q", true, false);
    check_use(a.cu_seqlens_k, "cu_seqlens_k", true, false);
    spans.push_back(span_of(a.cu_seqlens_q, 0, bytes, "cu_seqlens_q", false));
    spans.push_back(span_of(a.cu_seqlens_k, 0, bytes, "cu_seqlens_k", false));
  }
  check_aliasing(spans);
  p.spans = std::move(spans);  // the workspace is checked against them (check_workspace)

  if (varlen) {
    if (a.check_device_data) {
      const int cu_q = read_cu_seqlens(queue, a.cu_seqlens_q, a.batch, a.seqlen_q, "cu_seqlens_q", "seqlen_q", wait);
      const int cu_k = read_cu_seqlens(queue, a.cu_seqlens_k, a.batch, a.seqlen_k, "cu_seqlens_k", "seqlen_k", wait);
      if (a.total_q > 0 && cu_q > a.total_q)
        fail(Status::InvalidArgument, "cu_seqlens_q: entry ", a.batch, " (", cu_q, ") is past total_q ", a.total_q);
      if (a.total_q == 0 && a.lse != nullptr) total_q = cu_q;
      rows_q = cu_q;
      rows_k = cu_k;
      check_buffer(a.q.buffer, p.context, extent(a.q, a, 1, cu_q, a.heads) * elem, "q");
      check_buffer(a.k.buffer, p.context, extent(a.k, a, 1, cu_k, a.heads_kv) * elem, "k");
      check_buffer(a.v.buffer, p.context, extent(a.v, a, 1, cu_k, a.heads_kv) * elem, "v");
      check_buffer(a.o.buffer, p.context, extent(a.o, a, 1, cu_q, a.heads) * o_elem, "o");
      if (a.lse != nullptr) check_lse(total_q);
    }
  }

  if (is_fp8(a.dtype) && a.check_device_data) check_descale_values(queue, a, wait);

  AttnArgs& k = p.kernel_args;
  set_kernel_view(a.q, k.q_offset, k.q_batch_stride, k.q_seq_stride, k.q_head_stride);
  set_kernel_view(a.k, k.k_offset, k.k_batch_stride, k.k_seq_stride, k.k_head_stride);
  set_kernel_view(a.v, k.v_offset, k.v_batch_stride, k.v_seq_stride, k.v_head_stride);
  set_kernel_view(a.o, k.o_offset, k.o_batch_stride, k.o_seq_stride, k.o_head_stride);
  k.batch = a.batch;
  k.heads = a.heads;
  k.seqlen_q = a.seqlen_q;
  k.seqlen_k = a.seqlen_k;
  k.causal_shift = a.seqlen_k - a.seqlen_q;
  k.write_lse = a.lse != nullptr ? 1 : 0;
  k.scale = *a.scale;
  k.scale_log2 = static_cast<float>(static_cast<double>(*a.scale) * 1.4426950408889634);
  k.heads_kv = a.heads_kv;
  k.kv_group = a.heads / a.heads_kv;
  // A side no row can reach past is unbounded: right >= Nq - 1 and left >= Nk - 1 see every key of
  // every sequence. Clamped to Nq and Nk, the kernels' bounds i + (Nk - Nq) + right and
  // i + (Nk - Nq) - left stay within Nq + Nk in magnitude, inside int32 (kMaxLengthSum); the old
  // clamp to Nq + Nk let q_end + shift + right reach Nq + 2 Nk and wrap past 2^31.
  k.window_left = a.window.left < 0 ? -1 : std::min(a.window.left, a.seqlen_k);
  k.window_right = a.window.right < 0 ? -1 : std::min(a.window.right, a.seqlen_q);
  k.total_q = total_q;
  k.rows_q = rows_q;
  k.rows_k = rows_k;
  k.alibi_batch_stride = a.alibi_per_batch ? a.heads : 0;
  // a softcap below 2^-120 is raised to it: c tanh(s / c) is then within 2^-120 of the exact value,
  // invisible after the softmax, and c times the kernels' unit stays a normal float (no flush to 0)
  k.softcap = a.softcap > 0.0f ? std::max(a.softcap, 0x1p-120f) : 0.0f;
  k.mask_offset = m.offset;
  k.mask_batch_stride = m.batch_stride;
  k.mask_head_stride = m.head_stride;
  k.mask_row_stride = m.row_stride;
  return p;
}

void check_workspace(const Problem& p, std::size_t bytes) {
  const ForwardArgs& a = p.args;
  if (a.workspace == nullptr) {
    if (bytes > p.facts->max_alloc_bytes)
      fail(Status::OutOfResources, "algorithm: ", to_string(a.algorithm), " needs a ", bytes,
           "-byte workspace but the device's largest buffer is ", p.facts->max_alloc_bytes, " bytes");
    return;
  }
  check_buffer(a.workspace, p.context, bytes, "workspace");
  check_use(a.workspace, "workspace", true, true);  // written, then read back by the next pass
  std::vector<Span> spans = p.spans;
  spans.push_back(span_of(a.workspace, 0, bytes, "workspace", true));
  check_aliasing(spans);
}

}  // namespace flashcl::detail
