/* mma_e4m3_io.cl: what the two e4m3 operand files of the tensor-core fa2 share (mma_e4m3.cl for
 * mma.sync, mma_wgmma_e4m3.cl for Hopper's wgmma), as mma_half_io.cl is for the 16-bit ones: e4m3
 * bytes in __local memory, the head dim padded to the k of 32, the descales (fa2_mma.cl's
 * FP8_DESCALES), O's 16-bit type, Q loaded once as A fragments, P rounded to e4m3 from the S
 * accumulators as A fragments, the byte permute, and O's conversion back to 16 bits.
 *
 * A fragment layout (PTX ISA, m16n8k32, 8-bit types; per warp for wgmma's m64nNk32): lane 4g+t
 * holds rows g (a0, a2) and g+8 (a1, a3), bytes 4t..4t+3 (a0, a1) and 16+4t..16+4t+3 (a2, a3) of
 * the k, four bytes a register. For P V, the k positions 4t..4t+3 of a 32-key chunk stand for keys
 * 2t, 2t+1, 8+2t, 9+2t (16+ likewise): the keys whose probabilities lane 4g+t holds in S's C layout,
 * so P goes from the accumulators to A fragments with no shuffle (each operand file orders V's
 * keys to match: mma_e4m3.cl by byte permutes of ldmatrix.trans, mma_wgmma_e4m3.cl in V^T). */

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

#define ELEM_T uchar                     /* raw e4m3 bytes in __local memory */
#define O_ELEM_T ushort                  /* O's raw 16-bit elements (OUT_DTYPE) */
#define CHUNK 16                         /* elements per 16-byte copy */
#define DPAD ((HEAD_DIM + 31) / 32 * 32) /* head dim padded to the mma k of 32 */
#define QFRAGS (DPAD / 32)               /* A fragments of the warp's Q rows */
#define FP8_DESCALES 1                   /* fa2_mma.cl: the kernel takes q/k/v descales */
typedef uint qfrag_t;

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
#define QUAD_IO 0 /* 1 (the host checks): Q and O rows start on 4 elements and d is a multiple of 4 */
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

#if !(defined(Q_LOCAL) && Q_LOCAL) /* (mma_e4m3.cl's Q_LOCAL form keeps Q in __local memory instead) */
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
#endif

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

/* Two fp32 values rounded to one register of two 16-bit values of O's type, `lo` in the low half. */
inline uint pack2_out(float lo, float hi) {
  uint r;
  asm("cvt.rn." OUT_MMA_TYPE "x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
  return r;
}
