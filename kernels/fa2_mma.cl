/* fa2_mma.cl: FlashAttention-2 forward on NVIDIA tensor cores (compute capability >= 8.0), fp16
 * or bf16 storage, fp32 accumulation, through inline PTX mma.sync.m16n8k16. Built only for
 * devices where the host's probe kernel (mma_probe) built and computed right.
 *
 * One work-group of WARPS warps per (Q block, head, batch); warp w owns query rows
 * 16w .. 16w+15 of the block, so no two warps share a row (FA2's split-Q). Lane 4g+t holds, per
 * the m16n8k16 fragment layout, rows g and g+8 and columns 2t, 2t+1 of every 16x8 tile.
 * Prologue: the warp's Q rows go straight from global memory into A fragments (registers).
 * Main loop over key blocks of BC: K (row-major) and V (transposed) to __local memory, each 16-bit
 * pair read as one 32-bit B fragment register; S = Q K^T into fp32 accumulators; row max over the
 * four lanes of a row with shfl.bfly; P = 2^(S - m) rounded to 16 bits is directly the A fragment
 * of P V (the accumulator layout of S matches the operand layout of P); O rescaled per block.
 * Epilogue: row sums gathered over the four lanes, O divided once, O and LSE written once. */

#ifndef WARPS
#define WARPS 4 /* warps per work-group: BR = 16 * WARPS query rows */
#endif
#ifndef BC
#define BC 64 /* keys per block (multiple of 16) */
#endif
#ifndef VEC_LOAD
#define VEC_LOAD 0 /* 1: K/V rows load 16 bytes at a time (d, offsets, strides multiples of 8) */
#endif
#define BR (16 * WARPS)
#define WG_SIZE (32 * WARPS)
#define D16 ((HEAD_DIM + 15) / 16 * 16) /* head dim padded to the mma k of 16 */
#define KSTEPS (D16 / 16)               /* k-steps of S = Q K^T */
#define NT_S (BC / 8)                   /* 8-key tiles of S per warp */
#define NT_O (D16 / 8)                  /* 8-column tiles of O per warp */
#define K_PITCH (D16 + 8)               /* ushorts per K row: +8 puts rows g on distinct banks */
#define VT_PITCH (BC + 8)               /* ushorts per V^T row */

#if DTYPE == 1
#define MMA_TYPE "f16"
#elif DTYPE == 2
#define MMA_TYPE "bf16"
#else
#error "fa2_mma needs fp16 or bf16 storage"
#endif

/* D += A B for one m16n8k16 tile. */
#define MMA(d, a, b0, b1)                                                                              \
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32." MMA_TYPE "." MMA_TYPE ".f32 "                  \
               "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"                                 \
               : "+f"((d)[0]), "+f"((d)[1]), "+f"((d)[2]), "+f"((d)[3])                               \
               : "r"((a)[0]), "r"((a)[1]), "r"((a)[2]), "r"((a)[3]), "r"(b0), "r"(b1))

/* Two fp32 values rounded to one register of two 16-bit values, `lo` in the low half. */
inline uint pack2(float lo, float hi) {
  uint r;
  asm("cvt.rn." MMA_TYPE "x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
  return r;
}

/* x from the lane whose id differs in `mask` (butterfly within the warp). */
inline float shfl_xor(float x, int mask) {
  float r;
  asm volatile("shfl.sync.bfly.b32 %0, %1, %2, 0x1f, 0xffffffff;" : "=f"(r) : "f"(x), "r"(mask));
  return r;
}

/* Bounds and the causal diagonal, the only masks this path takes (variants run on fa2.cl). */
inline bool mma_hidden(int row, int key, int seqlen_k, int causal_shift) {
#if CAUSAL
  if (key > row + causal_shift) return true;
#endif
  return key >= seqlen_k;
}

/* Key blocks rows [q0, q_end) can see; whether block k0 needs the mask at all. */
inline int mma_key_blocks(int q_end, int seqlen_k, int causal_shift) {
  int keys = seqlen_k;
#if CAUSAL
  keys = min(keys, q_end + causal_shift);
#endif
  return keys <= 0 ? 0 : (keys + BC - 1) / BC;
}

inline bool mma_block_masked(int q0, int k0, int seqlen_k, int causal_shift) {
#if CAUSAL
  if (k0 + BC - 1 > q0 + causal_shift) return true;
#endif
  return k0 + BC > seqlen_k;
}

/* Raw 16-bit element (row, col) of a (seq, d) slice, 0 outside it. */
inline uint bits_at(__global const ushort* p, long base, long seq_stride, int row, int col, int rows) {
  return (row < rows && col < HEAD_DIM) ? (uint)p[base + (long)row * seq_stride + col] : 0u;
}

#if VEC_LOAD
/* 16-byte chunks of a K or V block each work-item moves: the host checked that d, the offsets
 * and the strides are multiples of 8 elements. K chunks run along d (row-major in __local); V
 * chunks run across keys so the transposed 16-bit stores fall on distinct banks. */
#define KV_CHUNKS (BC * (D16 / 8))
#define KV_LOADS ((KV_CHUNKS + WG_SIZE - 1) / WG_SIZE)

inline void fetch_kv(uint4 kx[KV_LOADS], uint4 vx[KV_LOADS], __global const ushort* kb, __global const ushort* vb,
                     long k_base, long v_base, const AttnArgs* a, int k0, int lid) {
#pragma unroll
  for (int i = 0; i < KV_LOADS; ++i) {
    const int idx = lid + i * WG_SIZE;
    kx[i] = vx[i] = (uint4)(0u);
    if (idx < KV_CHUNKS) {
      const int kr = idx / (D16 / 8), kc = (idx - kr * (D16 / 8)) * 8;
      if (k0 + kr < a->seqlen_k && kc < HEAD_DIM)
        kx[i] = *(__global const uint4*)(kb + k_base + (long)(k0 + kr) * a->k_seq_stride + kc);
      const int vc = (idx / BC) * 8, vr = idx % BC;
      if (k0 + vr < a->seqlen_k && vc < HEAD_DIM)
        vx[i] = *(__global const uint4*)(vb + v_base + (long)(k0 + vr) * a->v_seq_stride + vc);
    }
  }
}

inline void store_kv(__local uint* k_tile, __local ushort* vt_tile, const uint4 kx[KV_LOADS],
                     const uint4 vx[KV_LOADS], int lid) {
#pragma unroll
  for (int i = 0; i < KV_LOADS; ++i) {
    const int idx = lid + i * WG_SIZE;
    if (idx >= KV_CHUNKS) continue;
    const int kr = idx / (D16 / 8), kc = (idx - kr * (D16 / 8)) * 8;
    *(__local uint4*)(k_tile + kr * (K_PITCH / 2) + kc / 2) = kx[i];
    const int vc = (idx / BC) * 8, vr = idx % BC;
    const uint w[4] = {vx[i].x, vx[i].y, vx[i].z, vx[i].w};
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      vt_tile[(vc + 2 * j) * VT_PITCH + vr] = (ushort)w[j];
      vt_tile[(vc + 2 * j + 1) * VT_PITCH + vr] = (ushort)(w[j] >> 16);
    }
  }
}
#endif

__kernel __attribute__((reqd_work_group_size(WG_SIZE, 1, 1)))
void fa2_mma_forward(__global const STORAGE_T* q, __global const STORAGE_T* k, __global const STORAGE_T* v,
                     __global STORAGE_T* o, __global float* lse, const AttnArgs args) {
  __local uint k_tile[BC * K_PITCH / 2] __attribute__((aligned(16))); /* K block, ushort pairs */
  __local ushort vt_tile[D16 * VT_PITCH] __attribute__((aligned(16))); /* V block transposed */

  const AttnArgs* a = &args;
  const int lid = get_local_id(0), warp = lid / 32, lane = lid % 32, g = lane / 4, t = lane % 4;
  const int q0 = get_group_id(0) * BR, h = get_group_id(1), b = get_group_id(2);
  const int q_end = min(q0 + BR, a->seqlen_q);
  const long q_base = TENSOR_BASE(a, q, b, h), k_base = TENSOR_BASE(a, k, b, h);
  const long v_base = TENSOR_BASE(a, v, b, h), o_base = TENSOR_BASE(a, o, b, h);
  __global const ushort* qb = (__global const ushort*)q;
  __global const ushort* kb_ = (__global const ushort*)k;
  __global const ushort* vb = (__global const ushort*)v;
  const int row_a = q0 + warp * 16 + g, row_b = row_a + 8; /* this lane's two rows */

  /* prologue: Q fragments, a[ks] = {(g, 2t..), (g+8, 2t..), (g, 2t+8..), (g+8, 2t+8..)} */
  uint qa[KSTEPS][4];
#pragma unroll
  for (int ks = 0; ks < KSTEPS; ++ks) {
    const int c = ks * 16 + 2 * t;
    qa[ks][0] = bits_at(qb, q_base, a->q_seq_stride, row_a, c, a->seqlen_q) |
                bits_at(qb, q_base, a->q_seq_stride, row_a, c + 1, a->seqlen_q) << 16;
    qa[ks][1] = bits_at(qb, q_base, a->q_seq_stride, row_b, c, a->seqlen_q) |
                bits_at(qb, q_base, a->q_seq_stride, row_b, c + 1, a->seqlen_q) << 16;
    qa[ks][2] = bits_at(qb, q_base, a->q_seq_stride, row_a, c + 8, a->seqlen_q) |
                bits_at(qb, q_base, a->q_seq_stride, row_a, c + 9, a->seqlen_q) << 16;
    qa[ks][3] = bits_at(qb, q_base, a->q_seq_stride, row_b, c + 8, a->seqlen_q) |
                bits_at(qb, q_base, a->q_seq_stride, row_b, c + 9, a->seqlen_q) << 16;
  }
  float acc[NT_O][4];
#pragma unroll
  for (int n = 0; n < NT_O; ++n) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.0f;
  float m_a = NEG_INF, m_b = NEG_INF, l_a = 0.0f, l_b = 0.0f; /* rows g and g+8; l per lane */

  const int n_blocks = mma_key_blocks(q_end, a->seqlen_k, a->causal_shift);
#if VEC_LOAD
  uint4 kx[KV_LOADS], vx[KV_LOADS];
  if (n_blocks > 0) fetch_kv(kx, vx, kb_, vb, k_base, v_base, a, 0, lid);
#endif
  for (int blk = 0; blk < n_blocks; ++blk) {
    const int k0 = blk * BC;
    barrier(CLK_LOCAL_MEM_FENCE);
#if VEC_LOAD
    /* the block's K and V arrived in registers during the previous block's arithmetic (or just
     * now, for the first block): store them, then start loading the next block */
    store_kv(k_tile, vt_tile, kx, vx, lid);
    barrier(CLK_LOCAL_MEM_FENCE);
    if (blk + 1 < n_blocks) fetch_kv(kx, vx, kb_, vb, k_base, v_base, a, k0 + BC, lid);
#else
    for (int idx = lid; idx < BC * (D16 / 2); idx += WG_SIZE) { /* pairs of columns */
      const int r = idx / (D16 / 2), c = (idx - r * (D16 / 2)) * 2;
      const int key = k0 + r;
      k_tile[r * (K_PITCH / 2) + c / 2] = bits_at(kb_, k_base, a->k_seq_stride, key, c, a->seqlen_k) |
                                          bits_at(kb_, k_base, a->k_seq_stride, key, c + 1, a->seqlen_k) << 16;
      vt_tile[c * VT_PITCH + r] = (ushort)bits_at(vb, v_base, a->v_seq_stride, key, c, a->seqlen_k);
      vt_tile[(c + 1) * VT_PITCH + r] = (ushort)bits_at(vb, v_base, a->v_seq_stride, key, c + 1, a->seqlen_k);
    }
    barrier(CLK_LOCAL_MEM_FENCE);
#endif

    /* S = Q K^T: b0 = K[key 8j+g][16ks+2t..], b1 = K[key 8j+g][16ks+2t+8..] */
    float s[NT_S][4];
#pragma unroll
    for (int j = 0; j < NT_S; ++j) {
      s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
#pragma unroll
      for (int ks = 0; ks < KSTEPS; ++ks) {
        const int w = (8 * j + g) * (K_PITCH / 2) + ks * 8 + t;
        MMA(s[j], qa[ks], k_tile[w], k_tile[w + 4]);
      }
    }
    const bool masked = mma_block_masked(q0, k0, a->seqlen_k, a->causal_shift);
    float mx_a = NEG_INF, mx_b = NEG_INF;
#pragma unroll
    for (int j = 0; j < NT_S; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        s[j][e] *= a->scale_log2;
        if (masked && mma_hidden(e < 2 ? row_a : row_b, k0 + 8 * j + 2 * t + (e & 1), a->seqlen_k, a->causal_shift))
          s[j][e] = NEG_INF;
      }
      mx_a = fmax(mx_a, fmax(s[j][0], s[j][1]));
      mx_b = fmax(mx_b, fmax(s[j][2], s[j][3]));
    }
    mx_a = fmax(mx_a, shfl_xor(mx_a, 1));
    mx_a = fmax(mx_a, shfl_xor(mx_a, 2));
    mx_b = fmax(mx_b, shfl_xor(mx_b, 1));
    mx_b = fmax(mx_b, shfl_xor(mx_b, 2));
    const float mn_a = fmax(m_a, mx_a), mn_b = fmax(m_b, mx_b);
    const float alpha_a = mn_a == NEG_INF ? 1.0f : exp2(m_a - mn_a);
    const float alpha_b = mn_b == NEG_INF ? 1.0f : exp2(m_b - mn_b);
    m_a = mn_a;
    m_b = mn_b;
    const float mu_a = m_a == NEG_INF ? 0.0f : m_a, mu_b = m_b == NEG_INF ? 0.0f : m_b;
    l_a *= alpha_a;
    l_b *= alpha_b;
#pragma unroll
    for (int n = 0; n < NT_O; ++n) {
      acc[n][0] *= alpha_a;
      acc[n][1] *= alpha_a;
      acc[n][2] *= alpha_b;
      acc[n][3] *= alpha_b;
    }
#pragma unroll
    for (int j = 0; j < NT_S; ++j) {
      s[j][0] = exp2(s[j][0] - mu_a);
      s[j][1] = exp2(s[j][1] - mu_a);
      s[j][2] = exp2(s[j][2] - mu_b);
      s[j][3] = exp2(s[j][3] - mu_b);
      l_a += s[j][0] + s[j][1];
      l_b += s[j][2] + s[j][3];
    }

    /* O += P V: A = P (tiles 2kk and 2kk+1 of S), b0 = V^T[col 8n+g][key 16kk+2t..] */
#pragma unroll
    for (int kk = 0; kk < BC / 16; ++kk) {
      uint pa[4];
      pa[0] = pack2(s[2 * kk][0], s[2 * kk][1]);
      pa[1] = pack2(s[2 * kk][2], s[2 * kk][3]);
      pa[2] = pack2(s[2 * kk + 1][0], s[2 * kk + 1][1]);
      pa[3] = pack2(s[2 * kk + 1][2], s[2 * kk + 1][3]);
#pragma unroll
      for (int n = 0; n < NT_O; ++n) {
        __local const uint* vt_row = (__local const uint*)(vt_tile + (8 * n + g) * VT_PITCH);
        MMA(acc[n], pa, vt_row[kk * 8 + t], vt_row[kk * 8 + t + 4]);
      }
    }
  }

  /* epilogue */
  l_a += shfl_xor(l_a, 1);
  l_a += shfl_xor(l_a, 2);
  l_b += shfl_xor(l_b, 1);
  l_b += shfl_xor(l_b, 2);
  const float inv_a = l_a > 0.0f ? 1.0f / l_a : 0.0f, inv_b = l_b > 0.0f ? 1.0f / l_b : 0.0f;
  __global ushort* ob = (__global ushort*)o; /* stores as 16-bit pairs rounded by pack2 */
#pragma unroll
  for (int n = 0; n < NT_O; ++n) {
    const int col = 8 * n + 2 * t;
    const uint pa = pack2(acc[n][0] * inv_a, acc[n][1] * inv_a), pb = pack2(acc[n][2] * inv_b, acc[n][3] * inv_b);
    const long at_a = o_base + (long)row_a * a->o_seq_stride + col, at_b = o_base + (long)row_b * a->o_seq_stride + col;
    if (row_a < a->seqlen_q && col < HEAD_DIM) ob[at_a] = (ushort)pa;
    if (row_a < a->seqlen_q && col + 1 < HEAD_DIM) ob[at_a + 1] = (ushort)(pa >> 16);
    if (row_b < a->seqlen_q && col < HEAD_DIM) ob[at_b] = (ushort)pb;
    if (row_b < a->seqlen_q && col + 1 < HEAD_DIM) ob[at_b + 1] = (ushort)(pb >> 16);
  }
  if (a->write_lse && t == 0) {
    const long lse_row = ((long)b * a->heads + h) * a->seqlen_q;
    if (row_a < a->seqlen_q) lse[lse_row + row_a] = l_a > 0.0f ? (m_a + log2(l_a)) * LN2_F : NEG_INF;
    if (row_b < a->seqlen_q) lse[lse_row + row_b] = l_b > 0.0f ? (m_b + log2(l_b)) * LN2_F : NEG_INF;
  }
}

/* Probe: one warp computes D = A B for A(16x16)[i][k] = (i + 2k) % 7 - 3, B(16x8)[k][j] =
 * (3k + j) % 5 - 2 (small integers, exact in 16 bits and fp32) and writes D (16x8) row-major. */
__kernel void mma_probe(__global float* d) {
  const int lane = get_local_id(0), g = lane / 4, t = lane % 4;
#define A_AT(i, kk) (float)(((i) + 2 * (kk)) % 7 - 3)
#define B_AT(kk, j) (float)((3 * (kk) + (j)) % 5 - 2)
  uint af[4];
  af[0] = pack2(A_AT(g, 2 * t), A_AT(g, 2 * t + 1));
  af[1] = pack2(A_AT(g + 8, 2 * t), A_AT(g + 8, 2 * t + 1));
  af[2] = pack2(A_AT(g, 2 * t + 8), A_AT(g, 2 * t + 9));
  af[3] = pack2(A_AT(g + 8, 2 * t + 8), A_AT(g + 8, 2 * t + 9));
  const uint b0 = pack2(B_AT(2 * t, g), B_AT(2 * t + 1, g)), b1 = pack2(B_AT(2 * t + 8, g), B_AT(2 * t + 9, g));
  float c[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  MMA(c, af, b0, b1);
  d[g * 8 + 2 * t] = c[0];
  d[g * 8 + 2 * t + 1] = c[1];
  d[(g + 8) * 8 + 2 * t] = c[2];
  d[(g + 8) * 8 + 2 * t + 1] = c[3];
}
