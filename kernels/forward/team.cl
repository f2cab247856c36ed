/* team.cl: the register-blocked block products shared by fa1 and fa2. Each work-item keeps a
 * TM x COLS_S tile of scores and a TM x COLS_O tile of the output in private memory. Tiles in
 * __local memory are laid out so every read is a vector of consecutive floats:
 *   Q and P transposed (d x rows, rows x keys -> keys x rows): a team reads its TM rows at once,
 *   K transposed (d x keys): a lane reads VEC_S consecutive keys, lanes side by side,
 *   V row-major (keys x d): a lane reads VEC_O consecutive columns, lanes side by side.
 * Lanes of a team read the same Q/P address (broadcast) and teams read consecutive addresses, so
 * GPUs see no bank conflicts and CPUs get contiguous vector loads. */

#ifndef BR
#define BR 64 /* query rows per block */
#endif
#ifndef BC
#define BC 64 /* keys per block */
#endif
#ifndef TM
#define TM 4 /* query rows per team */
#endif

#define COLS_S (BC / TPR)         /* scores per row per work-item */
#define COLS_O (D_PAD / TPR)      /* output columns per row per work-item */
#define WG_SIZE ((BR / TM) * TPR) /* work-items per work-group */

#if BR % TM != 0 || BC % TPR != 0 || D_PAD % TPR != 0
#error "tile sizes must satisfy BR % TM == 0, BC % TPR == 0 and D_PAD % TPR == 0"
#endif

/* widest vector (4, 2 or 1 floats) that divides n */
#define VEC_OF(n) ((n) % 4 == 0 ? 4 : (n) % 2 == 0 ? 2 : 1)
#define VEC_S VEC_OF(COLS_S)
#define VEC_O VEC_OF(COLS_O)
#define VEC_M VEC_OF(TM)
/* c-th key / output column of a lane: chunks of VEC consecutive elements, lanes side by side */
#define KEY_OF(c, lane) (((c) / VEC_S) * (VEC_S * TPR) + (lane) * VEC_S + (c) % VEC_S)
#define COL_OF(c, lane) (((c) / VEC_O) * (VEC_O * TPR) + (lane) * VEC_O + (c) % VEC_O)

/* __local pitches; +4 keeps every vector aligned and staggers banks between rows */
#define QT_STRIDE (BR + 4) /* Q^T and P^T: one row per head-dim column / key */
#define KT_STRIDE (BC + 4) /* K^T: one row per head-dim column */
#define V_STRIDE (D_PAD + 4)
#define Q_TILE_FLOATS (D_PAD * QT_STRIDE)
#define P_TILE_FLOATS (BC * QT_STRIDE)
#define K_TILE_FLOATS (D_PAD * KT_STRIDE)
#define V_TILE_FLOATS (BC * V_STRIDE)
#define KV_TILE_FLOATS (K_TILE_FLOATS > V_TILE_FLOATS ? K_TILE_FLOATS : V_TILE_FLOATS)

/* Copies n (4, 2 or 1; a compile-time constant) consecutive, n-aligned __local floats. */
#define LOAD_LOCAL_VEC(dst, src, n)                   \
  do {                                                \
    if ((n) == 4) {                                   \
      const float4 t_ = *(__local const float4*)(src); \
      (dst)[0] = t_.x;                                \
      (dst)[1] = t_.y;                                \
      (dst)[2] = t_.z;                                \
      (dst)[3] = t_.w;                                \
    } else if ((n) == 2) {                            \
      const float2 t_ = *(__local const float2*)(src); \
      (dst)[0] = t_.x;                                \
      (dst)[1] = t_.y;                                \
    } else {                                          \
      (dst)[0] = *(src);                              \
    }                                                 \
  } while (0)

/* Loads rows [row0, row0 + nrows) of a (seq, d) slice transposed: dst[c * pitch + r], times mul.
 * Rows at or past `valid` and columns past HEAD_DIM read as zero, so padded tiles are harmless. */
inline void load_transposed(__local float* dst, int pitch, __global const STORAGE_T* src, long base,
                            long seq_stride, int row0, int nrows, int valid, float mul, int lid) {
  for (int idx = lid; idx < nrows * D_PAD; idx += WG_SIZE) {
    const int r = idx / D_PAD, c = idx - r * D_PAD;
    float x = 0.0f;
    if (row0 + r < valid && c < HEAD_DIM) x = LOAD_ELEM(src, base + (long)(row0 + r) * seq_stride + c) * mul;
    dst[c * pitch + r] = x;
  }
}

/* Loads rows [row0, row0 + BC) of a (seq, d) slice row-major: dst[r * V_STRIDE + c]. */
inline void load_rows(__local float* dst, __global const STORAGE_T* src, long base, long seq_stride, int row0,
                      int valid, int lid) {
  for (int idx = lid; idx < BC * D_PAD; idx += WG_SIZE) {
    const int r = idx / D_PAD, c = idx - r * D_PAD;
    float x = 0.0f;
    if (row0 + r < valid && c < HEAD_DIM) x = LOAD_ELEM(src, base + (long)(row0 + r) * seq_stride + c);
    dst[r * V_STRIDE + c] = x;
  }
}

/* s[r][c] = Q(row0 + r) . K(KEY_OF(c, lane)); Q pre-scaled. */
inline void team_scores(float s[TM][COLS_S], __local const float* qt_tile, __local const float* kt_tile,
                        int row0, int lane) {
#pragma unroll
  for (int r = 0; r < TM; ++r)
#pragma unroll
    for (int c = 0; c < COLS_S; ++c) s[r][c] = 0.0f;
  for (int kk = 0; kk < HEAD_DIM; ++kk) {
    float qv[TM], kv[COLS_S];
#pragma unroll
    for (int r = 0; r < TM; r += VEC_M) LOAD_LOCAL_VEC(qv + r, qt_tile + kk * QT_STRIDE + row0 + r, VEC_M);
#pragma unroll
    for (int c = 0; c < COLS_S; c += VEC_S) LOAD_LOCAL_VEC(kv + c, kt_tile + kk * KT_STRIDE + KEY_OF(c, lane), VEC_S);
#pragma unroll
    for (int r = 0; r < TM; ++r)
#pragma unroll
      for (int c = 0; c < COLS_S; ++c) s[r][c] += qv[r] * kv[c];
  }
}

/* Applies final_score() (masking and any score transform); called only on blocks where
 * block_needs_mask() holds. */
inline void team_mask(float s[TM][COLS_S], int q_row0, int k0, int lane, const SeqView* v, const AttnArgs* a,
                      __global const MASK_T* mask) {
#pragma unroll
  for (int r = 0; r < TM; ++r)
#pragma unroll
    for (int c = 0; c < COLS_S; ++c) s[r][c] = final_score(s[r][c], q_row0 + r, k0 + KEY_OF(c, lane), v, a, mask);
}

/* mx[r] = max over the whole block row (all lanes of the team), through red (BR x TPR). */
inline void team_row_max(float mx[TM], float s[TM][COLS_S], __local float* red, int row0, int lane) {
#pragma unroll
  for (int r = 0; r < TM; ++r) {
    float m = NEG_INF;
#pragma unroll
    for (int c = 0; c < COLS_S; ++c) m = fmax(m, s[r][c]);
    mx[r] = m;
  }
#if TPR > 1
#pragma unroll
  for (int r = 0; r < TM; ++r) red[(row0 + r) * TPR + lane] = mx[r];
  barrier(CLK_LOCAL_MEM_FENCE);
#pragma unroll
  for (int r = 0; r < TM; ++r) {
    float m = NEG_INF;
    for (int t = 0; t < TPR; ++t) m = fmax(m, red[(row0 + r) * TPR + t]);
    mx[r] = m;
  }
#endif
}

/* s <- 2^(s - m) in place; a row whose max is -inf gets zeros, never NaN. With TPR > 1 the
 * probabilities also go to pt_tile (keys x rows), for the lanes that need them in team_pv. */
inline void team_exp(__local float* pt_tile, float s[TM][COLS_S], const float mx[TM], int row0, int lane) {
#pragma unroll
  for (int r = 0; r < TM; ++r) {
    const float m = mx[r] == NEG_INF ? 0.0f : mx[r];
    /* four at a time: devices with vector exp2 (PoCL's CPU) take it whole */
#pragma unroll
    for (int c = 0; c + 4 <= COLS_S; c += 4) {
      const float4 e = EXP2_OF((float4)(s[r][c], s[r][c + 1], s[r][c + 2], s[r][c + 3]) - m);
      s[r][c] = e.x;
      s[r][c + 1] = e.y;
      s[r][c + 2] = e.z;
      s[r][c + 3] = e.w;
    }
#pragma unroll
    for (int c = COLS_S / 4 * 4; c < COLS_S; ++c) s[r][c] = EXP2_OF(s[r][c] - m);
  }
#if TPR > 1
#pragma unroll
  for (int c = 0; c < COLS_S; ++c)
#pragma unroll
    for (int r = 0; r < TM; ++r) pt_tile[KEY_OF(c, lane) * QT_STRIDE + row0 + r] = s[r][c];
#endif
}

/* acc[r][c] += sum_key P(row0 + r, key) * V(key, COL_OF(c, lane)); rowsum[r] += sum_key P.
 * P comes from pt_tile, or straight from this work-item's registers when it owns every key.
 * `masked` (a constant at each call site, so each copy is specialised): hidden keys (P = 0) add
 * nothing even where V holds NaN or Inf, which 0 * V would spread to rows that never see it. */
inline void team_pv(float acc[TM][COLS_O], float rowsum[TM], float s[TM][COLS_S], __local const float* pt_tile,
                    __local const float* v_tile, int row0, int lane, const bool masked) {
  /* KSTEP keys per step: the accumulators are read and written once per KSTEP products, which
   * matters where they live in memory (PoCL keeps a work-item's arrays there) */
#define KSTEP (BC % 4 == 0 ? 4 : 1)
  for (int key0 = 0; key0 < BC; key0 += KSTEP) {
    float pv[KSTEP][TM], vv[KSTEP][COLS_O];
#pragma unroll
    for (int j = 0; j < KSTEP; ++j) {
#if TPR > 1
#pragma unroll
      for (int r = 0; r < TM; r += VEC_M) LOAD_LOCAL_VEC(pv[j] + r, pt_tile + (key0 + j) * QT_STRIDE + row0 + r, VEC_M);
#else
#pragma unroll
      for (int r = 0; r < TM; ++r) pv[j][r] = s[r][key0 + j];
#endif
#pragma unroll
      for (int r = 0; r < TM; ++r) rowsum[r] += pv[j][r];
#pragma unroll
      for (int c = 0; c < COLS_O; c += VEC_O)
        LOAD_LOCAL_VEC(vv[j] + c, v_tile + (key0 + j) * V_STRIDE + COL_OF(c, lane), VEC_O);
    }
#pragma unroll
    for (int r = 0; r < TM; ++r)
#pragma unroll
      for (int c = 0; c < COLS_O; ++c) {
        float x = acc[r][c];
#pragma unroll
        for (int j = 0; j < KSTEP; ++j) x += masked && pv[j][r] == 0.0f ? 0.0f : pv[j][r] * vv[j][c];
        acc[r][c] = x;
      }
  }
#undef KSTEP
}

/* Writes this lane's columns of one output row and, from lane 0, its LSE. */
inline void store_row(__global OUT_STORAGE_T* o, long o_row, __global float* lse, long lse_index, int write_lse,
                      const float out[COLS_O], float lse_value, int lane) {
#pragma unroll
  for (int c = 0; c < COLS_O; ++c) {
    const int col = COL_OF(c, lane);
    if (col < HEAD_DIM) STORE_OUT(o, o_row + col, out[c]);
  }
  if (write_lse && lane == 0) lse[lse_index] = lse_value;
}
