/* standard_mma.cl: the standard path's two products on NVIDIA tensor cores (compute capability
 * >= 8.0), over the operand files of the tensor-core fa2 (mma_f16.cl for fp16/bf16 with mma.sync,
 * mma_tf32.cl for fp32 as 3xTF32; the contract at the top of fa2_mma.cl: load_q, qk_block,
 * pv_block, store_o2 and the tile geometry). The work is the portable standard's (standard.cl):
 * S = scale*QK^T into the fp32 workspace (B, H, Nq, Nk), masked entries -inf, every variant through
 * common.cl's final_score; standard_softmax.cl's row softmax overwrites it with P; O = P V. Only
 * the products move to the tensor cores, which is where the FFMA form spent ~85 % of its time on
 * the H200 (docs/perf/nvidia-h200.md); the S/P traffic is the same.
 *
 * standard_mma_scores: one work-group of WARPS warps per (BR query rows, SCORE_BLOCKS blocks of BC
 * keys, batch*head); warp w owns MT m-tiles of 16 rows, whose Q stays in registers as A fragments
 * across the key blocks; K blocks arrive in two __local buffers (the next copied while the current
 * one is multiplied); lane 4g+t stores rows g and g+8, keys 2t and 2t+1 of each 8-key tile as one
 * 8-byte store. Blocks no row of the work-group can see (causal, window) skip the product and
 * store -inf pairs.
 * standard_mma_pv: one work-group per (BR query rows, batch*head), over the key blocks its rows can
 * see (key_block_range; the others hold P = 0): V blocks in two __local buffers, P read from the
 * workspace straight into the C layout pv_block takes (each lane's pairs, 8-byte loads), rounded to
 * the operand type inside pv_block as fa2_mma rounds P; O written once through its strides. */
#if !defined(ELEM_T) || !defined(CHUNK) || !defined(DPAD) || !defined(QFRAGS) || !defined(K_PITCH) || \
    !defined(V_PITCH)
#error "standard_mma.cl: an operand file (mma_f16.cl over mma_half_io.cl, or mma_tf32.cl) must come first"
#endif
#if !defined(BR) || !defined(WG_SIZE) || !defined(NT_S) || !defined(NT_O)
#error "standard_mma.cl: mma_ptx.cl must come before the operand file and this file"
#endif
#if defined(ASYNC_MMA)
#error "standard_mma.cl runs the synchronous operand files only (mma.sync)"
#endif

#ifndef SCORE_BLOCKS
#define SCORE_BLOCKS 4 /* key blocks of BC per scores work-group: its Q fragments serve them all */
#endif
/* fp16 P (at most 1) is multiplied by 2^15 before pv_block rounds it and O divided back at the
 * end (exact: a power of two), so probabilities down to ~2^-39 stay normal fp16 numbers instead
 * of flushing to zero below 2^-24; bf16 and tf32 have fp32's exponent range. */
#if DTYPE == 1
#define P_SCALE 32768.0f
#else
#define P_SCALE 1.0f
#endif
#define STD_CHUNKS_PER_ROW (DPAD / CHUNK)

/* Rows k0 .. k0+BC-1 of a K or V slice into a row-major __local tile; rows past n_k and columns
 * past the head dim become 0. With VEC_LOAD (16-byte aligned rows, the host checks) the copies
 * are cp.async, one commit group; the caller waits before its barrier. */
inline void stage_rows(__local ELEM_T* tile, int pitch, __global const ELEM_T* src, long base, long stride, int k0,
                       int n_k, int lid) {
#if VEC_LOAD
  for (int idx = lid; idx < BC * STD_CHUNKS_PER_ROW; idx += WG_SIZE) {
    const int r = idx / STD_CHUNKS_PER_ROW, c = (idx - r * STD_CHUNKS_PER_ROW) * CHUNK;
    const bool ok = k0 + r < n_k && c < HEAD_DIM;
    copy16_async(tile + r * pitch + c, src + base + (ok ? (long)(k0 + r) * stride + c : 0), ok ? 16 : 0);
  }
  async_commit();
#else
  for (int idx = lid; idx < BC * DPAD; idx += WG_SIZE) {
    const int r = idx / DPAD, c = idx - r * DPAD;
    tile[r * pitch + c] = k0 + r < n_k && c < HEAD_DIM ? src[base + (long)(k0 + r) * stride + c] : (ELEM_T)0;
  }
#endif
}

/* This work-item's copies of the buffer about to be read have landed, and everyone's are visible;
 * every warp is also past the step that read the other buffer, which may now be overwritten. */
inline void stage_ready(void) {
#if VEC_LOAD
  async_wait_all();
#endif
  barrier(CLK_LOCAL_MEM_FENCE);
}

__kernel __attribute__((reqd_work_group_size(WG_SIZE, 1, 1)))
void standard_mma_scores(__global const STORAGE_T* q, __global const STORAGE_T* k, __global float* s_out,
                         VARIANT_PARAMS, const AttnArgs args) {
  __local ELEM_T k_tile[2][BC * K_PITCH] __attribute__((aligned(128)));
  const AttnArgs* a = &args;
  const int lid = get_local_id(0), warp = lid / 32, lane = lid % 32, g = lane / 4, t = lane % 4;
  const int blk0 = get_group_id(0) * SCORE_BLOCKS, q0 = get_group_id(1) * BR;
  const int bh = get_group_id(2), b = bh / a->heads, h = bh % a->heads, hk = KV_HEAD(a, h);
  const SeqView sv = seq_view(a, b, h, NATURAL_UNIT, cu_seqlens_q, cu_seqlens_k, alibi_slopes);
  const int nq = SV_NQ(&sv, a), nk = SV_NK(&sv, a);
  if (q0 >= nq) return; /* VARLEN: past this sequence's rows (the whole work-group; nothing reads them) */
  const long q_base = SEQ_BASE(a, q, b, h, sv.q_start), k_base = SEQ_BASE(a, k, b, hk, sv.k_start);
  __global const ELEM_T* kg = (__global const ELEM_T*)k;
  const int row0 = q0 + warp * 16 * MT + g; /* this lane's rows: row0 + 16i and row0 + 16i + 8 */
  const float scale = a->scale * NATURAL_UNIT;
  const bool pairs = (a->seqlen_k & 1) == 0; /* S rows start on 8 bytes: keys 2t, 2t+1 as one store */

  qfrag_t qa[MT][QFRAGS][4];
  load_q(qa, (__global const ELEM_T*)q, q_base, a->q_seq_stride, row0, nq, t);
  int kb_begin, kb_end; /* the blocks some row of this work-group sees */
  key_block_range(q0, min(q0 + BR, nq), BC, &sv, a, &kb_begin, &kb_end);
  const int blk_end = min(blk0 + SCORE_BLOCKS, (a->seqlen_k + BC - 1) / BC);

  if (blk0 < blk_end) stage_rows(k_tile[0], K_PITCH, kg, k_base, a->k_seq_stride, blk0 * BC, nk, lid);
  for (int blk = blk0; blk < blk_end; ++blk) {
    const int k0 = blk * BC, cur = (blk - blk0) & 1;
    stage_ready();
    if (blk + 1 < blk_end) stage_rows(k_tile[cur ^ 1], K_PITCH, kg, k_base, a->k_seq_stride, k0 + BC, nk, lid);
    float s[MT][NT_S][4];
    const bool seen = blk >= kb_begin && blk < kb_end; /* by some row of the work-group (warp-uniform) */
    if (seen) {
      qk_block(s, qa, k_tile[cur], lane);
    } else { /* wholly hidden (causal, window): every entry -inf, as final_score would make it */
#pragma unroll
      for (int i = 0; i < MT; ++i)
#pragma unroll
        for (int j = 0; j < NT_S; ++j) s[i][j][0] = s[i][j][1] = s[i][j][2] = s[i][j][3] = 0.0f;
    }
    /* whole pairs where no key of the block is hidden from any row and no transform applies (scaled
     * only), or where every key is hidden (-inf: half of a causal S, without a final_score each) */
    const bool plain = pairs && k0 + BC <= a->seqlen_k && (!seen || !block_needs_mask(q0, BR, k0, BC, &sv, a));
#pragma unroll
    for (int i = 0; i < MT; ++i)
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        const int row = row0 + 16 * i + 8 * r;
        if (row >= a->seqlen_q) continue;
        __global float* s_row = s_out + ((long)bh * a->seqlen_q + row) * a->seqlen_k;
#pragma unroll
        for (int j = 0; j < NT_S; ++j) {
          const int key = k0 + 8 * j + 2 * t;
          /* -inf stored as such, never as a product (a negative or zero scale would flip or lose it) */
          const float x0 = seen ? s[i][j][2 * r] * scale : NEG_INF, x1 = seen ? s[i][j][2 * r + 1] * scale : NEG_INF;
          if (plain) {
            *(__global float2*)(s_row + key) = (float2)(x0, x1);
          } else {
            if (key < a->seqlen_k) s_row[key] = final_score(x0, row, key, &sv, a, mask);
            if (key + 1 < a->seqlen_k) s_row[key + 1] = final_score(x1, row, key + 1, &sv, a, mask);
          }
        }
      }
  }
}

/* P[row][key], P[row][key + 1] of one (batch, head)'s workspace rows (n_k keys a row), 0 for rows
 * past `rows` and keys past n_k; `pairs`: n_k even, so an even key's pair is one 8-byte load. */
inline float2 p_pair(__global const float* p, int row, int key, int rows, int n_k, bool pairs) {
  if (row >= rows) return (float2)(0.0f, 0.0f);
  __global const float* at = p + (long)row * n_k + key;
  if (pairs && key < n_k) return *(__global const float2*)at;
  return (float2)(key < n_k ? at[0] : 0.0f, key + 1 < n_k ? at[1] : 0.0f);
}

__kernel __attribute__((reqd_work_group_size(WG_SIZE, 1, 1)))
void standard_mma_pv(__global const float* p, __global const STORAGE_T* v, __global STORAGE_T* o, VARIANT_PARAMS,
                     const AttnArgs args) {
  __local ELEM_T v_tile[2][BC * V_PITCH] __attribute__((aligned(128)));
  const AttnArgs* a = &args;
  const int lid = get_local_id(0), warp = lid / 32, lane = lid % 32, g = lane / 4, t = lane % 4;
  const int q0 = get_group_id(0) * BR;
  const int bh = get_group_id(2), b = bh / a->heads, h = bh % a->heads, hk = KV_HEAD(a, h);
  const SeqView sv = seq_view(a, b, h, 1.0f, cu_seqlens_q, cu_seqlens_k, alibi_slopes);
  const int nq = SV_NQ(&sv, a), nk = SV_NK(&sv, a);
  if (q0 >= nq) return; /* VARLEN: past this sequence's rows */
  const long v_base = SEQ_BASE(a, v, b, hk, sv.k_start), o_base = SEQ_BASE(a, o, b, h, sv.q_start);
  __global const ELEM_T* vg = (__global const ELEM_T*)v;
  __global const float* p_rows = p + (long)bh * a->seqlen_q * a->seqlen_k;
  const int row0 = q0 + warp * 16 * MT + g;
  const bool pairs = (a->seqlen_k & 1) == 0;
  int kb_begin, kb_end;
  key_block_range(q0, min(q0 + BR, nq), BC, &sv, a, &kb_begin, &kb_end);

  float acc[MT][NT_O][4];
#pragma unroll
  for (int i = 0; i < MT; ++i)
#pragma unroll
    for (int n = 0; n < NT_O; ++n) acc[i][n][0] = acc[i][n][1] = acc[i][n][2] = acc[i][n][3] = 0.0f;

  if (kb_begin < kb_end) stage_rows(v_tile[0], V_PITCH, vg, v_base, a->v_seq_stride, kb_begin * BC, nk, lid);
  for (int blk = kb_begin; blk < kb_end; ++blk) {
    const int k0 = blk * BC, cur = (blk - kb_begin) & 1;
    stage_ready();
    if (blk + 1 < kb_end) stage_rows(v_tile[cur ^ 1], V_PITCH, vg, v_base, a->v_seq_stride, k0 + BC, nk, lid);
    float s[MT][NT_S][4]; /* P in the C layout of S: rows g, g+8, keys 8j + 2t, + 1 */
#pragma unroll
    for (int i = 0; i < MT; ++i)
#pragma unroll
      for (int j = 0; j < NT_S; ++j) {
        const int key = k0 + 8 * j + 2 * t, ra = row0 + 16 * i;
        const float2 pa = p_pair(p_rows, ra, key, nq, a->seqlen_k, pairs);
        const float2 pb = p_pair(p_rows, ra + 8, key, nq, a->seqlen_k, pairs);
        s[i][j][0] = pa.x * P_SCALE;
        s[i][j][1] = pa.y * P_SCALE;
        s[i][j][2] = pb.x * P_SCALE;
        s[i][j][3] = pb.y * P_SCALE;
      }
    pv_block(acc, s, v_tile[cur], lane);
  }

  __global ELEM_T* og = (__global ELEM_T*)o;
  const float inv = 1.0f / P_SCALE;
#pragma unroll
  for (int i = 0; i < MT; ++i)
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int row = row0 + 16 * i + 8 * r;
      const bool in = row < nq;
#pragma unroll
      for (int n = 0; n < NT_O; ++n) {
        const int col = 8 * n + 2 * t;
        store_o2(og, o_base + (long)row * a->o_seq_stride + col, acc[i][n][2 * r] * inv, acc[i][n][2 * r + 1] * inv,
                 in && col < HEAD_DIM, in && col + 1 < HEAD_DIM);
      }
    }
}
