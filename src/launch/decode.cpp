// decode.cpp: the KV-cache entry point, forward_kvcache (flashcl.hpp). Every host-side argument is
// checked here before anything is enqueued (messages name the parameter): shapes, the cache's
// layout (contiguous with its capacity and cache rows, or paged with its pool and block table),
// the optional append, rotary tables and variants, and that each strided view fits its buffer.
// Device-side values (cache_seqlens, block table entries, cache_batch_idx) are never read back;
// the kernels clamp them (decode_common.cl). Then the planner (plan_decode.hpp) picks the tile
// and split count (decode_mma only once its device probe has passed: decode_probe.hpp) and three
// kernels are enqueued: append (with k_new), split-KV attention (decode_mma, decode_lanes,
// decode_cpu, decode_stream or decode_split: plan_decode.cpp) and merge, whose arguments and grids
// decode_kernels.hpp sets up. An fp8 cache (cache_dtype E4M3/E5M2, docs/FP8.md "FP8 KV cache") adds
// its two descale buffers, checked here like the rest (and read back only with check_device_data,
// as the fp8 forward does), to the append and the attention kernel's arguments.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <limits>

#include "launch/decode.hpp"
#include "validate/buffer_checks.hpp"  // check_use, span_of, check_aliasing
#include "decode_args.h"
#include "base/errors.hpp"
#include "launch/call_workspace.hpp"
#include "launch/decode_kernels.hpp"
#include "launch/decode_probe.hpp"
#include "launch/launchers.hpp"
#include "plan/kvcache_plan.hpp"
#include "plan/plan_decode.hpp"
#include "plan/overrides.hpp"

namespace flashcl {
namespace detail {
namespace {

static_assert(sizeof(DecodeArgs) == FLASHCL_DECODE_ARGS_SIZE, "DecodeArgs layout must match the kernels'");

constexpr int kMaxHeadDim = 256;
constexpr int kGridLimit = 65535;  // work-groups along dimensions 1 and 2 (NVIDIA's limit)

// Zero strides mean dense (batch, seqlen, heads, d); negative ones are rejected.
void resolve_dense(Tensor& t, int seqlen, int heads, int d, const char* name) {
  if (t.offset < 0 || t.batch_stride < 0 || t.seq_stride < 0 || t.head_stride < 0)
    fail(Status::InvalidArgument, name, ": offset and strides must be >= 0 (got offset ", t.offset, ", strides ",
         t.batch_stride, ", ", t.seq_stride, ", ", t.head_stride, ")");
  if (t.batch_stride == 0 && t.seq_stride == 0 && t.head_stride == 0) {
    t.head_stride = d;
    t.seq_stride = static_cast<std::int64_t>(heads) * d;
    t.batch_stride = t.seq_stride * seqlen;
  }
}

// Bytes a (n0, n1, n2, d) view of `t` reaches, in 128 bits and saturated: huge strides must fail
// the buffer check, never wrap to a reach that fits.
std::size_t reach_bytes(const Tensor& t, std::int64_t n0, std::int64_t n1, std::int64_t n2, int d, std::size_t elem) {
  using Wide = unsigned __int128;
  if (n0 == 0 || n1 == 0 || n2 == 0) return 0;
  const Wide last = Wide(t.offset) + Wide(n0 - 1) * Wide(t.batch_stride) + Wide(n1 - 1) * Wide(t.seq_stride) +
                    Wide(n2 - 1) * Wide(t.head_stride) + Wide(d);
  const Wide bytes = last * elem;
  return bytes > SIZE_MAX ? SIZE_MAX : static_cast<std::size_t>(bytes);
}

void check_buffer(cl_mem buffer, cl_context context, std::size_t need, const char* name) {
  if (buffer == nullptr) fail(Status::InvalidHandle, name, ": null cl_mem");
  cl_context owner = nullptr;
  if (clGetMemObjectInfo(buffer, CL_MEM_CONTEXT, sizeof owner, &owner, nullptr) != CL_SUCCESS)
    fail(Status::InvalidHandle, name, ": not a valid cl_mem");
  if (owner != context) fail(Status::InvalidHandle, name, ": buffer belongs to another cl_context than the queue");
  std::size_t have = 0;
  clGetMemObjectInfo(buffer, CL_MEM_SIZE, sizeof have, &have, nullptr);
  if (need > have) fail(Status::InvalidArgument, name, ": shape and strides reach byte ", need, " but the buffer holds ", have);
}

bool appends(const KvCacheArgs& a) { return a.k_new.buffer != nullptr; }

// Shape-level checks and defaults (no buffers): shared by the call and the workspace query.
KvCacheArgs normalize(const KvCacheArgs& in) {
  KvCacheArgs a = in;
  if (a.batch < 1 || a.batch > kGridLimit) fail(Status::InvalidArgument, "batch: must be in 1..", kGridLimit, ", got ", a.batch);
  if (a.heads < 1 || a.heads > kGridLimit) fail(Status::InvalidArgument, "heads: must be in 1..", kGridLimit, ", got ", a.heads);
  if (a.heads_kv == 0) a.heads_kv = a.heads;
  if (a.heads_kv < 0 || a.heads % a.heads_kv != 0)
    fail(Status::InvalidArgument, "heads_kv: heads (", a.heads, ") must be a multiple of heads_kv (", a.heads_kv, ")");
  if (a.seqlen_q < 1) fail(Status::InvalidArgument, "seqlen_q: must be >= 1, got ", a.seqlen_q);
  if (static_cast<std::int64_t>(a.seqlen_q) * (a.heads / a.heads_kv) > std::numeric_limits<int>::max() / 2)
    fail(Status::InvalidArgument, "seqlen_q: ", a.seqlen_q, " query rows times the GQA group are too many");
  // Bottom-right causal hides nothing from one query (it sits at the last key) and leaves its rotary
  // position as it is (L0 + 0), so such a call runs the non-causal program: the same numbers, and
  // NVIDIA's compiler made the causal one about half as fast (H200, flashcl-bench --decode, B 8, 32k
  // keys, the single form: 0.72 against 0.38 ms; docs/perf/nvidia-h200.md).
  if (a.seqlen_q == 1) a.causal = false;
  if (a.head_dim < 1 || a.head_dim > kMaxHeadDim)
    fail(Status::InvalidArgument, "head_dim: must be in 1..", kMaxHeadDim, ", got ", a.head_dim);
  if (is_fp8(a.dtype))
    fail(Status::UnsupportedDType, "dtype: q, o, k_new and v_new take f32, f16 or bf16, got ", to_string(a.dtype),
         "; for an fp8 KV cache set cache_dtype (docs/FP8.md)");
  if (a.dtype != DType::F32 && a.dtype != DType::F16 && a.dtype != DType::BF16)
    fail(Status::UnsupportedDType, "dtype: unknown value ", static_cast<int>(a.dtype));
  if (!a.cache_dtype) a.cache_dtype = a.dtype;
  if (*a.cache_dtype != a.dtype && !is_fp8(*a.cache_dtype))
    fail(Status::UnsupportedDType, "cache_dtype: the caches are stored as dtype (", to_string(a.dtype),
         ") or fp8 (e4m3, e5m2), got ",
         (*a.cache_dtype == DType::F32 || *a.cache_dtype == DType::F16 || *a.cache_dtype == DType::BF16)
             ? to_string(*a.cache_dtype)
             : "an unknown value");
  if (is_fp8(*a.cache_dtype)) {
    if (a.k_descale == nullptr || a.v_descale == nullptr)
      fail(Status::InvalidArgument, a.k_descale == nullptr ? "k_descale" : "v_descale", ": an fp8 cache (",
           to_string(*a.cache_dtype), ") needs k_descale and v_descale, fp32 (B, H_kv)");
  } else if (a.k_descale != nullptr || a.v_descale != nullptr) {
    fail(Status::InvalidArgument, a.k_descale != nullptr ? "k_descale" : "v_descale",
         ": descales are for an fp8 cache (cache_dtype e4m3/e5m2), but the caches are ", to_string(*a.cache_dtype));
  }
  if (!a.scale) a.scale = 1.0f / std::sqrt(static_cast<float>(a.head_dim));
  if (!std::isfinite(*a.scale)) fail(Status::InvalidArgument, "scale: must be finite, got ", *a.scale);

  if (paged(a)) {
    if (a.page_size < 1) fail(Status::InvalidArgument, "page_size: must be >= 1, got ", a.page_size);
    if (a.num_pages < 1) fail(Status::InvalidArgument, "num_pages: must be >= 1, got ", a.num_pages);
    if (a.max_pages < 1) fail(Status::InvalidArgument, "max_pages: must be >= 1, got ", a.max_pages);
    if (a.cache_batch_idx != nullptr)
      fail(Status::InvalidArgument, "cache_batch_idx: not supported with a paged cache (the block table maps sequences)");
    if (a.block_table_stride == 0) a.block_table_stride = a.max_pages;
    if (a.block_table_stride < a.max_pages)
      fail(Status::InvalidArgument, "block_table_stride: must be >= max_pages (", a.max_pages, "), got ",
           a.block_table_stride);
    if (capacity_of(a) > std::numeric_limits<int>::max() / 2)
      fail(Status::InvalidArgument, "max_pages: max_pages * page_size = ", capacity_of(a), " keys is too many");
  } else {
    if (a.page_size != 0 || a.num_pages != 0 || a.max_pages != 0)
      fail(Status::InvalidArgument, "block_table: null, but page_size/num_pages/max_pages are set");
    if (a.cache_seqlen < 1 || a.cache_seqlen > std::numeric_limits<int>::max() / 2)
      fail(Status::InvalidArgument, "cache_seqlen: must be in 1..", std::numeric_limits<int>::max() / 2, ", got ",
           a.cache_seqlen);
    if (a.cache_batch == 0) a.cache_batch = a.batch;
    if (a.cache_batch < 1) fail(Status::InvalidArgument, "cache_batch: must be >= 1, got ", a.cache_batch);
    if (a.cache_batch_idx == nullptr && a.cache_batch < a.batch)
      fail(Status::InvalidArgument, "cache_batch: ", a.cache_batch, " cache rows for batch ", a.batch,
           " (pass cache_batch_idx to pick rows)");
  }
  const std::int64_t capacity = capacity_of(a);

  if ((a.k_new.buffer == nullptr) != (a.v_new.buffer == nullptr))
    fail(Status::InvalidArgument, a.k_new.buffer == nullptr ? "k_new" : "v_new", ": k_new and v_new go together");
  if (appends(a)) {
    if (a.seqlen_new == 0) a.seqlen_new = a.seqlen_q;
    if (a.seqlen_new < 1 || a.seqlen_new > capacity)
      fail(Status::InvalidArgument, "seqlen_new: must be in 1..", capacity, " (the cache's capacity), got ", a.seqlen_new);
  } else if (a.seqlen_new != 0) {
    fail(Status::InvalidArgument, "seqlen_new: ", a.seqlen_new, " but k_new/v_new are null");
  }

  if ((a.rotary_cos == nullptr) != (a.rotary_sin == nullptr))
    fail(Status::InvalidArgument, a.rotary_cos == nullptr ? "rotary_cos" : "rotary_sin",
         ": rotary_cos and rotary_sin go together");
  if (rotary(a)) {
    if (a.rotary_dim == 0) a.rotary_dim = a.head_dim;
    if (a.rotary_dim < 2 || a.rotary_dim > a.head_dim || a.rotary_dim % 2 != 0)
      fail(Status::InvalidArgument, "rotary_dim: must be even and in 2..head_dim (", a.head_dim, "), got ", a.rotary_dim);
    if (a.rotary_seqlen < capacity)
      fail(Status::InvalidArgument, "rotary_seqlen: the tables need a row per cache position (", capacity,
           "), got ", a.rotary_seqlen);
  } else if (a.rotary_dim != 0 || a.rotary_seqlen != 0 || a.rotary_interleaved) {
    fail(Status::InvalidArgument, "rotary_cos: null, but rotary_dim/rotary_seqlen/rotary_interleaved are set");
  }

  if (a.window.left < -1) fail(Status::InvalidArgument, "window.left: must be >= -1 (-1: unbounded), got ", a.window.left);
  if (a.window.right < -1)
    fail(Status::InvalidArgument, "window.right: must be >= -1 (-1: unbounded), got ", a.window.right);
  if (!std::isfinite(a.softcap) || a.softcap < 0.0f)
    fail(Status::InvalidArgument, "softcap: must be finite and >= 0 (0: off), got ", a.softcap);
  if (a.alibi_slopes == nullptr) a.alibi_per_batch = false;
  if (a.num_splits < 0 || a.num_splits > kMaxDecodeSplits)
    fail(Status::InvalidArgument, "num_splits: must be 0 (planner) or 1..", kMaxDecodeSplits, ", got ", a.num_splits);

  const int d = a.head_dim;
  resolve_dense(a.q, a.seqlen_q, a.heads, d, "q");
  resolve_dense(a.o, a.seqlen_q, a.heads, d, "o");
  if (paged(a)) {
    resolve_dense(a.k_cache, a.page_size, a.heads_kv, d, "k_cache");
    resolve_dense(a.v_cache, a.page_size, a.heads_kv, d, "v_cache");
  } else {
    resolve_dense(a.k_cache, a.cache_seqlen, a.heads_kv, d, "k_cache");
    resolve_dense(a.v_cache, a.cache_seqlen, a.heads_kv, d, "v_cache");
  }
  if (appends(a)) {
    resolve_dense(a.k_new, a.seqlen_new, a.heads_kv, d, "k_new");
    resolve_dense(a.v_new, a.seqlen_new, a.heads_kv, d, "v_new");
  }
  return a;
}

std::size_t round_up(std::size_t x, std::size_t m) { return (x + m - 1) / m * m; }

// check_device_data with an fp8 cache: both descale buffers (B, H_kv) read back after `wait`; an
// entry that is not finite and > 0 is named (validate_fp8.cpp's rule for the forward's descales).
void check_cache_descales(cl_command_queue queue, const KvCacheArgs& a, const std::vector<cl_event>& wait) {
  const std::size_t n = static_cast<std::size_t>(a.batch) * a.heads_kv;
  for (const auto& [buffer, name] : {std::pair<cl_mem, const char*>{a.k_descale, "k_descale"}, {a.v_descale, "v_descale"}}) {
    std::vector<float> values(n);
    const cl_int err = clEnqueueReadBuffer(queue, buffer, CL_TRUE, 0, n * sizeof(float), values.data(),
                                           static_cast<cl_uint>(wait.size()), wait.empty() ? nullptr : wait.data(), nullptr);
    if (err != CL_SUCCESS) fail(Status::OpenCLError, name, ": clEnqueueReadBuffer failed (", err, ")");
    for (std::size_t e = 0; e < n; ++e)
      if (!(std::isfinite(values[e]) && values[e] > 0.0f))
        fail(Status::InvalidArgument, name, ": entry ", e, " (sequence ", e / a.heads_kv, ", K/V head ", e % a.heads_kv,
             ") is ", values[e], "; a descale must be finite and > 0");
  }
}

// Every buffer is a buffer whose flags allow its use, and no output (o, lse, the workspace, and
// the caches when k_new is appended into them) shares bytes with another argument: the forward's
// rule (buffer_checks.hpp). The two caches are not compared with each other by extent, as a pool
// may interleave them ((page, K or V, row, head, d)); when the append writes them, each must give
// its elements addresses of their own and the two must not write over each other (an interleaved
// pool passes, a shifted alias does not). Sizes and handles were checked before.
void check_uses_and_aliasing(const KvCacheArgs& a, std::size_t workspace_bytes) {
  const std::size_t elem = element_size(a.dtype), cache_elem = element_size(*a.cache_dtype);
  const bool append = appends(a);
  const std::int64_t slots = paged(a) ? a.num_pages : a.cache_batch, rows = paged(a) ? a.page_size : a.cache_seqlen;
  const auto tensor = [&](const Tensor& t, std::int64_t n0, std::int64_t n1, std::int64_t n2, const char* name,
                          bool output, std::size_t bytes_each) {
    check_use(t.buffer, name, true, output);
    return span_of(t.buffer, static_cast<std::uint64_t>(t.offset) * bytes_each,
                   reach_bytes(t, n0, n1, n2, a.head_dim, bytes_each), name, output);
  };
  const auto input = [&](cl_mem m, std::uint64_t bytes, const char* name) {
    check_use(m, name, true, false);
    return span_of(m, 0, bytes, name, false);
  };
  const Span k_cache = tensor(a.k_cache, slots, rows, a.heads_kv, "k_cache", append, cache_elem);
  const Span v_cache = tensor(a.v_cache, slots, rows, a.heads_kv, "v_cache", append, cache_elem);
  check_use(a.o.buffer, "o", false, true);
  check_no_self_overlap("o", {{a.batch, a.o.batch_stride}, {a.seqlen_q, a.o.seq_stride}, {a.heads, a.o.head_stride},
                              {a.head_dim, 1}});
  std::vector<Span> spans = {tensor(a.q, a.batch, a.seqlen_q, a.heads, "q", false, elem),
                             span_of(a.o.buffer, static_cast<std::uint64_t>(a.o.offset) * elem,
                                     reach_bytes(a.o, a.batch, a.seqlen_q, a.heads, a.head_dim, elem), "o", true),
                             input(a.cache_seqlens, std::uint64_t{sizeof(std::int32_t)} * a.batch, "cache_seqlens")};
  if (a.lse != nullptr) {
    check_use(a.lse, "lse", false, true);
    spans.push_back(span_of(
        a.lse, 0,
        saturating_bytes({std::uint64_t(a.batch), std::uint64_t(a.heads), std::uint64_t(a.seqlen_q), sizeof(float)}),
        "lse", true));
  }
  if (a.cache_batch_idx != nullptr)
    spans.push_back(input(a.cache_batch_idx, std::uint64_t{sizeof(std::int32_t)} * a.batch, "cache_batch_idx"));
  if (paged(a))
    spans.push_back(
        input(a.block_table,
              saturating_bytes({std::uint64_t(a.batch), std::uint64_t(a.block_table_stride), sizeof(std::int32_t)}),
              "block_table"));
  if (append) {
    spans.push_back(tensor(a.k_new, a.batch, a.seqlen_new, a.heads_kv, "k_new", false, elem));
    spans.push_back(tensor(a.v_new, a.batch, a.seqlen_new, a.heads_kv, "v_new", false, elem));
  }
  if (rotary(a)) {
    const std::uint64_t table =
        saturating_bytes({std::uint64_t(a.rotary_seqlen), std::uint64_t(a.rotary_dim / 2), sizeof(float)});
    spans.push_back(input(a.rotary_cos, table, "rotary_cos"));
    spans.push_back(input(a.rotary_sin, table, "rotary_sin"));
  }
  if (is_fp8(*a.cache_dtype)) {
    const std::uint64_t descales = saturating_bytes({std::uint64_t(a.batch), std::uint64_t(a.heads_kv), sizeof(float)});
    spans.push_back(input(a.k_descale, descales, "k_descale"));
    spans.push_back(input(a.v_descale, descales, "v_descale"));
  }
  if (a.alibi_slopes != nullptr)
    spans.push_back(input(a.alibi_slopes, std::uint64_t{sizeof(float)} * (a.alibi_per_batch ? a.batch : 1) * a.heads,
                          "alibi_slopes"));
  if (a.workspace != nullptr) {  // written by the split kernel, read by the merge
    check_use(a.workspace, "workspace", true, true);
    spans.push_back(span_of(a.workspace, 0, workspace_bytes, "workspace", true));
  }
  spans.push_back(k_cache);
  check_aliasing(spans);
  spans.back() = v_cache;
  check_aliasing(spans);
  if (!append) return;
  // appended into, each cache is an output: its strides give every element its own address, and K
  // and V do not write over each other. An interleaved pool passes as one tensor with a K-or-V axis
  // (count 2, the distance from K's first element to V's); caches with other strides in one
  // allocation must not share bytes at all.
  const auto axes = [&](const Tensor& t) {
    return std::vector<std::pair<std::int64_t, std::int64_t>>{
        {slots, t.batch_stride}, {rows, t.seq_stride}, {a.heads_kv, t.head_stride}, {a.head_dim, 1}};
  };
  check_no_self_overlap("k_cache", axes(a.k_cache));
  check_no_self_overlap("v_cache", axes(a.v_cache));
  if (k_cache.root != v_cache.root) return;
  if (k_cache.lo == v_cache.lo)
    fail(Status::InvalidArgument, "v_cache: the same memory as k_cache, which k_new is appended into");
  const bool same_strides = a.k_cache.batch_stride == a.v_cache.batch_stride &&
                            a.k_cache.seq_stride == a.v_cache.seq_stride &&
                            a.k_cache.head_stride == a.v_cache.head_stride;
  const std::uint64_t gap = std::max(k_cache.lo, v_cache.lo) - std::min(k_cache.lo, v_cache.lo);
  if (same_strides && gap % cache_elem == 0) {
    std::vector<std::pair<std::int64_t, std::int64_t>> both = axes(a.k_cache);
    both.push_back({2, static_cast<std::int64_t>(gap / cache_elem)});
    check_no_self_overlap("v_cache", both);
  } else if (k_cache.lo < v_cache.hi && v_cache.lo < k_cache.hi) {
    fail(Status::InvalidArgument, "v_cache: overlaps k_cache (bytes ", std::max(k_cache.lo, v_cache.lo), "..",
         std::min(k_cache.hi, v_cache.hi), " of one allocation) in another layout; k_new is appended into both");
  }
}

// decode_lanes' work-groups one compute unit holds at once, as NVIDIA's driver tells it: its
// CL_KERNEL_WORK_GROUP_SIZE is what the kernel's resources allow one work-group, so that over the
// work-group is how many the SM runs together by the driver's count (2 for decode_lanes at d 128
// on the H100 and H200, where 3 of the single form fit by registers: the count is the driver's, a
// lower bound; docs/perf/nvidia-h200.md). A kernel whose size is the device's maximum is limited by
// nothing the driver told: 0.
int split_kernel_residency(const Problem& p, const cl::Kernel& split, std::size_t work_group_size) {
  std::size_t fits = 0;
  with_cl_errors([&] {
    check_cl(clGetKernelWorkGroupInfo(split(), p.device, CL_KERNEL_WORK_GROUP_SIZE, sizeof fits, &fits, nullptr),
             "clGetKernelWorkGroupInfo(KERNEL_WORK_GROUP_SIZE)");
  });
  if (fits == 0 || fits >= p.facts->max_work_group_size) return 0;
  return static_cast<int>(fits / work_group_size);
}

// The call's plan: on NVIDIA, decode_lanes' split count from the built kernel's residency (whole
// waves, plan_decode.cpp); the program is the same either way (the count is a kernel argument), so
// the kernel built to read it is the one the call launches (split; null where none was built).
struct ResidentPlan {
  KvCachePlan call;
  cl::Kernel split;
};
// decode_mma only once its probe passed on the device (decode_probe.hpp): else the planner's next
// form, or, where FLASHCL_DECODE forced it, an error saying why.
ResidentPlan plan_with_residency(const Problem& p, const KvCacheArgs& a) {
  const Overrides& o = process_overrides();
  ResidentPlan r{plan_kvcache(*p.facts, a, o), cl::Kernel()};
  std::string why, probe_note;  // the reason's note of a failed probe, after every plan of the call
  const ProbeResult probe =
      r.call.decode.mma ? decode_mma_probe(p.context, p.device, a.dtype, &why) : ProbeResult::Pass;
  const bool mma_failed = probe != ProbeResult::Pass;
  if (mma_failed) {
    if (forces_decode_mma(o.decode))
      fail(probe == ProbeResult::Transient ? Status::OutOfResources : Status::InternalError, "FLASHCL_DECODE=",
           o.decode, ": the tensor-core decode kernel (decode_mma) failed its probe on this device: ", why);
    probe_note = concat("; decode_mma failed its probe (", why.substr(0, why.find('\n')), ")");
    r.call = plan_kvcache(*p.facts, a, o, 0, mma_failed);
    r.call.decode.reason += probe_note;
  }
  if (!r.call.decode.lanes || !r.call.decode.lane_shuffle || a.num_splits > 0) return r;
  with_cl_errors([&] { r.split = make_kernel(p, r.call.program, r.call.attention_kernel); });
  const int resident = split_kernel_residency(p, r.split, r.call.decode.work_group_size);
  if (resident > 0) {
    r.call = plan_kvcache(*p.facts, a, o, resident, mma_failed);
    r.call.decode.reason += probe_note;
  }
  return r;
}

}  // namespace

KvCacheArgs normalize_kvcache(const KvCacheArgs& args) { return normalize(args); }

}  // namespace detail

std::size_t kvcache_workspace_bytes(cl_device_id device, const KvCacheArgs& args) {
  using namespace detail;
  const KvCacheArgs a = normalize(args);
  const DeviceFacts& facts = device_facts(device);
  const Overrides& o = process_overrides();
  const DecodePlan plan = plan_kvcache(facts, a, o, kResidentForSizing).decode;
  std::size_t bytes = workspace_for(a, plan);
  // (no context here to run decode_mma's probe: where the plan takes it by default, the workspace
  // also holds the partials of the form a failed probe leaves the call to)
  if (plan.mma && !forces_decode_mma(o.decode))
    bytes = std::max(bytes, workspace_for(a, plan_kvcache(facts, a, o, kResidentForSizing, true).decode));
  return bytes;
}

KvCacheInfo kvcache_info(cl_command_queue queue, const KvCacheArgs& args) {
  const detail::Problem p = detail::queue_problem(queue);
  const detail::KvCachePlan call = detail::plan_with_residency(p, detail::normalize(args)).call;
  return {call.attention_kernel, call.decode.num_splits, call.decode.work_group_size, call.decode.reason};
}

Launch forward_kvcache(cl_command_queue queue, const KvCacheArgs& args, const std::vector<cl_event>& wait_list) {
  using namespace detail;
  for (cl_event e : wait_list)
    if (e == nullptr) fail(Status::InvalidHandle, "wait_list: null cl_event");
  const Problem p = queue_problem(queue);  // context and device, for make_kernel
  const KvCacheArgs a = normalize(args);
  const cl_context ctx = p.context;
  const std::size_t elem = element_size(a.dtype), cache_elem = element_size(*a.cache_dtype);
  const bool fp8_cache = is_fp8(*a.cache_dtype);
  const int d = a.head_dim;

  check_buffer(a.q.buffer, ctx, reach_bytes(a.q, a.batch, a.seqlen_q, a.heads, d, elem), "q");
  check_buffer(a.o.buffer, ctx, reach_bytes(a.o, a.batch, a.seqlen_q, a.heads, d, elem), "o");
  const std::int64_t slots = paged(a) ? a.num_pages : a.cache_batch, rows = paged(a) ? a.page_size : a.cache_seqlen;
  check_buffer(a.k_cache.buffer, ctx, reach_bytes(a.k_cache, slots, rows, a.heads_kv, d, cache_elem), "k_cache");
  check_buffer(a.v_cache.buffer, ctx, reach_bytes(a.v_cache, slots, rows, a.heads_kv, d, cache_elem), "v_cache");
  const std::size_t descale_bytes = static_cast<std::size_t>(a.batch) * a.heads_kv * sizeof(float);
  if (fp8_cache) {
    check_buffer(a.k_descale, ctx, descale_bytes, "k_descale");
    check_buffer(a.v_descale, ctx, descale_bytes, "v_descale");
  }
  if (a.lse != nullptr) check_buffer(a.lse, ctx, saturating_bytes({std::uint64_t(a.batch), std::uint64_t(a.heads),
                                                                std::uint64_t(a.seqlen_q), sizeof(float)}), "lse");
  if (a.cache_seqlens == nullptr) fail(Status::InvalidHandle, "cache_seqlens: null cl_mem (int32 (B) is required)");
  check_buffer(a.cache_seqlens, ctx, static_cast<std::size_t>(a.batch) * sizeof(std::int32_t), "cache_seqlens");
  if (a.cache_batch_idx != nullptr)
    check_buffer(a.cache_batch_idx, ctx, static_cast<std::size_t>(a.batch) * sizeof(std::int32_t), "cache_batch_idx");
  if (paged(a)) {  // (B - 1) rows of block_table_stride entries, then max_pages: in 128 bits, as a
                   // stride near 2^63 must fail the size check rather than wrap to a small need
    const unsigned __int128 entries =
        static_cast<unsigned __int128>(a.batch - 1) * static_cast<std::uint64_t>(a.block_table_stride) + a.max_pages;
    const unsigned __int128 bytes = entries * sizeof(std::int32_t);
    check_buffer(a.block_table, ctx, bytes > SIZE_MAX ? SIZE_MAX : static_cast<std::size_t>(bytes), "block_table");
  }
  if (appends(a)) {
    check_buffer(a.k_new.buffer, ctx, reach_bytes(a.k_new, a.batch, a.seqlen_new, a.heads_kv, d, elem), "k_new");
    check_buffer(a.v_new.buffer, ctx, reach_bytes(a.v_new, a.batch, a.seqlen_new, a.heads_kv, d, elem), "v_new");
  }
  if (rotary(a)) {
    const std::size_t table = saturating_bytes({std::uint64_t(a.rotary_seqlen), std::uint64_t(a.rotary_dim / 2), sizeof(float)});
    check_buffer(a.rotary_cos, ctx, table, "rotary_cos");
    check_buffer(a.rotary_sin, ctx, table, "rotary_sin");
  }
  if (a.alibi_slopes != nullptr)
    check_buffer(a.alibi_slopes, ctx, static_cast<std::size_t>(a.alibi_per_batch ? a.batch : 1) * a.heads * sizeof(float),
                 "alibi_slopes");

  const ResidentPlan planned = plan_with_residency(p, a);
  const KvCachePlan& call = planned.call;
  const DecodePlan& plan = call.decode;
  if (static_cast<std::int64_t>(plan.row_blocks) * plan.num_splits > std::numeric_limits<int>::max() / 2)
    fail(Status::InvalidArgument, "seqlen_q: ", plan.row_blocks, " row blocks x ", plan.num_splits, " splits is too large a grid");
  const std::size_t need = workspace_for(a, plan);
  if (a.workspace != nullptr) check_buffer(a.workspace, ctx, need, "workspace");
  else if (need > p.facts->max_alloc_bytes)
    fail(Status::OutOfResources, "workspace: the call needs ", need, " bytes, the device's largest buffer is ",
         p.facts->max_alloc_bytes);
  check_uses_and_aliasing(a, need);
  // fp8 cache, on request: the descales read back (blocking, after the wait list), as the fp8
  // forward's check_device_data does; nothing has been enqueued yet
  if (fp8_cache && a.check_device_data) check_cache_descales(queue, a, wait_list);

  const DecodeKernelArgs kargs = decode_kernel_args(a, call);
  const DecodeArgs& k = kargs.decode;

  const ProgramChoice& program = call.program;
  Launch launch;
  const CallWorkspace owned_or_callers(ctx, a.workspace, std::max<std::size_t>(need, 4));
  const cl_mem workspace = owned_or_callers.get();
  with_cl_errors([&] {
    std::vector<cl_event> wait = wait_list;
    if (appends(a)) {
      cl::Kernel append = make_kernel(p, program, "decode_append");
      set_args(append, a.k_cache.buffer, a.v_cache.buffer, a.k_new.buffer, a.v_new.buffer, a.cache_seqlens,
               a.block_table, a.cache_batch_idx, a.rotary_cos, a.rotary_sin, k);
      if (fp8_cache) set_descale_args(append, 10, a);
      const std::size_t wg = std::min<std::size_t>(64, p.facts->max_work_group_size);
      const std::size_t global[3] = {round_up(static_cast<std::size_t>(a.seqlen_new) * d, wg),
                                     static_cast<std::size_t>(a.heads_kv), static_cast<std::size_t>(a.batch)};
      const std::size_t local[3] = {wg, 1, 1};
      enqueue(queue, append, global, local, wait, launch);
      wait = {launch.last()};
    }
    cl::Kernel split = planned.split() != nullptr ? planned.split : make_kernel(p, program, call.attention_kernel);
    cl::Kernel merge = make_kernel(p, program, merge_kernel_name(plan));
    set_split_merge_args(split, merge, a, workspace, kargs,
                         [](const cl::Kernel& kernel, const auto&... values) { set_args(kernel, values...); });
    if (fp8_cache) set_descale_args(split, 12, a);
    const SplitMergeGrids grids = split_merge_grids(a, plan);
    enqueue(queue, split, grids.split_global, grids.split_local, wait, launch);
    enqueue(queue, merge, grids.merge_global, grids.merge_local, {launch.last()}, launch);
  });
  return launch;
}

}  // namespace flashcl
