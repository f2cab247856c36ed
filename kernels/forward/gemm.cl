/* gemm.cl: the register-blocked tiled product of the standard path (and of anything else that
 * multiplies two matrices staged in __local). A work-group of GEMM_WG_X x GEMM_WG_Y work-items
 * computes a GEMM_BM x GEMM_BN block of C = A B; work-item (lx, ly) owns rows ly*RM .. ly*RM+RM-1
 * and the RN consecutive columns lx*RN .., one vector, so each step of the contraction is one
 * vector load of B and RM scalar-times-vector FMAs (RM*RN outputs per RM+1 loads). The caller
 * stages a GEMM_KP-long panel of A transposed (a_tile[t][row]) and of B (b_tile[t][col]) between
 * barriers and calls gemm_panel; the sizes come from the planner as -D options. Explicit vectors
 * are what PoCL's CPU device needs (it does not vectorise these loops across work-items); on GPUs
 * the same vector loads are 128-bit __local reads. */

#ifndef GEMM_WG_X
#define GEMM_WG_X 16 /* work-items along C's columns */
#endif
#ifndef GEMM_WG_Y
#define GEMM_WG_Y 16 /* work-items along C's rows */
#endif
#ifndef GEMM_RM
#define GEMM_RM 4 /* rows of C per work-item */
#endif
#ifndef GEMM_RN
#define GEMM_RN 4 /* columns of C per work-item: one vector, 1, 2, 4, 8 or 16 */
#endif
#ifndef GEMM_KP
#define GEMM_KP 16 /* contraction panel staged in __local per step */
#endif
#ifndef GEMM_PAD
#define GEMM_PAD 4 /* extra floats per __local row (keeps vector alignment, spreads banks) */
#endif
#define GEMM_WG (GEMM_WG_X * GEMM_WG_Y)
#define GEMM_BM (GEMM_WG_Y * GEMM_RM)
#define GEMM_BN (GEMM_WG_X * GEMM_RN)
#ifndef GEMM_A_T
#define GEMM_A_T 1 /* 1: A panels stored transposed, a_tile[t][row] (GPUs: a row block is one vector
                      read); 0: as rows, a_tile[row][t] (CPUs: staging is vector copies, the FMAs
                      broadcast from memory at any address) */
#endif
#if GEMM_A_T
#define GEMM_A_PITCH (GEMM_BM + GEMM_PAD)
#define GEMM_A_AT(t, r) ((t) * GEMM_A_PITCH + (r))
#define GEMM_STAGE_A GEMM_STAGE_T
#else
#define GEMM_A_PITCH (GEMM_KP + GEMM_PAD)
#define GEMM_A_AT(t, r) ((r) * GEMM_A_PITCH + (t))
#define GEMM_STAGE_A GEMM_STAGE_ROWS
#endif
#define GEMM_B_PITCH GEMM_BN /* b_tile is declared as vectors: aligned vector reads, no pad */

#define GEMM_A_TILE (GEMM_A_T ? GEMM_KP * GEMM_A_PITCH : GEMM_BM * GEMM_A_PITCH) /* floats of one A panel */
#define GEMM_B_TILE (GEMM_KP * GEMM_B_PITCH / GEMM_RN) /* vectors of one staged B panel */

/* Panel `step` of the contraction uses buffer step & 1 of a_tiles/b_tiles: the next panel is
 * staged into the other buffer, so one barrier per panel suffices (the barrier after staging
 * panel i+1 is passed only when every work-item has finished computing panel i-1 from that
 * buffer); the per-step pointers also keep PoCL from hoisting every FMA's operand address out of
 * the loop into per-work-item memory. */
#define GEMM_BUFFERS(step)                                               \
  __local float* a_tile = a_tiles + ((step) & 1) * GEMM_A_TILE;          \
  __local GEMM_VEC* b_tile = b_tiles + ((step) & 1) * GEMM_B_TILE

#define CAT_(x, y) x##y
#define CAT(x, y) CAT_(x, y)

#if GEMM_RN == 1
#define GEMM_VEC float
#define GEMM_VLOAD(p) (*(p))
#define GEMM_VSTORE(x, p) (*(p) = (x))
#else
#define GEMM_VEC CAT(float, GEMM_RN)
#define GEMM_VLOAD(p) CAT(vload, GEMM_RN)(0, p)
#define GEMM_VSTORE(x, p) CAT(vstore, GEMM_RN)(x, 0, p)
#endif

/* Four consecutive elements of a storage tensor (LOAD4, beside common.cl's LOAD_ELEM) or of an fp32
 * array (F32_LOAD4, F32_LOAD1) as fp32: the stagers' loaders. */
#define F32_LOAD4(p, i) vload4(0, (p) + (i))
#define F32_LOAD1(p, i) ((p)[(i)])
#if DTYPE == 0
#define LOAD4(p, i) vload4(0, (p) + (i))
#elif DTYPE == 1
#define LOAD4(p, i) vload_half4(0, (p) + (i))
#elif DTYPE == 2
#define LOAD4(p, i) as_float4(convert_uint4(vload4(0, (p) + (i))) << 16)
#else
#define LOAD4(p, i) (float4)(LOAD_ELEM(p, i), LOAD_ELEM(p, (i) + 1), LOAD_ELEM(p, (i) + 2), LOAD_ELEM(p, (i) + 3))
#endif

/* Stages rows [0, rows) x columns [col0, col0 + GEMM_KP) of a row-major matrix (element (r, c) at
 * base + r * stride + c, valid where r < valid_rows and c < valid_cols; zero elsewhere) transposed
 * into tile[c - col0][r], four columns per load L4 (L1 one element, at the edge). Work-items split
 * the panel's chunks. */
#define GEMM_STAGE_T(tile, pitch, rows, src, base, stride, valid_rows, col0, valid_cols, lid, L4, L1)                     \
  for (int e = (lid); e < (rows) * (GEMM_KP / 4); e += GEMM_WG) {                                             \
    const int r_ = e / (GEMM_KP / 4), t_ = e % (GEMM_KP / 4) * 4, c_ = (col0) + t_;                           \
    const long at_ = (base) + (long)r_ * (stride) + c_;                                                       \
    float4 x_ = (float4)(0.0f);                                                                               \
    if (r_ < (valid_rows) && c_ + 4 <= (valid_cols)) {                                                        \
      x_ = L4(src, at_);                                                                                   \
    } else if (r_ < (valid_rows)) {                                                                           \
      if (c_ < (valid_cols)) x_.s0 = L1(src, at_);                                                     \
      if (c_ + 1 < (valid_cols)) x_.s1 = L1(src, at_ + 1);                                             \
      if (c_ + 2 < (valid_cols)) x_.s2 = L1(src, at_ + 2);                                             \
    }                                                                                                         \
    tile[t_ * (pitch) + r_] = x_.s0;                                                                          \
    tile[(t_ + 1) * (pitch) + r_] = x_.s1;                                                                    \
    tile[(t_ + 2) * (pitch) + r_] = x_.s2;                                                                    \
    tile[(t_ + 3) * (pitch) + r_] = x_.s3;                                                                    \
  }

/* GEMM_STAGE_T without the transpose: the panel as rows, tile[r][c - col0]. */
#define GEMM_STAGE_ROWS(tile, pitch, rows, src, base, stride, valid_rows, col0, valid_cols, lid, L4, L1)                     \
  for (int e = (lid); e < (rows) * (GEMM_KP / 4); e += GEMM_WG) {                                             \
    const int r_ = e / (GEMM_KP / 4), t_ = e % (GEMM_KP / 4) * 4, c_ = (col0) + t_;                           \
    const long at_ = (base) + (long)r_ * (stride) + c_;                                                       \
    float4 x_ = (float4)(0.0f);                                                                               \
    if (r_ < (valid_rows) && c_ + 4 <= (valid_cols)) {                                                        \
      x_ = L4(src, at_);                                                                                   \
    } else if (r_ < (valid_rows)) {                                                                           \
      if (c_ < (valid_cols)) x_.s0 = L1(src, at_);                                                     \
      if (c_ + 1 < (valid_cols)) x_.s1 = L1(src, at_ + 1);                                             \
      if (c_ + 2 < (valid_cols)) x_.s2 = L1(src, at_ + 2);                                             \
    }                                                                                                         \
    vstore4(x_, 0, tile + r_ * (pitch) + t_);                                                                 \
  }

/* Stages rows [row0, row0 + GEMM_KP) x columns [0, cols) of a row-major matrix (as above, valid
 * where row < valid_rows and column < valid_cols) as they are into tile[row - row0][c]. */
#define GEMM_STAGE(tile, pitch, cols, src, base, stride, row0, valid_rows, valid_cols, lid, L4, L1)                       \
  for (int e = (lid); e < GEMM_KP * ((cols) / 4); e += GEMM_WG) {                                             \
    const int t_ = e / ((cols) / 4), c_ = e % ((cols) / 4) * 4;                                               \
    const long at_ = (base) + (long)((row0) + t_) * (stride) + c_;                                            \
    float4 x_ = (float4)(0.0f);                                                                               \
    if ((row0) + t_ < (valid_rows) && c_ + 4 <= (valid_cols)) {                                               \
      x_ = L4(src, at_);                                                                                   \
    } else if ((row0) + t_ < (valid_rows)) {                                                                  \
      if (c_ < (valid_cols)) x_.s0 = L1(src, at_);                                                     \
      if (c_ + 1 < (valid_cols)) x_.s1 = L1(src, at_ + 1);                                             \
      if (c_ + 2 < (valid_cols)) x_.s2 = L1(src, at_ + 2);                                             \
    }                                                                                                         \
    vstore4(x_, 0, tile + t_ * (pitch) + c_);                                                                 \
  }

inline __attribute__((always_inline)) void gemm_zero(GEMM_VEC* acc) {
#pragma unroll
  for (int r = 0; r < GEMM_RM; ++r) acc[r] = (GEMM_VEC)(0.0f);
}

/* acc[r] += sum_t A[row0 + r][t] * B[t][col0 .. col0 + RN) over one staged panel, row0 = ly * RM and
 * col0 = lx * RN. The ids are read here rather than passed: PoCL keeps values computed before a
 * barrier in per-work-item memory, which turned every FMA's operand into a pointer load. */
inline __attribute__((always_inline)) void gemm_panel(__local const float* a_tile, __local const GEMM_VEC* b_tile,
                                                      GEMM_VEC* acc) {
  __local const float* a_col = a_tile + GEMM_A_AT(0, get_local_id(1) * GEMM_RM);
  __local const GEMM_VEC* b_col = b_tile + get_local_id(0);
#pragma unroll
  for (int t = 0; t < GEMM_KP; ++t) {
    const GEMM_VEC b = b_col[t * (GEMM_B_PITCH / GEMM_RN)];
#pragma unroll
    for (int r = 0; r < GEMM_RM; ++r) acc[r] = fma((GEMM_VEC)(a_col[GEMM_A_AT(t, r)]), b, acc[r]);
  }
}

/* gemm_panel where an A entry of exactly 0 adds nothing even against a NaN or Inf in B (P = 0 at
 * a hidden key must not carry that key's V into the row). The plain product runs first; only a
 * panel that left an accumulator non-finite (NaN and Inf are sticky, so a finite result never met
 * one) is redone entry by entry from the saved accumulators. */
inline void gemm_panel_guarded(__local const float* a_tile, __local const GEMM_VEC* b_tile, GEMM_VEC* acc) {
  GEMM_VEC before[GEMM_RM];
  GEMM_VEC finite = (GEMM_VEC)(0.0f);
#pragma unroll
  for (int r = 0; r < GEMM_RM; ++r) before[r] = acc[r];
  gemm_panel(a_tile, b_tile, acc);
#pragma unroll
  for (int r = 0; r < GEMM_RM; ++r) finite += acc[r] - acc[r]; /* 0 where finite, NaN elsewhere */
#if GEMM_RN == 1
  if (!isnan(finite)) return;
#else
  if (!any(isnan(finite))) return;
#endif
  __local const float* a_col = a_tile + GEMM_A_AT(0, get_local_id(1) * GEMM_RM);
  __local const GEMM_VEC* b_col = b_tile + get_local_id(0);
  for (int r = 0; r < GEMM_RM; ++r) {
    acc[r] = before[r];
    for (int t = 0; t < GEMM_KP; ++t) {
      const float x = a_col[GEMM_A_AT(t, r)];
      if (x != 0.0f) acc[r] = fma((GEMM_VEC)(x), b_col[t * (GEMM_B_PITCH / GEMM_RN)], acc[r]);
    }
  }
}
