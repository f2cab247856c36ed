/* mma_half_io.cl: what the two fp16/bf16 operand files of the tensor-core fa2 share (mma_f16.cl
 * for mma.sync, mma_wgmma.cl for Hopper's wgmma): the element type, the head dim padded to the
 * k of 16, Q loaded once and P packed from the S accumulators as A fragments of m16n8k16's
 * layout (wgmma's A layout too), and the conversions of fp32 results back to 16 bits.
 *
 * A fragment layout (PTX ISA, m16n8k16; per warp for wgmma's m64nNk16): lane 4g+t holds rows g,
 * g+8 and columns 2t, 2t+1, 2t+8, 2t+9. */

#if DTYPE == 1
#define MMA_TYPE "f16"
#elif DTYPE == 2
#define MMA_TYPE "bf16"
#else
#error "the 16-bit tensor-core path needs fp16 or bf16 storage"
#endif

#define ELEM_T ushort                      /* raw 16-bit elements in __local memory */
#define CHUNK 8                            /* elements per 16-byte copy */
#define DPAD ((HEAD_DIM + 15) / 16 * 16)   /* head dim padded to the mma k of 16 */
#define QFRAGS (DPAD / 16)                 /* A fragments of the warp's Q rows */
typedef uint qfrag_t;

/* Two fp32 values rounded to one register of two 16-bit values, `lo` in the low half. */
inline uint pack2(float lo, float hi) {
  uint r;
  asm("cvt.rn." MMA_TYPE "x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
  return r;
}

/* P's A fragment for keys 16kk .. 16kk+15 of one 16-row m-tile: S tiles 2kk and 2kk+1 (the C
 * layout of S is the A layout of P) rounded to 16 bits, so P never leaves registers. */
inline void p_fragment(uint pa[4], const float s[NT_S][4], int kk) {
  pa[0] = pack2(s[2 * kk][0], s[2 * kk][1]);
  pa[1] = pack2(s[2 * kk][2], s[2 * kk][3]);
  pa[2] = pack2(s[2 * kk + 1][0], s[2 * kk + 1][1]);
  pa[3] = pack2(s[2 * kk + 1][2], s[2 * kk + 1][3]);
}

#ifndef PAIR_IO
#define PAIR_IO 0 /* 1 (the host checks): even head dim and even Q/O row starts, pairs move as 4-byte words */
#endif

/* Elements (row, col) and (row, col + 1) of a (seq, d) slice as one register, 0 outside it (col
 * is even). */
inline uint q_pair(__global const ushort* q, long base, long stride, int row, int col, int rows) {
  if (row >= rows) return 0u;
  const long at = base + (long)row * stride + col;
#if PAIR_IO /* an even head dim: a pair is wholly inside or wholly past it */
  return col < HEAD_DIM ? *(__global const uint*)(q + at) : 0u;
#else
  const uint lo = col < HEAD_DIM ? q[at] : 0u, hi = col + 1 < HEAD_DIM ? q[at + 1] : 0u;
  return lo | hi << 16;
#endif
}

/* The warp's query rows (m-tile i: rows row0 + 16i + g and + 8) as A fragments, loaded once for
 * the whole key loop. */
inline void load_q(qfrag_t qa[MT][QFRAGS][4], __global const ushort* q, long base, long stride, int row0, int rows,
                   int t) {
#pragma unroll
  for (int i = 0; i < MT; ++i)
#pragma unroll
    for (int ks = 0; ks < QFRAGS; ++ks) {
      const int c = ks * 16 + 2 * t, ra = row0 + 16 * i, rb = ra + 8;
      qa[i][ks][0] = q_pair(q, base, stride, ra, c, rows);
      qa[i][ks][1] = q_pair(q, base, stride, rb, c, rows);
      qa[i][ks][2] = q_pair(q, base, stride, ra, c + 8, rows);
      qa[i][ks][3] = q_pair(q, base, stride, rb, c + 8, rows);
    }
}

/* One m-tile's two rows of this lane (g and g + 8) as A fragments, each from its own element
 * offset (at_a, at_b: the row's first element; ok_a, ok_b: the row exists, else zeros): rows that
 * are no single strided slice (decode_mma.cl's rows of a K/V head, Nq queries times the group). */
inline void load_q_rows(qfrag_t qa[QFRAGS][4], __global const ushort* q, long at_a, long at_b, bool ok_a, bool ok_b,
                        int t) {
#pragma unroll
  for (int ks = 0; ks < QFRAGS; ++ks) {
    const int c = ks * 16 + 2 * t;
    qa[ks][0] = q_pair(q, at_a, 0, 0, c, ok_a ? 1 : 0);
    qa[ks][1] = q_pair(q, at_b, 0, 0, c, ok_b ? 1 : 0);
    qa[ks][2] = q_pair(q, at_a, 0, 0, c + 8, ok_a ? 1 : 0);
    qa[ks][3] = q_pair(q, at_b, 0, 0, c + 8, ok_b ? 1 : 0);
  }
}

/* O elements (row, col) and (row, col + 1), rounded once. */
inline void store_o2(__global ushort* o, long at, float x0, float x1, bool ok0, bool ok1) {
  const uint p = pack2(x0, x1);
#if PAIR_IO /* ok1 == ok0 for an even head dim */
  (void)ok1;
  if (ok0) *(__global uint*)(o + at) = p;
#else
  if (ok0) o[at] = (ushort)p;
  if (ok1) o[at + 1] = (ushort)(p >> 16);
#endif
}
