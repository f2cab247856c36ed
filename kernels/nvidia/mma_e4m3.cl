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
 *    shared memory. Same products in the same order: only where Q's bytes wait between blocks. */

#if DTYPE != 3
#error "the FP8 tensor-core path needs e4m3 storage"
#endif
#if OUT_DTYPE == 1
#define OUT_MMA_TYPE "f16"
#elif OUT_DTYPE == 2
#define OUT_MMA_TYPE "bf16"
#else
#error "the FP8 tensor-core path writes O as fp16 or bf16"
#endif

#define ELEM_T uchar                       /* raw e4m3 bytes in __local memory */
#define O_ELEM_T ushort                    /* O's raw 16-bit elements (OUT_DTYPE) */
#define CHUNK 16                           /* elements per 16-byte copy */
#define DPAD ((HEAD_DIM + 31) / 32 * 32)   /* head dim padded to the mma k of 32 */
#define QFRAGS (DPAD / 32)                 /* A fragments of the warp's Q rows */
#define K_PITCH (DPAD + 16)                /* bytes per K/V row: 16-byte rows on distinct banks */
#define V_PITCH (DPAD + 16)
#define O_COLUMN_QUADS 1                   /* fa2_mma.cl's epilogue: store_o_quads below */
#define FP8_DESCALES 1                     /* fa2_mma.cl: the kernel takes q/k/v descales */
typedef uint qfrag_t;
#if BC % 32 != 0
#error "the FP8 products take keys in chunks of 32"
#endif

/* D += A B for one m16n8k32 tile. */
#define MMA32(d, a, b0, b1)                                                                            \
  asm volatile("mma.sync.aligned.m16n8k32.row.col.f32.e4m3.e4m3.f32 "                                  \
               "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"                                 \
               : "+f"((d)[0]), "+f"((d)[1]), "+f"((d)[2]), "+f"((d)[3])                               \
               : "r"((a)[0]), "r"((a)[1]), "r"((a)[2]), "r"((a)[3]), "r"(b0), "r"(b1))

/* Four fp32 values rounded (to nearest, saturating at ±448) to e4m3 bytes 0..3 of a register. */
inline uint pack4_e4m3(float x0, float x1, float x2, float x3) {
  uint r;
  asm("{ .reg .b16 lo, hi;\n"
      "  cvt.rn.satfinite.e4m3x2.f32 lo, %2, %1;\n"
      "  cvt.rn.satfinite.e4m3x2.f32 hi, %4, %3;\n"
      "  mov.b32 %0, {lo, hi}; }"
      : "=r"(r)
      : "f"(x0), "f"(x1), "f"(x2), "f"(x3));
  return r;
}

/* Bytes of {b, a} picked by the four selector nibbles (prmt). */
inline uint byte_perm(uint a, uint b, uint selector) {
  uint r;
  asm("prmt.b32 %0, %1, %2, %3;" : "=r"(r) : "r"(a), "r"(b), "r"(selector));
  return r;
}

#ifndef QUAD_IO
#define QUAD_IO 0 /* 1 (the host checks): Q rows start on 4 bytes and d is a multiple of 4 */
#endif

/* Bytes (row, col .. col + 3) of Q as one register, 0 outside it (col is a multiple of 4). */
inline uint q_quad(__global const uchar* q, long base, long stride, int row, int col, int rows) {
  if (row >= rows) return 0u;
  const long at = base + (long)row * stride + col;
#if QUAD_IO
  return col < HEAD_DIM ? *(__global const uint*)(q + at) : 0u;
#else
  uint r = 0u;
  for (int e = 0; e < 4; ++e)
    if (col + e < HEAD_DIM) r |= (uint)q[at + e] << (8 * e);
  return r;
#endif
}

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
/* The warp's query rows (m-tile i: rows row0 + 16i + g and + 8) as A fragments, loaded once. */
inline void load_q(qfrag_t qa[MT][QFRAGS][4], __global const uchar* q, long base, long stride, int row0, int rows,
                   int t) {
#pragma unroll
  for (int i = 0; i < MT; ++i)
#pragma unroll
    for (int ks = 0; ks < QFRAGS; ++ks) {
      const int c = ks * 32 + 4 * t, ra = row0 + 16 * i, rb = ra + 8;
      qa[i][ks][0] = q_quad(q, base, stride, ra, c, rows);
      qa[i][ks][1] = q_quad(q, base, stride, rb, c, rows);
      qa[i][ks][2] = q_quad(q, base, stride, ra, c + 16, rows);
      qa[i][ks][3] = q_quad(q, base, stride, rb, c + 16, rows);
    }
}

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

/* P's A fragment for keys 32kk .. 32kk+31 of one m-tile: S tiles 4kk .. 4kk+3 in the key order
 * of the header (k 4t+e <-> keys 2t, 2t+1, 8+2t, 9+2t), rounded to e4m3. P is at most
 * 2^RESCALE_SLACK = 256 (lazy rescaling), inside e4m3's range. */
inline void p_fragment(uint pa[4], const float s[NT_S][4], int kk) {
  const int j = 4 * kk;
  pa[0] = pack4_e4m3(s[j][0], s[j][1], s[j + 1][0], s[j + 1][1]);
  pa[1] = pack4_e4m3(s[j][2], s[j][3], s[j + 1][2], s[j + 1][3]);
  pa[2] = pack4_e4m3(s[j + 2][0], s[j + 2][1], s[j + 3][0], s[j + 3][1]);
  pa[3] = pack4_e4m3(s[j + 2][2], s[j + 2][3], s[j + 3][2], s[j + 3][3]);
}

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

/* Two fp32 values rounded to one register of two 16-bit values of O's type, `lo` in the low half. */
inline uint pack2_out(float lo, float hi) {
  uint r;
  asm("cvt.rn." OUT_MMA_TYPE "x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
  return r;
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
