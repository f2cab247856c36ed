/* bwd_flash.cl: the FlashAttention backward with recomputation (FA2's Algorithm 2 and FA1's
 * backward). A work-group holds one K/V block of one K/V head (K_j, V_j in __local memory) and the
 * dK_j, dV_j accumulators (private, each work-item owning fixed elements), and loops over every
 * query head of its GQA group and every Q block that can see the block (common.cl's
 * query_block_range): Q_i, dO_i, LSE_i, D_i to __local, then
 *   S = scale Q K^T with the forward's transform, P = exp(S - LSE), dP = dO V^T,
 *   dS = P (dP - D) (times 1 - tanh^2 under softcap), dV += P^T dO, dK += scale dS^T Q,
 * so a K/V head's dK, dV are summed on chip over its query heads: no atomics, no race.
 *  - bwd_dkdv (fa2): one work-group per (K/V block, K/V head, batch). dq_mode 1 adds scale dS K
 *    into the fp32 dQ accumulator with atomic adds (bwd_convert_dq then writes dQ); dq_mode 0
 *    (deterministic) leaves dQ to bwd_dq.
 *  - bwd_dq (fa2, deterministic): one work-group per (Q block, head, batch) recomputes dS over the
 *    key blocks it sees and sums dQ_i = scale sum_j dS K_j on chip, in a fixed order.
 *  - bwd_fa1 (fa1): one work-group per (K/V head, batch) walks the K/V blocks itself (FA1's outer
 *    loop); its dQ read-modify-write (dq_mode 2) in the accumulator is race-free because a dQ
 *    element always belongs to the same work-item of the only work-group touching it.
 * With DBIAS the main kernels also write dS (before the softcap slope) for the bias gradient.
 * No `#pragma unroll` on the accumulator loops: PoCL took ~150 s instead of ~2 s to compile these
 * kernels with them (d = 40, 32-row blocks); compilers that want to unroll them still may. */

#ifndef BR
#define BR 16 /* query rows per block */
#endif
#ifndef BC
#define BC 16 /* keys per block */
#endif
#ifndef BWD_WG
#define BWD_WG 64 /* work-items per work-group */
#endif

#define DP (HEAD_DIM + 1)                                  /* __local row pitch: staggers banks */
#define KV_ACC ((BC * HEAD_DIM + BWD_WG - 1) / BWD_WG)     /* dK, dV elements per work-item */
#define Q_ACC ((BR * HEAD_DIM + BWD_WG - 1) / BWD_WG)      /* dQ elements per work-item (bwd_dq) */
#if GQA
#define KV_GROUP(a) ((a)->kv_group)
#else
#define KV_GROUP(a) 1
#endif

/* The __local tiles of one work-group. */
typedef struct {
  __local float* q;   /* BR x DP */
  __local float* dout; /* BR x DP */
  __local float* k;   /* BC x DP */
  __local float* v;   /* BC x DP */
  __local float* p;   /* BR x BC */
  __local float* ds;  /* BR x BC */
  __local float* lse; /* BR */
  __local float* d;   /* BR */
} BwdTiles;

/* Rows [row0, row0 + n) of a (seq, d) slice into dst[r * DP + c]; rows at or past `valid` are 0. */
inline void bwd_load_rows(__local float* dst, int n, __global const STORAGE_T* src, long base, long seq_stride,
                          int row0, int valid, int lid) {
  for (int idx = lid; idx < n * HEAD_DIM; idx += BWD_WG) {
    const int r = idx / HEAD_DIM, c = idx - r * HEAD_DIM;
    dst[r * DP + c] = row0 + r < valid ? LOAD_ELEM(src, base + (long)(row0 + r) * seq_stride + c) : 0.0f;
  }
}

/* Q_i, dO_i, LSE_i and D_i of rows [q0, q0 + BR) of head h. */
inline void bwd_load_query_block(const BwdTiles* t, int q0, int b, int h, const SeqView* sv, __global const STORAGE_T* q,
                                 __global const STORAGE_T* dout, __global const float* lse, __global const float* ws,
                                 const AttnArgs* a, const BwdArgs* g, int lid) {
  const int nq = SV_NQ(sv, a);
  bwd_load_rows(t->q, BR, q, SEQ_BASE(a, q, b, h, sv->q_start), a->q_seq_stride, q0, nq, lid);
  bwd_load_rows(t->dout, BR, dout, SEQ_BASE(g, dout, b, h, sv->q_start), g->dout_seq_stride, q0, nq, lid);
  for (int r = lid; r < BR; r += BWD_WG) {
    const int row = q0 + r;
    const long index = row < nq ? LSE_INDEX(a, sv, b, h, row) : 0;
    t->lse[r] = row < nq ? lse[index] : NEG_INF;
    t->d[r] = row < nq ? ws[g->ws_d_offset + index] : 0.0f;
  }
}

/* P and dS (with the softcap slope) of block [q0, q0 + BR) x [k0, k0 + BC) into t->p and t->ds;
 * entries past the sequence's ends are 0. With write_ds (DBIAS), dS before the slope goes to the
 * bias-gradient target at ds_base + row * row_stride + key. */
inline void bwd_block_scores(const BwdTiles* t, int q0, int k0, const SeqView* sv, const AttnArgs* a,
                             __global const MASK_T* mask, __global float* ds_target, long ds_base, long ds_row_stride,
                             const bool write_ds, int lid) {
  for (int idx = lid; idx < BR * BC; idx += BWD_WG) {
    const int r = idx / BC, c = idx - r * BC, row = q0 + r, key = k0 + c;
    float p = 0.0f, ds = 0.0f;
    if (row < SV_NQ(sv, a) && key < SV_NK(sv, a)) {
      float qk = 0.0f, dp = 0.0f;
      for (int i = 0; i < HEAD_DIM; ++i) {
        qk += t->q[r * DP + i] * t->k[c * DP + i];
        dp += t->dout[r * DP + i] * t->v[c * DP + i];
      }
      const float raw = qk * a->scale;
      p = bwd_probability(raw, row, key, t->lse[r], sv, a, mask);
      const float dscore = p == 0.0f ? 0.0f : p * (dp - t->d[r]);
      if (write_ds) ds_target[ds_base + (long)row * ds_row_stride + key] = dscore;
      ds = dscore * score_slope(raw, sv);
    }
    t->p[idx] = p;
    t->ds[idx] = ds;
  }
}

/* Everything one K/V block contributes: dK_j, dV_j (written here) and, by dq_mode, its part of dQ.
 * Called by every work-item of the work-group with the same arguments (barriers inside). */
inline void bwd_kv_block(const BwdTiles* t, int kb, int b, int hk, __global const STORAGE_T* q,
                         __global const STORAGE_T* k, __global const STORAGE_T* v, __global const STORAGE_T* dout,
                         __global const float* lse, __global STORAGE_T* dk, __global STORAGE_T* dv, __global float* ws,
                         __global float* ds_target, __global const int* cu_seqlens_q, __global const int* cu_seqlens_k,
                         __global const float* alibi_slopes, __global const MASK_T* mask, const AttnArgs* a,
                         const BwdArgs* g, int lid) {
  const int h0 = hk * KV_GROUP(a), k0 = kb * BC;
  const SeqView sv0 = seq_view(a, b, h0, 1.0f, cu_seqlens_q, cu_seqlens_k, alibi_slopes);
  const int nk = SV_NK(&sv0, a);
  if (k0 >= nk) return; /* the same for the whole work-group */
  barrier(CLK_LOCAL_MEM_FENCE); /* the previous block's readers of the K/V tiles are done */
  bwd_load_rows(t->k, BC, k, SEQ_BASE(a, k, b, hk, sv0.k_start), a->k_seq_stride, k0, nk, lid);
  bwd_load_rows(t->v, BC, v, SEQ_BASE(a, v, b, hk, sv0.k_start), a->v_seq_stride, k0, nk, lid);

  float dk_acc[KV_ACC], dv_acc[KV_ACC];
  for (int e = 0; e < KV_ACC; ++e) dk_acc[e] = dv_acc[e] = 0.0f;

  for (int h = h0; h < h0 + KV_GROUP(a); ++h) {
    const SeqView sv = seq_view(a, b, h, 1.0f, cu_seqlens_q, cu_seqlens_k, alibi_slopes);
    const long ds_base = g->ds_offset + (long)b * g->ds_batch_stride + (long)h * g->ds_head_stride;
    int qb_begin, qb_end;
    query_block_range(k0, min(k0 + BC, nk), BR, &sv, a, &qb_begin, &qb_end);
    for (int qb = qb_begin; qb < qb_end; ++qb) {
      const int q0 = qb * BR;
      barrier(CLK_LOCAL_MEM_FENCE); /* the previous Q block's readers are done */
      bwd_load_query_block(t, q0, b, h, &sv, q, dout, lse, ws, a, g, lid);
      barrier(CLK_LOCAL_MEM_FENCE);
      bwd_block_scores(t, q0, k0, &sv, a, mask, ds_target, ds_base, g->ds_row_stride, DBIAS != 0, lid);
      barrier(CLK_LOCAL_MEM_FENCE);
      /* dV_j += P^T dO_i, dK_j += dS^T Q_i (scale at the end) */
      for (int e = 0; e < KV_ACC; ++e) {
        const int idx = lid + e * BWD_WG;
        if (idx >= BC * HEAD_DIM) break;
        const int c = idx / HEAD_DIM, col = idx - c * HEAD_DIM;
        float sv_acc = dv_acc[e], sk_acc = dk_acc[e];
        for (int r = 0; r < BR; ++r) {
          sv_acc += t->p[r * BC + c] * t->dout[r * DP + col];
          sk_acc += t->ds[r * BC + c] * t->q[r * DP + col];
        }
        dv_acc[e] = sv_acc;
        dk_acc[e] = sk_acc;
      }
      /* dQ_i += scale dS K_j into the fp32 accumulator (indexed like LSE, times HEAD_DIM) */
      if (g->dq_mode != 0)
        for (int idx = lid; idx < BR * HEAD_DIM; idx += BWD_WG) {
          const int r = idx / HEAD_DIM, col = idx - r * HEAD_DIM, row = q0 + r;
          if (row >= SV_NQ(&sv, a)) continue;
          float x = 0.0f;
          for (int c = 0; c < BC; ++c) x += t->ds[r * BC + c] * t->k[c * DP + col];
          if (x == 0.0f) continue;
          __global float* cell = ws + g->ws_dq_offset + LSE_INDEX(a, &sv, b, h, row) * HEAD_DIM + col;
          if (g->dq_mode == 1)
            atomic_add_float(cell, x * a->scale);
          else
            *cell += x * a->scale;
        }
    }
  }

  /* epilogue: dK_j, dV_j written once */
  const long dk_base = SEQ_BASE(g, dk, b, hk, sv0.k_start), dv_base = SEQ_BASE(g, dv, b, hk, sv0.k_start);
  for (int e = 0; e < KV_ACC; ++e) {
    const int idx = lid + e * BWD_WG;
    if (idx >= BC * HEAD_DIM) break;
    const int c = idx / HEAD_DIM, col = idx - c * HEAD_DIM, key = k0 + c;
    if (key >= nk) continue;
    STORE_ELEM(dk, dk_base + (long)key * g->dk_seq_stride + col, dk_acc[e] * a->scale);
    STORE_ELEM(dv, dv_base + (long)key * g->dv_seq_stride + col, dv_acc[e]);
  }
}

#define BWD_LOCAL_TILES                                                                                        \
  __local float q_tile[BR * DP], do_tile[BR * DP], k_tile[BC * DP], v_tile[BC * DP], p_tile[BR * BC],         \
      ds_tile[BR * BC], lse_tile[BR], d_tile[BR];                                                              \
  const BwdTiles tiles = {q_tile, do_tile, k_tile, v_tile, p_tile, ds_tile, lse_tile, d_tile}

#define BWD_MAIN_PARAMS                                                                                        \
  __global const STORAGE_T *q, __global const STORAGE_T *k, __global const STORAGE_T *v,                       \
      __global const STORAGE_T *dout, __global const float *lse, __global STORAGE_T *dk, __global STORAGE_T *dv, \
      __global float *ws, __global float *ds_target, VARIANT_PARAMS, const AttnArgs args, const BwdArgs bargs

/* fa2: one work-group per (K/V block, K/V head, batch). */
__kernel __attribute__((reqd_work_group_size(BWD_WG, 1, 1))) void bwd_dkdv(BWD_MAIN_PARAMS) {
  BWD_LOCAL_TILES;
  bwd_kv_block(&tiles, get_group_id(0), get_group_id(2), get_group_id(1), q, k, v, dout, lse, dk, dv, ws, ds_target,
               cu_seqlens_q, cu_seqlens_k, alibi_slopes, mask, &args, &bargs, get_local_id(0));
}

/* fa1: one work-group per (K/V head, batch), K/V blocks as the outer loop. */
__kernel __attribute__((reqd_work_group_size(BWD_WG, 1, 1))) void bwd_fa1(BWD_MAIN_PARAMS) {
  BWD_LOCAL_TILES;
  const int b = get_group_id(2), hk = get_group_id(1);
  const int blocks = (args.seqlen_k + BC - 1) / BC; /* bwd_kv_block returns at once past the sequence */
  for (int kb = 0; kb < blocks; ++kb) {
    bwd_kv_block(&tiles, kb, b, hk, q, k, v, dout, lse, dk, dv, ws, ds_target, cu_seqlens_q, cu_seqlens_k,
                 alibi_slopes, mask, &args, &bargs, get_local_id(0));
    barrier(CLK_GLOBAL_MEM_FENCE); /* this block's dQ updates are visible to the next */
  }
}

/* fa2, deterministic: one work-group per (Q block, head, batch): dQ_i = scale sum_j dS_ij K_j on
 * chip over the visible key blocks in order, written once in dQ's dtype and strides. */
__kernel __attribute__((reqd_work_group_size(BWD_WG, 1, 1))) void bwd_dq(
    __global const STORAGE_T* q, __global const STORAGE_T* k, __global const STORAGE_T* v,
    __global const STORAGE_T* dout, __global const float* lse, __global STORAGE_T* dq, __global const float* ws,
    VARIANT_PARAMS, const AttnArgs args, const BwdArgs bargs) {
  BWD_LOCAL_TILES;
  const AttnArgs* a = &args;
  const BwdArgs* g = &bargs;
  const int lid = get_local_id(0), q0 = get_group_id(0) * BR, h = get_group_id(1), b = get_group_id(2);
  const int hk = KV_HEAD(a, h);
  const SeqView sv = seq_view(a, b, h, 1.0f, cu_seqlens_q, cu_seqlens_k, alibi_slopes);
  const int nq = SV_NQ(&sv, a), nk = SV_NK(&sv, a);
  if (q0 >= nq) return; /* the whole work-group */
  bwd_load_query_block(&tiles, q0, b, h, &sv, q, dout, lse, ws, a, g, lid);

  float acc[Q_ACC];
  for (int e = 0; e < Q_ACC; ++e) acc[e] = 0.0f;
  int kb_begin, kb_end;
  key_block_range(q0, min(q0 + BR, nq), BC, &sv, a, &kb_begin, &kb_end);
  for (int kb = kb_begin; kb < kb_end; ++kb) {
    const int k0 = kb * BC;
    barrier(CLK_LOCAL_MEM_FENCE);
    bwd_load_rows(tiles.k, BC, k, SEQ_BASE(a, k, b, hk, sv.k_start), a->k_seq_stride, k0, nk, lid);
    bwd_load_rows(tiles.v, BC, v, SEQ_BASE(a, v, b, hk, sv.k_start), a->v_seq_stride, k0, nk, lid);
    barrier(CLK_LOCAL_MEM_FENCE);
    bwd_block_scores(&tiles, q0, k0, &sv, a, mask, 0, 0, 0, false, lid);
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int e = 0; e < Q_ACC; ++e) {
      const int idx = lid + e * BWD_WG;
      if (idx >= BR * HEAD_DIM) break;
      const int r = idx / HEAD_DIM, col = idx - r * HEAD_DIM;
      float x = acc[e];
      for (int c = 0; c < BC; ++c) x += tiles.ds[r * BC + c] * tiles.k[c * DP + col];
      acc[e] = x;
    }
  }
  const long dq_base = SEQ_BASE(g, dq, b, h, sv.q_start);
  for (int e = 0; e < Q_ACC; ++e) {
    const int idx = lid + e * BWD_WG;
    if (idx >= BR * HEAD_DIM) break;
    const int r = idx / HEAD_DIM, col = idx - r * HEAD_DIM, row = q0 + r;
    if (row < nq) STORE_ELEM(dq, dq_base + (long)row * g->dq_seq_stride + col, acc[e] * a->scale);
  }
}
