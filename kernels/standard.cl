/* standard.cl: the baseline the FlashAttention papers measure against. Three kernels, each a
 * full pass over global memory: S = scale*QK^T (masked entries -inf) into an NxN buffer, a
 * row softmax that overwrites S with P and writes LSE, and O = P*V. The two products are
 * classic TILExTILE local-memory tiled GEMMs. Every variant (GQA, VARLEN, window, softcap, ALiBi,
 * masks) goes through final_score() of common.cl; VARLEN sizes S by the maximum lengths. */

#ifndef TILE
#define TILE 16 /* GEMM tile edge; work-groups are TILE x TILE */
#endif
#ifndef SOFTMAX_WG
#define SOFTMAX_WG 128 /* work-items per softmax row (a power of two) */
#endif

/* S[bh][i][j] = scale * Q_i . K_j, or -inf where the key is hidden. */
__kernel __attribute__((reqd_work_group_size(TILE, TILE, 1)))
void standard_scores(__global const STORAGE_T* q, __global const STORAGE_T* k, __global float* s,
                     VARIANT_PARAMS, const AttnArgs args) {
  __local float q_tile[TILE][TILE + 1];
  __local float k_tile[TILE][TILE + 1];
  const AttnArgs* a = &args;
  const int lx = get_local_id(0), ly = get_local_id(1);
  const int j0 = get_group_id(0) * TILE, i0 = get_group_id(1) * TILE;
  const int bh = get_group_id(2), b = bh / a->heads, h = bh % a->heads, hk = KV_HEAD(a, h);
  const SeqView sv = seq_view(a, b, h, NATURAL_UNIT, cu_seqlens_q, cu_seqlens_k, alibi_slopes);
  const long q_base = SEQ_BASE(a, q, b, h, sv.q_start), k_base = SEQ_BASE(a, k, b, hk, sv.k_start);

  float acc = 0.0f;
  for (int d0 = 0; d0 < HEAD_DIM; d0 += TILE) {
    const int col = d0 + lx;
    q_tile[ly][lx] = (i0 + ly < SV_NQ(&sv, a) && col < HEAD_DIM)
                         ? LOAD_ELEM(q, q_base + (long)(i0 + ly) * a->q_seq_stride + col) : 0.0f;
    k_tile[ly][lx] = (j0 + ly < SV_NK(&sv, a) && col < HEAD_DIM)
                         ? LOAD_ELEM(k, k_base + (long)(j0 + ly) * a->k_seq_stride + col) : 0.0f;
    barrier(CLK_LOCAL_MEM_FENCE);
#pragma unroll
    for (int t = 0; t < TILE; ++t) acc += q_tile[ly][t] * k_tile[lx][t];
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  const int i = i0 + ly, j = j0 + lx;
  if (i < a->seqlen_q && j < a->seqlen_k)
    s[((long)bh * a->seqlen_q + i) * a->seqlen_k + j] =
        final_score(acc * (a->scale * NATURAL_UNIT), i, j, &sv, a, mask);
}

/* Tree reduction over SOFTMAX_WG values in red; op is max or sum. */
#define REDUCE(red, lid, op)                                          \
  for (int stride = SOFTMAX_WG / 2; stride > 0; stride /= 2) {        \
    barrier(CLK_LOCAL_MEM_FENCE);                                     \
    if ((lid) < stride) red[lid] = op(red[lid], red[(lid) + stride]); \
  }                                                                   \
  barrier(CLK_LOCAL_MEM_FENCE)
#define ADD(x, y) ((x) + (y))

/* One work-group per row: P = exp(S - max) / sum, in place; LSE = max + log(sum). */
__kernel __attribute__((reqd_work_group_size(SOFTMAX_WG, 1, 1)))
void standard_softmax(__global float* s, __global float* lse, VARIANT_PARAMS, const AttnArgs args) {
  __local float red[SOFTMAX_WG];
  const AttnArgs* a = &args;
  const int lid = get_local_id(0), i = get_group_id(1), bh = get_group_id(2);
  const SeqView sv = seq_view(a, bh / a->heads, bh % a->heads, 1.0f, cu_seqlens_q, cu_seqlens_k, alibi_slopes);
  if (i >= SV_NQ(&sv, a)) return; /* VARLEN: past this sequence's end (the whole work-group) */
  __global float* row = s + ((long)bh * a->seqlen_q + i) * a->seqlen_k;

  float m = NEG_INF;
  for (int j = lid; j < a->seqlen_k; j += SOFTMAX_WG) m = fmax(m, row[j]);
  red[lid] = m;
  REDUCE(red, lid, fmax);
  m = red[0];
  const float m_use = m == NEG_INF ? 0.0f : m;
  barrier(CLK_LOCAL_MEM_FENCE); /* everyone has read red[0] */

  float sum = 0.0f;
  for (int j = lid; j < a->seqlen_k; j += SOFTMAX_WG) sum += exp((row[j] - m_use) * (1.0f / NATURAL_UNIT));
  red[lid] = sum;
  REDUCE(red, lid, ADD);
  sum = red[0];
  const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
  for (int j = lid; j < a->seqlen_k; j += SOFTMAX_WG) row[j] = exp((row[j] - m_use) * (1.0f / NATURAL_UNIT)) * inv;
  if (a->write_lse && lid == 0)
    lse[LSE_INDEX(a, &sv, bh / a->heads, bh % a->heads, i)] = sum == 0.0f ? NEG_INF : m * (1.0f / NATURAL_UNIT) + log(sum);
}

/* O_i = sum_j P[i][j] V_j, written through O's strides. */
__kernel __attribute__((reqd_work_group_size(TILE, TILE, 1)))
void standard_pv(__global const float* p, __global const STORAGE_T* v, __global STORAGE_T* o, VARIANT_PARAMS,
                 const AttnArgs args) {
  __local float p_tile[TILE][TILE + 1];
  __local float v_tile[TILE][TILE + 1];
  const AttnArgs* a = &args;
  const int lx = get_local_id(0), ly = get_local_id(1);
  const int c0 = get_group_id(0) * TILE, i0 = get_group_id(1) * TILE;
  const int bh = get_group_id(2), b = bh / a->heads, h = bh % a->heads, hk = KV_HEAD(a, h);
  const SeqView sv = seq_view(a, b, h, 1.0f, cu_seqlens_q, cu_seqlens_k, alibi_slopes);
  const long v_base = SEQ_BASE(a, v, b, hk, sv.k_start), o_base = SEQ_BASE(a, o, b, h, sv.q_start);
  __global const float* p_rows = p + (long)bh * a->seqlen_q * a->seqlen_k;

  float acc = 0.0f;
  for (int j0 = 0; j0 < a->seqlen_k; j0 += TILE) {
    p_tile[ly][lx] = (i0 + ly < a->seqlen_q && j0 + lx < a->seqlen_k)
                         ? p_rows[(long)(i0 + ly) * a->seqlen_k + j0 + lx] : 0.0f;
    v_tile[ly][lx] = (j0 + ly < SV_NK(&sv, a) && c0 + lx < HEAD_DIM)
                         ? LOAD_ELEM(v, v_base + (long)(j0 + ly) * a->v_seq_stride + c0 + lx) : 0.0f;
    barrier(CLK_LOCAL_MEM_FENCE);
#pragma unroll
    for (int t = 0; t < TILE; ++t) /* hidden keys (P = 0) add nothing even where V is NaN or Inf */
      acc += p_tile[ly][t] == 0.0f ? 0.0f : p_tile[ly][t] * v_tile[t][lx];
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  const int i = i0 + ly, c = c0 + lx;
  if (i < SV_NQ(&sv, a) && c < HEAD_DIM) STORE_ELEM(o, o_base + (long)i * a->o_seq_stride + c, acc);
}
