/* bwd_cpu.cl: the FlashAttention-2 backward shaped for CPUs (PoCL), as fa2_cpu.cl is for the
 * forward. A work-group is one work-item, so PoCL runs it as straight-line code on one core with
 * no work-item loops around barriers; the vectors are written out (floatVW along keys or along
 * the head dimension) and every product is register-blocked, each vector load feeding RM FMAs.
 *  - bwd_cpu_dkdv: one work-item per (chunk of K/V blocks, K/V head, batch). For each of its K/V
 *    blocks (BC keys: K^T, V^T and K staged once as fp32) it walks every query head of the GQA
 *    group and every Q block that sees the block (BR rows: Q, dO staged as fp32), and computes
 *      S = Q K^T, dP = dO V^T (RM rows x KG key vectors), P = exp(S - LSE), dS = P (dP - D),
 *      dQ_partial += dS K (RM rows x CG column vectors, added to fp32 rows in the workspace),
 *      dV += P^T dO, dK += dS^T Q (RM keys x CG column vectors, accumulators in __local),
 *    and writes dK, dV once. dQ needs no atomics and no second pass recomputing S and dP: the
 *    chunk's own fp32 dQ partial (pitch D_PAD) is its alone, zeroed by it first. A chunk takes
 *    blocks c, c + chunks, ... so causal chunks carry about equal work.
 *  - bwd_cpu_dq: sums the chunks' partials in chunk order, times the scale, into dQ's dtype and
 *    strides. Everything is a fixed order of operations: every call is deterministic.
 * The preprocess (D = rowsum(dO o O)) and the bias-gradient passes are bwd_common.cl's. Blocks
 * whose only rule is the band (causal, window, the keys' end) mask it with one lane-wise compare;
 * programs with a score transform (softcap, ALiBi, a mask or a bias) apply common.cl's rules in
 * vectors too (softmax_grad_row_vectors), with final_score's results. */

#ifndef VW
#define VW 16 /* floats per vector: the device's preferred float width (4, 8 or 16) */
#endif
#ifndef BR
#define BR 64 /* query rows per Q block */
#endif
#ifndef BC
#define BC 64 /* keys per K/V block; a multiple of KG * VW and of RM */
#endif
#ifndef RM
#define RM 4 /* rows (or keys) per register block */
#endif
#ifndef CG
#define CG 4 /* column vectors per register block; divides D_PAD / VW */
#endif

#define KG (BC / VW < 4 ? BC / VW : 4) /* key vectors per register block of scores */
#define DV (D_PAD / VW)                /* column vectors of a row */
#if GQA
#define KV_GROUP(a) ((a)->kv_group)
#else
#define KV_GROUP(a) 1
#endif

#if BR % RM != 0 || BC % RM != 0 || BC % (KG * VW) != 0 || D_PAD % VW != 0 || DV % CG != 0
#error "bwd_cpu tiles must satisfy BR % RM == 0, BC % RM == 0, BC % (KG * VW) == 0, D_PAD % VW == 0 and (D_PAD / VW) % CG == 0"
#endif

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define VEC_T CAT(float, VW)
#define IVEC_T CAT(int, VW)
#define VLOAD(p) CAT(vload, VW)(0, (p))
#define VSTORE(x, p) CAT(vstore, VW)((x), 0, (p))
#if VW == 16
#define LANES ((int16)(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15))
#elif VW == 8
#define LANES ((int8)(0, 1, 2, 3, 4, 5, 6, 7))
#else
#define LANES ((int4)(0, 1, 2, 3))
#endif

/* Of the block's keys [k0, k0 + BC), the first `returned` can be visible to a row below q_end;
 * the rest are above the causal diagonal or right of the window for all of them, so products
 * over them are skipped (their P and dS are 0). A causal call computes about 11 % fewer entries
 * with it at N = 2048, 256-key blocks. */
inline int band_keys(int q_end, int k0, const SeqView* sv, const AttnArgs* a) {
  int hi = k0 + BC;
#if CAUSAL
  hi = min(hi, q_end + SV_SHIFT(sv, a));
#endif
#if WINDOW
  if (a->window_right >= 0) hi = min(hi, q_end + SV_SHIFT(sv, a) + a->window_right);
#endif
  return clamp(hi - k0, 0, BC);
}

/* The first row at or after q0 (as an offset from q0) that can see key `key`, by the same rules. */
inline int band_first_row(int q0, int key, const SeqView* sv, const AttnArgs* a) {
  int lo = q0;
#if CAUSAL
  lo = max(lo, key - SV_SHIFT(sv, a));
#endif
#if WINDOW
  if (a->window_right >= 0) lo = max(lo, key - SV_SHIFT(sv, a) - a->window_right);
#endif
  (void)sv;
  (void)a;
  return lo - q0;
}

/* Rows [row0, row0 + n) of a (seq, d) slice as fp32: row-major into dst (pitch D_PAD), or
 * transposed (dst[c * n + r]). Rows at or past `valid` and columns past HEAD_DIM are 0. Through
 * cpu_io.cl: 16-bit rows converted 16 at a time, the transpose by 16 x 16 tiles. */
inline void cpu_stage_rows(__local float* dst, __global const STORAGE_T* src, long base, long seq_stride, int row0,
                           int n, int valid, bool transposed) {
  if (transposed) {
    cpu_stage_rows_t(dst, src, base, seq_stride, row0, n, valid, 1.0f CPU_ROW_DESCALE_ARGS(0, 0));
    return;
  }
  for (int r = 0; r < n; ++r)
    cpu_stage_row(dst + r * D_PAD, src, base + (long)(row0 + r) * seq_stride, row0 + r < valid, 1.0f);
}

/* out[r][j] = a(r0 + r) . bt(:, j) for the RM rows of a register block and the keys j < keys
 * of the block, rounded up to KG key vectors (a: BR x D_PAD row-major, bt: D_PAD x BC). */
inline void tile_nt(float out[RM][BC], __local const float* a, __local const float* bt, int r0, int keys) {
  for (int j0 = 0; j0 < keys; j0 += KG * VW) {
    VEC_T s[RM][KG];
#pragma unroll
    for (int r = 0; r < RM; ++r)
#pragma unroll
      for (int g = 0; g < KG; ++g) s[r][g] = (VEC_T)(0.0f);
    for (int c = 0; c < HEAD_DIM; ++c) {
      VEC_T kv[KG];
#pragma unroll
      for (int g = 0; g < KG; ++g) kv[g] = VLOAD(bt + c * BC + j0 + g * VW);
#pragma unroll
      for (int r = 0; r < RM; ++r) {
        const VEC_T qv = (VEC_T)(a[(r0 + r) * D_PAD + c]);
#pragma unroll
        for (int g = 0; g < KG; ++g) s[r][g] = fma(qv, kv[g], s[r][g]);
      }
    }
#pragma unroll
    for (int r = 0; r < RM; ++r)
#pragma unroll
      for (int g = 0; g < KG; ++g) VSTORE(s[r][g], &out[r][j0 + g * VW]);
  }
}

/* acc(c, :) += sum over rows r < n of coef[r][c] * src(r, :), for the keys c < keys of the block:
 * dV += P^T dO and dK += dS^T Q. RM keys x CG column vectors at a time; acc is BC x D_PAD. Rows
 * before the first that sees a key group (band_first_row) have coef 0 there and are skipped. */
inline void tile_tn(__local float* acc, __local const float* coef, __local const float* src, int n, int keys, int q0,
                    int k0, const SeqView* sv, const AttnArgs* a) {
  for (int c0 = 0; c0 < keys; c0 += RM) {
    const int r_begin = clamp(band_first_row(q0, k0 + c0, sv, a), 0, n);
    for (int cg0 = 0; cg0 < DV; cg0 += CG) {
      VEC_T t[RM][CG];
#pragma unroll
      for (int k = 0; k < RM; ++k)
#pragma unroll
        for (int g = 0; g < CG; ++g) t[k][g] = VLOAD(acc + (c0 + k) * D_PAD + (cg0 + g) * VW);
      for (int r = r_begin; r < n; ++r) {
        VEC_T x[CG];
#pragma unroll
        for (int g = 0; g < CG; ++g) x[g] = VLOAD(src + r * D_PAD + (cg0 + g) * VW);
#pragma unroll
        for (int k = 0; k < RM; ++k) {
          const VEC_T cv = (VEC_T)(coef[r * BC + c0 + k]);
#pragma unroll
          for (int g = 0; g < CG; ++g) t[k][g] = fma(cv, x[g], t[k][g]);
        }
      }
#pragma unroll
      for (int k = 0; k < RM; ++k)
#pragma unroll
        for (int g = 0; g < CG; ++g) VSTORE(t[k][g], acc + (c0 + k) * D_PAD + (cg0 + g) * VW);
    }
  }
}

/* dq(r, :) += sum_{c < keys} ds[r0 + r][c] * krow(c, :) for the RM rows of a register block, rows
 * below `rows` only (the partial's rows of this sequence; dq points at row q0's). */
inline void tile_dq(__global float* dq, __local const float* ds, __local const float* krow, int r0, int rows,
                    int keys) {
  for (int cg0 = 0; cg0 < DV; cg0 += CG) {
    VEC_T t[RM][CG];
#pragma unroll
    for (int r = 0; r < RM; ++r)
#pragma unroll
      for (int g = 0; g < CG; ++g) t[r][g] = (VEC_T)(0.0f);
    for (int c = 0; c < keys; ++c) {
      VEC_T kv[CG];
#pragma unroll
      for (int g = 0; g < CG; ++g) kv[g] = VLOAD(krow + c * D_PAD + (cg0 + g) * VW);
#pragma unroll
      for (int r = 0; r < RM; ++r) {
        const VEC_T dv = (VEC_T)(ds[(r0 + r) * BC + c]);
#pragma unroll
        for (int g = 0; g < CG; ++g) t[r][g] = fma(dv, kv[g], t[r][g]);
      }
    }
#pragma unroll
    for (int r = 0; r < RM; ++r) {
      if (r0 + r >= rows) break;
      __global float* at = dq + (long)(r0 + r) * D_PAD + cg0 * VW;
#pragma unroll
      for (int g = 0; g < CG; ++g) VSTORE(VLOAD(at + g * VW) + t[r][g], at + g * VW);
    }
  }
}

/* P and dS of one row (p_row, ds_row) over the block's keys [k0, k0 + keys) in programs with a
 * score transform (softcap, ALiBi, a mask or a bias), in vectors along the keys: the softcap's
 * tanh once for the score and its slope, ALiBi's distance lane-wise, a mask or bias lane by lane,
 * then the band lane-wise (so a key the band hides is -inf whatever its bias holds, as final_score
 * decides), P = 0 at every hidden key (even with a NaN LSE), and with ALiBi P = 0 below
 * EXP2_FLUSH_BELOW without reaching exp2 there (PoCL's vector exp2 takes a slow path on
 * underflow). dS is 0 wherever P is, even where dP or the slope is not finite; with DBIAS, dS before
 * the softcap's slope also goes to ds_target from ds_row_at (the bias gradient's row; rows and
 * keys past the end are not written). Entry by entry through final_score, these programs took
 * 3.2-10x the plain backward's time (fa2, d 64, N 2048, 2-core PoCL; docs/perf/pocl-cpu.md). */
inline void softmax_grad_row_vectors(__local float* p_row, __local float* ds_row, const float* s_row,
                                     const float* dp_row, float l2, float d, int row, int k0, int keys,
                                     const SeqView* sv, const AttnArgs* a, __global const MASK_T* mask,
                                     __global float* ds_target, long ds_row_at) {
  for (int j = 0; j < keys; j += VW) {
    const VEC_T raw = VLOAD(s_row + j) * a->scale;
    VEC_T x = raw, slope = (VEC_T)(1.0f);
#if SOFTCAP
    const VEC_T th = tanh(raw / sv->softcap);
    x = select(sv->softcap * th, raw, fabs(raw) < sv->softcap * SOFTCAP_LINEAR_BELOW);
    slope = 1.0f - th * th;
#endif
#if ALIBI
    x -= sv->slope * fabs((float)(row + SV_SHIFT(sv, a) - k0 - j) - CAT(convert_float, VW)(LANES));
#endif
#if MASK_KIND
    float xs[VW];
    VSTORE(x, xs);
    for (int e = 0; e < VW && k0 + j + e < SV_NK(sv, a); ++e) /* (no mask element past the keys is read) */
      xs[e] = mask_hides(row, k0 + j + e, sv, a, mask) ? NEG_INF : bias_shift(xs[e], row, k0 + j + e, sv, a, mask);
    x = VLOAD(xs);
#endif
    const IVEC_T key = (IVEC_T)(k0 + j) + LANES;
    x = select(x, (VEC_T)(NEG_INF), KEY_OUT_OF_BAND(row, key, SV_NK(sv, a), SV_SHIFT(sv, a), a));
    const VEC_T t = select(x * LOG2E_F - l2, (VEC_T)(NEG_INF), x == (VEC_T)(NEG_INF));
#if ALIBI
    const IVEC_T under = t < (VEC_T)(EXP2_FLUSH_BELOW);
    const VEC_T p = select(exp2(select(t, (VEC_T)(EXP2_FLUSH_BELOW), under)), (VEC_T)(0.0f), under);
#else
    const VEC_T p = exp2(t);
#endif
    const IVEC_T zero = p == (VEC_T)(0.0f);
    const VEC_T g = select(p * (VLOAD(dp_row + j) - d), (VEC_T)(0.0f), zero);
#if DBIAS
    if (row < SV_NQ(sv, a)) {
      float gs[VW];
      VSTORE(g, gs);
      for (int e = 0; e < VW && k0 + j + e < SV_NK(sv, a); ++e) ds_target[ds_row_at + k0 + j + e] = gs[e];
    }
#endif
    VSTORE(p, p_row + j);
    VSTORE(select(g * slope, (VEC_T)(0.0f), zero), ds_row + j);
  }
}

/* P and dS of the RM rows at r0 from their raw products s = q.k and dp = dO.v, into the P and dS
 * tiles. lse2 holds LSE * log2(e), +inf for rows past the end or with no visible key, so their P
 * is exactly 0. Programs with a score transform (every block of theirs is `masked`) take
 * softmax_grad_row_vectors (natural units, as bwd_common.cl's bwd_probability), which with DBIAS
 * also writes dS out for the bias gradient. The others' only rule is the band (causal, window, the
 * keys' end), one lane-wise compare of key indices on the blocks that cross it (the diagonal
 * blocks were a fifth of a causal call's work, N = 2048, and computing them entry by entry cost
 * several times more). A zero P always gives a zero dS, even where dP is not finite. */
inline void tile_softmax_grad(__local float* p_t, __local float* ds_t, float s[RM][BC], float dp[RM][BC],
                              __local const float* lse2, __local const float* dd, int q0, int r0, int k0, int keys,
                              const bool masked, const SeqView* sv, const AttnArgs* a, __global const MASK_T* mask,
                              __global float* ds_target, long ds_base, long ds_row_stride) {
#pragma unroll
  for (int r = 0; r < RM; ++r) {
    const int i = r0 + r, row = q0 + i;
    const float l2 = lse2[i], d = dd[i];
    for (int j = (keys + VW - 1) / VW * VW; j < BC; j += VW) { /* hidden from the whole block */
      VSTORE((VEC_T)(0.0f), p_t + i * BC + j);
      VSTORE((VEC_T)(0.0f), ds_t + i * BC + j);
    }
#if SCORE_TRANSFORM
    softmax_grad_row_vectors(p_t + i * BC, ds_t + i * BC, s[r], dp[r], l2, d, row, k0, keys, sv, a, mask, ds_target,
                             ds_base + (long)row * ds_row_stride);
#else
    const float scale_log2 = a->scale * LOG2E_F;
    for (int j = 0; j < keys; j += VW) {
      VEC_T p = exp2(VLOAD(&s[r][j]) * scale_log2 - l2);
      if (masked) {
        const IVEC_T key = (IVEC_T)(k0 + j) + LANES;
        p = select(p, (VEC_T)(0.0f), KEY_OUT_OF_BAND(row, key, SV_NK(sv, a), SV_SHIFT(sv, a), a));
      }
      const VEC_T g = p * (VLOAD(&dp[r][j]) - d);
      VSTORE(p, p_t + i * BC + j);
      VSTORE(select(g, (VEC_T)(0.0f), p == (VEC_T)(0.0f)), ds_t + i * BC + j);
    }
#endif
  }
}

/* One work-item per (chunk, K/V head, batch); see the header. dq_chunk_stride: floats between
 * two chunks' dQ partials in the workspace (LSE rows x D_PAD). */
__kernel __attribute__((reqd_work_group_size(1, 1, 1)))
void bwd_cpu_dkdv(__global const STORAGE_T* q, __global const STORAGE_T* k, __global const STORAGE_T* v,
                  __global const STORAGE_T* dout, __global const float* lse, __global STORAGE_T* dk,
                  __global STORAGE_T* dv, __global float* ws, __global float* ds_target, VARIANT_PARAMS,
                  const AttnArgs args, const BwdArgs bargs, const long dq_chunk_stride) {
  __local float qs[BR * D_PAD], dos[BR * D_PAD];                   /* Q_i, dO_i (fp32, zero-padded) */
  __local float kt[D_PAD * BC], vt[D_PAD * BC], kr[BC * D_PAD];    /* K_j^T, V_j^T, K_j */
  __local float dk_acc[BC * D_PAD], dv_acc[BC * D_PAD];            /* dK_j, dV_j */
  __local float p_t[BR * BC], ds_t[BR * BC], lse2[BR], dd[BR];     /* P, dS; LSE log2(e), D */
  float s[RM][BC], dp[RM][BC];

  const AttnArgs* a = &args;
  const BwdArgs* g = &bargs;
  const int chunk = get_group_id(0), chunks = get_num_groups(0), hk = get_group_id(1), b = get_group_id(2);
  const int h0 = hk * KV_GROUP(a);
  __global float* dq_part = ws + g->ws_dq_offset + (long)chunk * dq_chunk_stride;

  /* this chunk's dQ partial rows of every query head of the group start at 0 */
  for (int h = h0; h < h0 + KV_GROUP(a); ++h) {
    const SeqView sv = seq_view(a, b, h, 1.0f, cu_seqlens_q, cu_seqlens_k, alibi_slopes);
    __global float* rows = dq_part + LSE_INDEX(a, &sv, b, h, 0) * D_PAD;
    for (long i = 0; i < (long)SV_NQ(&sv, a) * D_PAD; ++i) rows[i] = 0.0f;
  }

  const SeqView sv0 = seq_view(a, b, h0, 1.0f, cu_seqlens_q, cu_seqlens_k, alibi_slopes);
  const int nk = SV_NK(&sv0, a);
  const long k_base = SEQ_BASE(a, k, b, hk, sv0.k_start), v_base = SEQ_BASE(a, v, b, hk, sv0.k_start);
  const long dk_base = SEQ_BASE(g, dk, b, hk, sv0.k_start), dv_base = SEQ_BASE(g, dv, b, hk, sv0.k_start);
  for (int kb = chunk; kb * BC < nk; kb += chunks) {
    const int k0 = kb * BC;
    cpu_stage_rows(kt, k, k_base, a->k_seq_stride, k0, BC, nk, true);
    cpu_stage_rows(vt, v, v_base, a->v_seq_stride, k0, BC, nk, true);
    cpu_stage_rows(kr, k, k_base, a->k_seq_stride, k0, BC, nk, false);
    for (int i = 0; i < BC * D_PAD; ++i) dk_acc[i] = dv_acc[i] = 0.0f;

    for (int h = h0; h < h0 + KV_GROUP(a); ++h) {
      const SeqView sv = seq_view(a, b, h, 1.0f, cu_seqlens_q, cu_seqlens_k, alibi_slopes);
      const int nq = SV_NQ(&sv, a);
      const long q_base = SEQ_BASE(a, q, b, h, sv.q_start), do_base = SEQ_BASE(g, dout, b, h, sv.q_start);
      const long lse_row0 = LSE_INDEX(a, &sv, b, h, 0);
      const long ds_base = g->ds_offset + (long)b * g->ds_batch_stride + (long)h * g->ds_head_stride;
      int qb_begin, qb_end;
      query_block_range(k0, min(k0 + BC, nk), BR, &sv, a, &qb_begin, &qb_end);
      for (int qb = qb_begin; qb < qb_end; ++qb) {
        const int q0 = qb * BR, rows = min(BR, nq - q0);
        cpu_stage_rows(qs, q, q_base, a->q_seq_stride, q0, BR, nq, false);
        cpu_stage_rows(dos, dout, do_base, g->dout_seq_stride, q0, BR, nq, false);
        for (int i = 0; i < BR; ++i) {
          const float l = i < rows ? lse[lse_row0 + q0 + i] : NEG_INF;
          lse2[i] = l == NEG_INF ? INFINITY : l * LOG2E_F;
          dd[i] = i < rows ? ws[g->ws_d_offset + lse_row0 + q0 + i] : 0.0f;
        }
        const bool masked = block_needs_mask(q0, BR, k0, BC, &sv, a);
        __global float* dq_rows = dq_part + (lse_row0 + q0) * D_PAD;
        for (int r0 = 0; r0 < rows; r0 += RM) {
          /* keys some row of this register block can see, in whole key-vector groups */
          const int keys = masked ? (band_keys(q0 + r0 + RM, k0, &sv, a) + KG * VW - 1) / (KG * VW) * (KG * VW) : BC;
          tile_nt(s, qs, kt, r0, keys);
          tile_nt(dp, dos, vt, r0, keys);
          if (masked) /* two specialised copies: the unmasked one pays nothing */
            tile_softmax_grad(p_t, ds_t, s, dp, lse2, dd, q0, r0, k0, keys, true, &sv, a, mask, ds_target, ds_base,
                              g->ds_row_stride);
          else
            tile_softmax_grad(p_t, ds_t, s, dp, lse2, dd, q0, r0, k0, keys, false, &sv, a, mask, ds_target,
                              ds_base, g->ds_row_stride);
          tile_dq(dq_rows, ds_t, kr, r0, rows, keys);
        }
        /* rows past the end inside the last register block have P = dS = 0 and zero Q, dO rows */
        const int n = (rows + RM - 1) / RM * RM;
        const int keys = masked ? (band_keys(q0 + n, k0, &sv, a) + RM - 1) / RM * RM : BC;
        tile_tn(dv_acc, p_t, dos, n, keys, q0, k0, &sv, a);
        tile_tn(dk_acc, ds_t, qs, n, keys, q0, k0, &sv, a);
      }
    }

    /* dK_j, dV_j written once, in their dtype */
    for (int c = 0; c < BC && k0 + c < nk; ++c) {
      const long dk_at = dk_base + (long)(k0 + c) * g->dk_seq_stride, dv_at = dv_base + (long)(k0 + c) * g->dv_seq_stride;
      cpu_store_row(dk, dk_at, dk_acc + c * D_PAD, a->scale);
      cpu_store_row(dv, dv_at, dv_acc + c * D_PAD, 1.0f);
    }
  }
}

/* dQ = scale * sum over chunks (in chunk order) of the fp32 partials, in dQ's dtype and strides.
 * Grid (rows of the longest sequence, heads, batch). */
__kernel void bwd_cpu_dq(__global const float* ws, __global STORAGE_T* dq, VARIANT_PARAMS, const AttnArgs args,
                         const BwdArgs bargs, const int chunks, const long dq_chunk_stride) {
  const AttnArgs* a = &args;
  const BwdArgs* g = &bargs;
  const int row = get_global_id(0), h = get_global_id(1), b = get_global_id(2);
  const SeqView sv = seq_view(a, b, h, 1.0f, cu_seqlens_q, cu_seqlens_k, alibi_slopes);
  if (row >= SV_NQ(&sv, a)) return;
  const long dq_row = SEQ_BASE(g, dq, b, h, sv.q_start) + (long)row * g->dq_seq_stride;
  __global const float* part = ws + g->ws_dq_offset + LSE_INDEX(a, &sv, b, h, row) * D_PAD;
  int c = 0;
  for (; c + 16 <= HEAD_DIM; c += 16) { /* 16 columns at a time: the 16-bit stores are cpu_io.cl's vectors */
    float16 x = CPU_LOAD16(__global, cpu_float16_u, part + c);
    for (int i = 1; i < chunks; ++i) x += CPU_LOAD16(__global, cpu_float16_u, part + (long)i * dq_chunk_stride + c);
    cpu_store16(x * a->scale, dq, dq_row + c);
  }
  for (; c < HEAD_DIM; ++c) {
    float x = part[c];
    for (int i = 1; i < chunks; ++i) x += part[(long)i * dq_chunk_stride + c];
    STORE_ELEM(dq, dq_row + c, x * a->scale);
  }
}
