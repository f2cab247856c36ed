/* bwd_mma_rows.cl: the tensor-core backward's __local tiles as mma.sync reads them (row-major,
 * K_PITCH elements a row, ldmatrix addressing whole rows): load_rows, with which bwd_mma.cl's dK/dV
 * kernel copies K_j, Q_i and dO_i and bwd_mma_dq.cl's dQ pass K_j and V_j. bwd_wgmma_rows.cl is
 * the same for wgmma's core-matrix tiles; bwd_kv_steps.cl, built after either, loads through it. */

/* Every helper of the backward's files is inlined: as plain C99 `inline` definitions, a call the
 * compiler chose not to inline (clang at -O0, or with these larger bodies) would name a function
 * never emitted. */
#define BWD_INLINE inline __attribute__((always_inline))
#define ROW_CHUNKS (DPAD / CHUNK) /* 16-byte chunks of a padded row */

/* bwd_wgmma_rows.cl's fence for the tensor cores' reads; ldmatrix reads what the barrier published */
BWD_INLINE void tile_writes_visible(void) {}

/* Rows r0 .. r0 + rows - 1 of a (seq, d) slice into a __local tile of pitch K_PITCH; rows at or past
 * `valid` and columns past the head dim become 0. With VEC_LOAD the copies are cp.async (the
 * caller commits and waits); otherwise plain element copies. */
BWD_INLINE void load_rows(__local ELEM_T* tile, const int rows, __global const ELEM_T* src, long base, long stride,
                          int r0, int valid, int lid) {
#if VEC_LOAD
  for (int idx = lid; idx < rows * ROW_CHUNKS; idx += WG_SIZE) {
    const int r = idx / ROW_CHUNKS, c = (idx - r * ROW_CHUNKS) * CHUNK;
    const bool ok = r0 + r < valid && c < HEAD_DIM;
    copy16_async(tile + r * K_PITCH + c, src + base + (ok ? (long)(r0 + r) * stride + c : 0), ok ? 16 : 0);
  }
#else
  for (int idx = lid; idx < rows * DPAD; idx += WG_SIZE) {
    const int r = idx / DPAD, c = idx - r * DPAD;
    tile[r * K_PITCH + c] = r0 + r < valid && c < HEAD_DIM ? src[base + (long)(r0 + r) * stride + c] : (ELEM_T)0;
  }
#endif
}
