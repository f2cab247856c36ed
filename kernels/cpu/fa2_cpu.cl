/* fa2_cpu.cl: FlashAttention-2 forward shaped for CPUs (PoCL). A work-group is one work-item that
 * owns BR query rows: PoCL then runs it as straight-line code on one core, with no work-item loops
 * around barriers and no spills of private state into its context arrays. Vectors come from the
 * code, not from PoCL's vectoriser: keys are taken VW at a time as one floatVW (K staged transposed
 * as fp32, d x BC), the output columns VW at a time (fp32 V read in place, else staged as fp32),
 * and products are register-blocked: RM rows x KG key vectors of scores, RM rows x CG column
 * vectors of the accumulator, each vector load feeding RM FMAs and each broadcast of q or p
 * feeding KG or CG. The staged tiles (fp16/bf16 converted once per block) are sized for the
 * L1/L2 caches; the running output stays in the O tile between key blocks. Everything else is
 * fa2.cl's algorithm and common.cl's pieces: the same block skipping (per row group here),
 * masks, score transforms, HALF_UNITS, GQA, varlen, LSE and dispatch order. */

#ifndef VW
#define VW 16 /* floats per vector: the device's preferred float width (4, 8 or 16) */
#endif
#ifndef BR
#define BR 64 /* query rows per work-group (work-item) */
#endif
#ifndef BC
#define BC 64 /* keys per staged K/V block; a multiple of KG * VW */
#endif
#ifndef RM
#define RM 4 /* query rows per register block */
#endif
#ifndef CG
#define CG 4 /* output column vectors per register block; divides D_PAD / VW */
#endif

#define KG (BC / VW < 4 ? BC / VW : 4) /* key vectors per register block of scores */
#define DV (D_PAD / VW)                /* column vectors of a row */

#if BR % RM != 0 || BC % (KG * VW) != 0 || D_PAD % VW != 0 || DV % CG != 0
#error "fa2_cpu tiles must satisfy BR % RM == 0, BC % (KG * VW) == 0, D_PAD % VW == 0 and (D_PAD / VW) % CG == 0"
#endif

/* fp32 V whose rows are whole vectors is read in place (no staging copy); else staged as fp32 */
#define V_IN_PLACE (DTYPE == 0 && HEAD_DIM == D_PAD)
#if V_IN_PLACE
#define V_PTR __global const float*
#define V_PITCH v_pitch
#else
#define V_PTR __local const float*
#define V_PITCH D_PAD
#endif

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define VEC_T CAT(float, VW)
#define VLOAD(p) CAT(vload, VW)(0, (p))
#define VSTORE(x, p) CAT(vstore, VW)((x), 0, (p))

/* Horizontal max / sum of one vector, by halves. */
inline float vec_max(VEC_T x) {
#if VW == 16
  const float8 y = fmax(x.lo, x.hi);
#elif VW == 8
  const float8 y = x;
#endif
#if VW >= 8
  const float4 z = fmax(y.lo, y.hi);
#else
  const float4 z = x;
#endif
  const float2 w = fmax(z.lo, z.hi);
  return fmax(w.x, w.y);
}

inline float vec_sum(VEC_T x) {
#if VW == 16
  const float8 y = x.lo + x.hi;
#elif VW == 8
  const float8 y = x;
#endif
#if VW >= 8
  const float4 z = y.lo + y.hi;
#else
  const float4 z = x;
#endif
  const float2 w = z.lo + z.hi;
  return w.x + w.y;
}

/* Rows [row0, row0 + n) of a (seq, d) slice into dst: row-major with pitch D_PAD, or transposed
 * (dst[c * n + r]) for K. Times mul; rows at or past `valid` and columns past HEAD_DIM read 0. */
inline void stage_rows(__local float* dst, __global const STORAGE_T* src, long base, long seq_stride, int row0, int n,
                       int valid, float mul, bool transposed) {
  for (int r = 0; r < n; ++r) {
    const bool inside = row0 + r < valid;
    const long at = base + (long)(row0 + r) * seq_stride;
    /* scalar on purpose: vectorised, the transposed stores become scatters, which took 30% of
     * the kernel's time on Zen 4 (perf, d = 64, N = 2048) */
#pragma clang loop vectorize(disable)
    for (int c = 0; c < D_PAD; ++c) {
      const float x = inside && c < HEAD_DIM ? LOAD_ELEM(src, at + c) * mul : 0.0f;
      if (transposed)
        dst[c * n + r] = x;
      else
        dst[r * D_PAD + c] = x;
    }
  }
}

/* p[r][j] = q(r0 + r) . k(j) for the RM rows of a register block and every key of the staged
 * block: KG key vectors at a time, each K^T vector load feeding RM FMAs. */
inline void block_scores(float p[RM][BC], __local const float* qs, __local const float* kt, int r0) {
  for (int j0 = 0; j0 < BC; j0 += KG * VW) {
    VEC_T s[RM][KG];
#pragma unroll
    for (int r = 0; r < RM; ++r)
#pragma unroll
      for (int g = 0; g < KG; ++g) s[r][g] = (VEC_T)(0.0f);
    for (int c = 0; c < HEAD_DIM; ++c) {
      VEC_T kv[KG];
#pragma unroll
      for (int g = 0; g < KG; ++g) kv[g] = VLOAD(kt + c * BC + j0 + g * VW);
#pragma unroll
      for (int r = 0; r < RM; ++r) {
        const VEC_T qv = (VEC_T)(qs[(r0 + r) * D_PAD + c]);
#pragma unroll
        for (int g = 0; g < KG; ++g) s[r][g] = fma(qv, kv[g], s[r][g]);
      }
    }
#pragma unroll
    for (int r = 0; r < RM; ++r)
#pragma unroll
      for (int g = 0; g < KG; ++g) VSTORE(s[r][g], &p[r][j0 + g * VW]);
  }
}

/* Online softmax of one row of a block: final_score() where the block needs it, the new running
 * max, p <- 2^(s - m) in place (a row whose max is -inf gets zeros, never NaN), the running sum.
 * Returns the factor the row's accumulator must be rescaled by. */
inline float row_softmax(float p[BC], float* m, float* l, int row, int k0, bool masked, const SeqView* sv,
                         const AttnArgs* a, __global const MASK_T* mask) {
  if (masked)
    for (int j = 0; j < BC; ++j) p[j] = final_score(p[j], row, k0 + j, sv, a, mask);
  VEC_T mv = (VEC_T)(NEG_INF);
  for (int j = 0; j < BC; j += VW) mv = fmax(mv, VLOAD(p + j));
  const float m_new = fmax(*m, vec_max(mv));
  const float alpha = softmax_rescale(*m, m_new);
  const float base = m_new == NEG_INF ? 0.0f : m_new;
  VEC_T sum = (VEC_T)(0.0f);
  for (int j = 0; j < BC; j += VW) {
    const VEC_T e = EXP2_OF(VLOAD(p + j) - base);
    VSTORE(e, p + j);
    sum += e;
  }
  *l = *l * alpha + vec_sum(sum);
  *m = m_new;
  return alpha;
}

/* O(r0 + r) <- alpha[r] O(r0 + r) + sum_j p[r][j] V(j) over keys [0, n), CG column vectors at a
 * time, each V vector load feeding RM FMAs. `masked` (a constant at each call site): hidden keys
 * (p = 0) add nothing even where V holds NaN or Inf, which 0 * V would spread. */
inline void block_pv(__local float* acc_t, float p[RM][BC], const float alpha[RM], V_PTR vs, long v_pitch, int r0,
                     int n, const bool masked) {
  for (int cg0 = 0; cg0 < DV; cg0 += CG) {
    VEC_T acc[RM][CG];
#pragma unroll
    for (int r = 0; r < RM; ++r)
#pragma unroll
      for (int g = 0; g < CG; ++g) acc[r][g] = VLOAD(acc_t + (r0 + r) * D_PAD + (cg0 + g) * VW) * alpha[r];
    for (int j = 0; j < n; ++j) {
      VEC_T vv[CG];
#pragma unroll
      for (int g = 0; g < CG; ++g) vv[g] = VLOAD(vs + j * V_PITCH + (cg0 + g) * VW);
#pragma unroll
      for (int r = 0; r < RM; ++r) {
        const float pj = p[r][j];
        if (masked && pj == 0.0f) continue;
        const VEC_T pv = (VEC_T)(pj);
#pragma unroll
        for (int g = 0; g < CG; ++g) acc[r][g] = fma(pv, vv[g], acc[r][g]);
      }
    }
#pragma unroll
    for (int r = 0; r < RM; ++r)
#pragma unroll
      for (int g = 0; g < CG; ++g) VSTORE(acc[r][g], acc_t + (r0 + r) * D_PAD + (cg0 + g) * VW);
  }
}

__kernel __attribute__((reqd_work_group_size(1, 1, 1)))
void fa2_cpu_forward(__global const STORAGE_T* q, __global const STORAGE_T* k, __global const STORAGE_T* v,
                     __global STORAGE_T* o, __global float* lse, VARIANT_PARAMS, const AttnArgs args) {
  __local float qs[BR * D_PAD];    /* scaled Q block, row-major */
  __local float acc_t[BR * D_PAD]; /* unnormalised O block */
  __local float kt[D_PAD * BC];    /* K block transposed */
#if !V_IN_PLACE
  __local float vs[BC * D_PAD]; /* V block */
#endif
  float m[BR], l[BR], p[RM][BC], alpha[RM];

  const AttnArgs* a = &args;
  int q_block, h, b;
  block_coordinates(a, &q_block, &h, &b);
  const int q0 = q_block * BR;
  const SeqView sv = seq_view(a, b, h, SCORE_UNIT, cu_seqlens_q, cu_seqlens_k, alibi_slopes);
#if VARLEN
  if (q0 >= SV_NQ(&sv, a)) return;
#endif
  const int q_end = min(q0 + BR, SV_NQ(&sv, a)), hk = KV_HEAD(a, h);
  const long q_base = SEQ_BASE(a, q, b, h, sv.q_start), k_base = SEQ_BASE(a, k, b, hk, sv.k_start);
  const long v_base = SEQ_BASE(a, v, b, hk, sv.k_start), o_base = SEQ_BASE(a, o, b, h, sv.q_start);

  /* prologue */
  stage_rows(qs, q, q_base, a->q_seq_stride, q0, BR, SV_NQ(&sv, a), Q_SCALE(a), false);
  for (int i = 0; i < BR * D_PAD; ++i) acc_t[i] = 0.0f;
  for (int r = 0; r < BR; ++r) {
    m[r] = NEG_INF;
    l[r] = 0.0f;
  }

  /* main loop: each key block staged once, then every row block that sees it */
  int kb_begin, kb_end;
  key_block_range(q0, q_end, BC, &sv, a, &kb_begin, &kb_end);
  for (int kb = kb_begin; kb < kb_end; ++kb) {
    const int k0 = kb * BC, n = min(BC, SV_NK(&sv, a) - k0);
    stage_rows(kt, k, k_base, a->k_seq_stride, k0, BC, SV_NK(&sv, a), 1.0f, true);
#if V_IN_PLACE
    V_PTR vs = v + v_base + (long)k0 * a->v_seq_stride;
#else
    stage_rows(vs, v, v_base, a->v_seq_stride, k0, BC, SV_NK(&sv, a), 1.0f, false);
#endif
    for (int r0 = 0; r0 < BR && q0 + r0 < q_end; r0 += RM) {
      int rb_begin, rb_end; /* whole register blocks above the diagonal or outside the window skip it */
      key_block_range(q0 + r0, min(q0 + r0 + RM, q_end), BC, &sv, a, &rb_begin, &rb_end);
      if (kb < rb_begin || kb >= rb_end) continue;
      const bool masked = block_needs_mask(q0 + r0, RM, k0, BC, &sv, a);
      block_scores(p, qs, kt, r0);
#pragma unroll
      for (int r = 0; r < RM; ++r)
        alpha[r] = row_softmax(p[r], &m[r0 + r], &l[r0 + r], q0 + r0 + r, k0, masked, &sv, a, mask);
      if (masked) /* two specialised copies: the unmasked one pays nothing */
        block_pv(acc_t, p, alpha, vs, a->v_seq_stride, r0, n, true);
      else
        block_pv(acc_t, p, alpha, vs, a->v_seq_stride, r0, n, false);
    }
  }

  /* epilogue */
  for (int r = 0; q0 + r < q_end; ++r) {
    const int row = q0 + r;
    const float inv = l[r] > 0.0f ? 1.0f / l[r] : 0.0f;
    const long at = o_base + (long)row * a->o_seq_stride;
    for (int c = 0; c < HEAD_DIM; ++c) STORE_ELEM(o, at + c, acc_t[r * D_PAD + c] * inv);
    if (a->write_lse) lse[LSE_INDEX(a, &sv, b, h, row)] = row_lse(m[r], l[r]);
  }
}
