// c_api_quantize.cpp: the C API of fp8 quantisation: fcl_quantize_args (checked by struct_size)
// converted to flashcl::QuantizeArgs through c_api_fields.hpp (enums read as integers); statuses
// and messages come from the C API's one conversion point (c_api_guard.hpp). A caller built
// against the first layout (up to `transposed`) passes its smaller struct_size, and the varlen
// fields keep their defaults.
#include <cstddef>

#include "api/c_api_fields.hpp"
#include "api/c_api_guard.hpp"
#include "base/errors.hpp"

namespace {

using flashcl::Status;
using flashcl::detail::fail;
using flashcl::detail::to_dtype;
using flashcl::detail::to_tensor;

// fcl_quantize_args as its first layout had it (every field up to `transposed`), frozen: a caller
// built against that header passes its sizeof as struct_size.
struct QuantizeArgsV1 {
  size_t struct_size;
  int batch, seqlen, heads, head_dim;
  fcl_dtype in_dtype, out_dtype;
  fcl_tensor in, out;
  cl_mem descale;
  int granularity, head_group, block, hadamard;
  uint64_t hadamard_seed;
  int transposed;
};
constexpr std::size_t kQuantizeArgsFirstSize = sizeof(QuantizeArgsV1);
static_assert(kQuantizeArgsFirstSize < sizeof(fcl_quantize_args), "the varlen fields were appended");
static_assert(offsetof(QuantizeArgsV1, transposed) == offsetof(fcl_quantize_args, transposed),
              "the first layout is a prefix of the current one");

flashcl::QuantizeArgs to_args(const fcl_quantize_args* caller) {
  if (caller == nullptr) fail(Status::InvalidArgument, "args: null pointer");
  flashcl::detail::check_struct_size(caller->struct_size, {kQuantizeArgsFirstSize, sizeof(fcl_quantize_args)},
                                     "fcl_quantize_args_init");
  // (the first layout's tail padding is padding in this one too)
  const fcl_quantize_args copy = flashcl::detail::over_defaults(caller, fcl_quantize_args_init, caller->struct_size);
  const fcl_quantize_args* in = &copy;
  flashcl::QuantizeArgs a;
  a.batch = in->batch;
  a.seqlen = in->seqlen;
  a.heads = in->heads;
  a.head_dim = in->head_dim;
  a.in_dtype = to_dtype(in->in_dtype, "in_dtype");
  a.out_dtype = to_dtype(in->out_dtype, "out_dtype");
  a.in = to_tensor(in->in);
  a.out = to_tensor(in->out);
  a.descale = in->descale;
  switch (in->granularity) {
    case 0: a.granularity = flashcl::QuantGranularity::Tensor; break;
    case 1: a.granularity = flashcl::QuantGranularity::Head; break;
    case 2: a.granularity = flashcl::QuantGranularity::Block; break;
    default: fail(Status::InvalidArgument, "granularity: must be 0 (tensor), 1 (head group) or 2 (block), got ", in->granularity);
  }
  a.head_group = in->head_group;
  a.block = in->block;
  a.hadamard = in->hadamard != 0;
  a.hadamard_seed = in->hadamard_seed;
  a.transposed = in->transposed != 0;
  a.cu_seqlens = in->cu_seqlens;
  a.total = in->total;
  return a;
}

}  // namespace

extern "C" {

void fcl_quantize_args_init(fcl_quantize_args* args) {
  if (args == nullptr) return;
  *args = fcl_quantize_args{};
  args->struct_size = sizeof(fcl_quantize_args);
  args->in_dtype = FCL_DTYPE_F32;
  args->out_dtype = FCL_DTYPE_E4M3;
  args->head_group = 1;
}

fcl_status fcl_quantize_descale_count(const fcl_quantize_args* args, size_t* count) {
  return flashcl::detail::c_api_guarded([&] {
    if (count == nullptr) fail(Status::InvalidArgument, "count: null pointer");
    *count = flashcl::quantize_descale_count(to_args(args));
  });
}

fcl_status fcl_quantize_fp8(cl_command_queue queue, const fcl_quantize_args* args, cl_uint num_wait,
                            const cl_event* wait_list, cl_event* event) {
  return flashcl::detail::c_api_enqueue(num_wait, wait_list, event, [&](const std::vector<cl_event>& wait) {
    return flashcl::quantize_fp8(queue, to_args(args), wait);
  });
}

}  // extern "C"
