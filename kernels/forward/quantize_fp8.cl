/* quantize_fp8.cl: fp32/fp16/bf16 (B, S, H, d) -> fp8 with amax scaling, in three kernels over
 * one work-item per (b, s, h) row: quant_amax takes each row's amax (after the optional
 * random-sign Hadamard transform along d, done in private memory) and folds it into its scale's
 * slot with an atomic max on the float's bits (non-negative floats order as their bits);
 * quant_descales writes descale = amax / FP8_MAX (1 where amax is 0) in the layout the attention
 * takes; quant_encode transforms the row again and stores fp8(x / descale), rounded to nearest even
 * and saturated (fp8_codec.cl). Options: IN_DTYPE 0/1/2, DTYPE 3 (e4m3) or 4 (e5m2), HEAD_DIM,
 * GRANULARITY (0 tensor, 1 head group, 2 block of rows), HADAMARD, TRANSPOSED (out (B, H, d, S)). */

#if IN_DTYPE == 0
#define IN_T float
#define LOAD_IN(p, i) ((p)[(i)])
#elif IN_DTYPE == 1
#define IN_T half
#define LOAD_IN(p, i) vload_half((i), (p))
#else
#define IN_T ushort
#define LOAD_IN(p, i) as_float((uint)(p)[(i)] << 16)
#endif
#if DTYPE == 3
#define FP8_MAX E4M3_MAX
#define ENCODE(x) float_to_e4m3(x)
#else
#define FP8_MAX E5M2_MAX
#define ENCODE(x) float_to_e5m2(x)
#endif

/* Row `row` of the (B, S, H) grid as (b, s, h), and its scale's slot. */
inline int slot_of(const QuantArgs* a, int b, int s, int h) {
#if GRANULARITY == 0
  (void)b;
  (void)s;
  (void)h;
  return 0;
#elif GRANULARITY == 1
  (void)s;
  return b * (a->heads / a->head_group) + h / a->head_group;
#else
  return (b * a->heads + h) * ((a->seqlen + a->block - 1) / a->block) + s / a->block;
#endif
}

/* Loads row (b, s, h) into x, transformed by M = H_d diag(signs) / sqrt(d) when HADAMARD: a fast
 * Walsh-Hadamard transform (Sylvester's H_d is symmetric, so x H_d is the transform of x). */
inline void load_row(float x[HEAD_DIM], __global const IN_T* in, const QuantArgs* a, int b, int s, int h) {
  const long base = a->in_offset + (long)b * a->in_batch_stride + (long)s * a->in_seq_stride + (long)h * a->in_head_stride;
  for (int i = 0; i < HEAD_DIM; ++i) x[i] = LOAD_IN(in, base + i);
#if HADAMARD
  for (int len = 1; len < HEAD_DIM; len *= 2)
    for (int i = 0; i < HEAD_DIM; i += 2 * len)
      for (int j = i; j < i + len; ++j) {
        const float u = x[j], v = x[j + len];
        x[j] = u + v;
        x[j + len] = u - v;
      }
  const float norm = rsqrt((float)HEAD_DIM);
  for (int i = 0; i < HEAD_DIM; ++i) x[i] *= ((a->signs[i / 64] >> (i % 64)) & 1) ? -norm : norm;
#endif
}

/* a / b rounded to nearest, as the host divides. OpenCL's `/` may be up to 2.5 ulp off (NVIDIA's
 * is: descales came out an ulp away from amax / 448 on the H200), so the quotient takes one
 * correction step with the exact residual a - b q (fma) and a refined reciprocal. Non-finite and
 * zero quotients are left as they are. */
inline float div_rn(float a, float b) {
  const float q = a / b;
  if (!isfinite(q) || q == 0.0f) return q;
  float y = 1.0f / b;
  y = fma(fma(-b, y, 1.0f), y, y);
  return fma(fma(-q, b, a), y, q);
}

/* descale from a slot's amax bits; the one formula quant_descales and quant_encode share */
inline float descale_of(uint amax_bits) {
  const float amax = as_float(amax_bits);
  return amax > 0.0f ? div_rn(amax, FP8_MAX) : isnan(amax) ? amax : 1.0f; /* a NaN input: a NaN descale */
}

__kernel void quant_amax(__global const IN_T* in, __global uint* amax, const QuantArgs args) {
  const QuantArgs* a = &args;
  const int row = get_global_id(0);
  if (row >= a->batch * a->seqlen * a->heads) return;
  const int h = row % a->heads, s = (row / a->heads) % a->seqlen, b = row / (a->heads * a->seqlen);
  float x[HEAD_DIM];
  load_row(x, in, a, b, s, h);
  float m = 0.0f;
  for (int i = 0; i < HEAD_DIM; ++i) m = fmax(m, fabs(x[i]));
  for (int i = 0; i < HEAD_DIM; ++i) m = isnan(x[i]) ? x[i] : m; /* NaN wins (fmax would drop it) */
  atomic_max(&amax[slot_of(a, b, s, h)], as_uint(fabs(m)));
}

__kernel void quant_descales(__global const uint* amax, __global float* descale, const QuantArgs args) {
  const QuantArgs* a = &args;
  const int e = get_global_id(0);
  if (e >= a->descales) return;
  descale[e] = descale_of(amax[GRANULARITY == 0 ? 0 : e]);
}

__kernel void quant_encode(__global const IN_T* in, __global uchar* out, __global const uint* amax,
                           const QuantArgs args) {
  const QuantArgs* a = &args;
  const int row = get_global_id(0);
  if (row >= a->batch * a->seqlen * a->heads) return;
  const int h = row % a->heads, s = (row / a->heads) % a->seqlen, b = row / (a->heads * a->seqlen);
  float x[HEAD_DIM];
  load_row(x, in, a, b, s, h);
  const float descale = descale_of(amax[slot_of(a, b, s, h)]);
  const long base = a->out_offset + (long)b * a->out_batch_stride + (long)h * a->out_head_stride;
  for (int i = 0; i < HEAD_DIM; ++i) {
#if TRANSPOSED
    const long at = base + (long)i * a->out_seq_stride + s;
#else
    const long at = base + (long)s * a->out_seq_stride + i;
#endif
    out[at] = ENCODE(div_rn(x[i], descale));
  }
}
