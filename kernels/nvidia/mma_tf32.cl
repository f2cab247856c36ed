/* mma_tf32.cl: the fp32 operand side of the tensor-core fa2 (fa2_mma.cl): mma.sync.m16n8k8 on
 * TF32 with the 3xTF32 split, so fp32 inputs keep fp32-class accuracy. Each operand x becomes
 * hi (x cut to TF32) and lo = x - hi; a product is lo_a*hi_b + hi_a*lo_b + hi_a*hi_b (the lo*lo
 * term is below fp32's rounding), accumulated in fp32. This is the scheme CUTLASS calls
 * OpMultiplyAddFastF32, the one PyTorch's memory-efficient fp32 attention runs on.
 *
 * Fragment layout (PTX ISA, m16n8k8 tf32): lane 4g+t holds A (g, t), (g+8, t), (g, t+4),
 * (g+8, t+4); B (t, g), (t+4, g); C (g, 2t), (g, 2t+1), (g+8, 2t), (g+8, 2t+1). The sum over k
 * does not care which head-dim column or key sits at which k, so k = t stands for column/key 2t
 * and k = t+4 for 2t+1: then the C layout of S is the A layout of P (no shuffles), and a lane's
 * two K values are adjacent (one 8-byte read). */

#if DTYPE != 0
#error "mma_tf32.cl needs fp32 storage"
#endif

#define ELEM_T float
#define CHUNK 4                           /* elements per 16-byte copy */
#define DPAD ((HEAD_DIM + 7) / 8 * 8)     /* head dim padded to the mma k of 8 */
#define QFRAGS (DPAD / 8)
/* Row pitches in words: K rows at 8 (mod 32) make a half-warp's 8-byte reads of rows g, columns
 * 2t cover the 32 banks once; V rows at 4 (mod 32) do the same for rows 2t, columns g. */
#define K_PITCH (DPAD + (40 - DPAD % 32) % 32)
#ifndef ONE_PITCH
#define ONE_PITCH 0 /* 1 (the tensor-core backward): pv_block reads tiles laid out at K_PITCH too */
#endif
#if ONE_PITCH /* a tile is read both ways there (Q_i, dO_i, K_j): 2-way conflicts in pv_block's reads */
#define V_PITCH K_PITCH
#else
#define V_PITCH (DPAD + (36 - DPAD % 32) % 32)
#endif
/* K/V copies as a plain loop (fa2_mma.cl): unrolled, the positions it keeps in registers cost this
 * kernel 10-25 % (fp32, H100, N = 4096: d = 64 66.1 vs 71.7, d = 128 48.8 vs 62.9 TFLOP/s) */
#define UNROLL_COPIES 0
typedef float qfrag_t;

/* D += A B for one m16n8k8 TF32 tile. */
#define MMA8(d, a, b0, b1)                                                                             \
  asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 "                                   \
               "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"                                 \
               : "+f"((d)[0]), "+f"((d)[1]), "+f"((d)[2]), "+f"((d)[3])                               \
               : "r"((a)[0]), "r"((a)[1]), "r"((a)[2]), "r"((a)[3]), "r"(b0), "r"(b1))

/* x = hi + lo: hi is x with the 13 mantissa bits TF32 lacks cleared (one AND; rounding with
 * cvt.rna cost 24 % of the kernel's speed on the H100 for no measured accuracy gain), lo = x - hi
 * exactly, passed as fp32 bits that the tensor core truncates to TF32: what is lost is under
 * 2^-20 |x| per operand, and max |error| vs float64 stays at 1.4e-6 (1.3e-6 with rounding). */
inline uint tf32_hi(float x) { return as_uint(x) & 0xffffe000u; }
#define SPLIT(x, hi, lo)                  \
  do {                                    \
    const float x_ = (x);                 \
    (hi) = tf32_hi(x_);                   \
    (lo) = as_uint(x_ - as_float(hi));    \
  } while (0)

#ifndef SPLIT_A_EACH_PRODUCT
#define SPLIT_A_EACH_PRODUCT 0 /* 1: the tensor-core backward at d > 64 (FLASHCL_BWD_TF32_SPLIT): see a_operand */
#endif
/* An A fragment element as qk_block splits it. A kernel's A fragments (Q, dO; K_w and V_w in the
 * backward's dK/dV kernel) do not change across its key loop, so the compiler hoists their hi and
 * lo halves out of it, doubling the registers they take: the backward's dQ pass at d = 128 spilled
 * 1328 bytes a lane so (clang + ptxas, sm_90). With SPLIT_A_EACH_PRODUCT an opaque copy (a
 * volatile asm move) keeps the split inside the loop, at two ALU operations an element a product:
 * 16 bytes of spills there, and the dK/dV kernel 243 -> 213 registers. The forward keeps the
 * hoisted form, whose speed is on record (its A/B is still to run). */
inline float a_operand(float x) {
#if SPLIT_A_EACH_PRODUCT
  uint u;
  __asm__ volatile("mov.b32 %0, %1;" : "=r"(u) : "r"(as_uint(x)));
  return as_float(u);
#else
  return x;
#endif
}

/* D += A B in three TF32 products (small terms first). */
#define MMA_3X(d, ah, al, bh0, bl0, bh1, bl1) \
  do {                                        \
    MMA8(d, al, bh0, bh1);                    \
    MMA8(d, ah, bl0, bl1);                    \
    MMA8(d, ah, bh0, bh1);                    \
  } while (0)

inline float q_at(__global const float* q, long base, long stride, int row, int col, int rows) {
  return row < rows && col < HEAD_DIM ? q[base + (long)row * stride + col] : 0.0f;
}

/* The warp's query rows (m-tile i: rows row0 + 16i + g and + 8) as fp32 A fragments (k = t:
 * column 2t, k = t+4: column 2t+1). */
inline void load_q(qfrag_t qa[MT][QFRAGS][4], __global const float* q, long base, long stride, int row0, int rows,
                   int t) {
#pragma unroll
  for (int i = 0; i < MT; ++i)
#pragma unroll
    for (int ks = 0; ks < QFRAGS; ++ks) {
      const int c = ks * 8 + 2 * t, ra = row0 + 16 * i, rb = ra + 8;
      qa[i][ks][0] = q_at(q, base, stride, ra, c, rows);
      qa[i][ks][1] = q_at(q, base, stride, rb, c, rows);
      qa[i][ks][2] = q_at(q, base, stride, ra, c + 1, rows);
      qa[i][ks][3] = q_at(q, base, stride, rb, c + 1, rows);
    }
}

/* S = Q K^T: Q's fragments are split once per k-step, each K value once per k-step and warp, and
 * both reused across the 8-key tiles and m-tiles. */
inline void qk_block(float s[MT][NT_S][4], const qfrag_t qa[MT][QFRAGS][4], __local const float* k_tile, int lane) {
  const int g = lane >> 2, t = lane & 3;
  __local const float* row = k_tile + g * K_PITCH + 2 * t;
#pragma unroll
  for (int i = 0; i < MT; ++i)
#pragma unroll
    for (int j = 0; j < NT_S; ++j) s[i][j][0] = s[i][j][1] = s[i][j][2] = s[i][j][3] = 0.0f;
#pragma unroll
  for (int ks = 0; ks < QFRAGS; ++ks) {
    uint ah[MT][4], al[MT][4];
#pragma unroll
    for (int i = 0; i < MT; ++i)
#pragma unroll
      for (int e = 0; e < 4; ++e) SPLIT(a_operand(qa[i][ks][e]), ah[i][e], al[i][e]);
#pragma unroll
    for (int j = 0; j < NT_S; ++j) {
      const float2 kv = *(__local const float2*)(row + j * 8 * K_PITCH + ks * 8);
      uint bh0, bl0, bh1, bl1;
      SPLIT(kv.x, bh0, bl0);
      SPLIT(kv.y, bh1, bl1);
#pragma unroll
      for (int i = 0; i < MT; ++i) MMA_3X(s[i][j], ah[i], al[i], bh0, bl0, bh1, bl1);
    }
  }
}

/* O += P V over the block's keys, 8 at a time (k = t: key 2t, k = t+4: key 2t+1); each V value
 * is split once per warp and reused across m-tiles. */
inline void pv_block(float acc[MT][NT_O][4], const float s[MT][NT_S][4], __local const float* v_tile, int lane) {
  const int g = lane >> 2, t = lane & 3;
  __local const float* row = v_tile + 2 * t * V_PITCH + g;
#pragma unroll
  for (int kk = 0; kk < NT_S; ++kk) {
    uint ph[MT][4], pl[MT][4];
#pragma unroll
    for (int i = 0; i < MT; ++i) {
      SPLIT(s[i][kk][0], ph[i][0], pl[i][0]);
      SPLIT(s[i][kk][2], ph[i][1], pl[i][1]);
      SPLIT(s[i][kk][1], ph[i][2], pl[i][2]);
      SPLIT(s[i][kk][3], ph[i][3], pl[i][3]);
    }
#pragma unroll
    for (int n = 0; n < NT_O; ++n) {
      uint bh0, bl0, bh1, bl1;
      SPLIT(row[kk * 8 * V_PITCH + n * 8], bh0, bl0);
      SPLIT(row[(kk * 8 + 1) * V_PITCH + n * 8], bh1, bl1);
#pragma unroll
      for (int i = 0; i < MT; ++i) MMA_3X(acc[i][n], ph[i], pl[i], bh0, bl0, bh1, bl1);
    }
  }
}

inline void store_o2(__global float* o, long at, float x0, float x1, bool ok0, bool ok1) {
  if (ok0) o[at] = x0;
  if (ok1) o[at + 1] = x1;
}
