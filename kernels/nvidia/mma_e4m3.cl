/* mma_e4m3.cl: the FP8 (e4m3) operand side of the tensor-core fa2 (fa2_mma.cl), as in
 * FlashAttention-3: Q, K, V stored as e4m3 bytes, mma.sync.m16n8k32 with fp32 accumulation (twice
 * the k of the 16-bit instruction per issue), the descales folded into the softmax's scale (q, k)
 * and O's final division (v), P rounded to e4m3 for the P V product, O written as 16-bit values.
 *
 * Fragment layout (PTX ISA, m16n8k32, 8-bit types): lane 4g+t holds A rows g (a0, a2) and g+8 (a1,
 * a3), columns 4t..4t+3 (a0, a1) and 16+4t..16+4t+3 (a2, a3), four bytes a register; B column g,
 * rows 4t..4t+3 (b0) and 16+4t..16+4t+3 (b1); C as m16n8k16 (rows g, g+8; columns 2t, 2t+1).
 *  - S = Q K^T: Q's A fragments are four consecutive bytes of a row, K's B fragments four
 *    consecutive bytes of a key row, which ldmatrix (16-bit) hands out as they are: K stays in
 *    __local memory as stored.
 *  - O += P V: the sum over keys does not care in which order the k of the mma meets them, so the
 *    k positions 4t..4t+3 of a 32-key chunk stand for keys 2t, 2t+1, 8+2t, 9+2t (16+ likewise):
 *    exactly the keys whose probabilities lane 4g+t holds in S's C layout, so P goes from the
 *    accumulators to A fragments with no shuffle. V is read with ldmatrix.trans (16-bit units:
 *    lane 4g+t gets bytes 2g, 2g+1 of keys 2t and 2t+1), and one byte permute of two such
 *    registers gives the B fragment of the even head-dim columns, another that of the odd ones:
 *    O's n-tile pairs hold columns 16n2 + 4t .. 16n2 + 4t + 3 of each row in this lane, stored as
 *    one run of four. V therefore stays in __local memory as stored, too.
 *  - Q_LOCAL (opt-in, FLASHCL_FP8_QLOCAL=1): Q's A fragments are not held in registers for the whole
 *    kernel (MT * QFRAGS * 4 of them: 32 at d = 128, MT = 2) but copied once into a __local tile of
 *    the warp's rows and read back per 32-byte k-step with ldmatrix (16-bit, not transposed: lane
 *    4g+t gets bytes 4t..4t+3 of row g, which is the A layout), as FlashAttention-2 keeps Q in
 *    shared memory. Same products in the same order: only where Q's bytes wait between blocks.
 * The e4m3 pieces this file shares with mma_wgmma_e4m3.cl (the element types and DPAD, Q's register
 * A fragments, P's e4m3 fragments, the byte permute, O's 16-bit conversion) are mma_e4m3_io.cl's. */

#define K_PITCH (DPAD + 16)                /* bytes per K/V row: 16-byte rows on distinct banks */
#define V_PITCH (DPAD + 16)
#define O_COLUMN_QUADS 1                   /* fa2_mma.cl's epilogue: store_o_quads below */
#if BC % 32 != 0
#error "the FP8 products take keys in chunks of 32"
#endif
#if defined(V_TRANSPOSED) && V_TRANSPOSED
#error "mma_e4m3.cl reads V as stored (B, Nk, H_kv, d); a transposed V is mma_wgmma_e4m3.cl's (cc 9.0)"
#endif

/* D += A B for one m16n8k32 tile. */
#define MMA32(d, a, b0, b1)                                                                            \
  asm volatile("mma.sync.aligned.m16n8k32.row.col.f32.e4m3.e4m3.f32 "                                  \
               "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"                                 \
               : "+f"((d)[0]), "+f"((d)[1]), "+f"((d)[2]), "+f"((d)[3])                               \
               : "r"((a)[0]), "r"((a)[1]), "r"((a)[2]), "r"((a)[3]), "r"(b0), "r"(b1))

/* One k-step ks of S = Q K^T (qk_block, either form): per pair of 8-key tiles one ldmatrix.x4 of
 * K's B fragments (`row`: the lane's address in the K tile) and two mma per m-tile i, whose Q A
 * fragment is QA_I (an expression of i). A macro: the two forms hold Q's fragments in arrays of
 * different shapes. */
#define QK_KSTEP(QA_I)                                                      \
  _Pragma("unroll") for (int j2 = 0; j2 < NT_S / 2; ++j2) {                 \
    uint b[4];                                                              \
    ldsm_x4(b, (__local const ushort*)(row + j2 * 16 * K_PITCH + ks * 32)); \
    _Pragma("unroll") for (int i = 0; i < MT; ++i) {                        \
      MMA32(s[i][2 * j2], QA_I, b[0], b[1]);                                \
      MMA32(s[i][2 * j2 + 1], QA_I, b[2], b[3]);                            \
    }                                                                       \
  }

#if defined(Q_LOCAL) && Q_LOCAL
#define Q_PITCH (DPAD + 16) /* bytes per __local Q row: 16-byte rows on distinct banks, as K */

/* The warp's 16 MT query rows (row0 - g ..) into its __local tile `qt`, 4 bytes a lane per step,
 * zero past `rows` and HEAD_DIM; then a warp barrier, which also orders the stores before the
 * other lanes' ldmatrix reads (no other warp reads these rows). */
inline void load_q(__local uchar* qt, __global const uchar* q, long base, long stride, int row0, int rows, int t) {
  const int lane = get_local_id(0) % 32, first = row0 - lane / 4;
#pragma unroll 4
  for (int at = lane; at < 16 * MT * (DPAD / 4); at += 32) {
    const int r = at / (DPAD / 4), c = 4 * (at % (DPAD / 4));
    *(__local uint*)(qt + r * Q_PITCH + c) = q_quad(q, base, stride, first + r, c, rows);
  }
  asm volatile("bar.warp.sync -1;" ::: "memory");
}

/* S = Q K^T as below, Q's fragments read per k-step from the warp's __local rows: one ldmatrix.x4
 * per m-tile (lanes 0-7 rows 0-7 at bytes +0 -> a0, 8-15 rows 8-15 at +0 -> a1, 16-23 rows 0-7 at
 * +16 -> a2, 24-31 rows 8-15 at +16 -> a3). */
inline void qk_block(float s[MT][NT_S][4], __local const uchar* qt, __local const uchar* k_tile, int lane) {
  __local const uchar* row = k_tile + ((lane >> 4) * 8 + (lane & 7)) * K_PITCH + ((lane >> 3) & 1) * 16;
  __local const uchar* qrow = qt + ((lane & 7) + ((lane >> 3) & 1) * 8) * Q_PITCH + (lane >> 4) * 16;
#pragma unroll
  for (int i = 0; i < MT; ++i)
#pragma unroll
    for (int j = 0; j < NT_S; ++j) s[i][j][0] = s[i][j][1] = s[i][j][2] = s[i][j][3] = 0.0f;
#pragma unroll
  for (int ks = 0; ks < QFRAGS; ++ks) {
    uint qa[MT][4];
#pragma unroll
    for (int i = 0; i < MT; ++i) ldsm_x4(qa[i], (__local const ushort*)(qrow + 16 * i * Q_PITCH + ks * 32));
    QK_KSTEP(qa[i]);
  }
}
#else
/* S = Q K^T for the warp's rows and the block's BC keys. One ldmatrix.x4 gives the B fragments of
 * two 8-key tiles for 32 head-dim bytes (lanes 0-7 address keys 0-7 at bytes +0, lanes 8-15 keys
 * 0-7 at +16, lanes 16-23 keys 8-15 at +0, lanes 24-31 keys 8-15 at +16). */
inline void qk_block(float s[MT][NT_S][4], const qfrag_t qa[MT][QFRAGS][4], __local const uchar* k_tile, int lane) {
  __local const uchar* row = k_tile + ((lane >> 4) * 8 + (lane & 7)) * K_PITCH + ((lane >> 3) & 1) * 16;
#pragma unroll
  for (int i = 0; i < MT; ++i)
#pragma unroll
    for (int j = 0; j < NT_S; ++j) s[i][j][0] = s[i][j][1] = s[i][j][2] = s[i][j][3] = 0.0f;
#pragma unroll
  for (int ks = 0; ks < QFRAGS; ++ks) {
    QK_KSTEP(qa[i][ks]);
  }
}

#endif /* Q_LOCAL */

/* O += P V. One ldmatrix.x4.trans over keys 32kk .. 32kk+31 (lane l addresses key 32kk + l) and
 * head-dim bytes 16n2 .. 16n2+15 gives, per lane, bytes 2g, 2g+1 of keys (2t, 2t+1) + 8i for
 * matrix i; byte permutes make the B fragments of the even columns 16n2 + 2g (tile 2n2) and the
 * odd columns 16n2 + 2g + 1 (tile 2n2 + 1). */
inline void pv_block(float acc[MT][NT_O][4], const float s[MT][NT_S][4], __local const uchar* v_tile, int lane) {
  __local const uchar* row = v_tile + lane * V_PITCH;
#pragma unroll
  for (int kk = 0; kk < NT_S / 4; ++kk) {
    uint pa[MT][4];
#pragma unroll
    for (int i = 0; i < MT; ++i) p_fragment(pa[i], s[i], kk);
#pragma unroll
    for (int n2 = 0; n2 < NT_O / 2; ++n2) {
      uint r[4];
      ldsm_x4_trans(r, (__local const ushort*)(row + kk * 32 * V_PITCH + n2 * 16));
      const uint even0 = byte_perm(r[0], r[1], 0x6420), even1 = byte_perm(r[2], r[3], 0x6420);
      const uint odd0 = byte_perm(r[0], r[1], 0x7531), odd1 = byte_perm(r[2], r[3], 0x7531);
#pragma unroll
      for (int i = 0; i < MT; ++i) {
        MMA32(acc[i][2 * n2], pa[i], even0, even1);
        MMA32(acc[i][2 * n2 + 1], pa[i], odd0, odd1);
      }
    }
  }
}

/* Row `r` (0: g, 1: g + 8) of one m-tile's O, scaled by inv: columns 16n2 + 4t .. + 3 are tiles
 * 2n2 (columns +0, +2) and 2n2 + 1 (+1, +3), written as runs of four (or fewer at the head dim's
 * end). */
inline void store_o_quads(__global ushort* o, long row_at, const float acc[NT_O][4], int r, float inv, bool in, int t) {
  if (!in) return;
#pragma unroll
  for (int n2 = 0; n2 < NT_O / 2; ++n2) {
    const int col = 16 * n2 + 4 * t;
    const uint lo = pack2_out(acc[2 * n2][2 * r] * inv, acc[2 * n2 + 1][2 * r] * inv);
    const uint hi = pack2_out(acc[2 * n2][2 * r + 1] * inv, acc[2 * n2 + 1][2 * r + 1] * inv);
    __global ushort* dst = o + row_at + col;
    if (col + 3 < HEAD_DIM) {
#if QUAD_IO /* O rows on 8 bytes, d a multiple of 4 */
      *(__global uint2*)dst = (uint2)(lo, hi);
#else
      dst[0] = (ushort)lo, dst[1] = (ushort)(lo >> 16), dst[2] = (ushort)hi, dst[3] = (ushort)(hi >> 16);
#endif
    } else {
      if (col < HEAD_DIM) dst[0] = (ushort)lo;
      if (col + 1 < HEAD_DIM) dst[1] = (ushort)(lo >> 16);
      if (col + 2 < HEAD_DIM) dst[2] = (ushort)hi;
    }
  }
}
