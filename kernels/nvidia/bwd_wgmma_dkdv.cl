/* bwd_wgmma_dkdv.cl: dK and dV of the deterministic tensor-core backward on Hopper's wgmma (opt-in,
 * FLASHCL_BWD_WGMMA=1; built only with -DWGMMA_DKDV=1 in programs.txt's bwd_mma_wgmma, after
 * mma_wgmma.cl, bwd_wgmma_rows.cl and bwd_kv_steps.cl, before bwd_mma_dq.cl, which computes dQ). The kernel is
 * bwd_mma.cl's bwd_mma_dkdv with DQ_ATOMIC 0 and MK 1 (same name, arguments and grid), its block
 * products moved from mma.sync to wgmma:
 *
 * One work-group of WARPS warps (whole warpgroups) per (K/V block of BKV = 16 WARPS keys, K/V head,
 * batch); each warpgroup owns 64 of the keys (16 a warp) and keeps their dK, dV in fp32 registers
 * and K_w, V_w as A fragments (read once from global memory: no K tile in __local memory). For
 * every (query head of the group, Q block of BQ rows that sees the block), Q_i and dO_i arrive in
 * __local memory in the core-matrix layout, LSE_i and D_i beside them (bwd_kv_steps.cl's
 * load_query_block over bwd_wgmma_rows.cl's load_rows), and each warpgroup computes, transposed so
 * its keys are wgmma's M dimension,
 *   S^T = K_w Q_i^T, dP^T = V_w dO_i^T     (B = Q_i, dO_i K-major: issued together, one wait)
 *   P^T = 2^(c S^T - LSE_i log2 e), dS^T = P^T (dP^T - D_i)
 *   dV_w += P^T dO_i, dK_w += dS^T Q_i     (A from the C fragments; B = dO_i, Q_i N-major with the
 *                                           transpose flag: issued together, one wait)
 * four block products where the mma.sync kernel reads every B fragment by ldmatrix. dK (times the
 * scale) and dV are written once at the end. The per-element pass (probs_t) and the Q block loads
 * are bwd_kv_steps.cl's, which bwd_mma.cl's kernel uses too; the step loop is bwd_mma.cl's, with
 * one m-tile of keys a warp (MK 1). */

#if WGMMA_DKDV

/* BQ (query rows per Q block: wgmma's N of S^T, dP^T and its K of dV, dK), QSTAGES, BKV (keys per
 * work-group: 64 a warpgroup), NQT: bwd_kv_steps.cl's */
#if BWD_VARIANTS
#error "bwd_wgmma_dkdv.cl: plain, causal and GQA only (the planner keeps the variants on mma.sync)"
#endif
#if BQ % 16 != 0 || NQT > 16 || NT_O > 16 || NT_O % 2 != 0 || MK != 1
#error "bwd_wgmma_dkdv.cl: BQ a multiple of 16 up to 128, the padded head dim up to 128, one m-tile of keys a warp"
#endif

#define PIN_ROWS(x, nt)                                                                                \
  do {                                                                                                 \
    _Pragma("unroll") for (int n_ = 0; n_ < (nt); ++n_) PIN4((x)[n_]);                                 \
  } while (0)

/* Issues S^T = K_w Q_i^T and dP^T = V_w dO_i^T (one commit group): per 16 dims of the head, one
 * wgmma row over the block's queries (qk_issue's addressing, Q_i / dO_i in K's place). */
BWD_INLINE void scores_t_issue(float s[NQT][4], float dp[NQT][4], const uint kw[QFRAGS][4], const uint vw[QFRAGS][4],
                               __local const ushort* q_tile, __local const ushort* do_tile) {
  const ulong qd = wg_desc(q_tile, 128, CORE_ROW_BYTES), dd = wg_desc(do_tile, 128, CORE_ROW_BYTES);
  wg_fence();
  /* the first k-step overwrites S^T and dP^T (scale-d 0): no zeroing */
#pragma unroll
  for (int ks = 0; ks < QFRAGS; ++ks) {
    WG_TILES(NQT, 0, s, kw[ks], DESC_AT(qd, ks * 256), CORE_ROW_BYTES, ks > 0 ? 1 : 0);
    WG_TILES(NQT, 0, dp, vw[ks], DESC_AT(dd, ks * 256), CORE_ROW_BYTES, ks > 0 ? 1 : 0);
  }
  wg_commit();
}

/* Issues dV_w += P^T dO_i and dK_w += dS^T Q_i (one commit group): per 16 queries, one wgmma row
 * over the head dim (pv_issue's addressing, dO_i / Q_i in V's place). */
BWD_INLINE void kv_issue(float dv[NT_O][4], float dk[NT_O][4], const uint pa[NQT / 2][4], const uint da[NQT / 2][4],
                         __local const ushort* q_tile, __local const ushort* do_tile) {
  const ulong od = wg_desc(do_tile, CORE_ROW_BYTES, 128), qd = wg_desc(q_tile, CORE_ROW_BYTES, 128);
  PIN_ROWS(dv, NT_O); /* nothing on the accumulators sunk between the wgmmas */
  PIN_ROWS(dk, NT_O);
  wg_fence();
#pragma unroll
  for (int kk = 0; kk < NQT / 2; ++kk) {
    WG_TILES(NT_O, 1, dv, pa[kk], DESC_AT(od, kk * 2 * CORE_ROW_BYTES), 128, 1);
    WG_TILES(NT_O, 1, dk, da[kk], DESC_AT(qd, kk * 2 * CORE_ROW_BYTES), 128, 1);
  }
  wg_commit();
}

__kernel __attribute__((reqd_work_group_size(WG_SIZE, 1, 1)))
void bwd_mma_dkdv(__global const STORAGE_T* q, __global const STORAGE_T* k, __global const STORAGE_T* v,
                  __global const STORAGE_T* dout, __global const float* lse, __global STORAGE_T* dk,
                  __global STORAGE_T* dv, __global float* ws, const AttnArgs args, const BwdArgs bargs) {
  __local ushort q_tile[QSTAGES][BQ * DPAD] __attribute__((aligned(128)));
  __local ushort do_tile[QSTAGES][BQ * DPAD] __attribute__((aligned(128)));
  __local float lse2_tile[QSTAGES][BQ], d_tile[QSTAGES][BQ];

  const AttnArgs* a = &args;
  const BwdArgs* gb = &bargs;
  const int lid = get_local_id(0), warp = lid / 32, lane = lid % 32, g = lane / 4, t = lane % 4;
  const int kb = get_group_id(0), hk = get_group_id(1), b = get_group_id(2);
  const int k0 = kb * BKV, nk = a->seqlen_k;
  const int key_a = k0 + warp * 16 + g; /* this lane's keys: key_a and key_a + 8 */
  const float c = a->scale_log2, scale = a->scale;
  __global const ushort* qg = (__global const ushort*)q;
  __global const ushort* dog = (__global const ushort*)dout;

  /* K_w and V_w as A fragments (load_q's layout), 0 past the keys */
  uint kw[1][QFRAGS][4], vw[1][QFRAGS][4];
  load_q(kw, (__global const ushort*)k, TENSOR_BASE(a, k, b, hk), a->k_seq_stride, key_a, nk, t);
  load_q(vw, (__global const ushort*)v, TENSOR_BASE(a, v, b, hk), a->v_seq_stride, key_a, nk, t);

  float dk_acc[NT_O][4], dv_acc[NT_O][4];
#pragma unroll
  for (int n = 0; n < NT_O; ++n)
    dk_acc[n][0] = dk_acc[n][1] = dk_acc[n][2] = dk_acc[n][3] = dv_acc[n][0] = dv_acc[n][1] = dv_acc[n][2] =
        dv_acc[n][3] = 0.0f;

  /* Steps over (query head of the group, Q block that sees the block), heads outer (bwd_mma.cl's) */
  const int h0 = hk * GROUP_HEADS(a);
  const SeqView sv = seq_view(a, b, h0, 1.0f, 0, 0, 0);
  int qb_begin, qb_end;
  query_block_range(k0, min(k0 + BKV, nk), BQ, &sv, a, &qb_begin, &qb_end);
  const int blocks = qb_end - qb_begin, steps = GROUP_HEADS(a) * blocks;
#if QSTAGES == 2
  if (steps > 0)
    load_query_block(q_tile[0], do_tile[0], lse2_tile[0], d_tile[0], qg, dog, lse, ws, qb_begin * BQ, b, h0, &sv, a,
                     gb, lid);
#endif
  for (int step = 0; step < steps; ++step) {
    const int h = h0 + step / blocks, q0 = (qb_begin + step % blocks) * BQ;
#if QSTAGES == 2
    const int cur = step & 1;
#else
    const int cur = 0;
    barrier(CLK_LOCAL_MEM_FENCE); /* every warpgroup's products of the previous step are done */
    load_query_block(q_tile[0], do_tile[0], lse2_tile[0], d_tile[0], qg, dog, lse, ws, q0, b, h, &sv, a, gb, lid);
#endif
#if VEC_LOAD
    async_wait_all(); /* this work-item's copies of step `step` have landed */
#endif
    tile_writes_visible(); /* the copies (generic proxy) before the tensor cores' reads (async proxy) */
    barrier(CLK_LOCAL_MEM_FENCE); /* Q_i, dO_i, LSE_i, D_i visible to every warp; with two stages,
                                   * every warpgroup is also done with the other stage (step - 1) */
#if QSTAGES == 2
    if (step + 1 < steps) {
      const int hn = h0 + (step + 1) / blocks, qn = (qb_begin + (step + 1) % blocks) * BQ;
      load_query_block(q_tile[cur ^ 1], do_tile[cur ^ 1], lse2_tile[cur ^ 1], d_tile[cur ^ 1], qg, dog, lse, ws, qn, b,
                       hn, &sv, a, gb, lid);
    }
#endif
    (void)h;

    float s[MK][NQT][4], dp[MK][NQT][4]; /* (MK 1) */
    scores_t_issue(s[0], dp[0], kw[0], vw[0], q_tile[cur], do_tile[cur]);
    WG_WAIT(0);
    PIN_TILES(s, NQT);
    PIN_TILES(dp, NQT);
    probs_t(s, dp, lse2_tile[cur], d_tile[cur], key_a, q0, k0, t, c, &sv, a, 0);
    uint pa[NQT / 2][4], da[NQT / 2][4];
#pragma unroll
    for (int kk = 0; kk < NQT / 2; ++kk) {
      p_fragment(pa[kk], s[0], kk);
      p_fragment(da[kk], dp[0], kk);
    }
    kv_issue(dv_acc, dk_acc, pa, da, q_tile[cur], do_tile[cur]);
    WG_WAIT(0); /* before the barrier that lets the next copies overwrite Q_i, dO_i */
    PIN_ROWS(dv_acc, NT_O);
    PIN_ROWS(dk_acc, NT_O);
  }

  /* epilogue: dK (times the scale) and dV rows of this warp's keys, written once */
  __global ushort* dkg = (__global ushort*)dk;
  __global ushort* dvg = (__global ushort*)dv;
  const long dk_base = TENSOR_BASE(gb, dk, b, hk), dv_base = TENSOR_BASE(gb, dv, b, hk);
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int key = key_a + 8 * r;
    const bool in = key < nk;
#pragma unroll
    for (int n = 0; n < NT_O; ++n) {
      const int col = 8 * n + 2 * t;
      const bool ok0 = in && col < HEAD_DIM, ok1 = in && col + 1 < HEAD_DIM;
      store_o2(dkg, dk_base + (long)key * gb->dk_seq_stride + col, dk_acc[n][2 * r] * scale,
               dk_acc[n][2 * r + 1] * scale, ok0, ok1);
      store_o2(dvg, dv_base + (long)key * gb->dv_seq_stride + col, dv_acc[n][2 * r], dv_acc[n][2 * r + 1], ok0, ok1);
    }
  }
  (void)lane;
}

#endif /* WGMMA_DKDV */
