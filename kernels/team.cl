/* team.cl: the register-blocked block products shared by fa1 and fa2. Each work-item keeps a
 * TM x COLS_S tile of scores and a TM x COLS_O tile of the output in private memory; Q, K/V and P
 * tiles are read from __local memory (broadcast along a team, consecutive along lanes). */

#ifndef BR
#define BR 64 /* query rows per block */
#endif
#ifndef BC
#define BC 64 /* keys per block */
#endif
#ifndef TM
#define TM 4 /* query rows per team */
#endif

#define COLS_S (BC / TPR)            /* scores per row per work-item */
#define COLS_O (D_PAD / TPR)         /* output columns per row per work-item */
#define WG_SIZE ((BR / TM) * TPR)    /* work-items per work-group */
#define KT_STRIDE (BC + 1)           /* row pitch of a transposed key tile (D_PAD x KT_STRIDE) */
/* floats of a tile that holds either a transposed K block or a row-major V block */
#define KV_TILE_FLOATS (D_PAD * BC + (D_PAD > BC ? D_PAD : BC))

#if BR % TM != 0 || BC % TPR != 0
#error "tile sizes must satisfy BR % TM == 0 and BC % TPR == 0"
#endif

/* s[r][c] = q_tile[row0 + r] . key (lane + c*TPR); kt_tile is transposed, q_tile scaled. */
inline void team_scores(float s[TM][COLS_S], __local const float* q_tile, __local const float* kt_tile,
                        int row0, int lane) {
#pragma unroll
  for (int r = 0; r < TM; ++r)
#pragma unroll
    for (int c = 0; c < COLS_S; ++c) s[r][c] = 0.0f;
  for (int kk = 0; kk < HEAD_DIM; ++kk) {
    float qv[TM], kv[COLS_S];
#pragma unroll
    for (int r = 0; r < TM; ++r) qv[r] = q_tile[(row0 + r) * ROW_STRIDE + kk];
#pragma unroll
    for (int c = 0; c < COLS_S; ++c) kv[c] = kt_tile[kk * KT_STRIDE + lane + c * TPR];
#pragma unroll
    for (int r = 0; r < TM; ++r)
#pragma unroll
      for (int c = 0; c < COLS_S; ++c) s[r][c] += qv[r] * kv[c];
  }
}

/* Sets hidden scores to -inf; called only on blocks where block_needs_mask() holds. */
inline void team_mask(float s[TM][COLS_S], int q_row0, int k0, int lane, int seqlen_k, int causal_shift) {
#pragma unroll
  for (int r = 0; r < TM; ++r)
#pragma unroll
    for (int c = 0; c < COLS_S; ++c)
      if (key_masked(q_row0 + r, k0 + lane + c * TPR, seqlen_k, causal_shift)) s[r][c] = NEG_INF;
}

/* mx[r] = max over the whole block row (all lanes of the team), through red (BR x TPR). */
inline void team_row_max(float mx[TM], float s[TM][COLS_S], __local float* red, int row0, int lane) {
#pragma unroll
  for (int r = 0; r < TM; ++r) {
    float m = NEG_INF;
#pragma unroll
    for (int c = 0; c < COLS_S; ++c) m = fmax(m, s[r][c]);
    red[(row0 + r) * TPR + lane] = m;
  }
  barrier(CLK_LOCAL_MEM_FENCE);
#pragma unroll
  for (int r = 0; r < TM; ++r) {
    float m = NEG_INF;
    for (int t = 0; t < TPR; ++t) m = fmax(m, red[(row0 + r) * TPR + t]);
    mx[r] = m;
  }
}

/* Writes p = 2^(s - m) into p_tile (BR x BC); a row whose max is -inf gets zeros, never NaN. */
inline void team_store_p(__local float* p_tile, float s[TM][COLS_S], const float mx[TM], int row0, int lane) {
#pragma unroll
  for (int r = 0; r < TM; ++r) {
    const float m = mx[r] == NEG_INF ? 0.0f : mx[r];
#pragma unroll
    for (int c = 0; c < COLS_S; ++c) p_tile[(row0 + r) * BC + lane + c * TPR] = exp2(s[r][c] - m);
  }
}

/* acc[r][c] += sum_key p_tile[row0 + r][key] * v_tile[key][lane + c*TPR]; rowsum[r] += sum_key p. */
inline void team_pv(float acc[TM][COLS_O], float rowsum[TM], __local const float* p_tile,
                    __local const float* v_tile, int row0, int lane) {
  for (int key = 0; key < BC; ++key) {
    float pv[TM], vv[COLS_O];
#pragma unroll
    for (int r = 0; r < TM; ++r) {
      pv[r] = p_tile[(row0 + r) * BC + key];
      rowsum[r] += pv[r];
    }
#pragma unroll
    for (int c = 0; c < COLS_O; ++c) vv[c] = v_tile[key * ROW_STRIDE + lane + c * TPR];
#pragma unroll
    for (int r = 0; r < TM; ++r)
#pragma unroll
      for (int c = 0; c < COLS_O; ++c) acc[r][c] += pv[r] * vv[c];
  }
}

/* Writes one output row slice (this lane's columns) and, from lane 0, its LSE. */
inline void store_row(__global STORAGE_T* o, long o_row, __global float* lse, long lse_index, int write_lse,
                      const float out[COLS_O], float lse_value, int lane) {
#pragma unroll
  for (int c = 0; c < COLS_O; ++c) {
    const int col = lane + c * TPR;
    if (col < HEAD_DIM) STORE_ELEM(o, o_row + col, out[c]);
  }
  if (write_lse && lane == 0) lse[lse_index] = lse_value;
}
