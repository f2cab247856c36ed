/* standard.cl: the baseline the FlashAttention papers measure against. Three kernels, each a
 * full pass over global memory: S = scale*QK^T (masked entries -inf) into an NxN buffer, a
 * row softmax that overwrites S with P and writes LSE, and O = P*V. The two products are
 * register-blocked tiled GEMMs (gemm.cl): each work-item owns GEMM_RM rows x one GEMM_RN-wide
 * vector of columns, panels of GEMM_KP along the contraction staged in __local. Every variant
 * (GQA, VARLEN, window, softcap, ALiBi, masks) goes through final_score() of common.cl; VARLEN
 * sizes S by the maximum lengths. The row softmax is standard_softmax.cl's, shared with the
 * tensor-core form (nvidia/standard_mma.cl). */

/* S[bh][i][j] = scale * Q_i . K_j, or -inf where the key is hidden. A = Q, B = K^T. */
__kernel __attribute__((reqd_work_group_size(GEMM_WG_X, GEMM_WG_Y, 1)))
void standard_scores(__global const STORAGE_T* q, __global const STORAGE_T* k, __global float* s,
                     VARIANT_PARAMS, const AttnArgs args) {
  __local float a_tiles[2 * GEMM_A_TILE];
  __local GEMM_VEC b_tiles[2 * GEMM_B_TILE];
  const AttnArgs* a = &args;
  const int lx = get_local_id(0), ly = get_local_id(1), lid = ly * GEMM_WG_X + lx;
  const int j0 = get_group_id(0) * GEMM_BN, i0 = get_group_id(1) * GEMM_BM;
  const int bh = get_group_id(2), b = bh / a->heads, h = bh % a->heads, hk = KV_HEAD(a, h);
  const SeqView sv = seq_view(a, b, h, NATURAL_UNIT, cu_seqlens_q, cu_seqlens_k, alibi_slopes);
  const long q_base = SEQ_BASE(a, q, b, h, sv.q_start), k_base = SEQ_BASE(a, k, b, hk, sv.k_start);
  const int nq = SV_NQ(&sv, a), nk = SV_NK(&sv, a);

  GEMM_VEC acc[GEMM_RM];
  gemm_zero(acc);
  for (int d0 = 0; d0 < HEAD_DIM; d0 += GEMM_KP) {
    GEMM_BUFFERS(d0 / GEMM_KP);
    /* both operands transposed into [t][row]: each work-item reads four consecutive columns */
    GEMM_STAGE_A(a_tile, GEMM_A_PITCH, GEMM_BM, q, q_base + (long)i0 * a->q_seq_stride, a->q_seq_stride, nq - i0, d0,
                 HEAD_DIM, lid, LOAD4, LOAD_ELEM);
    GEMM_STAGE_T(((__local float*)b_tile), GEMM_B_PITCH, GEMM_BN, k, k_base + (long)j0 * a->k_seq_stride, a->k_seq_stride, nk - j0, d0,
                 HEAD_DIM, lid, LOAD4, LOAD_ELEM);
    barrier(CLK_LOCAL_MEM_FENCE);
    gemm_panel(a_tile, b_tile, acc);
  }

  const int row0 = i0 + ly * GEMM_RM, col0 = j0 + lx * GEMM_RN;
  const float scale = a->scale * NATURAL_UNIT;
  /* whole vectors where no key of this block is hidden and no transform applies */
  const bool plain = col0 + GEMM_RN <= a->seqlen_k && !block_needs_mask(row0, GEMM_RM, col0, GEMM_RN, &sv, a);
  for (int r = 0; r < GEMM_RM; ++r) {
    const int i = row0 + r;
    if (i >= a->seqlen_q) break;
    __global float* s_row = s + ((long)bh * a->seqlen_q + i) * a->seqlen_k;
    if (plain) {
      GEMM_VSTORE(acc[r] * scale, s_row + col0);
    } else {
      float out[GEMM_RN];
      GEMM_VSTORE(acc[r], out);
      for (int c = 0; c < GEMM_RN && col0 + c < a->seqlen_k; ++c)
        s_row[col0 + c] = final_score(out[c] * scale, i, col0 + c, &sv, a, mask);
    }
  }
}

/* O_i = sum_j P[i][j] V_j, written through O's strides. A = P, B = V; only the key panels some row
 * of the block can see are visited (the others hold P = 0). */
__kernel __attribute__((reqd_work_group_size(GEMM_WG_X, GEMM_WG_Y, 1)))
void standard_pv(__global const float* p, __global const STORAGE_T* v, __global STORAGE_T* o, VARIANT_PARAMS,
                 const AttnArgs args) {
  __local float a_tiles[2 * GEMM_A_TILE];
  __local GEMM_VEC b_tiles[2 * GEMM_B_TILE];
  const AttnArgs* a = &args;
  const int lx = get_local_id(0), ly = get_local_id(1), lid = ly * GEMM_WG_X + lx;
  const int c0 = get_group_id(0) * GEMM_BN, i0 = get_group_id(1) * GEMM_BM;
  const int bh = get_group_id(2), b = bh / a->heads, h = bh % a->heads, hk = KV_HEAD(a, h);
  const SeqView sv = seq_view(a, b, h, 1.0f, cu_seqlens_q, cu_seqlens_k, alibi_slopes);
  const long v_base = SEQ_BASE(a, v, b, hk, sv.k_start), o_base = SEQ_BASE(a, o, b, h, sv.q_start);
  __global const float* p_rows = p + (long)bh * a->seqlen_q * a->seqlen_k;
  const int nk = SV_NK(&sv, a);
  int kb_begin, kb_end;
  key_block_range(i0, min(i0 + GEMM_BM, SV_NQ(&sv, a)), GEMM_KP, &sv, a, &kb_begin, &kb_end);

  GEMM_VEC acc[GEMM_RM];
  gemm_zero(acc);
  for (int j0 = kb_begin * GEMM_KP; j0 < kb_end * GEMM_KP; j0 += GEMM_KP) {
    GEMM_BUFFERS(j0 / GEMM_KP);
    GEMM_STAGE_A(a_tile, GEMM_A_PITCH, GEMM_BM, p_rows, (long)i0 * a->seqlen_k, a->seqlen_k, a->seqlen_q - i0, j0,
                 a->seqlen_k, lid, F32_LOAD4, F32_LOAD1);
    GEMM_STAGE(((__local float*)b_tile), GEMM_B_PITCH, GEMM_BN, v, v_base + c0, a->v_seq_stride, j0, nk, HEAD_DIM - c0, lid, LOAD4,
               LOAD_ELEM);
    barrier(CLK_LOCAL_MEM_FENCE);
    gemm_panel_guarded(a_tile, b_tile, acc);
  }

  const int row0 = i0 + ly * GEMM_RM, col0 = c0 + lx * GEMM_RN;
  for (int r = 0; r < GEMM_RM; ++r) {
    const int i = row0 + r;
    if (i >= SV_NQ(&sv, a)) break;
    float out[GEMM_RN];
    GEMM_VSTORE(acc[r], out);
    for (int c = 0; c < GEMM_RN && col0 + c < HEAD_DIM; ++c) STORE_ELEM(o, o_base + (long)i * a->o_seq_stride + col0 + c, out[c]);
  }
}
