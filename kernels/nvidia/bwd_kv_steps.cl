/* bwd_kv_steps.cl: what the two dK/dV kernels of the tensor-core backward share (bwd_mma.cl's on
 * mma.sync, bwd_wgmma_dkdv.cl's on wgmma): the block geometry (MK 16-key m-tiles a warp, BKV keys a
 * work-group, BQ query rows a step), the steps over (query head of the group, Q block that sees the
 * K/V block) with their loads (GROUP_HEADS, load_query_block, QSTAGES), and the per-element pass
 * that turns S^T into P^T and dP^T into dS^T (probs_t). Built after a rows file (bwd_mma_rows.cl
 * or bwd_wgmma_rows.cl), whose load_rows lays Q_i and dO_i out as its products read them. */

#ifndef MK
#define MK 1 /* 16-key m-tiles a warp: 1, or 2 (d = 64's default, no atomic dQ): each Q_i/dO_i fragment read serves two */
#endif
#ifndef WARP_PAIRS
#define WARP_PAIRS 0 /* 1 (bwd_mma.cl on fp32 at d > 64): two warps share each 16-key m-tile, one for K, one for V */
#endif
#define BKV (16 * MK * WARPS / (1 + WARP_PAIRS)) /* keys per work-group */
#ifndef BQ
#define BQ 64 /* query rows per Q block */
#endif
#define NQT (BQ / 8) /* 8-query tiles of S^T per warp */
#ifndef QSTAGES
#define QSTAGES 1 /* Q/dO/LSE/D buffers: 1, or 2 (block i + 1 copied while block i is computed) */
#endif

#if GQA
#define GROUP_HEADS(a) ((a)->kv_group)
#else
#define GROUP_HEADS(a) 1
#endif

/* The variants on the tensor cores (bwd_mma.cl and bwd_mma_dq.cl; the wgmma forms take none):
 * packed sequences (VARLEN) move the rows' bases and lengths; a window hides keys out of its band
 * (common.cl's visibility rules); softcap, ALiBi and masks (SCORE_TRANSFORM) send every score
 * through the forward's final_score, in natural units, with the LSE tiles natural too, and scale
 * dS by score_slope. Only such programs take the variant arguments, so a plain call's program is
 * the one on record. */
#define BWD_VARIANTS (VARLEN || WINDOW || SCORE_TRANSFORM)
#ifndef SOFTCAP_EX2
#define SOFTCAP_EX2 0 /* 1: variant_entry's softcap from one ex2.approx (16 bits; see there) */
#endif
#if BWD_VARIANTS
#define BWD_VARIANT_PARAMS , VARIANT_PARAMS
#define BWD_VARIANT_POINTERS cu_seqlens_q, cu_seqlens_k, alibi_slopes
#define BWD_MASK mask
#else
#define BWD_VARIANT_PARAMS
#define BWD_VARIANT_POINTERS 0, 0, 0
#define BWD_MASK 0
#endif
/* The unit of the LSE held beside each Q block: log2 (P = 2^(c s - LSE log2 e) in one fma) or, where
 * the scores go through final_score, natural (P = e^(final score - LSE)) */
#if SCORE_TRANSFORM
#define LSE_TILE_UNIT 1.0f
#else
#define LSE_TILE_UNIT LOG2E_F
#endif

#if WINDOW || SCORE_TRANSFORM
/* One entry (query `row`, key `key`) under the variants' score rules, for both kernels: *s holds
 * q.k and becomes P, *dp holds dP and becomes dS; lse is the row's (LSE_TILE_UNIT, +inf for rows
 * with nothing to see: P = 0) and d its D. With a score transform (softcap, ALiBi, masks) the score
 * goes through final_score in natural units and dS takes the transform's slope; with a window
 * alone, common.cl's rules hide keys on the blocks `masked` marks, in log2 units (c). */
BWD_INLINE void variant_entry(float* s, float* dp, bool masked, int row, int key, float lse, float d, float c,
                              const SeqView* sv, const AttnArgs* a, __global const MASK_T* mask) {
#if SCORE_TRANSFORM /* every block is masked: these change every score */
  const float raw = *s * a->scale;
#if SOFTCAP && DTYPE != 0 && SOFTCAP_EX2
  /* 16 bits (the default; FLASHCL_BWD_SOFTCAP_EX2=0 not): tanh u = 1 - 2 / (1 + e^(2u)) from one ex2.approx
   * and one reciprocal, for the score and its slope alike, to about 3e-7 absolute, so the score to
   * c * 3e-7: far inside the 16-bit rounding of P and dS for c <= 64, the only calls the host builds
   * it for (kSoftcapEx2Max). The library's tanh and a division, once for each, cost these kernels
   * 2-3.4x their plain time on an H100 (this form: 1.9-2.6x faster there). fp32 (3xTF32) keeps them:
   * its bounds are fp32's. */
  const float th = softcap_tanh_ex2(raw, sv->softcap);
  const float score =
      key_masked(row, key, sv, a, mask) ? NEG_INF : score_shifts(sv->softcap * th, row, key, sv, a, mask);
  const float p = ex2_approx((score - lse) * LOG2E_F);
  *dp = p * (*dp - d) * (1.0f - th * th);
#else
  const float p = ex2_approx((final_score(raw, row, key, sv, a, mask) - lse) * LOG2E_F);
  *dp = p * (*dp - d) * score_slope(raw, sv);
#endif
  (void)masked;
  (void)c;
#else
  float x = fma(*s, c, -lse);
  if (masked && key_masked(row, key, sv, a, mask)) x = NEG_INF;
  const float p = ex2_approx(x);
  *dp = p * (*dp - d);
#endif
  *s = p;
}
#endif

/* S^T becomes P^T and dP^T becomes dS^T in place. Column j's queries (8j + 2t, + 1) read their
 * LSE (LSE_TILE_UNIT, +inf for rows with nothing to see or past the end) and D from __local memory;
 * the mask pass runs only on blocks that cross the keys' end or the causal diagonal. With a window
 * or a score transform every entry goes through variant_entry. */
BWD_INLINE void probs_t(float s[MK][NQT][4], float dp[MK][NQT][4], __local const float* lse2, __local const float* dd,
                        int key_a, int q0, int k0, int t, float c, const SeqView* sv, const AttnArgs* a,
                        __global const MASK_T* mask) {
  const bool masked = block_needs_mask(q0, BQ, k0, BKV, sv, a);
  const int nk = SV_NK(sv, a), shift = SV_SHIFT(sv, a);
#pragma unroll
  for (int i = 0; i < MK; ++i)
#pragma unroll
    for (int j = 0; j < NQT; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int col = 8 * j + 2 * t + (e & 1), key = key_a + 16 * i + (e >> 1) * 8;
#if WINDOW || SCORE_TRANSFORM
        variant_entry(&s[i][j][e], &dp[i][j][e], masked, q0 + col, key, lse2[col], dd[col], c, sv, a, mask);
        (void)nk;
#else
        float x = fma(s[i][j][e], c, -lse2[col]);
        if (masked) {
          bool hidden = key >= nk;
#if CAUSAL
          hidden = hidden || key > q0 + col + shift;
#endif
          if (hidden) x = NEG_INF;
        }
        const float p = ex2_approx(x);
        s[i][j][e] = p;
        dp[i][j][e] = p * (dp[i][j][e] - dd[col]);
        (void)mask;
#endif
      }
  (void)shift;
}

/* Q_i, dO_i (cp.async or element copies; one commit group), LSE_i in LSE_TILE_UNIT (+inf for rows
 * past the end or with nothing to see, so their P is 0) and D_i of rows q0 .. q0 + BQ - 1 of head h
 * into one stage of the tiles. The LSE and D stores are plain: visible after the next barrier. */
BWD_INLINE void load_query_block(__local ELEM_T* q_tile, __local ELEM_T* do_tile, __local float* lse2_tile,
                                 __local float* d_tile, __global const ELEM_T* qg, __global const ELEM_T* dog,
                                 __global const float* lse, __global const float* ws, int q0, int b, int h,
                                 const SeqView* sv, const AttnArgs* a, const BwdArgs* gb, int lid) {
  const int nq = SV_NQ(sv, a);
  load_rows(q_tile, BQ, qg, SEQ_BASE(a, q, b, h, sv->q_start), a->q_seq_stride, q0, nq, lid);
  load_rows(do_tile, BQ, dog, SEQ_BASE(gb, dout, b, h, sv->q_start), gb->dout_seq_stride, q0, nq, lid);
#if VEC_LOAD
  async_commit();
#endif
  for (int r = lid; r < BQ; r += WG_SIZE) {
    const int row = q0 + r;
    float l2 = INFINITY, dd = 0.0f;
    if (row < nq) {
      const long index = LSE_INDEX(a, sv, b, h, row);
      const float x = lse[index];
      l2 = x == NEG_INF ? INFINITY : x * LSE_TILE_UNIT;
      dd = ws[gb->ws_d_offset + index];
    }
    lse2_tile[r] = l2;
    d_tile[r] = dd;
  }
}
