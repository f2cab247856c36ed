/* fp8_codec.cl: the fp8 formats (OCP FP8, as FlashAttention-3 uses them) decoded and encoded with
 * bit operations only, so every OpenCL 1.2 device (PoCL included) runs them exactly. e4m3: sign,
 * 4 exponent bits (bias 7), 3 mantissa bits, max 448, no infinities, S.1111.111 is NaN. e5m2:
 * sign, 5 exponent bits (bias 15), 2 mantissa bits, max 57344, IEEE infinities and NaNs. Decoding
 * is exact; encoding rounds to nearest even and saturates to +-max (cvt.rn.satfinite's rule), NaN
 * stays NaN. src/fp8_codec.cpp is the host twin; tests/test_fp8.cpp checks both on all 256 codes. */

#define E4M3_MAX 448.0f
#define E5M2_MAX 57344.0f

inline float e4m3_to_float(uchar b) {
  const uint mag = b & 0x7fu;
  /* normal: exponent e and mantissa m moved under fp32's fields, bias 7 -> 127; subnormal: m * 2^-9 */
  float x = mag >= 0x08u ? as_float((mag << 20) + (120u << 23)) : (float)mag * 0x1p-9f;
  if (mag == 0x7fu) x = NAN;
  return as_float(as_uint(x) | ((uint)(b & 0x80u) << 24));
}

inline float e5m2_to_float(uchar b) {
  const uint mag = b & 0x7fu;
  float x = mag >= 0x04u ? as_float((mag << 21) + (112u << 23)) : (float)mag * 0x1p-16f;
  if (mag == 0x7cu) x = INFINITY;
  if (mag > 0x7cu) x = NAN;
  return as_float(as_uint(x) | ((uint)(b & 0x80u) << 24));
}

/* Vector decodes through the fp16 converter (the CPU forms and decode_common.cl): e4m3 bytes
 * widened to ushort lanes u become the bits of an fp16 holding the value / 256 exactly (its 4
 * exponent and 3 mantissa bits shifted under fp16's, subnormals included; convert, then times 256),
 * and E4M3_IS_NAN(u) marks the S.1111.111 lanes, which that fp16 would read as 1.875 / 256. e5m2
 * is the high byte of its fp16: u << 8. */
#define E4M3_HALF_BITS(u) ((((u) & (ushort)0x7f) << (ushort)7) | (((u) & (ushort)0x80) << (ushort)8))
#define E4M3_IS_NAN(u) (((u) & (ushort)0x7f) == (ushort)0x7f)

inline uchar float_to_e4m3(float x) {
  const uint u = as_uint(x), sign = (u >> 24) & 0x80u, a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return (uchar)(sign | 0x7fu);                       /* NaN */
  if (a < 0x3c800000u) return (uchar)(sign | (uint)rint(as_float(a) * 512.0f)); /* below 2^-6: steps of 2^-9, RNE */
  const uint r = (a + 0x7ffffu + ((a >> 20) & 1u)) >> 20;                  /* 3 mantissa bits, RNE */
  return (uchar)(sign | min(r - (120u << 3), 0x7eu));                      /* past 448 (and inf): 448 */
}

inline uchar float_to_e5m2(float x) {
  const uint u = as_uint(x), sign = (u >> 24) & 0x80u, a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return (uchar)(sign | 0x7fu);
  if (a < 0x38800000u) return (uchar)(sign | (uint)rint(as_float(a) * 65536.0f)); /* below 2^-14: steps of 2^-16 */
  const uint r = (a + 0xfffffu + ((a >> 21) & 1u)) >> 21;
  return (uchar)(sign | min(r - (112u << 2), 0x7bu)); /* past 57344 (and inf): 57344 */
}
