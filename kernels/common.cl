/* common.cl: pieces every flashcl kernel shares: element load/store per storage dtype, tensor
 * addressing through AttnArgs strides, cooperative tile loads into __local memory, and the
 * register-blocked "team" products used by fa1 and fa2. A work-group is split into teams of TPR
 * work-items; team t owns TM query rows, lane l of a team owns keys l, l+TPR, ... of a score block
 * and head-dim columns l, l+TPR, ... of the output, so no two teams ever share a row (FA2's
 * split-Q) and only the lanes of one team exchange row statistics. */

#ifndef DTYPE
#define DTYPE 0 /* storage type of Q, K, V, O: 0 = fp32, 1 = fp16, 2 = bf16; arithmetic is fp32 */
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

#define NEG_INF (-INFINITY)
#define LN2_F 0.693147180559945309f

/* ---- storage dtypes: adding one is a new branch here, nothing else ---- */
#if DTYPE == 0
#define STORAGE_T float
#define LOAD_ELEM(p, i) ((p)[(i)])
#define STORE_ELEM(p, i, x) ((p)[(i)] = (x))
#elif DTYPE == 1
/* fp16 through vload_half/vstore_half: needs no cl_khr_fp16 (PoCL and NVIDIA report none) */
#define STORAGE_T half
#define LOAD_ELEM(p, i) vload_half((i), (p))
#define STORE_ELEM(p, i, x) vstore_half_rte((x), (i), (p))
#elif DTYPE == 2
/* bf16 as raw bits: the top half of an fp32, rounded to nearest even on store */
#define STORAGE_T ushort
#define LOAD_ELEM(p, i) as_float((uint)(p)[(i)] << 16)
#define STORE_ELEM(p, i, x) ((p)[(i)] = float_to_bf16(x))
inline ushort float_to_bf16(float x) {
  const uint u = as_uint(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (ushort)((u >> 16) | 0x40u); /* NaN stays NaN */
  return (ushort)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
#else
#error "unsupported DTYPE"
#endif

/* Element offset of (b, s, h, 0) in a tensor described by offset + strides. */
#define TENSOR_BASE(a, t, b, h) \
  ((a)->t##_offset + (long)(b) * (a)->t##_batch_stride + (long)(h) * (a)->t##_head_stride)

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
