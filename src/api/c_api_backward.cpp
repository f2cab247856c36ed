// c_api_backward.cpp: the backward's C entry points. Converts fcl_backward_args to
// flashcl::BackwardArgs (the forward part through c_api.cpp's own conversion) after checking
// struct_size, the ABI guard: fcl_backward_args_init records the size the caller compiled against;
// this layout and 0.1's (whose embedded forward part was shorter) are read, and a struct of any
// other size (a caller that skipped the init) is rejected instead of read past its end. Status
// codes and messages come from the C API's one conversion point (c_api_guard.hpp).
#include <cstring>
#include <vector>

#include "api/c_api_convert.hpp"
#include "api/c_api_fields.hpp"
#include "api/c_api_guard.hpp"
#include "base/errors.hpp"

namespace {

using flashcl::Status;
using flashcl::detail::fail;
using flashcl::detail::raw_enum;
using flashcl::detail::to_mask;
using flashcl::detail::to_tensor;

// fcl_backward_args as flashcl 0.1 laid it out: the same fields around 0.1's smaller embedded
// fcl_forward_args (it ended before total_q). fcl_forward_args grows at its end, which moves every
// later field here, so a 0.1 caller's struct (told apart by its struct_size) is read through this
// mirror instead of the current layout.
struct BackwardArgsV1 {
  size_t struct_size;
  alignas(fcl_forward_args) unsigned char forward[flashcl::detail::kForwardArgsFirstSize];
  fcl_tensor d_o, d_q, d_k, d_v;
  fcl_mask d_bias;
  int deterministic;
  cl_mem workspace;
};
static_assert(sizeof(BackwardArgsV1) != sizeof(fcl_backward_args), "the two layouts differ in size");

// The caller's struct in the current layout: as given, or a 0.1 one moved field by field (the
// forward part keeps its own struct_size, which tells c_forward_args which fields it has).
fcl_backward_args current_layout(const fcl_backward_args* in) {
  fcl_backward_args out;
  if (in->struct_size == sizeof(fcl_backward_args)) {
    std::memcpy(static_cast<void*>(&out), in, sizeof out);
    return out;
  }
  BackwardArgsV1 old;
  std::memcpy(static_cast<void*>(&old), in, sizeof old);
  fcl_backward_args_init(&out);
  std::memcpy(static_cast<void*>(&out.forward), old.forward, sizeof old.forward);
  out.d_o = old.d_o;
  out.d_q = old.d_q;
  out.d_k = old.d_k;
  out.d_v = old.d_v;
  std::memcpy(static_cast<void*>(&out.d_bias), &old.d_bias, sizeof old.d_bias);  // kind: any int
  out.deterministic = old.deterministic;
  out.workspace = old.workspace;
  return out;
}

flashcl::BackwardArgs to_backward_args(const fcl_backward_args* caller) {
  if (caller == nullptr) fail(Status::InvalidArgument, "args: null pointer");
  if (caller->struct_size != sizeof(fcl_backward_args) && caller->struct_size != sizeof(BackwardArgsV1))
    fail(Status::InvalidArgument, "args.struct_size: ", caller->struct_size, " is neither this library's ",
         sizeof(fcl_backward_args), " nor 0.1's ", sizeof(BackwardArgsV1), " (call fcl_backward_args_init first)");
  const fcl_backward_args copy = current_layout(caller);
  const fcl_backward_args* in = &copy;
  flashcl::BackwardArgs a;
  // (checked here too, so that the error names the embedded struct's field)
  const std::size_t forward_size = in->forward.struct_size;
  if (forward_size < flashcl::detail::kForwardArgsFirstSize || forward_size > sizeof(fcl_forward_args))
    fail(Status::InvalidArgument, "forward.struct_size: ", forward_size, ", but this library reads ",
         flashcl::detail::kForwardArgsFirstSize, "..", sizeof(fcl_forward_args),
         " bytes (call fcl_backward_args_init, which initialises the forward part too)");
  a.forward = flashcl::detail::c_forward_args(&in->forward);
  a.d_o = to_tensor(in->d_o);
  a.d_q = to_tensor(in->d_q);
  a.d_k = to_tensor(in->d_k);
  a.d_v = to_tensor(in->d_v);
  // the forward's fcl_mask conversion, after the kinds a gradient can have (a bias or none)
  const int kind = raw_enum(in->d_bias.kind);
  if (kind != FCL_MASK_NONE && kind != FCL_MASK_BIAS)
    fail(Status::InvalidArgument, "d_bias.kind: must be FCL_MASK_BIAS or FCL_MASK_NONE, got ", kind);
  a.d_bias = to_mask(in->d_bias, "d_bias.kind");
  a.deterministic = in->deterministic != 0;
  a.workspace = in->workspace;
  return a;
}

}  // namespace

extern "C" {

void fcl_backward_args_init(fcl_backward_args* args) {
  if (args == nullptr) return;
  std::memset(args, 0, sizeof *args);
  args->struct_size = sizeof *args;
  fcl_forward_args_init(&args->forward);
  args->d_bias.kind = FCL_MASK_NONE;
}

fcl_status fcl_backward(cl_command_queue queue, const fcl_backward_args* args, cl_uint num_wait,
                        const cl_event* wait_list, cl_event* event) {
  return flashcl::detail::c_api_enqueue(num_wait, wait_list, event, [&](const std::vector<cl_event>& wait) {
    return flashcl::backward(queue, to_backward_args(args), wait);
  });
}

fcl_status fcl_backward_workspace_bytes(cl_device_id device, const fcl_backward_args* args, size_t* bytes) {
  return flashcl::detail::c_api_guarded([&] {
    if (bytes == nullptr) fail(Status::InvalidArgument, "bytes: null pointer");
    *bytes = flashcl::backward_workspace_bytes(device, to_backward_args(args));
  });
}

}  // extern "C"
