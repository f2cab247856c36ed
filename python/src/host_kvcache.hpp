// host_kvcache.hpp: flashcl::forward_kvcache on host memory, for flashcl.torch's CPU tensors. The
// C++ library's Session runs forward and backward on host arrays but has no KV-cache call; this
// does the same for it on a Session's context and queue: each array is copied into a buffer, the
// call runs, and O, LSE and (when k_new is appended) both caches are read back into the caller's
// memory, so the caches are updated in place as flash-attn's are. The copies cost the caches'
// bytes twice per call; shapes, strides (dense) and switches come from the KvCacheArgs given.
#pragma once

#include <cstddef>

#include "flashcl/flashcl.hpp"

namespace flashcl_py {

// One host array as bytes; absent when data is null.
struct HostBytes {
  void* data = nullptr;
  std::size_t bytes = 0;
};

// The arrays of one call, each dense in the layout KvCacheArgs describes (the caches and o, lse
// written; the others read).
struct HostKvCacheArrays {
  HostBytes q, o, lse, k_cache, v_cache, cache_seqlens, cache_batch_idx, block_table, k_new, v_new, rotary_cos,
      rotary_sin, alibi_slopes;
};

// Runs forward_kvcache on the Session's queue with `shape`'s fields (its cl_mem fields are ignored
// and set from `arrays`) and waits for it. Throws flashcl::Error: the library's named errors, or
// OpenCLError/OutOfResources naming the array whose buffer or copy failed.
void forward_kvcache_host(flashcl::Session& session, const flashcl::KvCacheArgs& shape,
                          const HostKvCacheArrays& arrays);

}  // namespace flashcl_py
