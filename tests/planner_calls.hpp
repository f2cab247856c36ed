// planner_calls.hpp: the calls the pure planners' tests hand to them, built once here: a dense fa2
// forward call (test_mma_plan.cpp, test_fp8_qlocal_plan.cpp), the overrides of an environment that
// holds one variable, and issue 22's decode step on a contiguous or paged KV cache
// (test_decode_wide_plan.cpp, test_decode_mma_plan.cpp, test_kvcache_fp8_plan.cpp) with its plan
// under a forced form. No call is ever launched: buffers are a placeholder handle.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>

#include "flashcl/flashcl.hpp"
#include "plan/kvcache_plan.hpp"
#include "plan/overrides.hpp"

namespace flashcl::detail {

// Dense (B 2, N `seqlen`, H 4, d) fa2 tensors with every stride set, as validate() leaves them.
inline ForwardArgs dense_fa2_call(DType dtype, int d, bool causal = false, int seqlen = 256) {
  ForwardArgs a;
  a.batch = 2;
  a.heads = 4;
  a.seqlen_q = a.seqlen_k = seqlen;
  a.head_dim = d;
  a.dtype = dtype;
  a.causal = causal;
  a.algorithm = Algorithm::FA2;
  for (Tensor* t : {&a.q, &a.k, &a.v, &a.o}) {
    t->head_stride = d;
    t->seq_stride = static_cast<std::int64_t>(a.heads) * d;
    t->batch_stride = t->seq_stride * a.seqlen_q;
  }
  return a;
}

// The overrides of a process whose environment holds only `name`=`value`: the planners take them
// as an argument, so no test changes the process environment.
inline Overrides env_overrides(const char* name, const char* value) {
  return read_overrides([&](const char* n) { return std::string(n) == name ? value : nullptr; });
}

// A buffer handle the planners only test for null.
inline cl_mem some_buffer() { return reinterpret_cast<cl_mem>(std::uintptr_t{0x1000}); }

// `t` as a dense (seqlen, heads, d) tensor of some_buffer().
inline void dense_strides(Tensor& t, int seqlen, int heads, int d) {
  t.buffer = some_buffer();
  t.head_stride = d;
  t.seq_stride = static_cast<std::int64_t>(heads) * d;
  t.batch_stride = static_cast<std::int64_t>(seqlen) * heads * d;
}

// Issue 22's decode step (B 8, `heads` query heads over 8, d 128, `keys` keys, `rows` query rows) on
// a cache of `cache` storage, contiguous or paged (page_size > 0).
inline KvCacheArgs decode_step_call(DType cache, int page_size = 0, int heads = 32, int rows = 1, int keys = 4096) {
  KvCacheArgs a;
  a.batch = 8;
  a.heads_kv = 8;
  a.heads = heads;
  a.seqlen_q = rows;
  a.head_dim = 128;
  a.dtype = DType::F16;
  a.cache_dtype = cache;
  a.scale = 1.0f / std::sqrt(128.0f);
  a.cache_seqlens = some_buffer();
  dense_strides(a.q, rows, a.heads, a.head_dim);
  dense_strides(a.o, rows, a.heads, a.head_dim);
  if (page_size > 0) {
    a.page_size = page_size;
    a.max_pages = (keys + page_size - 1) / page_size;
    a.num_pages = a.batch * a.max_pages;
    a.block_table = some_buffer();
    a.block_table_stride = a.max_pages;
    dense_strides(a.k_cache, page_size, a.heads_kv, a.head_dim);
    dense_strides(a.v_cache, page_size, a.heads_kv, a.head_dim);
  } else {
    a.cache_seqlen = keys;
    a.cache_batch = a.batch;
    dense_strides(a.k_cache, a.cache_seqlen, a.heads_kv, a.head_dim);
    dense_strides(a.v_cache, a.cache_seqlen, a.heads_kv, a.head_dim);
  }
  if (cache == DType::E4M3 || cache == DType::E5M2) a.k_descale = a.v_descale = some_buffer();
  return a;
}

// The KV-cache plan of `a` under FLASHCL_DECODE=`form` (empty: none).
inline KvCachePlan plan_decode_call(const DeviceFacts& f, const KvCacheArgs& a, const std::string& form = "") {
  Overrides o;
  o.decode = form;
  return plan_kvcache(f, a, o);
}

// Whether the plan's program options hold the -D switch `option` (whole, value included).
inline bool has_option(const KvCachePlan& p, const std::string& option) {
  return (p.program.options + " ").find(option + " ") != std::string::npos;
}

}  // namespace flashcl::detail
