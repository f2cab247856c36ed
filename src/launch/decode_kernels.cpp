// decode_kernels.cpp: the split and merge kernels' arguments and enqueue of a KV-cache call
// (decode_kernels.hpp).
#include "launch/decode_kernels.hpp"

#include <algorithm>
#include <cstdint>

#include "base/errors.hpp"
#include "base/saturating.hpp"
#include "plan/forward_programs.hpp"  // windowed
#include "validate/problem.hpp"       // set_kernel_view

namespace flashcl::detail {

DecodeKernelArgs decode_kernel_args(const KvCacheArgs& a, const KvCachePlan& call) {
  DecodeArgs k{};
  set_kernel_view(a.q, k.q_offset, k.q_batch_stride, k.q_seq_stride, k.q_head_stride);
  set_kernel_view(a.o, k.o_offset, k.o_batch_stride, k.o_seq_stride, k.o_head_stride);
  set_kernel_view(a.k_cache, k.k_offset, k.k_batch_stride, k.k_seq_stride, k.k_head_stride);
  set_kernel_view(a.v_cache, k.v_offset, k.v_batch_stride, k.v_seq_stride, k.v_head_stride);
  set_kernel_view(a.k_new, k.kn_offset, k.kn_batch_stride, k.kn_seq_stride, k.kn_head_stride);
  set_kernel_view(a.v_new, k.vn_offset, k.vn_batch_stride, k.vn_seq_stride, k.vn_head_stride);
  k.block_table_stride = a.block_table_stride;
  k.batch = a.batch;
  k.heads = a.heads;
  k.heads_kv = a.heads_kv;
  k.group = a.heads / a.heads_kv;
  k.seqlen_q = a.seqlen_q;
  k.seqlen_new = a.seqlen_new;
  k.capacity = static_cast<int>(capacity_of(a));
  k.cache_batch = a.cache_batch;
  k.page_size = a.page_size;
  k.num_pages = a.num_pages;
  k.max_pages = a.max_pages;
  k.num_splits = call.decode.num_splits;
  k.rows = k.group * a.seqlen_q;
  k.write_lse = a.lse != nullptr ? 1 : 0;
  k.rotary_dim = a.rotary_dim;
  k.rotary_seqlen = a.rotary_seqlen;
  // flash-attn: with causal or a window the queries are the last Nq positions; otherwise all sit at L₀
  k.rotary_q_rows = a.causal || windowed(a.window) ? 1 : 0;
  k.alibi_batch_stride = a.alibi_per_batch ? a.heads : 0;
  // Scores in base 2, or in halved natural units where base 2 could overflow fp32 (common.cl),
  // decided as for the forward; the scale is converted to that unit in double, then rounded once.
  k.q_scale = static_cast<float>(static_cast<double>(*a.scale) * (call.half_units ? 0.5 : 1.4426950408889634));

  // common.cl's helpers read the window and softcap from an AttnArgs. Key j is hidden from query i
  // when j > i + shift + right or j < i + shift - left (shift = L - Nq, L <= capacity keys); since
  // j - i - shift <= Nq - 1 and i + shift - j <= capacity - 1, a right side past Nq or a left side
  // past the capacity hides nothing, and is clamped there. Every bound the kernels form then fits
  // an int: q_end + shift + right <= capacity + Nq. (Clamped to capacity + Nq instead, that sum
  // reached 2^31 at a capacity of 2^30 - 1 and wrapped, hiding every key.)
  AttnArgs attn{};
  attn.window_left = a.window.left < 0 ? -1 : static_cast<int>(std::min<std::int64_t>(a.window.left, capacity_of(a)));
  attn.window_right = a.window.right < 0 ? -1 : std::min(a.window.right, a.seqlen_q);
  attn.softcap = a.softcap;
  attn.batch = a.batch;
  attn.heads = a.heads;
  attn.seqlen_q = a.seqlen_q;
  attn.seqlen_k = k.capacity;
  attn.heads_kv = a.heads_kv;
  attn.kv_group = k.group;
  attn.scale = *a.scale;  // (the decode kernels take the scale from k.q_scale)
  return {k, attn};
}

std::size_t workspace_for(const KvCacheArgs& a, const DecodePlan& plan) {
  const auto n = [](std::int64_t x) { return static_cast<std::uint64_t>(x); };
  return saturating_bytes({n(a.batch), n(a.heads), n(a.seqlen_q), n(plan.num_splits), n(a.head_dim) + 1, sizeof(float)});
}

const char* merge_kernel_name(const DecodePlan& plan) {
  // decode_cpu's program has its own merge, one work-item per row (decode_cpu.cl says why)
  return plan.cpu ? "decode_cpu_merge" : plan.merge_serial ? "decode_merge_serial" : "decode_merge";
}

SplitMergeGrids split_merge_grids(const KvCacheArgs& a, const DecodePlan& plan) {
  const std::size_t merge_wg = plan.cpu ? 1 : static_cast<std::size_t>(plan.merge_wg);
  return {{static_cast<std::size_t>(plan.row_blocks) * plan.num_splits * plan.work_group_size,
           static_cast<std::size_t>(a.heads_kv / plan.heads_per_item), static_cast<std::size_t>(a.batch)},
          {plan.work_group_size, 1, 1},
          {static_cast<std::size_t>(a.seqlen_q) * merge_wg, static_cast<std::size_t>(a.heads),
           static_cast<std::size_t>(a.batch)},
          {merge_wg, 1, 1}};
}

void set_descale_args(const cl::Kernel& kernel, cl_uint first, const KvCacheArgs& a) {
  check_cl(clSetKernelArg(kernel(), first, sizeof(cl_mem), &a.k_descale), "clSetKernelArg");
  check_cl(clSetKernelArg(kernel(), first + 1, sizeof(cl_mem), &a.v_descale), "clSetKernelArg");
}

}  // namespace flashcl::detail
