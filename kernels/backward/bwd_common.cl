/* bwd_common.cl: what every backward path shares, on top of common.cl's score transform and
 * visibility rules (which the backward must reproduce exactly). Helpers: the probability and the
 * score gradient of one (query, key) entry recomputed from the saved LSE, and an fp32 atomic add
 * (OpenCL 1.2 has none: a compare-and-swap loop on the bits; NV_RED 1, NVIDIA's own add). Kernels: the preprocess
 * (D = rowsum(dO * O) and, for the atomic and fa1 paths, clearing the fp32 dQ accumulator), the
 * convert of that accumulator to dQ's dtype and strides, and the bias-gradient passes (clearing
 * the dS target, then the fixed-order sum over broadcast dimensions). All in natural units
 * (SeqView unit 1): P = exp(s - LSE). Row-wise work-items: one per (query row, head, batch). */

#ifndef DBIAS
#define DBIAS 0 /* 1: the call wants the gradient of its additive bias (MASK_KIND 2) */
#endif

#ifndef NV_RED
#define NV_RED 0 /* 1 (FLASHCL_BWD_RED=1, NVIDIA only): red.global.add.f32 through inline PTX */
#endif

#if NV_RED
/* fp32 atomic add done by the L2 (no read, no retry), as the tensor-core backward's atomic form
 * adds dQ (bwd_mma.cl's red_add_f32). */
inline void atomic_add_float(volatile __global float* p, float x) {
  asm volatile("red.global.add.f32 [%0], %1;" ::"l"((ulong)p), "f"(x) : "memory");
}
#else
/* fp32 atomic add by compare-and-swap on the bits; the loop retries while another work-item
 * changed the value between the read and the swap. The first swap guesses +0 (what the
 * accumulator is cleared to) instead of reading the cell plainly: that read raced with other
 * work-groups' swaps (oclgrind --data-races), and a wrong guess only costs one more iteration. */
inline void atomic_add_float(volatile __global float* p, float x) {
  volatile __global uint* bits = (volatile __global uint*)p;
  uint seen = 0u, expected;
  do {
    expected = seen;
    seen = atomic_cmpxchg(bits, expected, as_uint(as_float(expected) + x));
  } while (seen != expected);
}
#endif

/* P of entry (row, key) given raw = scale * q.k: the forward's score transform, then
 * exp(s - LSE). Hidden keys and rows whose LSE is -inf (no visible key) give exactly 0. */
inline float bwd_probability(float raw, int row, int key, float lse, const SeqView* v, const AttnArgs* a,
                             __global const MASK_T* mask) {
  if (lse == NEG_INF) return 0.0f;
  const float s = final_score(raw, row, key, v, a, mask);
  return s == NEG_INF ? 0.0f : exp(s - lse);
}

/* D[row] = sum_c dO[row][c] * O[row][c] into the workspace, indexed like LSE; when the K/V-block
 * kernels add to dQ (dq_mode 1, 2) the row's fp32 dQ accumulator is cleared too. Grid (rows of the longest sequence, heads, batch). */
__kernel void bwd_preprocess(__global const STORAGE_T* o, __global const STORAGE_T* dout, __global float* ws,
                             VARIANT_PARAMS, const AttnArgs args, const BwdArgs bargs) {
  const AttnArgs* a = &args;
  const BwdArgs* g = &bargs;
  const int row = get_global_id(0), h = get_global_id(1), b = get_global_id(2);
  const SeqView sv = seq_view(a, b, h, 1.0f, cu_seqlens_q, cu_seqlens_k, alibi_slopes);
  if (row >= SV_NQ(&sv, a)) return;
  const long o_row = SEQ_BASE(a, o, b, h, sv.q_start) + (long)row * a->o_seq_stride;
  const long do_row = SEQ_BASE(g, dout, b, h, sv.q_start) + (long)row * g->dout_seq_stride;
  float sum = 0.0f;
  for (int c = 0; c < HEAD_DIM; ++c) sum += LOAD_ELEM(o, o_row + c) * LOAD_ELEM(dout, do_row + c);
  const long index = LSE_INDEX(a, &sv, b, h, row);
  ws[g->ws_d_offset + index] = sum;
  if (g->dq_mode != 0)
    for (int c = 0; c < HEAD_DIM; ++c) ws[g->ws_dq_offset + index * HEAD_DIM + c] = 0.0f;
}

/* dQ (storage dtype, dQ's strides) from the fp32 accumulator, which already holds scale * dS K. */
__kernel void bwd_convert_dq(__global const float* ws, __global STORAGE_T* dq, VARIANT_PARAMS, const AttnArgs args,
                             const BwdArgs bargs) {
  const AttnArgs* a = &args;
  const BwdArgs* g = &bargs;
  const int row = get_global_id(0), h = get_global_id(1), b = get_global_id(2);
  const SeqView sv = seq_view(a, b, h, 1.0f, cu_seqlens_q, cu_seqlens_k, alibi_slopes);
  if (row >= SV_NQ(&sv, a)) return;
  const long dq_row = SEQ_BASE(g, dq, b, h, sv.q_start) + (long)row * g->dq_seq_stride;
  const long acc = g->ws_dq_offset + LSE_INDEX(a, &sv, b, h, row) * HEAD_DIM;
  for (int c = 0; c < HEAD_DIM; ++c) STORE_ELEM(dq, dq_row + c, ws[acc + c]);
}

/* Zeroes the dS target of every (batch, head) over (Nq, Nk): entries of blocks nobody visits and
 * rows or keys past a sequence's end keep 0. Grid (Nk, Nq, B * H). */
__kernel void bwd_dbias_clear(__global float* ds_target, const AttnArgs args, const BwdArgs bargs) {
  const AttnArgs* a = &args;
  const BwdArgs* g = &bargs;
  const int key = get_global_id(0), row = get_global_id(1), bh = get_global_id(2);
  if (key >= a->seqlen_k || row >= a->seqlen_q) return;
  const int b = bh / a->heads, h = bh - b * a->heads;
  ds_target[g->ds_offset + (long)b * g->ds_batch_stride + (long)h * g->ds_head_stride + (long)row * g->ds_row_stride +
            key] = 0.0f;
}

/* d_bias (dbias_batch, dbias_heads, Nq, Nk) = dS summed over the dimensions the bias was
 * broadcast over, batch-major in a fixed order, so the result is the same on every run.
 * Grid (Nk, Nq, dbias_batch * dbias_heads). */
__kernel void bwd_dbias_reduce(__global const float* ds, __global float* dbias, const AttnArgs args,
                               const BwdArgs bargs) {
  const AttnArgs* a = &args;
  const BwdArgs* g = &bargs;
  const int key = get_global_id(0), row = get_global_id(1), slice = get_global_id(2);
  if (key >= a->seqlen_k || row >= a->seqlen_q) return;
  const int mb = slice / g->dbias_heads, mh = slice - mb * g->dbias_heads;
  const int b_lo = g->dbias_batch == 1 ? 0 : mb, b_hi = g->dbias_batch == 1 ? a->batch : mb + 1;
  const int h_lo = g->dbias_heads == 1 ? 0 : mh, h_hi = g->dbias_heads == 1 ? a->heads : mh + 1;
  const long cell = g->ds_offset + (long)row * g->ds_row_stride + key;
  float sum = 0.0f;
  for (int b = b_lo; b < b_hi; ++b)
    for (int h = h_lo; h < h_hi; ++h) sum += ds[cell + (long)b * g->ds_batch_stride + (long)h * g->ds_head_stride];
  dbias[g->dbias_offset + (long)mb * g->dbias_batch_stride + (long)mh * g->dbias_head_stride +
        (long)row * g->dbias_row_stride + key] = sum;
}
