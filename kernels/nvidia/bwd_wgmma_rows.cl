/* bwd_wgmma_rows.cl: bwd_mma_rows.cl for the program that builds the backward's kernels over Hopper's
 * wgmma (mma_wgmma.cl; programs.txt's bwd_mma_wgmma, opt-in by FLASHCL_BWD_WGMMA) instead of
 * mma.sync: load_rows, which bwd_mma_dq.cl and (through bwd_kv_steps.cl) bwd_wgmma_dkdv.cl copy
 * their tiles with, and what else bwd_mma_dq.cl takes from bwd_mma.cl (DQ_ATOMIC). Here the tiles
 * (the dQ pass's K_j and V_j, the dK/dV kernel's Q_i and dO_i) are laid out as
 * wgmma's descriptors read them: tile_offset's 8x8 core matrices, 8 consecutive work-items copying
 * one core matrix (fa2_mma.cl's load_block does the same for the forward), so one tile serves as
 * the K-major B of S = Q K_j^T and dP = dO V_j^T and as the N-major B (transpose flag) of
 * dQ += dS K_j. Only the deterministic dQ pass is built here (DQ_ATOMIC 0). */

#if !defined(TILE_CORE_MATRICES) || !TILE_CORE_MATRICES
#error "bwd_wgmma_rows.cl: build it after mma_wgmma.cl (tiles in the core-matrix layout)"
#endif

#define BWD_INLINE inline __attribute__((always_inline))
#define DQ_ATOMIC 0               /* this program is the dQ pass alone */
#define ROW_CHUNKS (DPAD / CHUNK) /* 16-byte chunks of a padded row */

/* Rows r0 .. r0 + rows - 1 (rows a multiple of 8) of a (seq, d) slice into a __local tile in
 * tile_offset's layout; rows at or past `valid` and columns past the head dim become 0. With
 * VEC_LOAD the copies are cp.async (the caller commits and waits); otherwise plain element copies.
 * Either way the caller makes them visible to the tensor cores (tile_writes_visible) before the
 * barrier that publishes them. */
BWD_INLINE void load_rows(__local ushort* tile, const int rows, __global const ushort* src, long base, long stride,
                          int r0, int valid, int lid) {
#if VEC_LOAD
  for (int idx = lid; idx < rows * ROW_CHUNKS; idx += WG_SIZE) {
    const int r = idx / (8 * ROW_CHUNKS) * 8 + (idx & 7), c = (idx >> 3) % ROW_CHUNKS * CHUNK;
    const bool ok = r0 + r < valid && c < HEAD_DIM;
    copy16_async(tile + tile_offset(r, c, K_PITCH), src + base + (ok ? (long)(r0 + r) * stride + c : 0), ok ? 16 : 0);
  }
#else
  for (int idx = lid; idx < rows * DPAD; idx += WG_SIZE) {
    const int r = idx / DPAD, c = idx - r * DPAD;
    tile[tile_offset(r, c, K_PITCH)] =
        r0 + r < valid && c < HEAD_DIM ? src[base + (long)(r0 + r) * stride + c] : (ushort)0;
  }
#endif
}
