/* fa2.cl: FlashAttention-2 forward. One work-group per (Q block, head, batch). Prologue: the
 * scaled Q block is staged (transposed) in __local memory. Main loop over the key blocks it can
 * see: K block to __local, scores in registers, running max/sum in private memory, P to __local
 * (or kept in registers when a work-item owns whole rows), V block to __local, unnormalised
 * O += P*V with the old part rescaled by 2^(m_old - m_new). Blocks wholly above the causal
 * diagonal or outside the window are never visited; the mask runs only on blocks that cross a
 * boundary (every block when a score transform or a mask is on: -DSOFTCAP/ALIBI/MASK_KIND).
 * GQA reads K/V head h / kv_group; VARLEN work-groups past their sequence's end leave at once.
 * Epilogue: O divided by the row sum once, written once with LSE = m + log l. FP8 (e4m3/e5m2
 * inputs): the tiles are staged dequantised (fp8_tiles.cl) and O is stored as OUT_DTYPE. */

#ifndef FP8_PARAMS /* fp8 programs: the descales (fp8_descales.cl), after the argument block */
#define FP8_PARAMS
#endif

__kernel __attribute__((reqd_work_group_size(WG_SIZE, 1, 1)))
void fa2_forward(__global const STORAGE_T* q, __global const STORAGE_T* k, __global const STORAGE_T* v,
                 __global OUT_STORAGE_T* o, __global float* lse, VARIANT_PARAMS, const AttnArgs args FP8_PARAMS) {
  __local float qt_tile[Q_TILE_FLOATS] __attribute__((aligned(16)));
  __local float kv_tile[KV_TILE_FLOATS] __attribute__((aligned(16))); /* K^T, then V */
#if TPR > 1
  __local float pt_tile[P_TILE_FLOATS] __attribute__((aligned(16)));
  __local float red[BR * TPR];
#else
  __local float* pt_tile = 0; /* P stays in registers */
  __local float* red = 0;
#endif

  const AttnArgs* a = &args;
  const int lid = get_local_id(0), lane = lid % TPR, row0 = (lid / TPR) * TM;
  int q_block, h, b;
  block_coordinates(a, &q_block, &h, &b);
  const int q0 = q_block * BR;
  const SeqView sv = seq_view(a, b, h, SCORE_UNIT, cu_seqlens_q, cu_seqlens_k, alibi_slopes);
#if VARLEN
  if (q0 >= SV_NQ(&sv, a)) return; /* the whole work-group leaves: no barrier is split */
#endif
  const int q_end = min(q0 + BR, SV_NQ(&sv, a)), hk = KV_HEAD(a, h); /* hk: the K/V head (GQA) */
  const long q_base = SEQ_BASE(a, q, b, h, sv.q_start), k_base = SEQ_BASE(a, k, b, hk, sv.k_start);
  const long v_base = SEQ_BASE(a, v, b, hk, sv.k_start), o_base = SEQ_BASE(a, o, b, h, sv.q_start);

  /* prologue */
#if FP8
  const long q_first = first_descale(a, b, QUANT_BLOCK ? h : hk, a->heads, a->seqlen_q);
  const long kv_first = first_descale(a, b, hk, a->heads_kv, a->seqlen_k);
  load_transposed_fp8(qt_tile, QT_STRIDE, q, q_base, a->q_seq_stride, q0, BR, SV_NQ(&sv, a), Q_SCALE(a), q_descale,
                      q_first, lid);
#else
  load_transposed(qt_tile, QT_STRIDE, q, q_base, a->q_seq_stride, q0, BR, SV_NQ(&sv, a), Q_SCALE(a), lid);
#endif
  float m[TM], l[TM], acc[TM][COLS_O];
#pragma unroll
  for (int r = 0; r < TM; ++r) {
    m[r] = NEG_INF;
    l[r] = 0.0f;
#pragma unroll
    for (int c = 0; c < COLS_O; ++c) acc[r][c] = 0.0f;
  }

  /* main loop */
  int kb_begin, kb_end;
  key_block_range(q0, q_end, BC, &sv, a, &kb_begin, &kb_end);
  for (int kb = kb_begin; kb < kb_end; ++kb) {
    const int k0 = kb * BC;
    barrier(CLK_LOCAL_MEM_FENCE); /* previous block's readers of kv_tile are done */
#if FP8
    load_transposed_fp8(kv_tile, KT_STRIDE, k, k_base, a->k_seq_stride, k0, BC, SV_NK(&sv, a), 1.0f, k_descale,
                        kv_first, lid);
#else
    load_transposed(kv_tile, KT_STRIDE, k, k_base, a->k_seq_stride, k0, BC, SV_NK(&sv, a), 1.0f, lid);
#endif
    barrier(CLK_LOCAL_MEM_FENCE);

    float s[TM][COLS_S], mx[TM];
    team_scores(s, qt_tile, kv_tile, row0, lane);
    const bool masked = block_needs_mask(q0, BR, k0, BC, &sv, a);
    if (masked) team_mask(s, q0 + row0, k0, lane, &sv, a, mask);
    team_row_max(mx, s, red, row0, lane);
#pragma unroll
    for (int r = 0; r < TM; ++r) {
      const float m_new = fmax(m[r], mx[r]);
      const float alpha = softmax_rescale(m[r], m_new);
      l[r] *= alpha;
#pragma unroll
      for (int c = 0; c < COLS_O; ++c) acc[r][c] *= alpha;
      m[r] = m_new;
    }
    team_exp(pt_tile, s, m, row0, lane);
    barrier(CLK_LOCAL_MEM_FENCE); /* all scores computed: kv_tile may now take V */
#if FP8
    load_rows_fp8(kv_tile, v, v_base, a->v_seq_stride, k0, SV_NK(&sv, a), v_descale, kv_first, lid);
#else
    load_rows(kv_tile, v, v_base, a->v_seq_stride, k0, SV_NK(&sv, a), lid);
#endif
    barrier(CLK_LOCAL_MEM_FENCE);
    if (masked) /* two specialised copies: the unmasked one pays nothing */
      team_pv(acc, l, s, pt_tile, kv_tile, row0, lane, true);
    else
      team_pv(acc, l, s, pt_tile, kv_tile, row0, lane, false);
  }

  /* epilogue */
#pragma unroll
  for (int r = 0; r < TM; ++r) {
    const int row = q0 + row0 + r;
    if (row >= SV_NQ(&sv, a)) continue;
    const float inv = l[r] > 0.0f ? 1.0f / l[r] : 0.0f;
    float out[COLS_O];
#pragma unroll
    for (int c = 0; c < COLS_O; ++c) out[c] = acc[r][c] * inv;
    const float lse_value = row_lse(m[r], l[r]);
    store_row(o, o_base + (long)row * a->o_seq_stride, lse, LSE_INDEX(a, &sv, b, h, row), a->write_lse, out,
              lse_value, lane);
  }
}
