/* standard_softmax.cl: the row softmax of the standard path, shared by its portable form
 * (forward/standard.cl) and its NVIDIA tensor-core form (nvidia/standard_mma.cl): one work-group
 * per row of the fp32 score workspace S (B, H, Nq, Nk), which it overwrites in place with
 * P = exp(S - max) / sum, writing LSE = max + log(sum). Scores are in NATURAL_UNIT (common.cl), as
 * both score kernels write them; a row that sees no key (all -inf) gets P = 0 and LSE = -inf. */

#ifndef CAT /* gemm.cl defines it in the portable program */
#define CAT_(x, y) x##y
#define CAT(x, y) CAT_(x, y)
#endif
#ifndef SOFTMAX_WG
#define SOFTMAX_WG 128 /* work-items per softmax row (a power of two) */
#endif
#ifndef SOFTMAX_VW
#define SOFTMAX_VW 1 /* elements each softmax work-item takes per step: 1, 4, 8 or 16 */
#endif
#ifndef SOFTMAX_REGS
#define SOFTMAX_REGS 0 /* > 0: rows of up to SOFTMAX_WG * SOFTMAX_REGS keys held in registers (SOFTMAX_VW 1) */
#endif

/* Tree reduction over SOFTMAX_WG values in red; op is max or sum. */
#define REDUCE(red, lid, op)                                          \
  for (int stride = SOFTMAX_WG / 2; stride > 0; stride /= 2) {        \
    barrier(CLK_LOCAL_MEM_FENCE);                                     \
    if ((lid) < stride) red[lid] = op(red[lid], red[(lid) + stride]); \
  }                                                                   \
  barrier(CLK_LOCAL_MEM_FENCE)
#define ADD(x, y) ((x) + (y))

/* Horizontal max and sum of a vector (fmax skips NaN as the scalar loop does; sums keep it). */
inline float hmax4(float4 x) { return fmax(fmax(x.s0, x.s1), fmax(x.s2, x.s3)); }
inline float hmax8(float8 x) { return hmax4(fmax(x.lo, x.hi)); }
inline float hmax16(float16 x) { return hmax8(fmax(x.lo, x.hi)); }
inline float hsum4(float4 x) { return (x.s0 + x.s1) + (x.s2 + x.s3); }
inline float hsum8(float8 x) { return hsum4(x.lo + x.hi); }
inline float hsum16(float16 x) { return hsum8(x.lo + x.hi); }

#if SOFTMAX_VW == 1
#define SM_VEC float
#define SM_LOAD(p) (*(p))
#define SM_STORE(x, p) (*(p) = (x))
#define SM_HMAX(x) (x)
#define SM_HSUM(x) (x)
#else
#define SM_VEC CAT(float, SOFTMAX_VW)
#define SM_LOAD(p) CAT(vload, SOFTMAX_VW)(0, p)
#define SM_STORE(x, p) CAT(vstore, SOFTMAX_VW)(x, 0, p)
#define SM_HMAX(x) CAT(hmax, SOFTMAX_VW)(x)
#define SM_HSUM(x) CAT(hsum, SOFTMAX_VW)(x)
#endif

/* One work-group per row: P = exp(S - max) / sum, in place; LSE = max + log(sum). Each work-item
 * takes SOFTMAX_VW elements at a time (vector loads and exp on CPUs), the tail one by one. */
__kernel __attribute__((reqd_work_group_size(SOFTMAX_WG, 1, 1)))
void standard_softmax(__global float* s, __global float* lse, VARIANT_PARAMS, const AttnArgs args) {
  __local float red[SOFTMAX_WG];
  const AttnArgs* a = &args;
  const int lid = get_local_id(0), i = get_group_id(1), bh = get_group_id(2);
  const SeqView sv = seq_view(a, bh / a->heads, bh % a->heads, 1.0f, cu_seqlens_q, cu_seqlens_k, alibi_slopes);
  if (i >= SV_NQ(&sv, a)) return; /* VARLEN: past this sequence's end (the whole work-group) */
  __global float* row = s + ((long)bh * a->seqlen_q + i) * a->seqlen_k;
  const int n = a->seqlen_k, vec_end = n / SOFTMAX_VW * SOFTMAX_VW, step = SOFTMAX_WG * SOFTMAX_VW;

#if SOFTMAX_REGS > 0 && SOFTMAX_VW == 1
  /* A row that fits stays in registers: S read once and P written once, where the loops below read
   * S three times (on a GPU the softmax is bound by that traffic). Each work-item takes the same
   * elements in the same order as those loops with SOFTMAX_VW = 1, so the bits are the same. */
  if (n <= SOFTMAX_WG * SOFTMAX_REGS) {
    float x[SOFTMAX_REGS], rm = NEG_INF;
#pragma unroll
    for (int r = 0; r < SOFTMAX_REGS; ++r) {
      const int j = lid + r * SOFTMAX_WG;
      x[r] = j < n ? row[j] : NEG_INF; /* exp(-inf) = 0 below: past the row adds nothing */
      rm = fmax(rm, x[r]);
    }
    red[lid] = rm;
    REDUCE(red, lid, fmax);
    const float rmax = red[0], r_use = rmax == NEG_INF ? 0.0f : rmax;
    barrier(CLK_LOCAL_MEM_FENCE); /* everyone has read red[0] */
    float rsum = 0.0f;
#pragma unroll
    for (int r = 0; r < SOFTMAX_REGS; ++r) rsum += x[r] = exp((x[r] - r_use) * (1.0f / NATURAL_UNIT));
    red[lid] = rsum;
    REDUCE(red, lid, ADD);
    rsum = red[0];
    const float rinv = rsum > 0.0f ? 1.0f / rsum : 0.0f;
#pragma unroll
    for (int r = 0; r < SOFTMAX_REGS; ++r) {
      const int j = lid + r * SOFTMAX_WG;
      if (j < n) row[j] = x[r] * rinv;
    }
    if (a->write_lse && lid == 0)
      lse[LSE_INDEX(a, &sv, bh / a->heads, bh % a->heads, i)] = natural_row_lse(rmax, rsum);
    return;
  }
#endif

  SM_VEC vm = NEG_INF;
  for (int j = lid * SOFTMAX_VW; j < vec_end; j += step) vm = fmax(vm, SM_LOAD(row + j));
  float m = SM_HMAX(vm);
  for (int j = vec_end + lid; j < n; j += SOFTMAX_WG) m = fmax(m, row[j]);
  red[lid] = m;
  REDUCE(red, lid, fmax);
  m = red[0];
  const float m_use = m == NEG_INF ? 0.0f : m;
  barrier(CLK_LOCAL_MEM_FENCE); /* everyone has read red[0] */

  SM_VEC vsum = 0.0f;
  for (int j = lid * SOFTMAX_VW; j < vec_end; j += step) vsum += exp((SM_LOAD(row + j) - m_use) * (1.0f / NATURAL_UNIT));
  float sum = SM_HSUM(vsum);
  for (int j = vec_end + lid; j < n; j += SOFTMAX_WG) sum += exp((row[j] - m_use) * (1.0f / NATURAL_UNIT));
  red[lid] = sum;
  REDUCE(red, lid, ADD);
  sum = red[0];
  const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
  for (int j = lid * SOFTMAX_VW; j < vec_end; j += step)
    SM_STORE(exp((SM_LOAD(row + j) - m_use) * (1.0f / NATURAL_UNIT)) * inv, row + j);
  for (int j = vec_end + lid; j < n; j += SOFTMAX_WG) row[j] = exp((row[j] - m_use) * (1.0f / NATURAL_UNIT)) * inv;
  if (a->write_lse && lid == 0)
    lse[LSE_INDEX(a, &sv, bh / a->heads, bh % a->heads, i)] = natural_row_lse(m, sum);
}

