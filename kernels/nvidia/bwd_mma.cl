/* bwd_mma.cl: the FlashAttention-2 backward (Algorithm 2) on NVIDIA tensor cores (compute capability
 * >= 8.0) for fp16/bf16 storage, and fp32 through 3xTF32 (programs.txt's bwd_mma_tf32: the DTYPE 0
 * products below, over mma_tf32.cl; FLASHCL_BWD_TF32=0 turns it off): plain, causal, GQA and the
 * variants (packed sequences, window, softcap, ALiBi, masks; bwd_kv_steps.cl's BWD_VARIANTS), not a bias gradient. It reuses
 * the forward's pieces: mma_ptx.cl (ldmatrix, cp.async, ex2), mma_half_io.cl (pack2, p_fragment, the pair loads and
 * stores) and mma_f16.cl (MMA16: mma.sync.m16n8k16 with fp32 accumulation, K_PITCH). The
 * preprocess (D = rowsum(dO * O), the fp32 dQ accumulator cleared) and the conversion of that
 * accumulator to dQ are bwd_common.cl's kernels, run before and after this one.
 *
 * One work-group of WARPS warps per (K/V block of BKV = 16 WARPS keys, K/V head, batch); warp w
 * owns keys k0 + 16w .. + 15 and keeps their dK, dV rows in fp32 registers (C fragments: lane
 * 4g+t holds keys g and g+8, columns 8n+2t and +1). V_w stays in registers as A fragments; K_j sits
 * in __local memory (its warp slices are the A operand of S^T, the whole block is dQ's B
 * operand). One loop steps through every (query head of the K/V head's group, Q block of BQ rows
 * that sees the block), so dK and dV of a K/V head are summed over its query heads on chip: Q_i and
 * dO_i arrive in __local memory by cp.async, LSE_i and D_i beside them (with QSTAGES 2 into the
 * second buffer while the step before is computed), then each warp computes, transposed so its keys
 * are the m dimension,
 *   S^T = K_w Q_i^T, dP^T = V_w dO_i^T               (B operands by ldmatrix from Q_i, dO_i)
 *   P^T = 2^(c S^T - LSE_i log2 e), dS^T = P^T (dP^T - D_i)
 *   dV_w += P^T dO_i, dK_w += dS^T Q_i               (A from the C fragments, as the forward's P;
 *                                                     B by ldmatrix.trans)
 * and writes dS^T (16 bits) to __local memory; after a barrier each warp takes one 16-row m-tile
 * and a slice of the columns of dQ_i += dS K_j (A by ldmatrix.trans from dS^T, B by
 * ldmatrix.trans from K_j) and adds it, times the scale, into the fp32 accumulator with
 * red.global.add.f32. Rows past the queries and rows that see no key (LSE -inf) get P = 0 through
 * an LSE of +inf in __local memory; keys past the end and above the causal diagonal get P = 0 on
 * the blocks that cross them (a window's edges too; under softcap, ALiBi or a mask every score goes
 * through the forward's final_score and P = e^(score - LSE), dS times the transform's slope:
 * bwd_kv_steps.cl's probs_t). dK (times the scale) and dV are written once at the end. With
 * DQ_ATOMIC 0 (deterministic calls) the dS^T staging and the dQ adds are left out and
 * bwd_mma_dq.cl computes dQ. MK 2 (d = 64's default, DQ_ATOMIC 0 only) gives each warp two 16-key m-tiles
 * (keys k0 + 32w .. + 31, BKV = 32 WARPS): every ldmatrix of Q_i or dO_i then feeds both tiles,
 * half the __local reads per product, for twice the dK, dV and V_w registers (d = 64 only).
 * Built after bwd_mma_rows.cl (load_rows) and bwd_kv_steps.cl (the block geometry, the Q block
 * loads and probs_t, which bwd_wgmma_dkdv.cl's kernel shares). */

#ifndef DQ_ATOMIC
#define DQ_ATOMIC 1 /* 0 (deterministic calls): no dQ here, bwd_mma_dq.cl computes it without atomics */
#endif

/* MK, BKV, BQ, NQT, QSTAGES: bwd_kv_steps.cl's */
#define MQ (BQ / 16)                   /* 16-row m-tiles of dQ per Q block */
#define DQ_SPLIT (WARPS / MQ)          /* warps sharing an m-tile of dQ, each a slice of its columns */
#define NT_DQ (DPAD / 8 / DQ_SPLIT)    /* 8-column tiles of dQ per warp */
#define DS_PITCH (BQ + 8)              /* dS^T row pitch: 16-byte rows on distinct banks */

#if BQ % 16 != 0 || WARPS % MQ != 0 || (DPAD / 8) % DQ_SPLIT != 0 || NT_DQ % 2 != 0 || NT_O % 2 != 0
#error "bwd_mma.cl: BQ a multiple of 16, WARPS a multiple of BQ / 16, an even number of dQ column tiles per warp"
#endif
#if (MK != 1 && MK != 2) || (MK != 1 && DQ_ATOMIC)
#error "bwd_mma.cl: MK 1 or 2 m-tiles of keys a warp, 2 only without atomic dQ"
#endif

#if DTYPE != 0 /* (the 16-bit form's atomic dQ; fp32 has none, and its emulated build is not for PTX) */
/* x into the fp32 cell at p, without a return value (the L2 does the add). */
BWD_INLINE void red_add_f32(__global float* p, float x) {
  asm volatile("red.global.add.f32 [%0], %1;" ::"l"((ulong)p), "f"(x) : "memory");
}

#ifndef RED_V2
#define RED_V2 0 /* 1 (an experiment, FLASHCL_BUILD_OPTIONS=-DRED_V2=1; sm_90, PTX ISA 8.1): dQ pairs by one red.v2 */
#endif
#if RED_V2
/* x0, x1 into the two fp32 cells at p (8-byte aligned) with one reduction: half the red
 * instructions of two red_add_f32 calls, for the same bytes. */
BWD_INLINE void red_add_v2_f32(__global float* p, float x0, float x1) {
  asm volatile("red.global.add.v2.f32 [%0], {%1, %2};" ::"l"((ulong)p), "f"(x0), "f"(x1) : "memory");
}
#endif
#endif /* DTYPE != 0 */

#if DTYPE == 0
/* fp32 over mma_tf32.cl's 3xTF32 products, through the forward's operand contract with the roles
 * turned: K_w and V_w are the warp's A fragments in registers (load_q, as the forward's Q), Q_i and
 * dO_i the tiles its qk_block reads as K and its pv_block as V (one pitch, ONE_PITCH), so
 *   S^T = qk_block(K_w, Q_i), dP^T = qk_block(V_w, dO_i), dV_w += pv_block(P^T, dO_i),
 *   dK_w += pv_block(dS^T, Q_i)
 * with MT = MK = 1 m-tile of 16 keys a warp and NT_S = NQT (the host sets BC = BQ). No K tile and
 * no atomic dQ: bwd_mma_dq.cl writes dQ over the same products. */
#define KW_REGISTERS 1
#if DQ_ATOMIC || MT != MK || NT_S != NQT
#error "bwd_mma.cl on fp32: DQ_ATOMIC=0 (the dQ pass), one m-tile a warp (MT = MK) and BC = BQ"
#endif
/* WARP_PAIRS (d > 64): K_w, V_w, dK_w and dV_w of 16 keys are 8 d / 8 registers a lane, 256 at
 * d = 128, where ptxas spilled 1.4 KiB a lane (clang's PTX, sm_90). So two warps share the 16 keys:
 * the K warp holds K_w and dV_w, computes S^T = K_w Q_i^T and hands it to the V warp through
 * __local memory (lane to lane: the two warps' C fragments are laid out alike); the V warp holds
 * V_w and dK_w and computes dP^T = V_w dO_i^T. Both form P^T (the V warp also dS^T) and then
 * dV_w += P^T dO_i (K warp), dK_w += dS^T Q_i (V warp): the same products as one warp's, on half
 * the registers, for one more barrier a step. */
#if WARP_PAIRS && (MK != 1 || WARPS % 2 != 0)
#error "bwd_mma.cl: WARP_PAIRS with one m-tile a warp and an even number of warps"
#endif
BWD_INLINE void scores_t(float s[MK][NQT][4], float dp[MK][NQT][4], const qfrag_t vw[MK][QFRAGS][4],
                         const qfrag_t kw[MK][QFRAGS][4], __local const ELEM_T* q_tile, __local const ELEM_T* do_tile,
                         int warp, int lane) {
  qk_block(s, kw, q_tile, lane);
  qk_block(dp, vw, do_tile, lane);
  (void)warp;
}
BWD_INLINE void accumulate_kv(float dv[MK][NT_O][4], float dk[MK][NT_O][4], const float s[MK][NQT][4],
                              const float dp[MK][NQT][4], __local const ELEM_T* q_tile, __local const ELEM_T* do_tile,
                              int lane) {
  pv_block(dv, s, do_tile, lane);
  pv_block(dk, dp, q_tile, lane);
}
#else /* fp16, bf16: mma.sync.m16n8k16 with ldmatrix */
#define KW_REGISTERS 0

/* S^T = K_w Q_i^T and dP^T = V_w dO_i^T for the warp's 16 keys and the block's BQ queries. K_w's
 * A fragment comes by one ldmatrix.x4 per k-step (lanes 0-7 address keys 0-7 at dims +0, 8-15
 * keys 8-15 at +0, 16-23 keys 0-7 at +8, 24-31 keys 8-15 at +8); one ldmatrix.x4 of Q_i (or dO_i)
 * gives the B fragments of two 8-query tiles (qk_block's addressing in mma_f16.cl). */
BWD_INLINE void scores_t(float s[MK][NQT][4], float dp[MK][NQT][4], const uint vw[MK][QFRAGS][4],
                         __local const ushort* k_tile, __local const ushort* q_tile, __local const ushort* do_tile,
                         int warp, int lane) {
  __local const ushort* ka_row =
      k_tile + (warp * 16 * MK + ((lane >> 3) & 1) * 8 + (lane & 7)) * K_PITCH + (lane >> 4) * 8;
  const int b_off = ((lane >> 4) * 8 + (lane & 7)) * K_PITCH + ((lane >> 3) & 1) * 8;
#pragma unroll
  for (int i = 0; i < MK; ++i)
#pragma unroll
    for (int j = 0; j < NQT; ++j)
      s[i][j][0] = s[i][j][1] = s[i][j][2] = s[i][j][3] = dp[i][j][0] = dp[i][j][1] = dp[i][j][2] = dp[i][j][3] = 0.0f;
#pragma unroll
  for (int ks = 0; ks < QFRAGS; ++ks) {
    uint ka[MK][4];
#pragma unroll
    for (int i = 0; i < MK; ++i) ldsm_x4(ka[i], ka_row + i * 16 * K_PITCH + ks * 16);
#pragma unroll
    for (int n2 = 0; n2 < NQT / 2; ++n2) {
      uint b[4];
      ldsm_x4(b, q_tile + b_off + n2 * 16 * K_PITCH + ks * 16);
#pragma unroll
      for (int i = 0; i < MK; ++i) {
        MMA16(s[i][2 * n2], ka[i], b[0], b[1]);
        MMA16(s[i][2 * n2 + 1], ka[i], b[2], b[3]);
      }
      ldsm_x4(b, do_tile + b_off + n2 * 16 * K_PITCH + ks * 16);
#pragma unroll
      for (int i = 0; i < MK; ++i) {
        MMA16(dp[i][2 * n2], vw[i][ks], b[0], b[1]);
        MMA16(dp[i][2 * n2 + 1], vw[i][ks], b[2], b[3]);
      }
    }
  }
}

/* dV_w += P^T dO_i and dK_w += dS^T Q_i: A fragments from the C fragments of P^T and dS^T
 * (p_fragment), B fragments of two 8-column tiles per ldmatrix.x4.trans (pv_block's addressing). */
BWD_INLINE void accumulate_kv(float dv[MK][NT_O][4], float dk[MK][NT_O][4], const float s[MK][NQT][4],
                              const float dp[MK][NQT][4], __local const ushort* q_tile, __local const ushort* do_tile,
                              int lane) {
  const int b_off = (((lane >> 3) & 1) * 8 + (lane & 7)) * K_PITCH + (lane >> 4) * 8;
#pragma unroll
  for (int kk = 0; kk < NQT / 2; ++kk) {
    uint pa[MK][4], da[MK][4];
#pragma unroll
    for (int i = 0; i < MK; ++i) {
      p_fragment(pa[i], s[i], kk);
      p_fragment(da[i], dp[i], kk);
    }
#pragma unroll
    for (int n2 = 0; n2 < NT_O / 2; ++n2) {
      uint b[4];
      ldsm_x4_trans(b, do_tile + b_off + kk * 16 * K_PITCH + n2 * 16);
#pragma unroll
      for (int i = 0; i < MK; ++i) {
        MMA16(dv[i][2 * n2], pa[i], b[0], b[1]);
        MMA16(dv[i][2 * n2 + 1], pa[i], b[2], b[3]);
      }
      ldsm_x4_trans(b, q_tile + b_off + kk * 16 * K_PITCH + n2 * 16);
#pragma unroll
      for (int i = 0; i < MK; ++i) {
        MMA16(dk[i][2 * n2], da[i], b[0], b[1]);
        MMA16(dk[i][2 * n2 + 1], da[i], b[2], b[3]);
      }
    }
  }
}

/* The warp's dS^T (keys 16w + g and + 8, queries 8j + 2t and + 1) into the __local dS^T tile as
 * 16-bit pairs. */
BWD_INLINE void stage_ds(__local ushort* ds_tile, const float dp[NQT][4], int warp, int g, int t) {
  __local ushort* row = ds_tile + (warp * 16 + g) * DS_PITCH + 2 * t;
#pragma unroll
  for (int j = 0; j < NQT; ++j) {
    *(__local uint*)(row + 8 * j) = pack2(dp[j][0], dp[j][1]);
    *(__local uint*)(row + 8 * DS_PITCH + 8 * j) = pack2(dp[j][2], dp[j][3]);
  }
}

/* This warp's part of dQ_i += dS K_j (m-tile warp % MQ, column slice warp / MQ), added times
 * `scale` into the fp32 accumulator rows of (b, h). dS's A fragment by ldmatrix.x4.trans from dS^T
 * (lanes 0-7 address keys 0-7 at queries +0, 8-15 keys 0-7 at +8, 16-23 keys 8-15 at +0, 24-31
 * keys 8-15 at +8), K_j's B fragments by ldmatrix.x4.trans as dO's above. */
BWD_INLINE void add_dq(__global float* ws, const BwdArgs* gb, __local const ushort* ds_tile, __local const ushort* k_tile,
                   int q0, int b, int h, int warp, int lane, int g, int t, float scale, const SeqView* sv,
                   const AttnArgs* a) {
  const int mt = warp % MQ, col0 = (warp / MQ) * NT_DQ * 8;
  __local const ushort* a_row = ds_tile + ((lane >> 4) * 8 + (lane & 7)) * DS_PITCH + ((lane >> 3) & 1) * 8 + mt * 16;
  __local const ushort* b_row = k_tile + (((lane >> 3) & 1) * 8 + (lane & 7)) * K_PITCH + (lane >> 4) * 8 + col0;
  float acc[NT_DQ][4];
#pragma unroll
  for (int n = 0; n < NT_DQ; ++n) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.0f;
#pragma unroll
  for (int kk = 0; kk < BKV / 16; ++kk) {
    uint da[4];
    ldsm_x4_trans(da, a_row + kk * 16 * DS_PITCH);
#pragma unroll
    for (int n2 = 0; n2 < NT_DQ / 2; ++n2) {
      uint bk[4];
      ldsm_x4_trans(bk, b_row + kk * 16 * K_PITCH + n2 * 16);
      MMA16(acc[2 * n2], da, bk[0], bk[1]);
      MMA16(acc[2 * n2 + 1], da, bk[2], bk[3]);
    }
  }
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int row = q0 + mt * 16 + g + 8 * r;
    if (row >= SV_NQ(sv, a)) continue;
    __global float* cell = ws + gb->ws_dq_offset + LSE_INDEX(a, sv, b, h, row) * HEAD_DIM + col0 + 2 * t;
#pragma unroll
    for (int n = 0; n < NT_DQ; ++n) {
      const int col = col0 + 8 * n + 2 * t;
#if RED_V2 && HEAD_DIM % 2 == 0 /* the pair is 8-byte aligned when the accumulator starts at an even float */
      if ((gb->ws_dq_offset & 1) == 0 && col + 1 < HEAD_DIM) {
        red_add_v2_f32(cell + 8 * n, acc[n][2 * r] * scale, acc[n][2 * r + 1] * scale);
        continue;
      }
#endif
      if (col < HEAD_DIM) red_add_f32(cell + 8 * n, acc[n][2 * r] * scale);
      if (col + 1 < HEAD_DIM) red_add_f32(cell + 8 * n + 1, acc[n][2 * r + 1] * scale);
    }
  }
}

#endif /* DTYPE */

__kernel __attribute__((reqd_work_group_size(WG_SIZE, 1, 1)))
void bwd_mma_dkdv(__global const STORAGE_T* q, __global const STORAGE_T* k, __global const STORAGE_T* v,
                  __global const STORAGE_T* dout, __global const float* lse, __global STORAGE_T* dk,
                  __global STORAGE_T* dv, __global float* ws, const AttnArgs args,
                  const BwdArgs bargs BWD_VARIANT_PARAMS) {
#if !KW_REGISTERS
  __local ELEM_T k_tile[BKV * K_PITCH] __attribute__((aligned(128)));
#endif
  __local ELEM_T q_tile[QSTAGES][BQ * K_PITCH] __attribute__((aligned(128)));
  __local ELEM_T do_tile[QSTAGES][BQ * K_PITCH] __attribute__((aligned(128)));
#if DQ_ATOMIC
  __local ushort ds_tile[BKV * DS_PITCH] __attribute__((aligned(128)));
#endif
#if WARP_PAIRS
  __local float s_handover[WARPS / 2][NQT * 4][32]; /* each pair's S^T, [fragment element][lane] */
#endif
  __local float lse2_tile[QSTAGES][BQ], d_tile[QSTAGES][BQ];

  const AttnArgs* a = &args;
  const BwdArgs* gb = &bargs;
  const int lid = get_local_id(0), warp = lid / 32, lane = lid % 32, g = lane / 4, t = lane % 4;
  const int kb = get_group_id(0), hk = get_group_id(1), b = get_group_id(2);
  const int k0 = kb * BKV;
#if VARLEN /* the sequence's lengths and starts, from cu_seqlens, before its K/V rows are read */
  const SeqView sv = seq_view(a, b, hk * GROUP_HEADS(a), 1.0f, BWD_VARIANT_POINTERS);
  const int nk = SV_NK(&sv, a);
#else
  const int nk = a->seqlen_k;
#endif
  const int key_a = k0 + (warp >> WARP_PAIRS) * 16 * MK + g; /* this lane's keys: key_a + 16i and + 8 for m-tile i */
  const float c = a->scale_log2, scale = a->scale;
  __global const ELEM_T* qg = (__global const ELEM_T*)q;
  __global const ELEM_T* dog = (__global const ELEM_T*)dout;

#if WARP_PAIRS /* this warp's half of the pair: K_w or V_w as A fragments, dV_w or dK_w */
  const int role = warp & 1; /* 0: the K warp, 1: the V warp */
  qfrag_t w[1][QFRAGS][4];
  load_q(w, (__global const ELEM_T*)(role ? v : k),
         role ? SEQ_BASE(a, v, b, hk, sv.k_start) : SEQ_BASE(a, k, b, hk, sv.k_start),
         role ? a->v_seq_stride : a->k_seq_stride, key_a, nk, t);
  float acc[1][NT_O][4];
#pragma unroll
  for (int n = 0; n < NT_O; ++n) acc[0][n][0] = acc[0][n][1] = acc[0][n][2] = acc[0][n][3] = 0.0f;
#else
#if KW_REGISTERS /* K_w as A fragments too */
  qfrag_t kw[MK][QFRAGS][4];
  load_q(kw, (__global const ELEM_T*)k, SEQ_BASE(a, k, b, hk, sv.k_start), a->k_seq_stride, key_a, nk, t);
#define K_OPERAND kw
#else
  load_rows(k_tile, BKV, (__global const ELEM_T*)k, SEQ_BASE(a, k, b, hk, sv.k_start), a->k_seq_stride, k0, nk, lid);
#if VEC_LOAD
  async_commit();
#endif
#define K_OPERAND k_tile
#endif
  qfrag_t vw[MK][QFRAGS][4]; /* V_w as A fragments (load_q's layout, MK m-tiles) */
#if MT == MK
  load_q(vw, (__global const ELEM_T*)v, SEQ_BASE(a, v, b, hk, sv.k_start), a->v_seq_stride, key_a, nk, t);
#else /* MT is bwd_mma_dq.cl's m-tiles a warp, which load_q fills */
#pragma unroll
  for (int i = 0; i < MK; ++i)
#pragma unroll
    for (int ks = 0; ks < QFRAGS; ++ks) {
      const long vbase = SEQ_BASE(a, v, b, hk, sv.k_start);
      const int c = ks * 16 + 2 * t, ra = key_a + 16 * i;
      vw[i][ks][0] = q_pair((__global const ushort*)v, vbase, a->v_seq_stride, ra, c, nk);
      vw[i][ks][1] = q_pair((__global const ushort*)v, vbase, a->v_seq_stride, ra + 8, c, nk);
      vw[i][ks][2] = q_pair((__global const ushort*)v, vbase, a->v_seq_stride, ra, c + 8, nk);
      vw[i][ks][3] = q_pair((__global const ushort*)v, vbase, a->v_seq_stride, ra + 8, c + 8, nk);
    }
#endif

  float dk_acc[MK][NT_O][4], dv_acc[MK][NT_O][4];
#pragma unroll
  for (int i = 0; i < MK; ++i)
#pragma unroll
    for (int n = 0; n < NT_O; ++n)
      dk_acc[i][n][0] = dk_acc[i][n][1] = dk_acc[i][n][2] = dk_acc[i][n][3] = dv_acc[i][n][0] = dv_acc[i][n][1] =
          dv_acc[i][n][2] = dv_acc[i][n][3] = 0.0f;
#endif /* WARP_PAIRS */

  /* Steps over (query head of the group, Q block that sees the block), heads outer: every head of
   * the group has the sequence's lengths, so the same Q blocks. */
  const int h0 = hk * GROUP_HEADS(a);
#if !VARLEN /* (declared here, the program on record's order) */
  const SeqView sv = seq_view(a, b, h0, 1.0f, BWD_VARIANT_POINTERS);
#endif
  int qb_begin, qb_end;
  query_block_range(k0, min(k0 + BKV, nk), BQ, &sv, a, &qb_begin, &qb_end);
#if VARLEN /* a K/V block past its (shorter) sequence's end: nothing to read or write */
  if (k0 >= nk) qb_end = qb_begin;
#endif
  const int blocks = qb_end - qb_begin, steps = GROUP_HEADS(a) * blocks;
#if QSTAGES == 2
  if (steps > 0)
    load_query_block(q_tile[0], do_tile[0], lse2_tile[0], d_tile[0], qg, dog, lse, ws, qb_begin * BQ, b, h0, &sv, a,
                     gb, lid);
#endif
#if ALIBI || MASK_KIND
  SeqView svh = sv; /* the step's query head's slope and mask rows: seq_view once a head */
#endif
  for (int step = 0; step < steps; ++step) {
    const int h = h0 + step / blocks, q0 = (qb_begin + step % blocks) * BQ;
#if QSTAGES == 2
    const int cur = step & 1;
#else
    const int cur = 0;
    barrier(CLK_LOCAL_MEM_FENCE); /* every warp is done with the previous step's tiles */
    load_query_block(q_tile[0], do_tile[0], lse2_tile[0], d_tile[0], qg, dog, lse, ws, q0, b, h, &sv, a, gb, lid);
#endif
#if VEC_LOAD
    async_wait_all(); /* this work-item's copies of step `step` (and K_j) have landed */
#endif
    barrier(CLK_LOCAL_MEM_FENCE); /* Q_i, dO_i, LSE_i, D_i (and K_j) visible to every warp; with two
                                   * stages, every warp is also done with the other stage (step - 1) */
#if QSTAGES == 2
    if (step + 1 < steps) {
      const int hn = h0 + (step + 1) / blocks, qn = (qb_begin + (step + 1) % blocks) * BQ;
      load_query_block(q_tile[cur ^ 1], do_tile[cur ^ 1], lse2_tile[cur ^ 1], d_tile[cur ^ 1], qg, dog, lse, ws, qn, b,
                       hn, &sv, a, gb, lid);
    }
#endif

    float s[MK][NQT][4], dp[MK][NQT][4];
#if WARP_PAIRS /* dp: the K warp's S^T, the V warp's dP^T; s: the pair's S^T */
    qk_block(dp, w, role ? do_tile[cur] : q_tile[cur], lane);
    if (role == 0)
#pragma unroll
      for (int j = 0; j < NQT; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) s_handover[warp >> 1][4 * j + e][lane] = dp[0][j][e];
    barrier(CLK_LOCAL_MEM_FENCE); /* S^T handed over (the V warp reads it before the next step's barrier) */
#pragma unroll
    for (int j = 0; j < NQT; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) s[0][j][e] = role ? s_handover[warp >> 1][4 * j + e][lane] : dp[0][j][e];
#else
    scores_t(s, dp, vw, K_OPERAND, q_tile[cur], do_tile[cur], warp, lane);
#endif
#if ALIBI || MASK_KIND
    if (step % blocks == 0) svh = seq_view(a, b, h, 1.0f, BWD_VARIANT_POINTERS);
    probs_t(s, dp, lse2_tile[cur], d_tile[cur], key_a, q0, k0, t, c, &svh, a, BWD_MASK);
#else
    probs_t(s, dp, lse2_tile[cur], d_tile[cur], key_a, q0, k0, t, c, &sv, a, BWD_MASK);
#endif
#if WARP_PAIRS /* dV_w += P^T dO_i (the K warp), dK_w += dS^T Q_i (the V warp; its dp is dS^T) */
#pragma unroll
    for (int j = 0; j < NQT; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) s[0][j][e] = role ? dp[0][j][e] : s[0][j][e];
    pv_block(acc, s, role ? q_tile[cur] : do_tile[cur], lane);
#else
    accumulate_kv(dv_acc, dk_acc, s, dp, q_tile[cur], do_tile[cur], lane);
#endif
#if DQ_ATOMIC
    stage_ds(ds_tile, dp[0], warp, g, t);
    barrier(CLK_LOCAL_MEM_FENCE); /* the whole dS^T block staged */
    add_dq(ws, gb, ds_tile, k_tile, q0, b, h, warp, lane, g, t, scale, &sv, a);
#else
    (void)h;
#endif
  }
#if VEC_LOAD
  async_wait_all(); /* K_j's copies when no Q block was visited */
#endif

  /* epilogue: dK (times the scale) and dV rows of this warp's keys, written once */
#if WARP_PAIRS /* the K warp's dV_w, the V warp's dK_w */
  __global ELEM_T* outg = (__global ELEM_T*)(role ? dk : dv);
  const long out_base = role ? SEQ_BASE(gb, dk, b, hk, sv.k_start) : SEQ_BASE(gb, dv, b, hk, sv.k_start);
  const long out_stride = role ? gb->dk_seq_stride : gb->dv_seq_stride;
  const float out_scale = role ? scale : 1.0f;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int key = key_a + 8 * r;
    const bool in = key < nk;
#pragma unroll
    for (int n = 0; n < NT_O; ++n) {
      const int col = 8 * n + 2 * t;
      store_o2(outg, out_base + (long)key * out_stride + col, acc[0][n][2 * r] * out_scale,
               acc[0][n][2 * r + 1] * out_scale, in && col < HEAD_DIM, in && col + 1 < HEAD_DIM);
    }
  }
#else
  __global ELEM_T* dkg = (__global ELEM_T*)dk;
  __global ELEM_T* dvg = (__global ELEM_T*)dv;
  const long dk_base = SEQ_BASE(gb, dk, b, hk, sv.k_start), dv_base = SEQ_BASE(gb, dv, b, hk, sv.k_start);
#pragma unroll
  for (int i = 0; i < MK; ++i)
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int key = key_a + 16 * i + 8 * r;
      const bool in = key < nk;
#pragma unroll
      for (int n = 0; n < NT_O; ++n) {
        const int col = 8 * n + 2 * t;
        const bool ok0 = in && col < HEAD_DIM, ok1 = in && col + 1 < HEAD_DIM;
        store_o2(dkg, dk_base + (long)key * gb->dk_seq_stride + col, dk_acc[i][n][2 * r] * scale,
                 dk_acc[i][n][2 * r + 1] * scale, ok0, ok1);
        store_o2(dvg, dv_base + (long)key * gb->dv_seq_stride + col, dv_acc[i][n][2 * r], dv_acc[i][n][2 * r + 1], ok0,
                 ok1);
      }
    }
#endif /* WARP_PAIRS */
}
