/* fa1.cl: FlashAttention-1 forward, Algorithm 1 of the paper. One work-group per (head, batch),
 * as FA1 parallelises. Outer loop over K/V blocks (both held in __local memory); inner loop over
 * the Q blocks that can see them. The running O (normalised), row max m and row sum l live in
 * global memory (scratch) and are read, rescaled and written back on every inner step:
 *   m_new = max(m, m~), l_new = 2^(m - m_new) l + 2^(m~ - m_new) l~,
 *   O <- (l 2^(m - m_new) O + 2^(m~ - m_new) P~V) / l_new,  with P~ = 2^(S - m~), l~ = rowsum P~.
 * A final pass copies O to the caller's layout and writes LSE. Scores are in base 2 (Q is
 * pre-scaled by scale*log2 e), which changes no result. Key blocks and Q blocks no row can see
 * (causal, window) are skipped; GQA, VARLEN and the score transforms come from common.cl. */

__kernel __attribute__((reqd_work_group_size(WG_SIZE, 1, 1)))
void fa1_forward(__global const STORAGE_T* q, __global const STORAGE_T* k, __global const STORAGE_T* v,
                 __global STORAGE_T* o, __global float* lse, VARIANT_PARAMS, __global float* scratch,
                 const AttnArgs args) {
  __local float kt_tile[K_TILE_FLOATS] __attribute__((aligned(16)));
  __local float v_tile[V_TILE_FLOATS] __attribute__((aligned(16)));
  __local float qt_tile[Q_TILE_FLOATS] __attribute__((aligned(16)));
#if TPR > 1
  __local float pt_tile[P_TILE_FLOATS] __attribute__((aligned(16)));
  __local float red[BR * TPR];
#else
  __local float* pt_tile = 0; /* P stays in registers */
  __local float* red = 0;
#endif

  const AttnArgs* a = &args;
  const int lid = get_local_id(0), lane = lid % TPR, row0 = (lid / TPR) * TM;
  const int h = get_group_id(1), b = get_group_id(2);
  const long bh = (long)b * a->heads + h;
  const SeqView sv = seq_view(a, b, h, SCORE_UNIT, cu_seqlens_q, cu_seqlens_k, alibi_slopes);
  const int n_q = SV_NQ(&sv, a), n_k = SV_NK(&sv, a), hk = KV_HEAD(a, h); /* hk: the K/V head (GQA) */
  const long q_base = SEQ_BASE(a, q, b, h, sv.q_start), k_base = SEQ_BASE(a, k, b, hk, sv.k_start);
  const long v_base = SEQ_BASE(a, v, b, hk, sv.k_start), o_base = SEQ_BASE(a, o, b, h, sv.q_start);
  /* scratch: O (B*H, Nq, D_PAD), then (m, l) (B*H, Nq, 2); VARLEN: Nq is the maximum length */
  const long n_rows = (long)a->batch * a->heads * a->seqlen_q;
  __global float* my_o = scratch + bh * a->seqlen_q * D_PAD;
  __global float* my_ml = scratch + n_rows * D_PAD + bh * a->seqlen_q * 2;

  /* O = 0, l = 0, m = -inf in global memory */
  for (long i = lid; i < (long)n_q * D_PAD; i += WG_SIZE) my_o[i] = 0.0f;
  for (int i = lid; i < n_q; i += WG_SIZE) {
    my_ml[2 * (long)i] = NEG_INF; /* 2 i passes 2^31 once Nq does 2^30 */
    my_ml[2 * (long)i + 1] = 0.0f;
  }
  barrier(CLK_GLOBAL_MEM_FENCE);

  /* key blocks no row sees (causal, window) are never loaded */
  int kb_begin, kb_end;
  key_block_range(0, n_q, BC, &sv, a, &kb_begin, &kb_end);
  for (int kb = kb_begin; kb < kb_end; ++kb) {
    const int k0 = kb * BC;
    barrier(CLK_LOCAL_MEM_FENCE);
    load_transposed(kt_tile, KT_STRIDE, k, k_base, a->k_seq_stride, k0, BC, n_k, 1.0f, lid);
    load_rows(v_tile, v, v_base, a->v_seq_stride, k0, n_k, lid);
    /* only the Q blocks with a row that sees a key of this block (causal, window) */
    int qb_begin, qb_end;
    query_block_range(k0, min(k0 + BC, n_k), BR, &sv, a, &qb_begin, &qb_end);
    for (int qb = qb_begin; qb < qb_end; ++qb) {
      const int q0 = qb * BR;
      barrier(CLK_LOCAL_MEM_FENCE | CLK_GLOBAL_MEM_FENCE); /* qt/pt tiles free; O, m, l visible */
      load_transposed(qt_tile, QT_STRIDE, q, q_base, a->q_seq_stride, q0, BR, n_q, Q_SCALE(a), lid);
      /* every lane reads its rows' m, l here (rows past the end read nothing); lane 0 writes them
       * back only after the next barrier, whose global fence orders those reads before the writes */
      float m_old[TM], l_old[TM];
#pragma unroll
      for (int r = 0; r < TM; ++r) {
        const int row = q0 + row0 + r;
        m_old[r] = row < n_q ? my_ml[2 * (long)row] : NEG_INF;
        l_old[r] = row < n_q ? my_ml[2 * (long)row + 1] : 0.0f;
      }
      barrier(CLK_LOCAL_MEM_FENCE | CLK_GLOBAL_MEM_FENCE);

      float s[TM][COLS_S], mt[TM];
      team_scores(s, qt_tile, kt_tile, row0, lane);
      const bool masked = block_needs_mask(q0, BR, k0, BC, &sv, a);
      if (masked) team_mask(s, q0 + row0, k0, lane, &sv, a, mask);
      team_row_max(mt, s, red, row0, lane);
      team_exp(pt_tile, s, mt, row0, lane);
      barrier(CLK_LOCAL_MEM_FENCE);

      float pv[TM][COLS_O], lt[TM];
#pragma unroll
      for (int r = 0; r < TM; ++r) {
        lt[r] = 0.0f;
#pragma unroll
        for (int c = 0; c < COLS_O; ++c) pv[r][c] = 0.0f;
      }
      if (masked) /* two specialised copies: the unmasked one pays nothing */
        team_pv(pv, lt, s, pt_tile, v_tile, row0, lane, true);
      else
        team_pv(pv, lt, s, pt_tile, v_tile, row0, lane, false);

#pragma unroll
      for (int r = 0; r < TM; ++r) {
        const int row = q0 + row0 + r;
        if (row >= n_q) continue;
        const float m_new = fmax(m_old[r], mt[r]);
        /* m_old -inf: nothing seen, l_old 0, unless an earlier tile's only visible key scored NaN
         * (its max passed over the NaN, its sum did not): 0 * l_old keeps that NaN in l */
        const float w_old = m_old[r] == NEG_INF ? 0.0f * l_old[r] : EXP2_OF(m_old[r] - m_new) * l_old[r];
        const float w_new = mt[r] == NEG_INF ? 0.0f : EXP2_OF(mt[r] - m_new);
        const float l_new = w_old + w_new * lt[r];
        const float inv = l_new > 0.0f ? 1.0f / l_new : 0.0f;
#pragma unroll
        for (int c = 0; c < COLS_O; ++c) {
          __global float* oc = my_o + (long)row * D_PAD + COL_OF(c, lane);
          *oc = (w_old * *oc + w_new * pv[r][c]) * inv;
        }
        if (lane == 0) {
          my_ml[2 * (long)row] = m_new;
          my_ml[2 * (long)row + 1] = l_new;
        }
      }
    }
  }
  barrier(CLK_GLOBAL_MEM_FENCE);

  /* epilogue: O to the caller's layout, LSE = m + log l (natural log) */
  for (long i = lid; i < (long)n_q * D_PAD; i += WG_SIZE) {
    const int row = (int)(i / D_PAD), col = (int)(i - (long)row * D_PAD);
    if (col < HEAD_DIM) STORE_ELEM(o, o_base + (long)row * a->o_seq_stride + col, my_o[i]);
  }
  if (a->write_lse)
    for (int row = lid; row < n_q; row += WG_SIZE) {
      const float l_row = my_ml[2 * (long)row + 1];
      lse[LSE_INDEX(a, &sv, b, h, row)] = row_lse(my_ml[2 * (long)row], l_row);
    }
}
