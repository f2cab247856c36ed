/* fa2_cpu.cl: FlashAttention-2 forward shaped for CPUs (PoCL). A work-group is one work-item that
 * owns BR query rows: PoCL then runs it as straight-line code on one core, with no work-item loops
 * around barriers and no spills of private state into its context arrays. Vectors come from the
 * code, not from PoCL's vectoriser. Scores are computed transposed, S^T = K Q^T, with the query
 * rows in the vector lanes: Q is staged transposed once per work-group (amortised over every key
 * block) and each key element is a broadcast. The softmax then works on RW rows at once: maxima,
 * sums and rescale factors are lane-wise, with no horizontal reductions and one vector exp2 for RW
 * rows' rescale. P.V takes the output columns VW at a time, broadcasting p. K and V blocks are
 * staged as fp32 rows of pitch D_PAD in every dtype (cpu_io.cl: 16-wide copies and conversions, so
 * 16-bit storage converts each element once per work-group and costs no more than fp32): read in
 * place, rows 4 KiB apart (B, S, H, D with H x d = 1024) fall into the same few L1 sets, and the
 * blocks every score block re-reads kept leaving L1 (staged: +8 % at d = 64). Products are
 * register-blocked: KJ keys x SG row vectors of scores, RM rows x CG column vectors of the
 * accumulator. The staged tiles are sized for the L1/L2 caches; the running output stays in the
 * O tile between key blocks. Everything else is fa2.cl's algorithm and common.cl's pieces: the
 * same block skipping (per score block of SR rows here), masks, score transforms, HALF_UNITS, GQA,
 * varlen, LSE and dispatch order. fp8 inputs (the fa2_cpu_fp8 program) are staged dequantised, each
 * row times its descale (fp8_descales.cl), as the portable fa2's fp8 tiles are, and O is stored as
 * OUT_DTYPE; V transposed is left to the portable fa2. */

#ifndef FP8_PARAMS /* fp8 programs: the descales (fp8_descales.cl), after the argument block */
#define FP8_PARAMS
#endif
#if FP8 && V_TRANSPOSED
#error "fa2_cpu reads V as (B, Nk, H_kv, d) rows; a transposed V runs on the portable fa2"
#endif

/* Tile defaults, vector macros, prefetch_rows, the score tile and the P.V key loop: cpu_blocks.cl. */
#if BR % RW != 0 || BR % SR != 0 || SR % RM != 0 || BC % KJ != 0 || D_PAD % VW != 0 || DV % CG != 0
#error "fa2_cpu tiles must satisfy BR % min(BR, VW) == 0, BR % RM == 0, BC % 4 == 0, D_PAD % VW == 0 and (D_PAD / VW) % CG == 0"
#endif

/* pt[j][r] = q(r0 + r) . k(j) for the SR rows of a score block and every key of the block: KJ keys
 * at a time, each Q^T vector load feeding KJ FMAs and each key element (a broadcast) SG. Keys past
 * the end (the last block) are staged zeros; final_score hides them. */
inline void block_scores(RVEC_T pt[BC][SG], __local const float* qt, __local const float* ks, int r0) {
  for (int j0 = 0; j0 < BC; j0 += KJ) {
    CPU_SCORE_TILE(s, qt, ks, j0, r0);
#pragma unroll
    for (int jj = 0; jj < KJ; ++jj)
#pragma unroll
      for (int g = 0; g < SG; ++g) pt[j0 + jj][g] = s[jj][g];
  }
}

#if SOFTCAP || ALIBI
__constant float kLanes[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};

/* final_score on a score block that holds no key out of band (block_crosses_band false), in a
 * program with a softcap or ALiBi: the softcap's tanh and ALiBi's distance (row + shift - key in
 * floats, exact below 2^24) RW rows a vector, then any mask or bias row by row along its keys
 * (contiguous loads). The same numbers as common.cl's final_score, whose softcap and ALiBi steps
 * this restates lane-wise (change them together), but for the vector tanh's last bits; final_score
 * entry by entry took 1.4x the time with a softcap, causal, on a 2-core PoCL. */
inline void transform_inside_band(RVEC_T pt[BC][SG], int row0, int k0, const SeqView* sv, const AttnArgs* a,
                                  __global const MASK_T* mask) {
  const RVEC_T lanes = RVLOAD(kLanes);
  for (int j = 0; j < BC; ++j)
    for (int g = 0; g < SG; ++g) {
      RVEC_T x = pt[j][g];
#if SOFTCAP
      x = select(sv->softcap * tanh(x / sv->softcap), x, fabs(x) < sv->softcap * SOFTCAP_LINEAR_BELOW);
#endif
#if ALIBI
      x -= sv->slope * fabs(lanes + (float)(row0 + g * RW + SV_SHIFT(sv, a) - k0 - j));
#endif
      pt[j][g] = x;
    }
#if MASK_KIND
  float* ps = (float*)pt;
  for (int r = 0; r < SR; ++r)
    for (int j = 0; j < BC; ++j) {
      float* x = ps + j * SR + r;
      *x = mask_hides(row0 + r, k0 + j, sv, a, mask) ? NEG_INF : bias_shift(*x, row0 + r, k0 + j, sv, a, mask);
    }
#endif
}
#endif

/* Online softmax of a score block, RW rows per vector: final_score() where the block needs it
 * (transform_inside_band's vectors where no key is out of band), the new running maxima,
 * pt <- 2^(s - m) in place (a row whose max is -inf gets zeros, never NaN), the running sums, and
 * alpha: the factor each row's accumulator must be rescaled by (softmax_rescale, lane-wise). m, l:
 * the block's rows' running max and sum. */
inline void block_softmax(RVEC_T pt[BC][SG], float* m, float* l, float* alpha, int row0, int k0, bool masked,
                          const SeqView* sv, const AttnArgs* a, __global const MASK_T* mask) {
  float* ps = (float*)pt;
#if SOFTCAP || ALIBI /* (a bias alone measured 1.05-1.10x slower this way; a boolean mask alone was not timed) */
  if (masked && !block_crosses_band(row0, SR, k0, BC, sv, a))
    transform_inside_band(pt, row0, k0, sv, a, mask);
  else
#endif
  if (masked)
    for (int j = 0; j < BC; ++j)
      for (int r = 0; r < SR; ++r) ps[j * SR + r] = final_score(ps[j * SR + r], row0 + r, k0 + j, sv, a, mask);
  for (int g = 0; g < SG; ++g) {
    /* KJ (4) independent chains: one chain of fmax (a compare, an unordered compare and a blend
     * per step) was a third of the softmax's samples at d = 64 (perf annotate), latency-bound */
    RVEC_T mxs[KJ];
#pragma unroll
    for (int jj = 0; jj < KJ; ++jj) mxs[jj] = (RVEC_T)(NEG_INF);
    for (int j = 0; j < BC; j += KJ)
#pragma unroll
      for (int jj = 0; jj < KJ; ++jj) mxs[jj] = fmax(mxs[jj], pt[j + jj][g]);
    const RVEC_T mx = fmax(fmax(mxs[0], mxs[1]), fmax(mxs[2], mxs[3]));
    const RVEC_T m_old = RVLOAD(m + g * RW), m_new = fmax(m_old, mx);
    const CAT(int, RW) none = m_new == (RVEC_T)(NEG_INF);
    const RVEC_T al = select(EXP2_OF(m_old - m_new), (RVEC_T)(1.0f), none);
    const RVEC_T base = select(m_new, (RVEC_T)(0.0f), none);
    RVEC_T sum = (RVEC_T)(0.0f);
    for (int j = 0; j < BC; ++j) {
      const RVEC_T e = exp2_of_score(pt[j][g] - base);
      pt[j][g] = e;
      sum += e;
    }
    RVSTORE(RVLOAD(l + g * RW) * al + sum, l + g * RW);
    RVSTORE(m_new, m + g * RW);
    RVSTORE(al, alpha + g * RW);
  }
}

/* O(r0 + r) <- alpha[r] O(r0 + r) + sum_j p[j][r] V(j) for the SR rows of a score block over keys
 * [0, n): RM rows x CG column vectors at a time, each V vector load feeding RM FMAs. `masked` (a
 * constant at each call site): hidden keys (p = 0) add nothing even where V holds NaN or Inf,
 * which 0 * V would spread. */
inline void block_pv(__local float* acc_t, const float* ps, const float alpha[SR], __local const float* vs, int r0,
                     int n, const bool masked) {
  for (int rr = 0; rr < SR; rr += RM)
    for (int cg0 = 0; cg0 < DV; cg0 += CG) {
      VEC_T acc[RM][CG];
#pragma unroll
      for (int r = 0; r < RM; ++r)
#pragma unroll
        for (int g = 0; g < CG; ++g)
          acc[r][g] = VLOAD(acc_t + (r0 + rr + r) * D_PAD + (cg0 + g) * VW) * alpha[rr + r];
      CPU_PV_KEYS(acc, ps, SR, rr, vs, cg0, n, masked);
#pragma unroll
      for (int r = 0; r < RM; ++r)
#pragma unroll
        for (int g = 0; g < CG; ++g) VSTORE(acc[r][g], acc_t + (r0 + rr + r) * D_PAD + (cg0 + g) * VW);
    }
}

__kernel __attribute__((reqd_work_group_size(1, 1, 1)))
void fa2_cpu_forward(__global const STORAGE_T* q, __global const STORAGE_T* k, __global const STORAGE_T* v,
                     __global OUT_STORAGE_T* o, __global float* lse, VARIANT_PARAMS, const AttnArgs args FP8_PARAMS) {
  __local float qt[D_PAD * BR];    /* scaled Q block, transposed */
  __local float acc_t[BR * D_PAD]; /* unnormalised O block */
  __local float ks[BC * D_PAD]; /* K block as fp32 rows */
  __local float vs[BC * D_PAD]; /* V block as fp32 rows */
  float m[BR], l[BR], alpha[SR];
  RVEC_T pt[BC][SG]; /* the score block, transposed: key j's SR rows as SG vectors */

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
#if FP8
  const long q_first = first_descale(a, b, QUANT_BLOCK ? h : hk, a->heads, a->seqlen_q);
  const long kv_first = first_descale(a, b, hk, a->heads_kv, a->seqlen_k);
#define KV_DESCALE(d, row) ROW_DESCALE(d, kv_first, row)
#else
#define KV_DESCALE(d, row) 1.0f
#endif
  cpu_stage_rows_t(qt, q, q_base, a->q_seq_stride, q0, BR, SV_NQ(&sv, a), Q_SCALE(a) CPU_ROW_DESCALE_ARGS(q_descale, q_first));
  for (int i = 0; i < BR * D_PAD; ++i) acc_t[i] = 0.0f;
  for (int r = 0; r < BR; ++r) {
    m[r] = NEG_INF;
    l[r] = 0.0f;
  }

  /* main loop: each key block staged (16-bit) once, then every score block that sees it */
  int kb_begin, kb_end;
  key_block_range(q0, q_end, BC, &sv, a, &kb_begin, &kb_end);
  for (int kb = kb_begin; kb < kb_end; ++kb) {
    const int k0 = kb * BC, n = min(BC, SV_NK(&sv, a) - k0);
    for (int j = 0; j < BC; ++j) {
      const bool inside = k0 + j < SV_NK(&sv, a);
      /* (a descale only for rows inside: a block's last descale may be the tensor's last) */
      const float k_mul = inside ? KV_DESCALE(k_descale, k0 + j) : 0.0f, v_mul = inside ? KV_DESCALE(v_descale, k0 + j) : 0.0f;
      cpu_stage_row(ks + j * D_PAD, k, k_base + (long)(k0 + j) * a->k_seq_stride, inside, k_mul);
      cpu_stage_row(vs + j * D_PAD, v, v_base + (long)(k0 + j) * a->v_seq_stride, inside, v_mul);
    }
#if KV_PREFETCH
    if (kb + 1 < kb_end) {
      const int n_next = min(BC, SV_NK(&sv, a) - k0 - BC);
      prefetch_rows(k, k_base, a->k_seq_stride, k0 + BC, n_next);
      prefetch_rows(v, v_base, a->v_seq_stride, k0 + BC, n_next);
    }
#endif
    for (int r0 = 0; r0 < BR && q0 + r0 < q_end; r0 += SR) {
      int rb_begin, rb_end; /* whole score blocks above the diagonal or outside the window skip it */
      key_block_range(q0 + r0, min(q0 + r0 + SR, q_end), BC, &sv, a, &rb_begin, &rb_end);
      if (kb < rb_begin || kb >= rb_end) continue;
      const bool masked = block_needs_mask(q0 + r0, SR, k0, BC, &sv, a);
      block_scores(pt, qt, ks, r0);
      block_softmax(pt, m + r0, l + r0, alpha, q0 + r0, k0, masked, &sv, a, mask);
      if (masked) /* two specialised copies: the unmasked one pays nothing */
        block_pv(acc_t, (const float*)pt, alpha, vs, r0, n, true);
      else
        block_pv(acc_t, (const float*)pt, alpha, vs, r0, n, false);
    }
  }

  /* epilogue */
  for (int r = 0; q0 + r < q_end; ++r) {
    const int row = q0 + r;
    const float inv = l[r] > 0.0f ? 1.0f / l[r] : 0.0f;
    cpu_store_row(o, o_base + (long)row * a->o_seq_stride, acc_t + r * D_PAD, inv);
    if (a->write_lse) lse[LSE_INDEX(a, &sv, b, h, row)] = row_lse(m[r], l[r]);
  }
}
