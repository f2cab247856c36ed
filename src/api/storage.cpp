// storage.cpp: host conversions between fp32 and the 16-bit storage types, so callers (and the
// Session layer) can fill fp16/bf16 buffers. fp16 uses the Khronos CL/cl_half.h routines; bf16 is
// the top half of an fp32, rounded to nearest even (NaN kept quiet).
#include <CL/cl_half.h>

#include <cstring>

#include "base/errors.hpp"

namespace flashcl {
namespace {

std::uint16_t bf16_from_float(float x) {
  std::uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((u >> 16) | 0x40u);
  return static_cast<std::uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

float bf16_to_float(std::uint16_t b) {
  const std::uint32_t u = static_cast<std::uint32_t>(b) << 16;
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
}

}  // namespace

std::vector<std::uint16_t> to_storage(DType dtype, const std::vector<float>& values) {
  if (dtype != DType::F16 && dtype != DType::BF16)
    detail::fail(Status::InvalidArgument, "dtype: to_storage() converts to F16 or BF16 (fp8: to_fp8())");
  std::vector<std::uint16_t> out(values.size());
  for (std::size_t i = 0; i < values.size(); ++i)
    out[i] = dtype == DType::F16 ? cl_half_from_float(values[i], CL_HALF_RTE) : bf16_from_float(values[i]);
  return out;
}

std::vector<float> from_storage(DType dtype, const std::vector<std::uint16_t>& bits) {
  if (dtype != DType::F16 && dtype != DType::BF16)
    detail::fail(Status::InvalidArgument, "dtype: from_storage() converts from F16 or BF16 (fp8: from_fp8())");
  std::vector<float> out(bits.size());
  for (std::size_t i = 0; i < bits.size(); ++i)
    out[i] = dtype == DType::F16 ? cl_half_to_float(bits[i]) : bf16_to_float(bits[i]);
  return out;
}

}  // namespace flashcl
