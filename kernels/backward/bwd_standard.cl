/* bwd_standard.cl: the reference backward, which works wherever a kernel runs. It materialises
 * the N x N matrices in the workspace instead of recomputing them block by block:
 *  - bwd_std_scores: per entry (row, key) of every (batch, head): P = exp(S - LSE) from the forward's
 *    score transform and dS = P (dP - D) with dP = dO_row . V_key (times the softcap slope), both
 *    (B * H, Nq, Nk) fp32; with DBIAS, dS before the slope goes to the bias-gradient target.
 *  - bwd_std_dkdv: dV = P^T dO and dK = scale dS^T Q, summed over the query heads of a K/V head.
 *  - bwd_std_dq: dQ = scale dS K.
 * One work-item per output element with plain loops: simple, every sum in a fixed order
 * (deterministic), and O(N^2) memory, as the baseline of the papers. */

/* Grid (Nk, Nq, B * H): every entry of the (B * H, Nq, Nk) P and dS is written (0 where hidden or
 * past a sequence's end), so the products may read any of them. */
__kernel void bwd_std_scores(__global const STORAGE_T* q, __global const STORAGE_T* k, __global const STORAGE_T* v,
                             __global const STORAGE_T* dout, __global const float* lse, __global float* ws,
                             __global float* ds_target, VARIANT_PARAMS, const AttnArgs args, const BwdArgs bargs) {
  const AttnArgs* a = &args;
  const BwdArgs* g = &bargs;
  const int key = get_global_id(0), row = get_global_id(1), bh = get_global_id(2);
  if (key >= a->seqlen_k || row >= a->seqlen_q) return;
  const int b = bh / a->heads, h = bh - b * a->heads, hk = KV_HEAD(a, h);
  const SeqView sv = seq_view(a, b, h, 1.0f, cu_seqlens_q, cu_seqlens_k, alibi_slopes);
  float p = 0.0f, ds = 0.0f;
  if (row < SV_NQ(&sv, a) && key < SV_NK(&sv, a)) {
    const long q_row = SEQ_BASE(a, q, b, h, sv.q_start) + (long)row * a->q_seq_stride;
    const long do_row = SEQ_BASE(g, dout, b, h, sv.q_start) + (long)row * g->dout_seq_stride;
    const long k_row = SEQ_BASE(a, k, b, hk, sv.k_start) + (long)key * a->k_seq_stride;
    const long v_row = SEQ_BASE(a, v, b, hk, sv.k_start) + (long)key * a->v_seq_stride;
    float qk = 0.0f, dp = 0.0f;
    for (int c = 0; c < HEAD_DIM; ++c) {
      qk += LOAD_ELEM(q, q_row + c) * LOAD_ELEM(k, k_row + c);
      dp += LOAD_ELEM(dout, do_row + c) * LOAD_ELEM(v, v_row + c);
    }
    const long index = LSE_INDEX(a, &sv, b, h, row);
    const float raw = qk * a->scale;
    p = bwd_probability(raw, row, key, lse[index], &sv, a, mask);
    const float dscore = p == 0.0f ? 0.0f : p * (dp - ws[g->ws_d_offset + index]);
#if DBIAS
    ds_target[g->ds_offset + (long)b * g->ds_batch_stride + (long)h * g->ds_head_stride + (long)row * g->ds_row_stride +
              key] = dscore;
#endif
    ds = dscore * score_slope(raw, &sv);
  }
  const long cell = ((long)bh * a->seqlen_q + row) * a->seqlen_k + key;
  ws[g->ws_p_offset + cell] = p;
  ws[g->ws_ds_offset + cell] = ds;
}

/* Grid (HEAD_DIM, Nk, B * H_kv): dV[key][col] = sum_h sum_row P dO, dK[key][col] = scale sum dS Q. */
__kernel void bwd_std_dkdv(__global const STORAGE_T* q, __global const STORAGE_T* dout, __global const float* ws,
                           __global STORAGE_T* dk, __global STORAGE_T* dv, VARIANT_PARAMS, const AttnArgs args,
                           const BwdArgs bargs) {
  const AttnArgs* a = &args;
  const BwdArgs* g = &bargs;
  const int col = get_global_id(0), key = get_global_id(1), bhk = get_global_id(2);
  if (col >= HEAD_DIM || key >= a->seqlen_k) return;
  const int b = bhk / a->heads_kv, hk = bhk - b * a->heads_kv, group = a->heads / a->heads_kv;
  const SeqView sv0 = seq_view(a, b, hk * group, 1.0f, cu_seqlens_q, cu_seqlens_k, alibi_slopes);
  if (key >= SV_NK(&sv0, a)) return;
  float dk_sum = 0.0f, dv_sum = 0.0f;
  for (int h = hk * group; h < (hk + 1) * group; ++h) {
    const long q_base = SEQ_BASE(a, q, b, h, sv0.q_start), do_base = SEQ_BASE(g, dout, b, h, sv0.q_start);
    const long cells = (long)(b * a->heads + h) * a->seqlen_q * a->seqlen_k + key;
    for (int row = 0; row < SV_NQ(&sv0, a); ++row) {
      const long cell = cells + (long)row * a->seqlen_k;
      dv_sum += ws[g->ws_p_offset + cell] * LOAD_ELEM(dout, do_base + (long)row * g->dout_seq_stride + col);
      dk_sum += ws[g->ws_ds_offset + cell] * LOAD_ELEM(q, q_base + (long)row * a->q_seq_stride + col);
    }
  }
  STORE_ELEM(dk, SEQ_BASE(g, dk, b, hk, sv0.k_start) + (long)key * g->dk_seq_stride + col, dk_sum * a->scale);
  STORE_ELEM(dv, SEQ_BASE(g, dv, b, hk, sv0.k_start) + (long)key * g->dv_seq_stride + col, dv_sum);
}

/* Grid (HEAD_DIM, Nq, B * H): dQ[row][col] = scale sum_key dS K. */
__kernel void bwd_std_dq(__global const STORAGE_T* k, __global const float* ws, __global STORAGE_T* dq, VARIANT_PARAMS,
                         const AttnArgs args, const BwdArgs bargs) {
  const AttnArgs* a = &args;
  const BwdArgs* g = &bargs;
  const int col = get_global_id(0), row = get_global_id(1), bh = get_global_id(2);
  if (col >= HEAD_DIM || row >= a->seqlen_q) return;
  const int b = bh / a->heads, h = bh - b * a->heads, hk = KV_HEAD(a, h);
  const SeqView sv = seq_view(a, b, h, 1.0f, cu_seqlens_q, cu_seqlens_k, alibi_slopes);
  if (row >= SV_NQ(&sv, a)) return;
  const long k_base = SEQ_BASE(a, k, b, hk, sv.k_start);
  const long cells = ((long)bh * a->seqlen_q + row) * a->seqlen_k;
  float sum = 0.0f;
  for (int key = 0; key < SV_NK(&sv, a); ++key)
    sum += ws[g->ws_ds_offset + cells + key] * LOAD_ELEM(k, k_base + (long)key * a->k_seq_stride + col);
  STORE_ELEM(dq, SEQ_BASE(g, dq, b, h, sv.q_start) + (long)row * g->dq_seq_stride + col, sum * a->scale);
}
