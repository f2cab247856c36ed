/* quantize_fp8.cl: fp32/fp16/bf16 (B, S, H, d) -> fp8 with amax scaling, in three kernels over
 * one work-item per (b, s, h) row (VARLEN: per packed (t, h) row): quant_amax takes each row's amax (after the optional
 * random-sign Hadamard transform along d, done in private memory) and folds it into its scale's
 * slot with an atomic max on the float's bits (non-negative floats order as their bits);
 * quant_descales writes descale = max(amax / FP8_MAX, FLT_MIN) (1 where amax is 0) in the layout the attention
 * takes; quant_encode transforms the row again and stores fp8(x / descale), rounded to nearest even
 * and saturated (fp8_codec.cl). Options: IN_DTYPE 0/1/2, DTYPE 3 (e4m3) or 4 (e5m2), HEAD_DIM,
 * GRANULARITY (0 tensor, 1 head group, 2 block of rows), HADAMARD, TRANSPOSED (out (B, H, d, S)),
 * VARLEN (packed (total, H, d) rows of B sequences delimited by cu_seqlens: scale slots per
 * sequence, a block's rows counted within its sequence, as the varlen attention reads them). */

#ifndef VARLEN
#define VARLEN 0
#endif

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

/* Scale slot of row s of (batch or sequence) b, head h. */
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
  /* ceil(seqlen / block) without seqlen + block - 1, which overflows int for a block near 2^31 */
  const int blocks = a->seqlen > 0 ? (a->seqlen - 1) / a->block + 1 : 0;
  return (b * a->heads + h) * blocks + s / a->block;
#endif
}

/* Where work-item `row` reads and what scales it: its storage row `at` (the (B, S) grid's (b, s), or
 * with VARLEN packed row t as (0, t)), head h, and the (b, s) its scale slot counts by. False when a
 * VARLEN row lies in no sequence. cu_seqlens are device data, trusted nowhere (as the attention's
 * seq_view): starts clamp to [0, total], ends to [start, total], lengths to seqlen; the sequence is
 * found by a binary search of fixed length over the clamped starts, and a row outside the range it
 * lands on (possible only with decreasing offsets or lengths past seqlen) belongs to none. */
typedef struct {
  int at_b, at_s, h; /* storage */
  int b, s;          /* scale */
} RowPlace;

inline bool row_place(const QuantArgs* a, __global const int* cu_seqlens, int row, RowPlace* p) {
  p->h = row % a->heads;
#if VARLEN
  const int t = row / a->heads;
  p->at_b = 0;
  p->at_s = t;
  int lo = 0, hi = a->batch - 1; /* the last sequence whose clamped start is <= t */
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (clamp(cu_seqlens[mid], 0, a->total) <= t) lo = mid;
    else hi = mid - 1;
  }
  const int start = clamp(cu_seqlens[lo], 0, a->total);
  const int len = min(clamp(cu_seqlens[lo + 1], start, a->total) - start, a->seqlen);
  p->b = lo;
  p->s = t - start;
  return p->s >= 0 && p->s < len;
#else
  (void)cu_seqlens;
  p->at_s = p->s = (row / a->heads) % a->seqlen;
  p->at_b = p->b = row / (a->heads * a->seqlen);
  return true;
#endif
}

/* Rows of the grid: (B x S or total) x H. */
inline int grid_rows(const QuantArgs* a) { return (VARLEN ? a->total : a->batch * a->seqlen) * a->heads; }

/* This work-item's row, or -1 past the grid: compared before narrowing to int, since the grid is
 * rounded up to whole work-groups and rows reach 2^31 - 1 (the host's limit). */
inline int grid_row(const QuantArgs* a) {
  const size_t id = get_global_id(0);
  return id < (size_t)grid_rows(a) ? (int)id : -1;
}

/* Loads row (b, s, h) into x, transformed by M = H_d diag(signs) / sqrt(d) when HADAMARD: a fast
 * Walsh-Hadamard transform (Sylvester's H_d is symmetric, so x H_d is the transform of x). Each
 * butterfly halves its operands first (exact above 2^-125), so no partial sum passes the inputs'
 * largest magnitude, and 2^k / sqrt(2^k) = sqrt(d) comes last: unscaled sums of values near
 * FLT_MAX overflowed to inf before the 1 / sqrt(d) that would have brought them back. */
inline void load_row(float x[HEAD_DIM], __global const IN_T* in, const QuantArgs* a, int b, int s, int h) {
  const long base = a->in_offset + (long)b * a->in_batch_stride + (long)s * a->in_seq_stride + (long)h * a->in_head_stride;
  for (int i = 0; i < HEAD_DIM; ++i) x[i] = LOAD_IN(in, base + i);
#if HADAMARD
  for (int len = 1; len < HEAD_DIM; len *= 2)
    for (int i = 0; i < HEAD_DIM; i += 2 * len)
      for (int j = i; j < i + len; ++j) {
        const float u = x[j], v = x[j + len];
        x[j] = 0.5f * u + 0.5f * v; /* (u + v) / 2, rounded once as u + v was */
        x[j + len] = 0.5f * u - 0.5f * v;
      }
  const int k = 31 - clz(HEAD_DIM); /* HEAD_DIM = 2^k (the host refuses other head dims here) */
  const float norm = ldexp((k & 1) ? M_SQRT2_F : 1.0f, k >> 1); /* sqrt(2^k), correctly rounded */
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

/* descale from a slot's amax bits; the one formula quant_descales and quant_encode share. At least
 * FLT_MIN: below it (amax under FP8_MAX * FLT_MIN, about 5e-36 for e4m3) the reciprocal div_rn
 * takes is inf, and x / descale came out NaN, or the descale 0 */
inline float descale_of(uint amax_bits) {
  const float amax = as_float(amax_bits);
  return amax > 0.0f ? fmax(div_rn(amax, FP8_MAX), FLT_MIN) : isnan(amax) ? amax : 1.0f; /* a NaN input: a NaN descale */
}

__kernel void quant_amax(__global const IN_T* in, __global uint* amax, __global const int* cu_seqlens,
                         const QuantArgs args) {
  const QuantArgs* a = &args;
  const int row = grid_row(a);
  RowPlace p;
  if (row < 0 || !row_place(a, cu_seqlens, row, &p)) return;
  float x[HEAD_DIM];
  load_row(x, in, a, p.at_b, p.at_s, p.h);
  float m = 0.0f;
  for (int i = 0; i < HEAD_DIM; ++i) m = fmax(m, fabs(x[i]));
  for (int i = 0; i < HEAD_DIM; ++i) m = isnan(x[i]) ? x[i] : m; /* NaN wins (fmax would drop it) */
  atomic_max(&amax[slot_of(a, p.b, p.s, p.h)], as_uint(fabs(m)));
}

__kernel void quant_descales(__global const uint* amax, __global float* descale, const QuantArgs args) {
  const QuantArgs* a = &args;
  const size_t id = get_global_id(0);
  if (id >= (size_t)a->descales) return;
  const int e = (int)id;
  descale[e] = descale_of(amax[GRANULARITY == 0 ? 0 : e]);
}

/* A row in no sequence (VARLEN) is written as zeros: every byte of out is written once. */
__kernel void quant_encode(__global const IN_T* in, __global uchar* out, __global const uint* amax,
                           __global const int* cu_seqlens, const QuantArgs args) {
  const QuantArgs* a = &args;
  const int row = grid_row(a);
  if (row < 0) return;
  RowPlace p;
  const bool placed = row_place(a, cu_seqlens, row, &p);
  const long base = a->out_offset + (long)p.at_b * a->out_batch_stride + (long)p.h * a->out_head_stride;
#if TRANSPOSED
#define OUT_AT(i) (base + (long)(i) * a->out_seq_stride + p.at_s)
#else
#define OUT_AT(i) (base + (long)p.at_s * a->out_seq_stride + (i))
#endif
  if (!placed) {
    for (int i = 0; i < HEAD_DIM; ++i) out[OUT_AT(i)] = 0;
    return;
  }
  float x[HEAD_DIM];
  load_row(x, in, a, p.at_b, p.at_s, p.h);
  const float descale = descale_of(amax[slot_of(a, p.b, p.s, p.h)]);
  for (int i = 0; i < HEAD_DIM; ++i) out[OUT_AT(i)] = ENCODE(div_rn(x[i], descale));
#undef OUT_AT
}
