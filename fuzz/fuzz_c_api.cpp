// fuzz_c_api.cpp: libFuzzer target over the C API on the default OpenCL device (PoCL in CI).
// Each input drives fcl_forward, fcl_backward, fcl_forward_kvcache or fcl_quantize_fp8 (and their
// size queries) with every field of its struct set; for the forward: struct_size (sometimes wrong),
// shapes, head dim, scale bits, causal, raw dtype, algorithm and mask.kind values (also out of
// range), tensors on null / foreign-context / small or large buffers with random offsets and
// strides, optional LSE and workspace, tile overrides, GQA heads, window, softcap bits, ALiBi,
// the mask's buffer, broadcast and strides, varlen offsets with total_q and the read-back, the fp8
// fields, and consistent or inconsistent wait lists (null events too); the backward's dO, gradients
// and bias gradient, the KV cache's every field and the quantisation's, varlen offsets included
// (fill_backward, fill_kvcache, fill_quantize). Buffers include
// read-only, write-only and overlapping sub-buffers, so aliasing and flags are exercised. It
// requires: no crash, hang or sanitizer report; a known status for every call; a
// non-empty message for every rejection and an empty one after a success; an accepted call runs
// to completion. Accepted calls whose work would be large (a long standard workspace, or more
// than 2^26 score multiply-adds) are only validated, so each input stays fast.
#include <CL/cl.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "flashcl/flashcl.h"
#include "flashcl/flashcl.hpp"
#include "fuzz_input.hpp"

namespace {

struct World {
  flashcl::Session session;
  cl_context foreign = nullptr;
  cl_mem foreign_buffer = nullptr;
  std::vector<cl_mem> buffers;  // sizes below, in the session's context
  std::vector<cl_mem> special;  // read-only, write-only, two overlapping sub-buffers of the largest
  cl_event done = nullptr;      // a completed user event, for wait lists

  World() {
    const std::size_t sizes[] = {4, 64, 1024, 16384, 262144};
    cl_int err = CL_SUCCESS;
    for (std::size_t bytes : sizes) {
      std::vector<float> host(bytes / sizeof(float), 0.5f);
      buffers.push_back(clCreateBuffer(session.context(), CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, bytes,
                                       host.data(), &err));
      if (err != CL_SUCCESS) std::abort();
    }
    std::vector<float> host(65536, 0.5f);
    special.push_back(clCreateBuffer(session.context(), CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, 262144, host.data(), &err));
    special.push_back(clCreateBuffer(session.context(), CL_MEM_WRITE_ONLY, 262144, nullptr, &err));
    for (std::size_t origin : {std::size_t{0}, std::size_t{4096}}) {
      const cl_buffer_region region{origin, 131072};
      special.push_back(clCreateSubBuffer(buffers.back(), CL_MEM_READ_WRITE, CL_BUFFER_CREATE_TYPE_REGION, &region, &err));
      if (err != CL_SUCCESS) std::abort();
    }
    cl_device_id device = session.device();
    foreign = clCreateContext(nullptr, 1, &device, nullptr, nullptr, &err);
    foreign_buffer = clCreateBuffer(foreign, CL_MEM_READ_WRITE, 262144, nullptr, &err);
    done = clCreateUserEvent(session.context(), &err);
    clSetUserEventStatus(done, CL_COMPLETE);
  }
};

World& world() {
  static World* w = new World;  // never destroyed: no OpenCL calls from static destructors
  return *w;
}

cl_mem pick_buffer(FuzzInput& in, bool null_is_common) {
  const std::uint8_t choice = in.byte() % 12;
  if (choice == 0 || (null_is_common && choice < 4)) return nullptr;
  if (choice == 1) return world().foreign_buffer;
  if (choice >= 8) return world().special[choice - 8];
  return world().buffers[(choice - 2) % world().buffers.size()];
}

void pick_tensor(FuzzInput& in, fcl_tensor& t) {
  t.buffer = pick_buffer(in, false);
  if (in.flag()) return;  // dense
  t.offset = in.int64_small(4096);
  t.batch_stride = in.int64_small(65536);
  t.seq_stride = in.int64_small(4096);
  t.head_stride = in.int64_small(512);
}

bool known(fcl_status s) {
  switch (s) {
    case FCL_SUCCESS: case FCL_INVALID_ARGUMENT: case FCL_INVALID_HANDLE: case FCL_UNSUPPORTED_DTYPE:
    case FCL_OUT_OF_RESOURCES: case FCL_BUILD_FAILURE: case FCL_DEVICE_NOT_FOUND: case FCL_OPENCL_ERROR:
      return true;
    default:
      return false;
  }
}

void check(fcl_status status, const char* call) {
  const char* message = fcl_last_error();
  if (!known(status)) {
    std::fprintf(stderr, "%s returned unknown status %d: %s\n", call, static_cast<int>(status), message);
    std::abort();
  }
  if (status == FCL_SUCCESS && message[0] != '\0') {
    std::fprintf(stderr, "%s succeeded but left the message '%s'\n", call, message);
    std::abort();
  }
  if (status != FCL_SUCCESS && message[0] == '\0') {
    std::fprintf(stderr, "%s failed with %d and an empty message\n", call, static_cast<int>(status));
    std::abort();
  }
}

template <typename Field>
void set_raw(Field& field, int value) {  // what a C caller can store in an enum field
  static_assert(sizeof(Field) == sizeof(int), "enum fields are int-sized");
  std::memcpy(&field, &value, sizeof value);
}

// Every field of a forward call description (also the forward part of a backward call).
void fill_forward(FuzzInput& in, fcl_forward_args& a) {
  fcl_forward_args_init(&a);
  a.batch = in.int_small(3);
  a.heads = in.int_small(4);
  a.seqlen_q = in.int_small(70);
  a.seqlen_k = in.int_small(70);
  a.head_dim = in.int_small(300);
  const std::uint8_t scale_kind = in.byte() % 4;
  a.scale = scale_kind == 0 ? in.raw<float>() : scale_kind == 1 ? 0.37f : 0.0f;
  a.causal = in.int_small(2);
  set_raw(a.dtype, in.int_small(6));  // 3, 4: fp8; 5: out of range
  set_raw(a.algorithm, in.int_small(5));
  pick_tensor(in, a.q);
  pick_tensor(in, a.k);
  pick_tensor(in, a.v);
  pick_tensor(in, a.o);
  a.lse = pick_buffer(in, true);
  a.workspace = in.byte() % 4 == 0 ? pick_buffer(in, false) : nullptr;
  if (in.flag()) {
    a.block_rows = in.int_small(300);
    a.block_cols = in.int_small(300);
  }
  a.heads_kv = in.int_small(4);
  a.window_left = in.flag() ? -1 : in.int_small(80);
  a.window_right = in.flag() ? -1 : in.int_small(80);
  const std::uint8_t softcap_kind = in.byte() % 4;
  a.softcap = softcap_kind == 0 ? in.raw<float>() : softcap_kind == 1 ? 30.0f : 0.0f;  // raw: NaN, inf, < 0
  a.alibi_slopes = pick_buffer(in, true);
  a.alibi_per_batch = in.int_small(2);
  set_raw(a.mask.kind, in.int_small(3));  // 3 and any int: out of range
  a.mask.buffer = pick_buffer(in, true);
  a.mask.batch = in.int_small(3);
  a.mask.heads = in.int_small(4);
  if (!in.flag()) {  // else dense
    a.mask.offset = in.int64_small(4096);
    a.mask.batch_stride = in.int64_small(65536);
    a.mask.head_stride = in.int64_small(16384);
    a.mask.row_stride = in.int64_small(128);
  }
  if (in.byte() % 4 == 0) {  // varlen: the small buffers' contents are the offsets
    a.cu_seqlens_q = pick_buffer(in, true);
    a.cu_seqlens_k = pick_buffer(in, true);
    a.total_q = in.int_small(80);
    a.check_device_data = in.int_small(2);  // the read-back: bad offsets must be named errors
  }
  if (in.byte() % 4 == 0) {  // fp8's fields (any dtype: others must refuse them); descales hold any bytes
    const int out = in.int_small(6);
    set_raw(a.out_dtype, out == 6 ? -1 : out);  // -1 (default) .. 5 (out of range), or any int
    a.q_descale = pick_buffer(in, true);
    a.k_descale = pick_buffer(in, true);
    a.v_descale = pick_buffer(in, true);
    a.quant_block = in.flag() ? -1 : in.int_small(40);
    a.v_transposed = in.int_small(2);
  }
  if (in.byte() % 32 == 0) a.struct_size = in.raw<std::uint16_t>();  // not from fcl_forward_args_init
}

// Every field of a backward call: the forward part, dO and the gradients (any buffers: aliasing and
// flags must be refused), d_bias with a raw kind, deterministic, workspace, struct_size.
void fill_backward(FuzzInput& in, fcl_backward_args& b) {
  fcl_backward_args_init(&b);
  fill_forward(in, b.forward);
  pick_tensor(in, b.d_o);
  pick_tensor(in, b.d_q);
  pick_tensor(in, b.d_k);
  pick_tensor(in, b.d_v);
  set_raw(b.d_bias.kind, in.int_small(3));  // BOOL and 3..: refused
  b.d_bias.buffer = pick_buffer(in, true);
  b.d_bias.batch = in.int_small(3);
  b.d_bias.heads = in.int_small(4);
  if (!in.flag()) {
    b.d_bias.offset = in.int64_small(4096);
    b.d_bias.batch_stride = in.int64_small(65536);
    b.d_bias.head_stride = in.int64_small(16384);
    b.d_bias.row_stride = in.int64_small(128);
  }
  b.deterministic = in.int_small(2);
  b.workspace = in.byte() % 4 == 0 ? pick_buffer(in, false) : nullptr;
  if (in.byte() % 32 == 0) b.struct_size = in.raw<std::uint16_t>();
}

// Every field of a KV-cache call: shapes, raw dtype, q/o/caches on any buffers, contiguous or
// paged layouts, cache_batch_idx, the append, rotary tables, window, softcap, ALiBi, workspace and
// forced splits; the int arrays' contents are whatever the picked buffers hold.
void fill_kvcache(FuzzInput& in, fcl_kvcache_args& a) {
  fcl_kvcache_args_init(&a);
  a.batch = in.int_small(3);
  a.heads = in.int_small(4);
  a.heads_kv = in.int_small(4);
  a.seqlen_q = in.int_small(9);
  a.head_dim = in.int_small(300);
  const std::uint8_t scale_kind = in.byte() % 4;
  a.scale = scale_kind == 0 ? in.raw<float>() : scale_kind == 1 ? 0.37f : 0.0f;
  a.causal = in.int_small(2);
  set_raw(a.dtype, in.int_small(6));
  pick_tensor(in, a.q);
  pick_tensor(in, a.o);
  a.lse = pick_buffer(in, true);
  pick_tensor(in, a.k_cache);
  pick_tensor(in, a.v_cache);
  if (in.flag()) {  // paged
    a.block_table = pick_buffer(in, false);
    a.num_pages = in.int_small(64);
    a.page_size = in.int_small(17);
    a.max_pages = in.int_small(16);
    a.block_table_stride = in.int64_small(32);
  } else {
    a.cache_seqlen = in.int_small(300);
    a.cache_batch = in.int_small(4);
    a.cache_batch_idx = pick_buffer(in, true);
  }
  a.cache_seqlens = pick_buffer(in, in.flag());
  if (in.flag()) {
    pick_tensor(in, a.k_new);
    pick_tensor(in, a.v_new);
    a.seqlen_new = in.int_small(9);
  }
  if (in.byte() % 4 == 0) {
    a.rotary_cos = pick_buffer(in, true);
    a.rotary_sin = pick_buffer(in, true);
    a.rotary_dim = in.int_small(300);
    a.rotary_seqlen = in.int_small(400);
    a.rotary_interleaved = in.int_small(2);
  }
  a.window_left = in.flag() ? -1 : in.int_small(80);
  a.window_right = in.flag() ? -1 : in.int_small(80);
  const std::uint8_t softcap_kind = in.byte() % 4;
  a.softcap = softcap_kind == 0 ? in.raw<float>() : softcap_kind == 1 ? 30.0f : 0.0f;
  a.alibi_slopes = pick_buffer(in, true);
  a.alibi_per_batch = in.int_small(2);
  a.workspace = in.byte() % 4 == 0 ? pick_buffer(in, false) : nullptr;
  a.num_splits = in.int_small(70);
  if (in.byte() % 32 == 0) a.struct_size = in.raw<std::uint16_t>();
}

// Every field of a quantisation call: shapes, raw dtypes and granularity, tensors, the descale
// buffer, head group, block, the Hadamard transform (any head dim: not a power of two must be
// refused), transposed, varlen offsets (the small buffers' contents) with total, struct_size.
void fill_quantize(FuzzInput& in, fcl_quantize_args& q) {
  fcl_quantize_args_init(&q);
  q.batch = in.int_small(3);
  q.seqlen = in.int_small(70);
  q.heads = in.int_small(4);
  q.head_dim = in.int_small(300);
  set_raw(q.in_dtype, in.int_small(6));
  set_raw(q.out_dtype, in.int_small(6));
  pick_tensor(in, q.in);
  pick_tensor(in, q.out);
  q.descale = pick_buffer(in, true);
  q.granularity = in.int_small(3);  // 3 and any int: out of range
  q.head_group = in.int_small(4);
  q.block = in.int_small(40);
  q.hadamard = in.int_small(2);
  q.hadamard_seed = in.raw<std::uint64_t>();
  q.transposed = in.int_small(2);
  if (in.byte() % 4 == 0) {
    q.cu_seqlens = pick_buffer(in, true);
    q.total = in.int_small(80);
  }
  if (in.byte() % 32 == 0) q.struct_size = in.raw<std::uint16_t>();
}

// The wait list and output event of one enqueuing call, then `call(num_wait, wait, event)`: every
// status known and its message consistent, an accepted call completes and hands out its event, a
// refused one none.
template <typename Call>
void enqueue_checked(FuzzInput& in, const char* name, Call&& call) {
  World& w = world();
  cl_uint num_wait = 0;
  const cl_event* wait = nullptr;
  cl_event null_event = nullptr;
  switch (in.byte() % 5) {
    case 1: num_wait = 1; wait = &w.done; break;
    case 2: num_wait = 2; wait = nullptr; break;      // inconsistent
    case 3: num_wait = 1; wait = &null_event; break;  // a null event
    case 4: num_wait = 0; wait = &w.done; break;      // inconsistent
    default: break;
  }
  cl_command_queue queue = in.byte() % 32 == 0 ? nullptr : w.session.queue();
  cl_event event = nullptr;
  const bool want_event = in.flag();
  const fcl_status status = call(queue, num_wait, wait, want_event ? &event : nullptr);
  check(status, name);
  if (status == FCL_SUCCESS) {
    if (clFinish(w.session.queue()) != CL_SUCCESS) std::abort();
    if (want_event) {
      if (event == nullptr) std::abort();
      clReleaseEvent(event);
    }
  } else if (event != nullptr) {
    std::fprintf(stderr, "%s failed but returned an event\n", name);
    std::abort();
  }
}

// Validation only when the accepted call would be slow (see the header).
bool heavy(fcl_status ws, std::size_t workspace, double macs) {
  return ws == FCL_SUCCESS && (workspace > (std::size_t{64} << 20) || macs > 67108864.0);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  World& w = world();
  FuzzInput in(data, size);
  const std::uint8_t mode = in.byte() % 5;  // 0, 1: forward; 2: backward; 3: KV cache; 4: quantisation
  cl_device_id device = in.byte() % 64 == 0 ? nullptr : w.session.device();
  const bool null_args = in.byte() % 64 == 0;
  std::size_t workspace = 0, total = 0;
  if (mode == 2) {
    fcl_backward_args b;
    fill_backward(in, b);
    const fcl_backward_args* args = null_args ? nullptr : &b;
    const fcl_status ws = fcl_backward_workspace_bytes(device, args, &workspace);
    check(ws, "fcl_backward_workspace_bytes");
    const fcl_forward_args& f = b.forward;
    if (heavy(ws, workspace, 3.0 * f.batch * f.heads * f.seqlen_q * f.seqlen_k * (f.head_dim > 0 ? f.head_dim : 1)))
      return 0;
    enqueue_checked(in, "fcl_backward", [&](cl_command_queue q, cl_uint n, const cl_event* wl, cl_event* ev) {
      return fcl_backward(q, args, n, wl, ev);
    });
    return 0;
  }
  if (mode == 3) {
    fcl_kvcache_args k;
    fill_kvcache(in, k);
    const fcl_kvcache_args* args = null_args ? nullptr : &k;
    const fcl_status ws = fcl_kvcache_workspace_bytes(device, args, &workspace);
    check(ws, "fcl_kvcache_workspace_bytes");
    const double keys = k.block_table != nullptr ? double(k.max_pages) * k.page_size : double(k.cache_seqlen);
    if (heavy(ws, workspace, double(k.batch) * k.heads * k.seqlen_q * keys * (k.head_dim > 0 ? k.head_dim : 1)))
      return 0;
    enqueue_checked(in, "fcl_forward_kvcache", [&](cl_command_queue q, cl_uint n, const cl_event* wl, cl_event* ev) {
      return fcl_forward_kvcache(q, args, n, wl, ev);
    });
    return 0;
  }
  if (mode == 4) {
    fcl_quantize_args q;
    fill_quantize(in, q);
    const fcl_quantize_args* args = null_args ? nullptr : &q;
    std::size_t descales = 0;
    check(fcl_quantize_descale_count(args, &descales), "fcl_quantize_descale_count");
    enqueue_checked(in, "fcl_quantize_fp8", [&](cl_command_queue queue, cl_uint n, const cl_event* wl, cl_event* ev) {
      return fcl_quantize_fp8(queue, args, n, wl, ev);
    });
    return 0;
  }
  fcl_forward_args a;
  fill_forward(in, a);
  const fcl_forward_args* args = null_args ? nullptr : &a;
  const fcl_status ws = fcl_workspace_bytes(device, args, &workspace);
  check(ws, "fcl_workspace_bytes");
  check(fcl_device_bytes(device, args, &total), "fcl_device_bytes");
  if (heavy(ws, workspace, double(a.batch) * a.heads * a.seqlen_q * a.seqlen_k * (a.head_dim > 0 ? a.head_dim : 1)))
    return 0;
  enqueue_checked(in, "fcl_forward", [&](cl_command_queue q, cl_uint n, const cl_event* wl, cl_event* ev) {
    return fcl_forward(q, args, n, wl, ev);
  });
  return 0;
}
