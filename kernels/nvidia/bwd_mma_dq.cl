/* bwd_mma_dq.cl: dQ of the deterministic tensor-core backward, without atomics. Built after
 * bwd_mma.cl (and its bwd_mma_rows.cl) in the same program, and only with DQ_ATOMIC 0: then
 * bwd_mma_dkdv computes dK and dV alone and this kernel gives every dQ row one owner, so each
 * element is a sum in one fixed order and the result is the same bits on every run.
 *
 * One work-group of WARPS warps per (Q block of 16 MT WARPS rows, query head, batch); warp w owns
 * rows q0 + 16 MT w .. + 16 MT - 1 (MT 16-row m-tiles: 1, or 2 at d = 64 where the registers allow,
 * so every K_j/V_j fragment a warp reads by ldmatrix serves two m-tiles) and keeps their Q and dO
 * as A fragments (load_q) and their dQ in fp32 registers. It steps through the key blocks of BC keys the Q block sees (key_block_range), in
 * increasing order; each block's K_j and V_j arrive in __local memory (cp.async when the rows are
 * 16-byte aligned; with DQ_STAGES 2 the next block's copies fly while this one is computed), and
 * each warp computes, with the forward's mma_f16.cl products,
 *   S = Q_w K_j^T, dP = dO_w V_j^T          (qk_block: B fragments by ldmatrix from K_j, V_j)
 *   P = 2^(c S - LSE log2 e), dS = P (dP - D)
 *   dQ_w += dS K_j                          (pv_block with K_j in V's place: A from dS's C fragments)
 * and writes dQ (times the scale) once at the end in dQ's dtype and strides. This recomputes S and
 * dP that bwd_mma_dkdv also computes (seven block products instead of five) in exchange for no
 * fp32 reductions into global memory and no dS^T staging in the dK/dV kernel. Rows past the end
 * or with nothing to see get an LSE of +inf, so P = 0 and their dQ is exactly 0. The variants
 * (bwd_kv_steps.cl's BWD_VARIANTS) change P as in bwd_mma.cl: a window's edges masked by
 * common.cl's rules, or every score through final_score in natural units (DS_ENTRY below).
 *
 * The same source builds over Hopper's wgmma (programs.txt's bwd_mma_wgmma: mma_wgmma.cl and
 * bwd_wgmma_rows.cl in place of mma_f16.cl and bwd_mma_rows.cl; opt-in, FLASHCL_BWD_WGMMA=1): a
 * warpgroup of 4 warps then computes each product for its 64 rows with B read by descriptor from
 * the core-matrix tiles (no ldmatrix), S and dP are issued together behind one wait, and the
 * copies are made visible to the tensor cores (tile_writes_visible) before the barrier that
 * publishes them. With DQ_OVERLAP (FLASHCL_BWD_WGMMA=overlap) the key loop is FlashAttention-3's
 * intra-warpgroup overlap instead: dQ += dS K_j stays in flight while the next block's S, dP and dS
 * are computed (three K buffers, two V buffers). */

#if !DQ_ATOMIC

#ifndef DQ_STAGES
#define DQ_STAGES 1 /* K_j/V_j buffers: 1, or 2 (block j + 1 copied while block j is computed) */
#endif

#if BC % 16 != 0 || (MT != 1 && MT != 2)
#error "bwd_mma_dq.cl: BC a multiple of 16 keys, one or two 16-row m-tiles a warp"
#endif

#if defined(ASYNC_MMA) && BWD_VARIANTS
#error "bwd_mma_dq.cl: the variants run on mma.sync only (the planner keeps them off wgmma)"
#endif

#ifndef DQ_OVERLAP
#define DQ_OVERLAP 0 /* 1 (wgmma only): dQ += dS K_j left in flight over the next block's S, dP and dS */
#endif
#if DQ_OVERLAP && !defined(ASYNC_MMA)
#error "bwd_mma_dq.cl: DQ_OVERLAP needs the asynchronous products of mma_wgmma.cl"
#endif
/* K_j is read by dQ += dS K_j one step after S, so the overlapped schedule keeps three K buffers
 * (the block in flight, the next, the one being copied) and two V buffers */
#define DQ_K_BUFS (DQ_OVERLAP ? 3 : DQ_STAGES)
#define DQ_V_BUFS (DQ_OVERLAP ? 2 : DQ_STAGES)

/* dP becomes dS in place for the block at k0: P = 2^(c S - LSE log2 e), 0 above the causal diagonal
 * and past the keys where the block crosses them (`masked`), dS = P (dP - D). A macro over the key
 * loop's names (s, dp, lse2, dd, row_a, k0, t, nk, shift, c; sv, a and the mask under the variants,
 * which take common.cl's rules): the default loop expands it in place
 * (a call of scores_to_ds there reorders the operands of clang's products, and the recorded PTX
 * would change); the overlapped schedule's two calls go through scores_to_ds. */
#if CAUSAL
#define DQ_ABOVE_DIAGONAL(key, row) ((key) > (row) + shift)
#else
#define DQ_ABOVE_DIAGONAL(key, row) false
#endif
/* dS of entry (i, j, e) of the block: row row_a + 16 i + 8 r, key `key` */
#if WINDOW || SCORE_TRANSFORM /* bwd_kv_steps.cl's variant_entry (S becomes P, unused here) */
#define DS_ENTRY(masked)                                                                            \
  variant_entry(&s[i][j][e], &dp[i][j][e], (masked), row_a + 16 * i + 8 * r, key, lse2[i][r], dd[i][r], c, &sv, a, \
                BWD_MASK);
#else
#define DS_ENTRY(masked)                                                                            \
  float x = fma(s[i][j][e], c, -lse2[i][r]);                                                        \
  if (masked) {                                                                                     \
    const bool hidden = key >= nk || DQ_ABOVE_DIAGONAL(key, row_a + 16 * i + 8 * r);                \
    if (hidden) x = NEG_INF;                                                                        \
  }                                                                                                 \
  dp[i][j][e] = ex2_approx(x) * (dp[i][j][e] - dd[i][r]);
#endif
#define SCORES_TO_DS(masked)                                                                        \
  _Pragma("unroll") for (int i = 0; i < MT; ++i)                                                    \
  _Pragma("unroll") for (int j = 0; j < NT_S; ++j)                                                  \
  _Pragma("unroll") for (int e = 0; e < 4; ++e) {                                                   \
    const int r = e >> 1, key = k0 + 8 * j + 2 * t + (e & 1);                                       \
    DS_ENTRY(masked) /* dS */                                                                       \
  }

#if DQ_OVERLAP
BWD_INLINE void scores_to_ds(const float s[MT][NT_S][4], float dp[MT][NT_S][4], const float lse2[MT][2],
                             const float dd[MT][2], bool masked, int row_a, int k0, int t, int nk, int shift,
                             float c) {
  SCORES_TO_DS(masked);
  (void)shift;
}
#endif

/* K_j and V_j, rows k0 .. k0 + BC - 1 of K/V head hk (of the sequence starting at packed row
 * k_start with VARLEN), into one stage (one commit group). */
BWD_INLINE void load_kv_block(__local ELEM_T* k_tile, __local ELEM_T* v_tile, __global const ELEM_T* kg,
                              __global const ELEM_T* vg, int k0, int b, int hk, int nk, int k_start, const AttnArgs* a,
                              int lid) {
  load_rows(k_tile, BC, kg, SEQ_BASE(a, k, b, hk, k_start), a->k_seq_stride, k0, nk, lid);
  load_rows(v_tile, BC, vg, SEQ_BASE(a, v, b, hk, k_start), a->v_seq_stride, k0, nk, lid);
  (void)k_start;
#if VEC_LOAD
  async_commit();
#endif
}

__kernel __attribute__((reqd_work_group_size(WG_SIZE, 1, 1)))
void bwd_mma_dq(__global const STORAGE_T* q, __global const STORAGE_T* k, __global const STORAGE_T* v,
                __global const STORAGE_T* dout, __global const float* lse, __global STORAGE_T* dq,
                __global const float* ws, const AttnArgs args, const BwdArgs bargs BWD_VARIANT_PARAMS) {
  __local ELEM_T k_tile[DQ_K_BUFS][BC * K_PITCH] __attribute__((aligned(128)));
  __local ELEM_T v_tile[DQ_V_BUFS][BC * K_PITCH] __attribute__((aligned(128)));

  const AttnArgs* a = &args;
  const BwdArgs* gb = &bargs;
  const int lid = get_local_id(0), warp = lid / 32, lane = lid % 32, g = lane / 4, t = lane % 4;
  /* causal: the longest rows (the last Q blocks) first, so the short ones fill the tail */
#if CAUSAL
  const int qb = get_num_groups(0) - 1 - get_group_id(0);
#else
  const int qb = get_group_id(0);
#endif
  const int h = get_group_id(1), b = get_group_id(2), hk = KV_HEAD(a, h);
  const SeqView sv = seq_view(a, b, h, 1.0f, BWD_VARIANT_POINTERS);
  const int nq = SV_NQ(&sv, a), nk = SV_NK(&sv, a), shift = SV_SHIFT(&sv, a);
  /* this lane's rows: row_a + 16i and + 8 for m-tile i (MT 2: every K_j, V_j fragment read serves
   * two m-tiles, half the ldmatrix traffic per product) */
  const int q0 = qb * BR, row_a = q0 + warp * 16 * MT + g;
  const float c = a->scale_log2;

  qfrag_t qa[MT][QFRAGS][4], doa[MT][QFRAGS][4];
  load_q(qa, (__global const ELEM_T*)q, SEQ_BASE(a, q, b, h, sv.q_start), a->q_seq_stride, row_a, nq, t);
  load_q(doa, (__global const ELEM_T*)dout, SEQ_BASE(gb, dout, b, h, sv.q_start), gb->dout_seq_stride, row_a, nq, t);
  float lse2[MT][2], dd[MT][2];
#pragma unroll
  for (int i = 0; i < MT; ++i)
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int row = row_a + 16 * i + 8 * r;
      lse2[i][r] = INFINITY;
      dd[i][r] = 0.0f;
      if (row < nq) {
        const long index = LSE_INDEX(a, &sv, b, h, row);
        const float x = lse[index];
        lse2[i][r] = x == NEG_INF ? INFINITY : x * LSE_TILE_UNIT;
        dd[i][r] = ws[gb->ws_d_offset + index];
      }
    }

  float acc[MT][NT_O][4];
#pragma unroll
  for (int i = 0; i < MT; ++i)
#pragma unroll
    for (int n = 0; n < NT_O; ++n) acc[i][n][0] = acc[i][n][1] = acc[i][n][2] = acc[i][n][3] = 0.0f;

  __global const ELEM_T* kg = (__global const ELEM_T*)k;
  __global const ELEM_T* vg = (__global const ELEM_T*)v;
  int kb_begin, kb_end;
  key_block_range(q0, min(q0 + BR, nq), BC, &sv, a, &kb_begin, &kb_end);
#if VARLEN /* a Q block past its (shorter) sequence's end: nothing to read or write */
  if (q0 >= nq) kb_end = kb_begin;
#endif
#if DQ_OVERLAP
  /* wgmma, FlashAttention-3's intra-warpgroup overlap: step kb issues S, dP of block kb + 1 and
   * dQ += dS K of block kb together, waits for S and dP only, and computes dS of block kb + 1 while
   * the dQ product runs. K(kb) is read until that product lands (three K buffers); the copy of
   * block kb + 2 goes into the buffers of K(kb - 1) and V(kb), free once every warp is past step
   * kb - 1 (the barrier at the top of step kb). */
  __local float order_slot[WG_SIZE]; /* WG_WAIT_AFTER's stores */
  uint pa[NT_S / 2][4];              /* dS of the block whose dQ product is next, as A fragments */
  float s[MT][NT_S][4], dp[MT][NT_S][4];
  if (kb_begin < kb_end) { /* blocks kb_begin and kb_begin + 1 copied; S, dP, dS of the first */
    load_kv_block(k_tile[0], v_tile[0], kg, vg, kb_begin * BC, b, hk, nk, sv.k_start, a, lid);
    if (kb_begin + 1 < kb_end)
      load_kv_block(k_tile[1], v_tile[1], kg, vg, (kb_begin + 1) * BC, b, hk, nk, sv.k_start, a, lid);
#if VEC_LOAD
    if (kb_begin + 1 < kb_end)
      ASYNC_WAIT_GROUPS(1); /* the first block's copies, not the second's */
    else
      async_wait_all();
#endif
    tile_writes_visible();
    barrier(CLK_LOCAL_MEM_FENCE);
    qk_issue(s, qa, k_tile[0]);
    qk_issue(dp, doa, v_tile[0]);
    WG_WAIT(0);
    PIN_TILES(s, NT_S);
    PIN_TILES(dp, NT_S);
    const int k0 = kb_begin * BC;
    scores_to_ds(s, dp, lse2, dd, block_needs_mask(q0, BR, k0, BC, &sv, a), row_a, k0, t, nk, shift, c);
    pack_p(pa, dp);
  }
  /* every block but the last: no branch around a wgmma or a wait, so ptxas keeps them asynchronous */
  for (int kb = kb_begin; kb + 1 < kb_end; ++kb) {
    const int step = kb - kb_begin, k0 = (kb + 1) * BC;
#if VEC_LOAD
    async_wait_all(); /* this work-item's copies of block kb + 1 have landed */
#endif
    tile_writes_visible();
    barrier(CLK_LOCAL_MEM_FENCE); /* K, V(kb + 1) visible; every warp past step kb - 1, so its
                                   * dQ product (K(kb - 1)) and dP (V(kb)) are done */
    qk_issue(s, qa, k_tile[(step + 1) % 3]);
    qk_issue(dp, doa, v_tile[(step + 1) & 1]);
    pv_issue(acc, pa, k_tile[step % 3]); /* dQ_w += dS K(kb) */
    if (kb + 2 < kb_end)
      load_kv_block(k_tile[(step + 2) % 3], v_tile[step & 1], kg, vg, (kb + 2) * BC, b, hk, nk, sv.k_start, a, lid);
    WG_WAIT(1); /* S, dP of block kb + 1; the dQ product may still run */
    PIN_TILES(s, NT_S);
    PIN_TILES(dp, NT_S);
    scores_to_ds(s, dp, lse2, dd, block_needs_mask(q0, BR, k0, BC, &sv, a), row_a, k0, t, nk, shift, c);
    float order = 0.0f; /* depends on every dS, so the wait below stays behind all of them */
#pragma unroll
    for (int j = 0; j < NT_S; ++j) order += (dp[0][j][0] + dp[0][j][1]) + (dp[0][j][2] + dp[0][j][3]);
    WG_WAIT_AFTER(0, order_slot + lid, order); /* the dQ product of block kb (its A: pa) */
    PIN_TILES(acc, NT_O);
    pack_p(pa, dp);
  }
  if (kb_begin < kb_end) { /* the last block: its dQ product only */
    pv_issue(acc, pa, k_tile[(kb_end - 1 - kb_begin) % 3]);
    WG_WAIT(0);
    PIN_TILES(acc, NT_O);
  }
#else
#if DQ_STAGES == 2
  if (kb_begin < kb_end) load_kv_block(k_tile[0], v_tile[0], kg, vg, kb_begin * BC, b, hk, nk, sv.k_start, a, lid);
#endif
  for (int kb = kb_begin; kb < kb_end; ++kb) {
    const int k0 = kb * BC;
#if DQ_STAGES == 2
    const int cur = (kb - kb_begin) & 1;
#else
    const int cur = 0;
    barrier(CLK_LOCAL_MEM_FENCE); /* every warp is done with the previous block */
    load_kv_block(k_tile[0], v_tile[0], kg, vg, k0, b, hk, nk, sv.k_start, a, lid);
#endif
#if VEC_LOAD
    async_wait_all(); /* this work-item's copies of block kb have landed */
#endif
    tile_writes_visible(); /* wgmma: the copies (generic proxy) before the tensor cores' reads (async proxy) */
    barrier(CLK_LOCAL_MEM_FENCE); /* K_j, V_j visible to every warp; with two stages, every warp is
                                   * also done with the other stage (block kb - 1) */
#if DQ_STAGES == 2
    if (kb + 1 < kb_end)
      load_kv_block(k_tile[cur ^ 1], v_tile[cur ^ 1], kg, vg, k0 + BC, b, hk, nk, sv.k_start, a, lid);
#endif

    float s[MT][NT_S][4], dp[MT][NT_S][4];
#ifdef ASYNC_MMA /* wgmma: both products in flight together, one wait */
    qk_issue(s, qa, k_tile[cur]);
    qk_issue(dp, doa, v_tile[cur]);
    WG_WAIT(0);
    PIN_TILES(s, NT_S);
    PIN_TILES(dp, NT_S);
#else
    qk_block(s, qa, k_tile[cur], lane);
    qk_block(dp, doa, v_tile[cur], lane);
#endif
    const bool masked = block_needs_mask(q0, BR, k0, BC, &sv, a);
    SCORES_TO_DS(masked);
    pv_block(acc, dp, k_tile[cur], lane); /* dQ_w += dS K_j */
  }
#endif /* DQ_OVERLAP */
  (void)shift;

  /* epilogue: dQ (times the scale) of this warp's rows, written once */
  __global ELEM_T* dqg = (__global ELEM_T*)dq;
  const long dq_base = SEQ_BASE(gb, dq, b, h, sv.q_start);
  const float scale = a->scale;
#pragma unroll
  for (int i = 0; i < MT; ++i)
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int row = row_a + 16 * i + 8 * r;
      const bool in = row < nq;
#pragma unroll
      for (int n = 0; n < NT_O; ++n) {
        const int col = 8 * n + 2 * t;
        store_o2(dqg, dq_base + (long)row * gb->dq_seq_stride + col, acc[i][n][2 * r] * scale,
                 acc[i][n][2 * r + 1] * scale, in && col < HEAD_DIM, in && col + 1 < HEAD_DIM);
      }
    }
}

#endif /* !DQ_ATOMIC */
