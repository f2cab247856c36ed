/* common.cl: pieces every flashcl kernel shares: element load/store per storage dtype, tensor
 * addressing through AttnArgs strides, cooperative tile loads into __local memory, and the
 * register-blocked "team" products used by fa1 and fa2. A work-group is split into teams of TPR
 * work-items; team t owns TM query rows, lane l of a team owns keys l, l+TPR, ... of a score block
 * and head-dim columns l, l+TPR, ... of the output, so no two teams ever share a row (FA2's
 * split-Q) and only the lanes of one team exchange row statistics. */

#ifndef DTYPE
#define DTYPE 0 /* storage type of Q, K, V, O: 0 = fp32 */
#endif
#ifndef HEAD_DIM
#define HEAD_DIM 64 /* d */
#endif
#ifndef TPR
#define TPR 8 /* work-items per team (threads per row group) */
#endif
#ifndef D_PAD
#define D_PAD ((HEAD_DIM + TPR - 1) / TPR * TPR) /* d rounded up to a multiple of TPR */
#endif
#ifndef CAUSAL
#define CAUSAL 0 /* 1: query i sees keys j <= i + seqlen_k - seqlen_q */
#endif

#define ROW_STRIDE (D_PAD + 1) /* __local row pitch; +1 staggers banks for column walks */
#define NEG_INF (-INFINITY)
#define LN2_F 0.693147180559945309f

/* ---- storage dtypes: adding one is a new branch here, nothing else ---- */
#if DTYPE == 0
#define STORAGE_T float
#define LOAD_ELEM(p, i) ((p)[(i)])
#define STORE_ELEM(p, i, x) ((p)[(i)] = (x))
#else
#error "unsupported DTYPE"
#endif

/* Element offset of (b, s, h, 0) in a tensor described by offset + strides. */
#define TENSOR_BASE(a, t, b, h) \
  ((a)->t##_offset + (long)(b) * (a)->t##_batch_stride + (long)(h) * (a)->t##_head_stride)

/* Loads rows [row0, row0 + nrows) of a (seq, d) slice into dst (nrows x ROW_STRIDE), times `mul`.
 * Rows at or past `valid` and columns past HEAD_DIM read as zero, so padded tiles are harmless. */
inline void load_tile(__local float* dst, __global const STORAGE_T* src, long base, long seq_stride,
                      int row0, int nrows, int valid, float mul, int lid, int nthreads) {
  for (int idx = lid; idx < nrows * D_PAD; idx += nthreads) {
    const int r = idx / D_PAD, c = idx - r * D_PAD;
    float x = 0.0f;
    if (row0 + r < valid && c < HEAD_DIM) x = LOAD_ELEM(src, base + (long)(row0 + r) * seq_stride + c) * mul;
    dst[r * ROW_STRIDE + c] = x;
  }
}

/* Loads rows [row0, row0 + nrows) transposed: dst[c * (nrows + 1) + r] (D_PAD x (nrows + 1)).
 * Key tiles are kept this way so the work-items of a team read consecutive addresses: no bank
 * conflicts on GPUs, contiguous vector loads where PoCL vectorises across work-items. */
inline void load_tile_transposed(__local float* dst, __global const STORAGE_T* src, long base, long seq_stride,
                                 int row0, int nrows, int valid, int lid, int nthreads) {
  for (int idx = lid; idx < nrows * D_PAD; idx += nthreads) {
    const int r = idx / D_PAD, c = idx - r * D_PAD;
    float x = 0.0f;
    if (row0 + r < valid && c < HEAD_DIM) x = LOAD_ELEM(src, base + (long)(row0 + r) * seq_stride + c);
    dst[c * (nrows + 1) + r] = x;
  }
}

/* True when key `key` is hidden from query `row` (past the end, or above the causal diagonal). */
inline bool key_masked(int row, int key, int seqlen_k, int causal_shift) {
#if CAUSAL
  if (key > row + causal_shift) return true;
#endif
  return key >= seqlen_k;
}

/* Number of key blocks of width bc that query rows [q0, q_end) can see at all. */
inline int visible_key_blocks(int q0, int q_end, int bc, int seqlen_k, int causal_shift) {
  int keys = seqlen_k;
#if CAUSAL
  keys = min(keys, q_end + causal_shift); /* the last row, q_end - 1, sees keys <= q_end - 1 + shift */
#endif
  return keys <= 0 ? 0 : (keys + bc - 1) / bc;
}

/* True when some key of block [k0, k0 + bc) is hidden from some row of [q0, q0 + br). */
inline bool block_needs_mask(int q0, int k0, int bc, int seqlen_k, int causal_shift) {
#if CAUSAL
  if (k0 + bc - 1 > q0 + causal_shift) return true;
#endif
  return k0 + bc > seqlen_k;
}
