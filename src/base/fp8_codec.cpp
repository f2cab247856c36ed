// fp8_codec.cpp: the host twin of kernels/shared/fp8_codec.cl (to_fp8, from_fp8): the same bit operations,
// so a value quantised on the host and one quantised by quantize_fp8 are the same byte. Round to
// nearest even, saturation to ±max (infinities too), NaN kept NaN; decoding is exact.
#include <cmath>
#include <cstring>

#include "base/errors.hpp"

namespace flashcl {
namespace {

std::uint32_t bits_of(float x) {
  std::uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return u;
}

float float_of(std::uint32_t u) {
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
}

// Format constants: mantissa bits, the fp32 exponent offset (127 − bias), the smallest normal's
// fp32 bits, the subnormal step's reciprocal, the largest finite magnitude code.
struct Format {
  int mantissa;
  std::uint32_t offset, min_normal_bits;
  float inv_step;
  std::uint32_t max_code;
};
constexpr Format kE4M3{3, 120, 0x3c800000u, 512.0f, 0x7e};
constexpr Format kE5M2{2, 112, 0x38800000u, 65536.0f, 0x7b};

std::uint8_t encode(const Format& f, float x) {
  const std::uint32_t u = bits_of(x), sign = (u >> 24) & 0x80u, a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return static_cast<std::uint8_t>(sign | 0x7fu);
  if (a < f.min_normal_bits)  // std::nearbyint rounds to nearest even in the default mode
    return static_cast<std::uint8_t>(sign | static_cast<std::uint32_t>(std::nearbyint(float_of(a) * f.inv_step)));
  const int drop = 23 - f.mantissa;
  const std::uint32_t r = (a + ((1u << (drop - 1)) - 1u) + ((a >> drop) & 1u)) >> drop;
  const std::uint32_t code = r - (f.offset << f.mantissa);
  return static_cast<std::uint8_t>(sign | (code < f.max_code ? code : f.max_code));
}

float decode(DType dtype, std::uint8_t b) {
  const std::uint32_t mag = b & 0x7fu;
  float x;
  if (dtype == DType::E4M3) {
    x = mag >= 0x08u ? float_of((mag << 20) + (120u << 23)) : static_cast<float>(mag) * 0x1p-9f;
    if (mag == 0x7fu) x = NAN;
  } else {
    x = mag >= 0x04u ? float_of((mag << 21) + (112u << 23)) : static_cast<float>(mag) * 0x1p-16f;
    if (mag == 0x7cu) x = INFINITY;
    if (mag > 0x7cu) x = NAN;
  }
  return float_of(bits_of(x) | (static_cast<std::uint32_t>(b & 0x80u) << 24));
}

void require_fp8(DType dtype, const char* what) {
  if (!is_fp8(dtype)) detail::fail(Status::UnsupportedDType, "dtype: ", what, " converts E4M3 or E5M2, got ", to_string(dtype));
}

}  // namespace

std::vector<std::uint8_t> to_fp8(DType dtype, const std::vector<float>& values) {
  require_fp8(dtype, "to_fp8()");
  const Format& f = dtype == DType::E4M3 ? kE4M3 : kE5M2;
  std::vector<std::uint8_t> out(values.size());
  for (std::size_t i = 0; i < values.size(); ++i) out[i] = encode(f, values[i]);
  return out;
}

std::vector<float> from_fp8(DType dtype, const std::vector<std::uint8_t>& bits) {
  require_fp8(dtype, "from_fp8()");
  std::vector<float> out(bits.size());
  for (std::size_t i = 0; i < bits.size(); ++i) out[i] = decode(dtype, bits[i]);
  return out;
}

}  // namespace flashcl
