// c_api.cpp: the C API. Converts fcl_forward_args to flashcl::ForwardArgs (each field type through
// c_api_fields.hpp, shared with the backward's and the KV-cache path's structs) and is the single
// point where exceptions become status codes and the thread-local last-error message.
#include "flashcl/flashcl.h"

#include <cstddef>
#include <cstring>
#include <new>
#include <string>

#include "api/c_api_convert.hpp"
#include "api/c_api_fields.hpp"
#include "api/c_api_guard.hpp"
#include "base/errors.hpp"

namespace {

thread_local std::string g_last_error;

template <typename Body>
fcl_status guarded(Body&& body) {
  try {
    body();
    g_last_error.clear();
    return FCL_SUCCESS;
  } catch (const flashcl::Error& e) {
    g_last_error = e.what();
    return static_cast<fcl_status>(e.status());
  } catch (const std::bad_alloc&) {
    g_last_error = "out of host memory";
    return FCL_OUT_OF_RESOURCES;
  } catch (const std::exception& e) {
    g_last_error = std::string("internal error: ") + e.what();
    return FCL_INTERNAL_ERROR;
  } catch (...) {
    g_last_error = "internal error";
    return FCL_INTERNAL_ERROR;
  }
}

// Every struct_size from 0.1's layout (kForwardArgsFirstSize) up to this library's sizeof is
// accepted; the fields past a caller's size keep their defaults.
flashcl::ForwardArgs to_args(const fcl_forward_args* caller) {
  using namespace flashcl::detail;  // fail, kForwardArgsFirstSize, the field conversions
  if (caller == nullptr) fail(flashcl::Status::InvalidArgument, "args: null pointer");
  if (caller->struct_size < kForwardArgsFirstSize || caller->struct_size > sizeof(fcl_forward_args))
    fail(flashcl::Status::InvalidArgument, "args.struct_size: ", caller->struct_size, ", but this library reads ",
         kForwardArgsFirstSize, "..", sizeof(fcl_forward_args),
         " bytes (call fcl_forward_args_init before filling the fields)");
  const fcl_forward_args copy = over_defaults(caller, fcl_forward_args_init, caller->struct_size);
  const fcl_forward_args* in = &copy;
  flashcl::ForwardArgs a;
  a.batch = in->batch;
  a.heads = in->heads;
  a.seqlen_q = in->seqlen_q;
  a.seqlen_k = in->seqlen_k;
  a.head_dim = in->head_dim;
  if (in->scale != 0.0f) a.scale = in->scale;
  a.causal = in->causal != 0;
  a.dtype = to_dtype(in->dtype, "dtype");
  a.out_dtype = to_dtype_or_default(in->out_dtype, "out_dtype");  // fp8's output storage; validation judges it
  a.fp8 = {in->q_descale, in->k_descale, in->v_descale, in->quant_block, in->v_transposed != 0};
  a.algorithm = to_algorithm(in->algorithm);
  a.q = to_tensor(in->q);
  a.k = to_tensor(in->k);
  a.v = to_tensor(in->v);
  a.o = to_tensor(in->o);
  a.lse = in->lse;
  a.workspace = in->workspace;
  a.tile = {in->block_rows, in->block_cols};
  a.heads_kv = in->heads_kv;
  a.window = {in->window_left, in->window_right};
  a.softcap = in->softcap;
  a.alibi_slopes = in->alibi_slopes;
  a.alibi_per_batch = in->alibi_per_batch != 0;
  a.mask = to_mask(in->mask, "mask.kind");
  a.cu_seqlens_q = in->cu_seqlens_q;
  a.cu_seqlens_k = in->cu_seqlens_k;
  a.total_q = in->total_q;
  a.check_device_data = in->check_device_data != 0;
  return a;
}

}  // namespace

extern "C" {

void fcl_forward_args_init(fcl_forward_args* args) {
  if (args == nullptr) return;
  *args = fcl_forward_args{};
  args->struct_size = sizeof(fcl_forward_args);
  args->algorithm = FCL_ALGO_AUTO;
  args->dtype = FCL_DTYPE_F32;
  args->out_dtype = FCL_DTYPE_DEFAULT;
  args->window_left = args->window_right = -1;
  args->mask.kind = FCL_MASK_NONE;
}

fcl_status fcl_forward(cl_command_queue queue, const fcl_forward_args* args, cl_uint num_wait,
                       const cl_event* wait_list, cl_event* event) {
  return flashcl::detail::c_api_enqueue(num_wait, wait_list, event, [&](const std::vector<cl_event>& wait) {
    return flashcl::forward(queue, to_args(args), wait);
  });
}

fcl_status fcl_workspace_bytes(cl_device_id device, const fcl_forward_args* args, size_t* bytes) {
  return guarded([&] {
    if (bytes == nullptr) flashcl::detail::fail(flashcl::Status::InvalidArgument, "bytes: null pointer");
    *bytes = flashcl::workspace_bytes(device, to_args(args));
  });
}

fcl_status fcl_device_bytes(cl_device_id device, const fcl_forward_args* args, size_t* bytes) {
  return guarded([&] {
    if (bytes == nullptr) flashcl::detail::fail(flashcl::Status::InvalidArgument, "bytes: null pointer");
    *bytes = flashcl::device_bytes(device, to_args(args));
  });
}

fcl_status fcl_set_disk_cache(int enabled, const char* dir) {
  return guarded([&] {
    flashcl::set_disk_cache_enabled(enabled != 0);
    flashcl::set_disk_cache_dir(dir != nullptr ? dir : "");
  });
}

void fcl_clear_memory_cache(void) { flashcl::clear_memory_cache(); }

fcl_status fcl_get_cache_stats(fcl_cache_stats* stats) {
  return guarded([&] {
    using flashcl::detail::fail;
    if (stats == nullptr) fail(flashcl::Status::InvalidArgument, "stats: null pointer");
    const std::size_t size = stats->struct_size;
    if (size < sizeof(fcl_cache_stats))
      fail(flashcl::Status::InvalidArgument, "stats.struct_size: ", size, ", but the smallest fcl_cache_stats has ",
           sizeof(fcl_cache_stats), " bytes (set it to sizeof(fcl_cache_stats))");
    const flashcl::CacheStats s = flashcl::cache_stats();
    fcl_cache_stats out{};
    out.struct_size = size;
    out.memory_hits = s.memory_hits;
    out.disk_hits = s.disk_hits;
    out.builds = s.builds;
    out.disk_writes = s.disk_writes;
    out.disk_rejects = s.disk_rejects;
    out.memory_entries = s.memory_entries;
    // Only this library's fields: a newer caller's larger struct keeps its later fields as it set them.
    std::memcpy(static_cast<void*>(stats), &out, sizeof out);
  });
}

const char* fcl_last_error(void) { return g_last_error.c_str(); }

const char* fcl_version(void) { return flashcl::version(); }

}  // extern "C"

namespace flashcl::detail {

// The conversion point above (guarded), for C entry points defined in other files
// (c_api_decode.cpp): every status and fcl_last_error() message comes from this one place.
fcl_status c_api_call(void (*body)(void*), void* data) {
  return guarded([&] { body(data); });
}

}  // namespace flashcl::detail

namespace flashcl::detail {

// The fcl_forward_args conversion above, for the backward's C entry points (c_api_backward.cpp).
ForwardArgs c_forward_args(const fcl_forward_args* args) { return to_args(args); }

}  // namespace flashcl::detail
