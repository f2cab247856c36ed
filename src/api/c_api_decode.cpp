// c_api_decode.cpp: the C API of the KV-cache path: fcl_kvcache_args (checked by struct_size)
// converted to flashcl::KvCacheArgs; statuses and messages come from c_api.cpp's one conversion
// point (c_api_guard.hpp).
#include <cstddef>

#include "api/c_api_fields.hpp"
#include "api/c_api_guard.hpp"
#include "base/errors.hpp"
#include "flashcl/flashcl.h"

namespace {

using flashcl::Status;
using flashcl::detail::fail;
using flashcl::detail::to_dtype;  // fp8 values are refused by name in forward_kvcache
using flashcl::detail::to_tensor;

// Two layouts: the first (up to num_splits) and this one (the fp8 cache's fields appended). The
// first's fields end where cache_dtype begins, but a caller compiled against it passes its sizeof,
// rounded up to the struct's alignment, and cache_dtype sits in that tail padding: so both sizes
// are the first layout, and only its fields' bytes are read, the rest taking the defaults.
constexpr std::size_t kFirstFields = offsetof(fcl_kvcache_args, cache_dtype);
constexpr std::size_t kFirstSize =
    (kFirstFields + alignof(fcl_kvcache_args) - 1) / alignof(fcl_kvcache_args) * alignof(fcl_kvcache_args);
static_assert(kFirstSize < sizeof(fcl_kvcache_args), "the fp8 fields were appended");

flashcl::KvCacheArgs to_args(const fcl_kvcache_args* caller) {
  if (caller == nullptr) fail(Status::InvalidArgument, "args: null pointer");
  flashcl::detail::check_struct_size(caller->struct_size, {kFirstFields, kFirstSize, sizeof(fcl_kvcache_args)},
                                     "fcl_kvcache_args_init");
  const std::size_t bytes = caller->struct_size == sizeof(fcl_kvcache_args) ? sizeof(fcl_kvcache_args) : kFirstFields;
  const fcl_kvcache_args copy = flashcl::detail::over_defaults(caller, fcl_kvcache_args_init, bytes);
  const fcl_kvcache_args* in = &copy;
  flashcl::KvCacheArgs a;
  a.batch = in->batch;
  a.heads = in->heads;
  a.heads_kv = in->heads_kv;
  a.seqlen_q = in->seqlen_q;
  a.head_dim = in->head_dim;
  if (in->scale != 0.0f) a.scale = in->scale;
  a.causal = in->causal != 0;
  a.dtype = to_dtype(in->dtype, "dtype");
  a.q = to_tensor(in->q);
  a.o = to_tensor(in->o);
  a.lse = in->lse;
  a.k_cache = to_tensor(in->k_cache);
  a.v_cache = to_tensor(in->v_cache);
  a.cache_seqlen = in->cache_seqlen;
  a.cache_batch = in->cache_batch;
  a.cache_batch_idx = in->cache_batch_idx;
  a.block_table = in->block_table;
  a.num_pages = in->num_pages;
  a.page_size = in->page_size;
  a.max_pages = in->max_pages;
  a.block_table_stride = in->block_table_stride;
  a.cache_seqlens = in->cache_seqlens;
  a.k_new = to_tensor(in->k_new);
  a.v_new = to_tensor(in->v_new);
  a.seqlen_new = in->seqlen_new;
  a.rotary_cos = in->rotary_cos;
  a.rotary_sin = in->rotary_sin;
  a.rotary_dim = in->rotary_dim;
  a.rotary_seqlen = in->rotary_seqlen;
  a.rotary_interleaved = in->rotary_interleaved != 0;
  a.window = {in->window_left, in->window_right};
  a.softcap = in->softcap;
  a.alibi_slopes = in->alibi_slopes;
  a.alibi_per_batch = in->alibi_per_batch != 0;
  a.workspace = in->workspace;
  a.num_splits = in->num_splits;
  if (const auto cache_dtype = flashcl::detail::to_dtype_or_default(in->cache_dtype, "cache_dtype"))
    a.cache_dtype = *cache_dtype;
  a.k_descale = in->k_descale;
  a.v_descale = in->v_descale;
  a.check_device_data = in->check_device_data != 0;
  return a;
}

}  // namespace

extern "C" {

void fcl_kvcache_args_init(fcl_kvcache_args* args) {
  if (args == nullptr) return;
  *args = fcl_kvcache_args{};
  args->struct_size = sizeof(fcl_kvcache_args);
  args->dtype = FCL_DTYPE_F32;
  args->window_left = args->window_right = -1;
  args->cache_dtype = FCL_DTYPE_DEFAULT;
}

fcl_status fcl_forward_kvcache(cl_command_queue queue, const fcl_kvcache_args* args, cl_uint num_wait,
                               const cl_event* wait_list, cl_event* event) {
  return flashcl::detail::c_api_enqueue(num_wait, wait_list, event, [&](const std::vector<cl_event>& wait) {
    return flashcl::forward_kvcache(queue, to_args(args), wait);
  });
}

fcl_status fcl_kvcache_workspace_bytes(cl_device_id device, const fcl_kvcache_args* args, size_t* bytes) {
  return flashcl::detail::c_api_guarded([&] {
    if (bytes == nullptr) fail(Status::InvalidArgument, "bytes: null pointer");
    *bytes = flashcl::kvcache_workspace_bytes(device, to_args(args));
  });
}

}  // extern "C"
