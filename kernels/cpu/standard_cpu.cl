/* standard_cpu.cl: the `standard` baseline (S = scale QK^T materialised, a row softmax turning it
 * into P, O = P V) shaped for CPUs (PoCL), as fa2_cpu.cl is for fa2: every work-group is one
 * work-item, so PoCL runs it as straight-line code on one core with the vectors the code spells.
 * Three kernels, three passes over the workspace, on a grid of (row block, head, batch):
 *  - standard_cpu_scores: the block's BR query rows, scaled and transposed once (Q^T), against
 *    every key block it can see, staged as fp32 rows: S^T = K Q^T with the query rows in the
 *    vector lanes (each key element a broadcast), written to the workspace as the row block's
 *    panel S[j][r] (key-major, BR rows contiguous: whole vector stores, one stream per work-item),
 *    with final_score() where a block needs it and each row's max taken on the way.
 *  - standard_cpu_softmax: P = 2^(S - max) with one exp per score, the row sums lane-wise while
 *    the panel streams by, then P *= 1 / sum (the panel is then in the core's L2) and the LSE.
 *  - standard_cpu_pv: O = P V, V staged block by block as fp32 rows, RM rows x CG column vectors
 *    per register block (the p of a row a broadcast from the panel).
 * Scores are in fa2's units (SCORE_UNIT: base 2, or half natural units with HALF_UNITS), so the
 * softmax needs no multiply per score. Causal and window calls visit only the key blocks some row
 * of the block can see, in all three kernels (the panel's other blocks are never written nor
 * read): the counted FLOPs are those done. Layout of the workspace: B*H*QB panels of NKP x BR
 * floats (QB row blocks, NKP the keys rounded up to BC), then each padded row's max. */

/* Tile defaults, vector macros, prefetch_rows, the score tile and the P.V key loop: cpu_blocks.cl. */
#if BR % RW != 0 || BR % SR != 0 || BR % RM != 0 || BC % KJ != 0 || D_PAD % VW != 0 || DV % CG != 0
#error "standard_cpu tiles must satisfy BR % min(BR, VW) == 0, BR % RM == 0, BC % 4 == 0, D_PAD % VW == 0 and (D_PAD / VW) % CG == 0"
#endif

/* Keys of a panel: rounded up to whole staged blocks, so a block's stores need no guard. */
#define PANEL_KEYS(a) (((a)->seqlen_k + BC - 1) / BC * BC)

/* Where (batch b, head h, row block qb)'s panel starts, and its rows' maxima. */
inline long panel_base(const AttnArgs* a, int b, int h, int qb) {
  const long blocks = (a->seqlen_q + BR - 1) / BR;
  return (((long)b * a->heads + h) * blocks + qb) * PANEL_KEYS(a) * BR;
}
inline long max_base(const AttnArgs* a, int b, int h, int qb) {
  const long blocks = (a->seqlen_q + BR - 1) / BR;
  return (long)a->batch * a->heads * blocks * PANEL_KEYS(a) * BR + (((long)b * a->heads + h) * blocks + qb) * BR;
}

/* VW consecutive elements of a storage tensor as fp32 (the staging copies' vector loads). */
#if DTYPE == 0
#define LOAD_VEC(p, i) VLOAD((p) + (i))
#elif DTYPE == 1
#define LOAD_VEC(p, i) CAT(vload_half, VW)(0, (p) + (i))
#elif DTYPE == 2 /* bf16: the high half of an fp32 */
#define LOAD_VEC(p, i) CAT(as_float, VW)(CAT(convert_uint, VW)(CAT(vload, VW)(0, (p) + (i))) << 16)
#else
#error "standard_cpu takes fp32, fp16 and bf16 storage (plan_standard_cpu.cpp)"
#endif

/* Rows [row0, row0 + n) of a (seq, d) slice into dst as fp32 rows of pitch D_PAD; rows at or past
 * `valid` and columns past HEAD_DIM read 0. Whole vectors where the row has them: element by
 * element, at 64 rows a panel, the copies cost a quarter of the products' time. */
inline void stage_rows(__local float* dst, __global const STORAGE_T* src, long base, long seq_stride, int row0, int n,
                       int valid) {
  for (int r = 0; r < n; ++r) {
    __local float* row = dst + r * D_PAD;
    int c = 0;
    if (row0 + r < valid) {
      const long at = base + (long)(row0 + r) * seq_stride;
      for (; c + VW <= HEAD_DIM; c += VW) VSTORE(LOAD_VEC(src, at + c), row + c);
      for (; c < HEAD_DIM; ++c) row[c] = LOAD_ELEM(src, at + c);
    }
    for (; c < D_PAD; ++c) row[c] = 0.0f;
  }
}

/* On the host CPU (PoCL: __x86_64__, __aarch64__) the next K or V block is prefetched into L2
 * while this one is used: rows 2-4 KiB apart defeat the hardware prefetchers (fa2_cpu.cl measured
 * 75 % of its staging time waiting). OpenCL's prefetch() is a no-op in PoCL 3.1 and oclgrind
 * (spir) has no such builtin, hence the gate. */
#if KV_PREFETCH /* prefetch_rows, and the gate: cpu_blocks.cl */
/* The next panel block (BC keys x BR rows, contiguous) into L2 while P.V reads this one: its P
 * loads, 256 bytes apart, otherwise waited on memory (perf annotate: 30 % of block_pv's samples on
 * the first p load per key). */
inline void prefetch_panel(__global const float* p) {
  for (int i = 0; i < BC * BR; i += 16) __builtin_prefetch((const void*)((ulong)(p + i)), 0, 2);
}
#endif

/* The row block's grid coordinates and extent; false when VARLEN puts it past its sequence. */
typedef struct {
  int qb, h, b, q0, q_end, kb_begin, kb_end;
} RowBlock;

inline bool row_block(const AttnArgs* a, const SeqView* sv, RowBlock* rb) {
  rb->q0 = rb->qb * BR;
  if (rb->q0 >= SV_NQ(sv, a)) return false;
  rb->q_end = min(rb->q0 + BR, SV_NQ(sv, a));
  key_block_range(rb->q0, rb->q_end, BC, sv, a, &rb->kb_begin, &rb->kb_end);
  return true;
}

/* out[j][r0 + r] (panel pitch BR) = q(r0 + r) . k(j) for the SR rows of a score block and the BC
 * keys of the staged block: KJ keys x SG row vectors per register block, each Q^T vector load
 * feeding KJ FMAs and each key element (a broadcast) SG. With track (a constant at each call),
 * mx (the rows' running maxima, lane-wise) takes the new scores too. */
inline void block_scores(__global float* out, __local const float* qt, __local const float* ks, int r0, float* mx,
                         const bool track) {
  RVEC_T m[SG];
#pragma unroll
  for (int g = 0; g < SG; ++g) m[g] = RVLOAD(mx + g * RW);
  for (int j0 = 0; j0 < BC; j0 += KJ) {
    CPU_SCORE_TILE(s, qt, ks, j0, r0);
#pragma unroll
    for (int jj = 0; jj < KJ; ++jj)
#pragma unroll
      for (int g = 0; g < SG; ++g) {
        RVSTORE(s[jj][g], out + (j0 + jj) * BR + r0 + g * RW);
        if (track) m[g] = fmax(m[g], s[jj][g]);
      }
  }
  if (track)
#pragma unroll
    for (int g = 0; g < SG; ++g) RVSTORE(m[g], mx + g * RW);
}

__kernel __attribute__((reqd_work_group_size(1, 1, 1)))
void standard_cpu_scores(__global const STORAGE_T* q, __global const STORAGE_T* k, __global float* s, VARIANT_PARAMS,
                         const AttnArgs args) {
  __local float qt[D_PAD * BR]; /* the scaled Q block, transposed */
  __local float ks[BC * D_PAD]; /* the K block as fp32 rows */
  float mx[BR];                 /* each row's max so far */
  const AttnArgs* a = &args;
  RowBlock rb;
  block_coordinates(a, &rb.qb, &rb.h, &rb.b);
  const SeqView sv = seq_view(a, rb.b, rb.h, SCORE_UNIT, cu_seqlens_q, cu_seqlens_k, alibi_slopes);
  if (!row_block(a, &sv, &rb)) return;
  const int nk = SV_NK(&sv, a), hk = KV_HEAD(a, rb.h);
  const long q_base = SEQ_BASE(a, q, rb.b, rb.h, sv.q_start), k_base = SEQ_BASE(a, k, rb.b, hk, sv.k_start);
  __global float* panel = s + panel_base(a, rb.b, rb.h, rb.qb);

  for (int c = 0; c < HEAD_DIM; ++c) {
#pragma clang loop vectorize(disable) /* vectorised, the strided loads become gathers */
    for (int r = 0; r < BR; ++r)
      qt[c * BR + r] = rb.q0 + r < rb.q_end ? LOAD_ELEM(q, q_base + (long)(rb.q0 + r) * a->q_seq_stride + c) * Q_SCALE(a)
                                            : 0.0f;
  }
  for (int r = 0; r < BR; ++r) mx[r] = NEG_INF;

  for (int kb = rb.kb_begin; kb < rb.kb_end; ++kb) {
    const int k0 = kb * BC;
    stage_rows(ks, k, k_base, a->k_seq_stride, k0, BC, nk);
#if KV_PREFETCH
    if (kb + 1 < rb.kb_end) prefetch_rows(k, k_base, a->k_seq_stride, k0 + BC, min(BC, nk - k0 - BC));
#endif
    __global float* out = panel + (long)k0 * BR;
    for (int r0 = 0; r0 < BR; r0 += SR) {
      int sb_begin, sb_end; /* a score block that sees none of these keys: all hidden */
      key_block_range(rb.q0 + r0, min(rb.q0 + r0 + SR, rb.q_end), BC, &sv, a, &sb_begin, &sb_end);
      if (rb.q0 + r0 >= rb.q_end || kb < sb_begin || kb >= sb_end) {
        for (int j = 0; j < BC; ++j)
          for (int g = 0; g < SG; ++g) RVSTORE((RVEC_T)(NEG_INF), out + j * BR + r0 + g * RW);
      } else if (block_needs_mask(rb.q0 + r0, SR, k0, BC, &sv, a)) {
        block_scores(out, qt, ks, r0, mx + r0, false);
        for (int j = 0; j < BC; ++j)
          for (int r = 0; r < SR; ++r) {
            const float x = final_score(out[j * BR + r0 + r], rb.q0 + r0 + r, k0 + j, &sv, a, mask);
            out[j * BR + r0 + r] = x;
            mx[r0 + r] = fmax(mx[r0 + r], x);
          }
      } else {
        block_scores(out, qt, ks, r0, mx + r0, true);
      }
    }
  }
  __global float* m_out = s + max_base(a, rb.b, rb.h, rb.qb);
  for (int r = 0; r < BR; ++r) m_out[r] = mx[r];
}

/* The row block's panel, over the key blocks it saw: P = 2^(S - max) (a row whose max is -inf,
 * every key hidden, gets zeros, never NaN), the sums lane-wise, then P /= sum and LSE. */
__kernel __attribute__((reqd_work_group_size(1, 1, 1)))
void standard_cpu_softmax(__global float* s, __global float* lse, VARIANT_PARAMS, const AttnArgs args) {
  const AttnArgs* a = &args;
  RowBlock rb;
  block_coordinates(a, &rb.qb, &rb.h, &rb.b);
  const SeqView sv = seq_view(a, rb.b, rb.h, SCORE_UNIT, cu_seqlens_q, cu_seqlens_k, alibi_slopes);
  if (!row_block(a, &sv, &rb)) return;
  __global float* panel = s + panel_base(a, rb.b, rb.h, rb.qb);
  __global const float* mx = s + max_base(a, rb.b, rb.h, rb.qb);
  const long j_begin = (long)rb.kb_begin * BC, j_end = (long)rb.kb_end * BC;

  for (int r0 = 0; r0 < BR; r0 += SR) {
    RVEC_T base[SG], sum[SG];
#pragma unroll
    for (int g = 0; g < SG; ++g) {
      const RVEC_T m = RVLOAD(mx + r0 + g * RW);
      base[g] = select(m, (RVEC_T)(0.0f), m == (RVEC_T)(NEG_INF));
      sum[g] = (RVEC_T)(0.0f);
    }
    for (long j = j_begin; j < j_end; ++j) {
#pragma unroll
      for (int g = 0; g < SG; ++g) {
        __global float* p = panel + j * BR + r0 + g * RW;
        const RVEC_T e = exp2_of_score(RVLOAD(p) - base[g]);
        RVSTORE(e, p);
        sum[g] += e;
      }
    }
    RVEC_T inv[SG];
#pragma unroll
    for (int g = 0; g < SG; ++g) inv[g] = select((RVEC_T)(0.0f), (RVEC_T)(1.0f) / sum[g], sum[g] > (RVEC_T)(0.0f));
    for (long j = j_begin; j < j_end; ++j)
#pragma unroll
      for (int g = 0; g < SG; ++g) {
        __global float* p = panel + j * BR + r0 + g * RW;
        RVSTORE(RVLOAD(p) * inv[g], p);
      }
    if (a->write_lse) {
      float sums[SR];
#pragma unroll
      for (int g = 0; g < SG; ++g) RVSTORE(sum[g], sums + g * RW);
      for (int r = 0; r < SR && rb.q0 + r0 + r < rb.q_end; ++r)
        lse[LSE_INDEX(a, &sv, rb.b, rb.h, rb.q0 + r0 + r)] = row_lse(mx[r0 + r], sums[r]);
    }
  }
}

/* o_t[r0 + r] += sum_j p[j][r0 + r] V(j) for the BR rows over keys [0, n) of the staged block:
 * RM rows x CG column vectors at a time, each V vector load feeding RM FMAs. `masked` (a constant
 * at each call site): hidden keys (p = 0) add nothing even where V holds NaN or Inf, which 0 * V
 * would spread. */
inline void block_pv(__local float* o_t, __global const float* p, __local const float* vs, int n, const bool masked) {
  for (int rr = 0; rr < BR; rr += RM)
    for (int cg0 = 0; cg0 < DV; cg0 += CG) {
      VEC_T acc[RM][CG];
#pragma unroll
      for (int r = 0; r < RM; ++r)
#pragma unroll
        for (int g = 0; g < CG; ++g) acc[r][g] = VLOAD(o_t + (rr + r) * D_PAD + (cg0 + g) * VW);
      CPU_PV_KEYS(acc, p, BR, rr, vs, cg0, n, masked);
#pragma unroll
      for (int r = 0; r < RM; ++r)
#pragma unroll
        for (int g = 0; g < CG; ++g) VSTORE(acc[r][g], o_t + (rr + r) * D_PAD + (cg0 + g) * VW);
    }
}

__kernel __attribute__((reqd_work_group_size(1, 1, 1)))
void standard_cpu_pv(__global const float* s, __global const STORAGE_T* v, __global STORAGE_T* o, VARIANT_PARAMS,
                     const AttnArgs args) {
  __local float o_t[BR * D_PAD]; /* the O block */
  __local float vs[BC * D_PAD];  /* the V block as fp32 rows */
  const AttnArgs* a = &args;
  RowBlock rb;
  block_coordinates(a, &rb.qb, &rb.h, &rb.b);
  const SeqView sv = seq_view(a, rb.b, rb.h, SCORE_UNIT, cu_seqlens_q, cu_seqlens_k, alibi_slopes);
  if (!row_block(a, &sv, &rb)) return;
  const int nk = SV_NK(&sv, a), hk = KV_HEAD(a, rb.h);
  const long v_base = SEQ_BASE(a, v, rb.b, hk, sv.k_start), o_base = SEQ_BASE(a, o, rb.b, rb.h, sv.q_start);
  __global const float* panel = s + panel_base(a, rb.b, rb.h, rb.qb);

  for (int i = 0; i < BR * D_PAD; ++i) o_t[i] = 0.0f;
  for (int kb = rb.kb_begin; kb < rb.kb_end; ++kb) {
    const int k0 = kb * BC, n = min(BC, nk - k0);
    stage_rows(vs, v, v_base, a->v_seq_stride, k0, BC, nk);
#if KV_PREFETCH
    if (kb + 1 < rb.kb_end) {
      prefetch_rows(v, v_base, a->v_seq_stride, k0 + BC, min(BC, nk - k0 - BC));
      prefetch_panel(panel + (long)(k0 + BC) * BR);
    }
#endif
    if (block_needs_mask(rb.q0, BR, k0, BC, &sv, a)) /* two specialised copies: the plain one pays nothing */
      block_pv(o_t, panel + (long)k0 * BR, vs, n, true);
    else
      block_pv(o_t, panel + (long)k0 * BR, vs, n, false);
  }
  for (int r = 0; rb.q0 + r < rb.q_end; ++r) {
    const long at = o_base + (long)(rb.q0 + r) * a->o_seq_stride;
    for (int c = 0; c < HEAD_DIM; ++c) STORE_ELEM(o, at + c, o_t[r * D_PAD + c]);
  }
}
