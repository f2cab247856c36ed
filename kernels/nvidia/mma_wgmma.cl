/* mma_wgmma.cl: the fp16/bf16 operand side of the tensor-core fa2 (fa2_mma.cl) on Hopper (sm_90a):
 * wgmma.mma_async, issued by a warpgroup (4 warps, 64 query rows) with A from registers (Q, then
 * P straight from the S accumulators) and B read by the tensor cores from __local memory through a
 * matrix descriptor (K as stored; V with the transpose flag), fp32 accumulation. Compared with
 * mma.sync (mma_f16.cl) no lane loads B fragments: the ldmatrix traffic and its issue slots go.
 * The wgmma primitives (fence, commit, wait, descriptors, ARCH_ONLY for the retargeted PTX the
 * host builds) are wgmma_ptx.cl's.
 *
 * Tiles in __local memory use wgmma's no-swizzle layout: 8x8 "core matrices" of 16-bit elements,
 * 128 contiguous bytes each (8 rows of 16 bytes). Element (r, c) of a BC x DPAD tile sits in core
 * matrix (r / 8, c / 8), stored row of core matrices after row: core (i, j) at byte
 * (i * DPAD / 8 + j) * 128. Read as K (B of S = Q K^T, K-major) the leading (k) stride between
 * core matrices is 128 bytes and the stride (n) one DPAD * 16; read as V (B of O = P V, N-major)
 * the leading (k = key) stride is DPAD * 16 and the stride (n = dim) one 128. (Measured on the
 * H100: with these strides all four descriptor tests of n = 16..128 matched exactly.)
 *
 * Accumulator layout (m64nNk16, fp32): warp w of the warpgroup holds rows 16w..16w+15; lane 4g+t
 * holds rows g, g+8 and columns 2t, 2t+1 of each 8-column tile, registers 4j..4j+3 for tile j:
 * the s[j][e] / acc[n][e] arrays of fa2_mma.cl as they are. The A fragment of 16 columns is
 * mma.m16n8k16's, so Q's and P's fragments come from mma_half_io.cl as for mma_f16.cl. */

#if MT != 1 || WARPS % 4 != 0
#error "mma_wgmma.cl: one 16-row m-tile per warp, whole warpgroups (WARPS a multiple of 4)"
#endif

#define K_PITCH DPAD /* no padding: the core-matrix layout spreads a warp's reads over all banks */
#define V_PITCH DPAD
#define CORE_ROW_BYTES (DPAD * 16) /* one row of core matrices: 8 tile rows */
#define TILE_CORE_MATRICES 1 /* 8 consecutive work-items copy one core matrix: 128 contiguous bytes */

/* Element offset of (r, c) in a tile (pitch unused: the layout is fixed by DPAD). */
inline int tile_offset(int r, int c, int pitch) {
  (void)pitch;
  return ((r >> 3) * (DPAD / 8) + (c >> 3)) * 64 + (r & 7) * 8 + (c & 7);
}

/* d[j0 .. j0 + N/8 - 1][0..3] += A (64 x 16, registers a[0..3]) * B (16 x N, descriptor); TRANS:
 * 0 for a K-major B, 1 for N-major. */
#define WGMMA(N, TRANS, d, j0, a, desc, acc_in) \
  WGMMA_ASYNC(N, "k16.f32." MMA_TYPE "." MMA_TYPE, ", " #TRANS, d, j0, a, desc, acc_in)

/* d[0 .. NT-1] += A * B over NT (<= 16, even) 8-column tiles, as wgmmas of 64, 32 and 16 columns;
 * the descriptor of the tiles from column 8j on is DESC_AT(desc, j * STEP). */
#define WG_TILES(NT, TRANS, d, a, desc, STEP, acc_in)                                                  \
  do {                                                                                                 \
    if ((NT) >= 8) WGMMA(64, TRANS, d, 0, a, desc, acc_in);                                            \
    if ((NT) >= 16) WGMMA(64, TRANS, d, 8, a, DESC_AT(desc, 8 * (STEP)), acc_in);                      \
    if ((NT) % 8 >= 4) WGMMA(32, TRANS, d, (NT) / 8 * 8, a, DESC_AT(desc, (NT) / 8 * 8 * (STEP)), acc_in); \
    if ((NT) % 4 >= 2) WGMMA(16, TRANS, d, (NT) / 4 * 4, a, DESC_AT(desc, (NT) / 4 * 4 * (STEP)), acc_in); \
  } while (0)

#if NT_S > 16 || NT_O > 16
#error "mma_wgmma.cl: WG_TILES issues at most 16 8-column tiles: blocks of up to 128 keys, head dims up to 128"
#endif

/* wgmma runs asynchronously: fa2_mma.cl's pipelined schedule issues S = Q K^T of the next block
 * and O += P V of this one together and overlaps the softmax with them. */
#define ASYNC_MMA 1

/* Issues S = Q K^T for the warpgroup's 64 rows and the block's BC keys (one commit group): per 16
 * dims of the head, one wgmma row over the keys (8 keys = one row of core matrices further). */
inline void qk_issue(float s[MT][NT_S][4], const qfrag_t qa[MT][QFRAGS][4], __local const ushort* k_tile) {
  const ulong desc = wg_desc(k_tile, 128, CORE_ROW_BYTES);
  wg_fence();
  /* the first k-step overwrites S (scale-d 0): no zeroing, no other instruction on S meanwhile */
#pragma unroll
  for (int ks = 0; ks < QFRAGS; ++ks)
    WG_TILES(NT_S, 0, s[0], qa[0][ks], DESC_AT(desc, ks * 256), CORE_ROW_BYTES, ks > 0 ? 1 : 0);
  wg_commit();
}

/* P as the A fragments of P V, one per 16 keys. */
inline void pack_p(uint pa[NT_S / 2][4], const float s[MT][NT_S][4]) {
#pragma unroll
  for (int kk = 0; kk < NT_S / 2; ++kk) p_fragment(pa[kk], s[0], kk);
}

/* Issues O += P V (one commit group): per 16 keys, one wgmma row over the head dim (8 dims = one
 * core matrix further: 128 bytes; 16 keys = two core rows). */
inline void pv_issue(float acc[MT][NT_O][4], const uint pa[NT_S / 2][4], __local const ushort* v_tile) {
  const ulong desc = wg_desc(v_tile, CORE_ROW_BYTES, 128);
  PIN_TILES(acc, NT_O); /* O's rescale done before the fence, not sunk between the wgmmas */
  wg_fence();
#pragma unroll
  for (int kk = 0; kk < NT_S / 2; ++kk)
    WG_TILES(NT_O, 1, acc[0], pa[kk], DESC_AT(desc, kk * 2 * CORE_ROW_BYTES), 128, 1);
  wg_commit();
}

/* The synchronous forms, for fa2_mma.cl's one-buffer schedule. */
inline void qk_block(float s[MT][NT_S][4], const qfrag_t qa[MT][QFRAGS][4], __local const ushort* k_tile, int lane) {
  (void)lane;
  qk_issue(s, qa, k_tile);
  WG_WAIT(0);
  PIN_TILES(s, NT_S);
}

inline void pv_block(float acc[MT][NT_O][4], const float s[MT][NT_S][4], __local const ushort* v_tile, int lane) {
  (void)lane;
  uint pa[NT_S / 2][4];
  pack_p(pa, s);
  pv_issue(acc, pa, v_tile);
  WG_WAIT(0);
  PIN_TILES(acc, NT_O);
}
