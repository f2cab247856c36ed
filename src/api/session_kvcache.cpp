// session_kvcache.cpp: Session::forward_kvcache, one decode step (flashcl::forward_kvcache) on host
// arrays. The shape is checked and defaulted as the call checks it (launch/decode.hpp), then every
// array is held to exactly the size that shape implies. q, k_new, v_new, O and LSE go through
// HostBuffers as Session::forward's arrays do; the caches, when k_new is appended into them, are
// arrays both read and written (HostBuffers::in_out): over the caller's memory where the device
// shares it and an f32 cache meets the base address alignment (the append lands in place, no
// copy either way), else copied in with only the rows the append writes copied back: a decode step
// reads the cache once, so copying it whole in and out would cost twice what the attention reads.
// The indices are the caller's values, known here: one the kernels would clamp or drop (flashcl.hpp,
// KvCacheArgs) is a named error before anything runs (check_host_indices), so the rows modelled as
// written are exactly those the kernels write (appended_rows keeps the kernels' rules all the same).
#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include "api/host_buffers.hpp"
#include "base/errors.hpp"
#include "base/saturating.hpp"
#include "launch/decode.hpp"

namespace flashcl {
namespace {

using detail::ElementRange;
using detail::fail;

// n0·n1·n2·n3 elements, saturated (a wrong size then fails the check instead of wrapping to a match).
std::size_t elements(std::int64_t n0, std::int64_t n1, std::int64_t n2, std::int64_t n3) {
  const auto factor = [](std::int64_t f) { return static_cast<std::uint64_t>(std::max<std::int64_t>(f, 0)); };
  return detail::saturating_bytes({factor(n0), factor(n1), factor(n2), factor(n3)});
}

template <typename T>
void expect_size(const HostView<T>& a, std::size_t want, const char* name, const char* layout) {
  if (a.size != want) fail(Status::InvalidArgument, name, ": expected ", want, " elements ", layout, ", got ", a.size);
}

// The cache elements the append writes, in ascending order with neighbours merged: for each
// sequence the seqlen_new rows from its clamped cache_seqlens on, in its cache row (contiguous) or
// in the pages its block-table row names (paged).
std::vector<ElementRange> appended_rows(const KvCacheArgs& a, const KvCacheHostArrays& x) {
  const bool paged = x.block_table.data != nullptr;
  const std::int64_t capacity = paged ? std::int64_t{a.max_pages} * a.page_size : a.cache_seqlen;
  const std::size_t row = static_cast<std::size_t>(a.heads_kv) * a.head_dim;  // elements of one key
  std::vector<ElementRange> rows;
  for (int b = 0; b < a.batch; ++b) {
    const std::int64_t first = std::clamp<std::int64_t>(x.cache_seqlens.data[b], 0, capacity - a.seqlen_new);
    for (std::int64_t p = first; p < first + a.seqlen_new; ++p) {
      std::int64_t slot = 0, at = p;  // the cache row (page) and the key's row in it
      if (paged) {
        slot = x.block_table.data[static_cast<std::size_t>(b) * a.max_pages + p / a.page_size];
        if (slot < 0 || slot >= a.num_pages) continue;  // dropped by the kernel
        at = p % a.page_size;
      } else {
        slot = x.cache_batch_idx.data != nullptr ? x.cache_batch_idx.data[b] : b;
        if (slot < 0 || slot >= a.cache_batch) break;  // an empty sequence: nothing appended
      }
      const std::int64_t rows_per_slot = paged ? a.page_size : a.cache_seqlen;
      rows.push_back({static_cast<std::size_t>(slot * rows_per_slot + at) * row, row});
    }
  }
  std::sort(rows.begin(), rows.end(), [](const ElementRange& l, const ElementRange& r) { return l.first < r.first; });
  std::vector<ElementRange> merged;
  for (const ElementRange& r : rows) {
    if (!merged.empty() && r.first <= merged.back().first + merged.back().count)
      merged.back().count = std::max(merged.back().count, r.first + r.count - merged.back().first);
    else
      merged.push_back(r);
  }
  return merged;
}

// The caller's indices, known here as they are not on device buffers: a value the kernels would
// clamp or drop (a sequence past the cache's capacity once the append is counted, a cache row or
// page outside the cache or pool) is a named error instead of a silent overwrite or a lost key.
void check_host_indices(const KvCacheArgs& n, const KvCacheHostArrays& x, bool append) {
  const bool paged = x.block_table.data != nullptr;
  const std::int64_t capacity = paged ? std::int64_t{n.max_pages} * n.page_size : n.cache_seqlen;
  const std::int64_t appended = append ? n.seqlen_new : 0;
  for (int b = 0; b < n.batch; ++b) {
    const std::int64_t len = x.cache_seqlens.data[b];
    if (len < 0 || len + appended > capacity)
      fail(Status::InvalidArgument, "cache_seqlens: sequence ", b, " holds ", len, " keys, which with the ", appended,
           " appended is outside the cache's capacity of ", capacity, " keys a sequence");
    if (x.cache_batch_idx.data != nullptr) {
      const int row = x.cache_batch_idx.data[b];
      if (row < 0 || row >= n.cache_batch)
        fail(Status::InvalidArgument, "cache_batch_idx: entry ", b, " is ", row, ", outside the cache's ",
             n.cache_batch, " rows");
    }
    if (!paged) continue;
    const std::int64_t pages = (len + appended + n.page_size - 1) / n.page_size;  // the pages the call reads
    for (std::int64_t p = 0; p < pages; ++p) {
      const int page = x.block_table.data[static_cast<std::size_t>(b) * n.max_pages + p];
      if (page < 0 || page >= n.num_pages)
        fail(Status::InvalidArgument, "block_table: sequence ", b, "'s page ", p, " is ", page, ", outside the pool's ",
             n.num_pages, " pages");
    }
  }
}

}  // namespace

void Session::forward_kvcache(const KvCacheArgs& shape, const KvCacheHostArrays& x) {
  if (shape.cache_dtype && is_fp8(*shape.cache_dtype))
    fail(Status::UnsupportedDType, "cache_dtype: Session::forward_kvcache takes f32, f16 or bf16 host caches; fp8 (",
         to_string(*shape.cache_dtype), ") caches run on device buffers with their descales (docs/FP8.md)");
  const std::pair<const void*, const char*> required[] = {{x.q.data, "q"},
                                                          {x.o.data, "o"},
                                                          {x.k_cache.data, "k_cache"},
                                                          {x.v_cache.data, "v_cache"},
                                                          {x.cache_seqlens.data, "cache_seqlens"}};
  for (const auto& [data, name] : required)
    if (data == nullptr) fail(Status::InvalidArgument, name, ": null data (a host array is required)");
  detail::HostBuffers buffers(context_, queue_, host_unified_, host_ptr_align_);
  const DType dtype = shape.dtype;
  KvCacheArgs a = shape;
  a.o = a.k_cache = a.v_cache = Tensor{};  // dense host arrays: no strides
  a.lse = a.workspace = a.k_descale = a.v_descale = nullptr;
  // The small arrays are copied; which are given (data set) decides the call's form, as normalize
  // reads it from their buffers.
  const auto copy = [&](const auto& v, const char* name) {
    if (v.data != nullptr && v.size == 0)
      fail(Status::InvalidArgument, name, ": given but empty (a null data pointer leaves it out)");
    return buffers.optional(v.data != nullptr ? v.size * sizeof(*v.data) : 0, v.data);
  };
  a.cache_seqlens = copy(x.cache_seqlens, "cache_seqlens");
  a.cache_batch_idx = copy(x.cache_batch_idx, "cache_batch_idx");
  a.block_table = copy(x.block_table, "block_table");
  a.rotary_cos = copy(x.rotary_cos, "rotary_cos");
  a.rotary_sin = copy(x.rotary_sin, "rotary_sin");
  a.alibi_slopes = copy(x.alibi_slopes, "alibi_slopes");
  // Inputs first: the arrays the call writes are checked against them for overlap.
  const auto input = [&](const HostView<const float>& v, const char* name) {
    if (v.data == nullptr) return Tensor{};
    const detail::HostInput in = buffers.input(name, v.data, v.size, dtype);
    return Tensor{in.mem, in.offset};
  };
  a.q = input(x.q, "q");
  a.k_new = input(x.k_new, "k_new");
  a.v_new = input(x.v_new, "v_new");
  const bool append = a.k_new.buffer != nullptr || a.v_new.buffer != nullptr;

  // The shape as the call sees it (named errors, defaults), then every array against it.
  const KvCacheArgs n = detail::normalize_kvcache(a);
  const bool paged = x.block_table.data != nullptr;
  const char* dense = "(dense B, Nq, H, d)";
  expect_size(x.q, elements(n.batch, n.seqlen_q, n.heads, n.head_dim), "q", dense);
  expect_size(x.o, elements(n.batch, n.seqlen_q, n.heads, n.head_dim), "o", dense);
  if (x.lse.data != nullptr) expect_size(x.lse, elements(n.batch, n.heads, n.seqlen_q, 1), "lse", "(B, H, Nq)");
  const std::size_t cache_elems = paged ? elements(n.num_pages, n.page_size, n.heads_kv, n.head_dim)
                                        : elements(n.cache_batch, n.cache_seqlen, n.heads_kv, n.head_dim);
  const char* cache_layout = paged ? "(num_pages, page_size, H_kv, d)" : "(cache_batch, cache_seqlen, H_kv, d)";
  expect_size(x.k_cache, cache_elems, "k_cache", cache_layout);
  expect_size(x.v_cache, cache_elems, "v_cache", cache_layout);
  expect_size(x.cache_seqlens, elements(n.batch, 1, 1, 1), "cache_seqlens", "(B)");
  if (x.cache_batch_idx.data != nullptr)
    expect_size(x.cache_batch_idx, elements(n.batch, 1, 1, 1), "cache_batch_idx", "(B)");
  if (paged) {
    if (n.block_table_stride != n.max_pages)
      fail(Status::InvalidArgument, "block_table_stride: the host block table is dense (0 or max_pages = ", n.max_pages,
           "), got ", shape.block_table_stride);
    expect_size(x.block_table, elements(n.batch, n.max_pages, 1, 1), "block_table", "(B, max_pages)");
  }
  if (append) {
    expect_size(x.k_new, elements(n.batch, n.seqlen_new, n.heads_kv, n.head_dim), "k_new", "(B, seqlen_new, H_kv, d)");
    expect_size(x.v_new, elements(n.batch, n.seqlen_new, n.heads_kv, n.head_dim), "v_new", "(B, seqlen_new, H_kv, d)");
  }
  if (x.rotary_cos.data != nullptr) {
    const std::size_t table = elements(n.rotary_seqlen, n.rotary_dim / 2, 1, 1);
    expect_size(x.rotary_cos, table, "rotary_cos", "(rotary_seqlen, rotary_dim / 2)");
    expect_size(x.rotary_sin, table, "rotary_sin", "(rotary_seqlen, rotary_dim / 2)");
  }
  if (x.alibi_slopes.data != nullptr)
    expect_size(x.alibi_slopes, elements(n.alibi_per_batch ? n.batch : 1, n.heads, 1, 1), "alibi_slopes",
                n.alibi_per_batch ? "(B, H)" : "(H)");
  check_host_indices(n, x, append);

  // The caches: written in place after an append (only the appended rows come back from a copy),
  // plain inputs otherwise; then O and LSE.
  const DType cache_dtype = *n.cache_dtype;
  const std::vector<ElementRange> written = append ? appended_rows(n, x) : std::vector<ElementRange>{};
  const auto cache = [&](const HostView<float>& v, const char* name) {
    const detail::HostInput c = append ? buffers.in_out(name, v.data, cache_elems, cache_dtype, written)
                                       : buffers.input(name, v.data, cache_elems, cache_dtype);
    return Tensor{c.mem, c.offset};
  };
  a.k_cache = cache(x.k_cache, "k_cache");
  a.v_cache = cache(x.v_cache, "v_cache");
  a.o.buffer = buffers.output("o", x.o.data, x.o.size, dtype);
  if (x.lse.data != nullptr) a.lse = buffers.output("lse", x.lse.data, x.lse.size, DType::F32);
  last_kvcache_host_buffers_ = buffers.over_host();
  flashcl::forward_kvcache(queue_, a);
  buffers.finish();  // O, LSE and the appended rows in the caller's memory, nothing pending
}

}  // namespace flashcl
