// c_api_fields.hpp: the reading of a C args struct that grew by appended fields (its caller's
// struct_size over this library's defaults), and the conversion of each C field type the public
// structs share (fcl_tensor, fcl_mask, fcl_dtype, fcl_algorithm) to its C++ form, written once for
// every C entry point: the forward's fcl_forward_args (c_api.cpp), the backward's embedded
// forward part and gradients (c_api_backward.cpp), the KV-cache path's fcl_kvcache_args, which
// mirrors the forward's fields (c_api_decode.cpp), and fp8 quantisation's fcl_quantize_args
// (c_api_quantize.cpp). Enums are read as the integers the caller stored, since loading an
// out-of-range value as the enum type is undefined behaviour; an unknown value is a named error.
#pragma once

#include <cstddef>
#include <cstring>
#include <initializer_list>
#include <optional>
#include <string>
#include <type_traits>

#include "base/errors.hpp"
#include "flashcl/flashcl.h"
#include "flashcl/flashcl.hpp"

namespace flashcl::detail {

// The integer a C caller stored in an enum field (UBSan: "load of value 7, which is not a valid
// value for type 'fcl_dtype'" when read as the enum).
template <typename Enum>
int raw_enum(const Enum& field) {
  std::underlying_type_t<Enum> value;
  std::memcpy(&value, &field, sizeof value);
  return static_cast<int>(value);
}

// A caller's args struct whose struct_size must be one of `layouts` (the sizes of the layouts this
// library reads, oldest first): any other size is a caller that skipped `init_name` (or a struct
// of another version) and is refused by name instead of read past its end or cut mid-field.
inline void check_struct_size(std::size_t struct_size, std::initializer_list<std::size_t> layouts,
                              const char* init_name) {
  std::string sizes;
  for (const std::size_t size : layouts) {
    if (size == struct_size) return;
    sizes += (sizes.empty() ? "" : " or ") + std::to_string(size);
  }
  fail(Status::InvalidArgument, "args.struct_size: ", struct_size, ", but this library reads ", sizes, " bytes (call ",
       init_name, " before filling the fields)");
}

// The caller's struct as this library lays it out: the first `bytes` of the caller's (the fields
// its layout has, at most its checked struct_size) over this library's defaults (`init`), so the
// fields appended after the caller's header keep their defaults. `bytes` is less than struct_size
// where an appended field sits in what was the old layout's tail padding.
template <typename CArgs>
CArgs over_defaults(const CArgs* caller, void (*init)(CArgs*), std::size_t bytes) {
  CArgs copy;
  init(&copy);
  std::memcpy(static_cast<void*>(&copy), caller, bytes);
  return copy;
}

inline Tensor to_tensor(const fcl_tensor& t) { return {t.buffer, t.offset, t.batch_stride, t.seq_stride, t.head_stride}; }

// A storage dtype; FCL_DTYPE_DEFAULT gives nullopt (the caller's default), other values are
// UnsupportedDType naming `name`.
inline std::optional<DType> to_dtype_or_default(const fcl_dtype& field, const char* name) {
  switch (raw_enum(field)) {
    case FCL_DTYPE_DEFAULT: return std::nullopt;
    case FCL_DTYPE_F32: return DType::F32;
    case FCL_DTYPE_F16: return DType::F16;
    case FCL_DTYPE_BF16: return DType::BF16;
    case FCL_DTYPE_E4M3: return DType::E4M3;
    case FCL_DTYPE_E5M2: return DType::E5M2;
  }
  fail(Status::UnsupportedDType, name, ": unknown value ", raw_enum(field));
}

// A storage dtype that has no default (the inputs' dtype).
inline DType to_dtype(const fcl_dtype& field, const char* name) {
  if (raw_enum(field) == FCL_DTYPE_DEFAULT) fail(Status::UnsupportedDType, name, ": unknown value ", raw_enum(field));
  return *to_dtype_or_default(field, name);
}

inline Algorithm to_algorithm(const fcl_algorithm& field) {
  switch (raw_enum(field)) {
    case FCL_ALGO_AUTO: return Algorithm::Auto;
    case FCL_ALGO_STANDARD: return Algorithm::Standard;
    case FCL_ALGO_FA1: return Algorithm::FA1;
    case FCL_ALGO_FA2: return Algorithm::FA2;
  }
  fail(Status::InvalidArgument, "algorithm: unknown value ", raw_enum(field));
}

// A mask or bias and its broadcast layout; an unknown kind is InvalidArgument naming `kind_name`.
inline Mask to_mask(const fcl_mask& m, const char* kind_name) {
  Mask out;
  switch (raw_enum(m.kind)) {
    case FCL_MASK_NONE: out.kind = MaskKind::None; break;
    case FCL_MASK_BOOL: out.kind = MaskKind::Bool; break;
    case FCL_MASK_BIAS: out.kind = MaskKind::Bias; break;
    default: fail(Status::InvalidArgument, kind_name, ": unknown value ", raw_enum(m.kind));
  }
  out.buffer = m.buffer;
  out.batch = m.batch;
  out.heads = m.heads;
  out.offset = m.offset;
  out.batch_stride = m.batch_stride;
  out.head_stride = m.head_stride;
  out.row_stride = m.row_stride;
  return out;
}

}  // namespace flashcl::detail
