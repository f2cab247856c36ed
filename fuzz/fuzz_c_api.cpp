// fuzz_c_api.cpp: libFuzzer target over the C API on the default OpenCL device (PoCL in CI).
// Each input becomes one fcl_forward_args with every field set: struct_size (sometimes wrong),
// shapes, head dim, scale bits, causal, raw dtype, algorithm and mask.kind values (also out of
// range), tensors on null / foreign-context / small or large buffers with random offsets and
// strides, optional LSE and workspace, tile overrides, GQA heads, window, softcap bits, ALiBi,
// the mask's buffer, broadcast and strides, varlen offsets, and consistent or inconsistent wait
// lists. It calls fcl_workspace_bytes, fcl_device_bytes and
// fcl_forward and requires: no crash, hang or sanitizer report; a known status for every call; a
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
  const std::uint8_t choice = in.byte() % 8;
  if (choice == 0 || (null_is_common && choice < 4)) return nullptr;
  if (choice == 1) return world().foreign_buffer;
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

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  World& w = world();
  FuzzInput in(data, size);
  fcl_forward_args a;
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
  const fcl_forward_args* args = in.byte() % 64 == 0 ? nullptr : &a;
  cl_device_id device = in.byte() % 64 == 0 ? nullptr : w.session.device();

  std::size_t workspace = 0, total = 0;
  const fcl_status ws = fcl_workspace_bytes(device, args, &workspace);
  check(ws, "fcl_workspace_bytes");
  check(fcl_device_bytes(device, args, &total), "fcl_device_bytes");

  // Validation only when the accepted call would be slow (see the header).
  const double macs = static_cast<double>(a.batch) * a.heads * a.seqlen_q * a.seqlen_k * (a.head_dim > 0 ? a.head_dim : 1);
  const bool heavy = ws == FCL_SUCCESS && (workspace > (std::size_t{64} << 20) || macs > 67108864.0);
  if (heavy) return 0;

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
  const fcl_status status = fcl_forward(queue, args, num_wait, wait, want_event ? &event : nullptr);
  check(status, "fcl_forward");
  if (status == FCL_SUCCESS) {
    if (clFinish(w.session.queue()) != CL_SUCCESS) std::abort();
    if (want_event) {
      if (event == nullptr) std::abort();
      clReleaseEvent(event);
    }
  } else if (event != nullptr) {
    std::fprintf(stderr, "fcl_forward failed but returned an event\n");
    std::abort();
  }
  return 0;
}
