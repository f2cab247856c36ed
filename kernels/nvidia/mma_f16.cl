/* mma_f16.cl: the fp16/bf16 operand side of the tensor-core fa2 (fa2_mma.cl): mma.sync.m16n8k16
 * with fp32 accumulation, B fragments read by ldmatrix (K as stored, V transposed on the fly by
 * ldmatrix.trans, so neither tile is rearranged in __local memory). Element type, Q fragments and
 * conversions come from mma_half_io.cl.
 *
 * Fragment layout (PTX ISA, m16n8k16): lane 4g+t holds A rows g, g+8 and columns 2t, 2t+1, 2t+8,
 * 2t+9; B column g and rows 2t, 2t+1, 2t+8, 2t+9; C rows g, g+8 and columns 2t, 2t+1. The C
 * layout of S matches the A layout of P, so P never leaves registers. */

#define K_PITCH (DPAD + 8)                 /* elements per K/V row: 16-byte rows on distinct banks */
#define V_PITCH (DPAD + 8)

/* D += A B for one m16n8k16 tile. */
#define MMA16(d, a, b0, b1)                                                                            \
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32." MMA_TYPE "." MMA_TYPE ".f32 "                  \
               "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"                                 \
               : "+f"((d)[0]), "+f"((d)[1]), "+f"((d)[2]), "+f"((d)[3])                               \
               : "r"((a)[0]), "r"((a)[1]), "r"((a)[2]), "r"((a)[3]), "r"(b0), "r"(b1))

/* S = Q K^T for the warp's rows and the block's BC keys. One ldmatrix.x4 gives the B fragments of
 * two 8-key tiles (lanes 0-7 address keys 0-7 at dims +0, lanes 8-15 keys 0-7 at dims +8, lanes
 * 16-23 keys 8-15 at +0, lanes 24-31 keys 8-15 at +8), used by every m-tile. The k-step is the
 * outer loop so consecutive mma.sync accumulate into different tiles. */
inline void qk_block(float s[MT][NT_S][4], const qfrag_t qa[MT][QFRAGS][4], __local const ushort* k_tile, int lane) {
  __local const ushort* row = k_tile + ((lane >> 4) * 8 + (lane & 7)) * K_PITCH + ((lane >> 3) & 1) * 8;
#pragma unroll
  for (int i = 0; i < MT; ++i)
#pragma unroll
    for (int j = 0; j < NT_S; ++j) s[i][j][0] = s[i][j][1] = s[i][j][2] = s[i][j][3] = 0.0f;
#pragma unroll
  for (int ks = 0; ks < QFRAGS; ++ks)
#pragma unroll
    for (int j2 = 0; j2 < NT_S / 2; ++j2) {
      uint b[4];
      ldsm_x4(b, row + j2 * 16 * K_PITCH + ks * 16);
#pragma unroll
      for (int i = 0; i < MT; ++i) {
        MMA16(s[i][2 * j2], qa[i][ks], b[0], b[1]);
        MMA16(s[i][2 * j2 + 1], qa[i][ks], b[2], b[3]);
      }
    }
}

/* O += P V. P's A fragment for keys 16kk.. is S tiles 2kk and 2kk+1 rounded to 16 bits; one
 * ldmatrix.x4.trans gives the B fragments of two 8-column tiles of V (lanes 0-7 address keys 0-7
 * at columns +0, lanes 8-15 keys 8-15 at +0, lanes 16-23 keys 0-7 at +8, lanes 24-31 keys 8-15
 * at +8), used by every m-tile. */
inline void pv_block(float acc[MT][NT_O][4], const float s[MT][NT_S][4], __local const ushort* v_tile, int lane) {
  __local const ushort* row = v_tile + (((lane >> 3) & 1) * 8 + (lane & 7)) * V_PITCH + (lane >> 4) * 8;
#pragma unroll
  for (int kk = 0; kk < NT_S / 2; ++kk) {
    uint pa[MT][4];
#pragma unroll
    for (int i = 0; i < MT; ++i) p_fragment(pa[i], s[i], kk);
#pragma unroll
    for (int n2 = 0; n2 < NT_O / 2; ++n2) {
      uint b[4];
      ldsm_x4_trans(b, row + kk * 16 * V_PITCH + n2 * 16);
#pragma unroll
      for (int i = 0; i < MT; ++i) {
        MMA16(acc[i][2 * n2], pa[i], b[0], b[1]);
        MMA16(acc[i][2 * n2 + 1], pa[i], b[2], b[3]);
      }
    }
  }
}
