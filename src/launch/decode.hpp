// decode.hpp: what decode.cpp (forward_kvcache) shares beyond the public call: its shape-level
// checks and defaults, so that Session's host form (api/session_kvcache.cpp) sizes the caller's
// arrays from the shape the call will see and names a bad field as the call does.
#pragma once

#include "flashcl/flashcl.hpp"

namespace flashcl::detail {

// `args` checked (named errors) and defaulted as forward_kvcache does before it looks at any
// buffer: heads_kv, cache_dtype, scale, cache_batch, block_table_stride, seqlen_new, rotary_dim
// filled in and zero strides made dense. Whether the block table, k_new, the rotary tables, ALiBi
// and cache_batch_idx are given is read from their cl_mem fields (only compared with null).
KvCacheArgs normalize_kvcache(const KvCacheArgs& args);

}  // namespace flashcl::detail
