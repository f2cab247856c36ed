/* common.cl: pieces every flashcl kernel shares: element load/store per storage dtype, tensor
 * addressing through AttnArgs strides (packed sequences included), the per-(sequence, head) view
 * SeqView, masking (bounds, causal, window, boolean mask) and the score transforms (softcap,
 * ALiBi, additive bias), the online softmax's rescale and the LSE of a row, each in one place,
 * and the block ranges that let fa1/fa2 skip blocks nobody can see. team.cl holds the register-blocked "team" products used by fa1 and fa2. A work-group is split into teams of TPR
 * work-items; team t owns TM query rows, lane l of a team owns keys l, l+TPR, ... of a score block
 * and head-dim columns l, l+TPR, ... of the output, so no two teams ever share a row (FA2's
 * split-Q) and only the lanes of one team exchange row statistics. */

#ifndef DTYPE
#define DTYPE 0 /* storage type of Q, K, V, O: 0 = fp32, 1 = fp16, 2 = bf16; arithmetic is fp32 */
#endif
#ifndef OUT_DTYPE
#define OUT_DTYPE DTYPE /* O's storage; differs only after fp8 inputs (DTYPE 3 = e4m3, 4 = e5m2) */
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

#ifndef WINDOW
#define WINDOW 0 /* 1: sliding window (window_left, window_right), -1 = unbounded side */
#endif
#ifndef ALIBI
#define ALIBI 0 /* 1: scores -= slope * |i + shift - j| (per-head slopes) */
#endif
#ifndef SOFTCAP
#define SOFTCAP 0 /* 1: scores <- c tanh(scores / c) before the softmax */
#endif
#ifndef MASK_KIND
#define MASK_KIND 0 /* 0: none, 1: boolean mask (uchar, 0 hides the key), 2: additive fp32 bias */
#endif
#ifndef GQA
#define GQA 0 /* 1: query heads share K/V heads (heads_kv < heads): K/V head = h / kv_group */
#endif
#ifndef VARLEN
#define VARLEN 0 /* 1: packed sequences delimited by cu_seqlens_q / cu_seqlens_k */
#endif
#ifndef HALF_UNITS
#define HALF_UNITS 0 /* 1: scores in half natural units (SCORE_UNIT below); the host's choice */
#endif
/* 1 when every block's scores change (not only blocks crossing a boundary) */
#define SCORE_TRANSFORM (SOFTCAP || ALIBI || MASK_KIND != 0)

#define NEG_INF (-INFINITY)
#define LOG2E_F 1.44269504088896341f
/* The CPU kernels' exp2 gives 0 for an argument below this in ALiBi programs: PoCL's exp2 takes a slow
 * path where the result underflows (cpu_blocks.cl's exp2_of_score, bwd_cpu.cl) */
#define EXP2_FLUSH_BELOW (-126.0f)
#define LN2_F 0.693147180559945309f

/* The unit fa1/fa2 keep scores in. Base 2 (log2 e: Q pre-scaled by scale * log2 e, P = 2^(s - m))
 * saves a multiply per score, but a scale, softcap or bias past FLT_MAX / log2 e ~ 2.4e38 overflows
 * there. HALF_UNITS (set by the host for softcap, ALiBi, an additive bias, and scales that large)
 * keeps halves of natural-log scores instead: the sum of two halved finite floats is finite, s - m
 * can only underflow to -inf (P = 0, the float64 answer), and the exponent's factor 2 log2 e is
 * applied after the max is subtracted. standard works in natural units (1), or halves likewise. */
#if HALF_UNITS
#define SCORE_UNIT 0.5f
#define NATURAL_UNIT 0.5f
#define EXP2_OF(x) exp2((x) * (2.0f * LOG2E_F))
#define LSE_OF(m, l) (2.0f * (m) + log(l))
#define Q_SCALE(a) ((a)->scale * 0.5f)
#define LOG2_PER_SCORE_UNIT (2.0f * LOG2E_F) /* a score difference to log2 units (ex2.approx's argument) */
#else
#define SCORE_UNIT LOG2E_F
#define NATURAL_UNIT 1.0f
#define EXP2_OF(x) exp2(x)
#define LSE_OF(m, l) (((m) + log2(l)) * LN2_F)
#define Q_SCALE(a) ((a)->scale_log2)
#define LOG2_PER_SCORE_UNIT 1.0f
#endif

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
#elif DTYPE == 3 || DTYPE == 4
/* fp8 inputs (3 = e4m3, 4 = e5m2) as raw bytes, decoded exactly by fp8_codec.cl (a program that
 * loads through LOAD_ELEM lists it first); O is stored as OUT_DTYPE, below */
#define STORAGE_T uchar
#define FP8 1
#if DTYPE == 3
#define LOAD_ELEM(p, i) e4m3_to_float((p)[(i)])
#else
#define LOAD_ELEM(p, i) e5m2_to_float((p)[(i)])
#endif
#else
#error "unsupported DTYPE"
#endif
#ifndef FP8
#define FP8 0
#endif
#if DTYPE == 2 || OUT_DTYPE == 2
inline ushort float_to_bf16(float x) {
  const uint u = as_uint(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (ushort)((u >> 16) | 0x40u); /* NaN stays NaN */
  return (ushort)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
#endif

/* O's storage: Q's, except after fp8 inputs (OUT_DTYPE 0 = fp32, 1 = fp16, 2 = bf16) */
#if !FP8
#define OUT_STORAGE_T STORAGE_T
#define STORE_OUT(p, i, x) STORE_ELEM(p, i, x)
#elif OUT_DTYPE == 0
#define OUT_STORAGE_T float
#define STORE_OUT(p, i, x) ((p)[(i)] = (x))
#elif OUT_DTYPE == 1
#define OUT_STORAGE_T half
#define STORE_OUT(p, i, x) vstore_half_rte((x), (i), (p))
#elif OUT_DTYPE == 2
#define OUT_STORAGE_T ushort
#define STORE_OUT(p, i, x) ((p)[(i)] = float_to_bf16(x))
#else
#error "fp8 inputs need OUT_DTYPE 0, 1 or 2"
#endif

#if MASK_KIND == 2
#define MASK_T float
#else
#define MASK_T uchar
#endif

/* The variants' buffers, after O and LSE in every kernel's parameters; a call that does not use
 * one passes a null buffer, which the kernel (compiled without that switch) never reads. */
#define VARIANT_PARAMS                                                                     \
  __global const int *cu_seqlens_q, __global const int *cu_seqlens_k,                      \
      __global const float *alibi_slopes, __global const MASK_T *mask

/* Element offset of (b, s, h, 0) in a tensor described by offset + strides. */
#define TENSOR_BASE(a, t, b, h) \
  ((a)->t##_offset + (long)(b) * (a)->t##_batch_stride + (long)(h) * (a)->t##_head_stride)

/* The K/V head of query head h. A switch, not a division by kv_group = 1: on NVIDIA's compiler
 * the run-time division cost the plain fa2 kernel 30 registers and 4% at d = 128. */
#if GQA
#define KV_HEAD(a, h) ((h) / (a)->kv_group)
#else
#define KV_HEAD(a, h) (h)
#endif

/* Element offset of row 0 of sequence b, head h: packed sequences (VARLEN) start at row `start`
 * of one (total, H, d) tensor and ignore the batch stride. */
#if VARLEN
#define SEQ_BASE(a, t, b, h, start) \
  ((a)->t##_offset + (long)(start) * (a)->t##_seq_stride + (long)(h) * (a)->t##_head_stride)
#else
#define SEQ_BASE(a, t, b, h, start) TENSOR_BASE(a, t, b, h)
#endif

/* Index of LSE row `row` of (b, h): (B, H, Nq), or (H, q_total) with VARLEN as flash_attn_varlen_func.
 * Computed where it is stored, so nothing extra stays live through the main loop. */
#if VARLEN
#define LSE_INDEX(a, sv, b, h, row) ((long)(h) * (sv)->q_total + (sv)->q_start + (row))
#else
#define LSE_INDEX(a, sv, b, h, row) (((long)(b) * (a)->heads + (h)) * (a)->seqlen_q + (row))
#endif

/* One (sequence, head) as a kernel sees it. Scores are in the kernel's unit: base 2 in fa1/fa2
 * (unit = log2 e, Q pre-scaled by scale * log2 e), natural in standard (unit = 1). */
typedef struct {
  int seqlen_q, seqlen_k; /* this sequence's lengths (VARLEN: from cu_seqlens) */
  int shift;              /* seqlen_k - seqlen_q: bottom-right alignment of causal, window, ALiBi */
  int q_start, k_start;   /* first packed row of the sequence (VARLEN), else 0 */
  int q_total;            /* VARLEN: packed query rows (LSE is (H, q_total)), else 0 */
  long mask_base;         /* MASK_KIND: element offset of mask (b, h, 0, 0) */
  float softcap;          /* SOFTCAP: c * unit */
  float slope;            /* ALIBI: slope * unit */
  float unit;
} SeqView;

/* This sequence's lengths and diagonal shift: the SeqView's copies with VARLEN, else straight from
 * the argument block, so the plain path keeps nothing extra in registers through its main loop. */
#if VARLEN
#define SV_NQ(v, a) ((v)->seqlen_q)
#define SV_NK(v, a) ((v)->seqlen_k)
#define SV_SHIFT(v, a) ((v)->shift)
#else
#define SV_NQ(v, a) ((a)->seqlen_q)
#define SV_NK(v, a) ((a)->seqlen_k)
#define SV_SHIFT(v, a) ((a)->causal_shift)
#endif

inline SeqView seq_view(const AttnArgs* a, int b, int h, float unit, __global const int* cu_q,
                        __global const int* cu_k, __global const float* slopes) {
  SeqView v;
#if VARLEN
  /* cu_seqlens are never read back by the host, so they are trusted nowhere: a start is clamped
   * to [0, rows], an end to [start, rows] (rows: what the buffers hold) and a length to the
   * maximum the grid and scratch are sized for; bad offsets make a sequence empty or short. */
  v.q_total = a->total_q > 0 ? a->total_q : clamp(cu_q[a->batch], 0, a->rows_q); /* LSE is (H, q_total) */
  v.q_start = clamp(cu_q[b], 0, v.q_total);
  v.k_start = clamp(cu_k[b], 0, a->rows_k);
  v.seqlen_q = min(clamp(cu_q[b + 1], v.q_start, v.q_total) - v.q_start, a->seqlen_q);
  v.seqlen_k = min(clamp(cu_k[b + 1], v.k_start, a->rows_k) - v.k_start, a->seqlen_k);
#else
  v.q_start = v.k_start = v.q_total = 0;
  v.seqlen_q = a->seqlen_q;
  v.seqlen_k = a->seqlen_k;
#endif
  v.shift = v.seqlen_k - v.seqlen_q;
  v.mask_base = a->mask_offset + (long)b * a->mask_batch_stride + (long)h * a->mask_head_stride;
  v.softcap = a->softcap * unit;
#if ALIBI
  v.slope = slopes[b * a->alibi_batch_stride + h] * unit;
#else
  v.slope = 0.0f;
#endif
  v.unit = unit;
  return v;
}

/* The visibility rules, decided here for every path: KEY_OUT_OF_BAND is true when key `key` is
 * past the keys (n_k), above the causal diagonal or outside the window of query `row` (shift =
 * n_k - n_q). A macro of one expression, without early returns or a call: an unrolled tile
 * evaluates it as one select per score (fa2_mma.cl's mask_tile, where early returns became
 * branches and reloads of the argument block, and where even an inline function changed how the
 * wgmma kernel was put together). */
#if CAUSAL
#define ABOVE_DIAGONAL(row, key, shift) ((key) > (row) + (shift))
#else
#define ABOVE_DIAGONAL(row, key, shift) false
#endif
#if WINDOW
#define OUTSIDE_WINDOW(row, key, shift, a)                                  \
  (((a)->window_left >= 0 && (key) < (row) + (shift) - (a)->window_left) || \
   ((a)->window_right >= 0 && (key) > (row) + (shift) + (a)->window_right))
#else
#define OUTSIDE_WINDOW(row, key, shift, a) false
#endif
#define KEY_OUT_OF_BAND(row, key, n_k, shift, a) \
  ((key) >= (n_k) || ABOVE_DIAGONAL(row, key, shift) || OUTSIDE_WINDOW(row, key, shift, a))

/* True when the boolean mask hides key `key` from query `row`; rows past the end of the queries
 * hide every key, so no mask element outside the shape is read. */
inline bool mask_hides(int row, int key, const SeqView* v, const AttnArgs* a, __global const MASK_T* mask) {
#if MASK_KIND == 1
  return row >= SV_NQ(v, a) || mask[v->mask_base + (long)row * a->mask_row_stride + key] == 0;
#else
  return false;
#endif
}
/* True when key `key` is hidden from query `row`: out of band, or masked out. */
inline bool key_masked(int row, int key, const SeqView* v, const AttnArgs* a, __global const MASK_T* mask) {
  return KEY_OUT_OF_BAND(row, key, SV_NK(v, a), SV_SHIFT(v, a), a) || mask_hides(row, key, v, a, mask);
}

/* s plus the additive bias of (row, key) in the score's units (rows past the end read nothing) */
inline float bias_shift(float s, int row, int key, const SeqView* v, const AttnArgs* a, __global const MASK_T* mask) {
#if MASK_KIND == 2
  if (row < SV_NQ(v, a)) s += mask[v->mask_base + (long)row * a->mask_row_stride + key] * v->unit;
#endif
  return s;
}

/* final_score's steps after the softcap: ALiBi, then the additive bias (for a caller that caps the
 * score its own way: the tensor cores' 16-bit softcap, forward and backward) */
inline float score_shifts(float s, int row, int key, const SeqView* v, const AttnArgs* a, __global const MASK_T* mask) {
#if ALIBI
  s -= v->slope * (float)abs(row + SV_SHIFT(v, a) - key);
#endif
  return bias_shift(s, row, key, v, a, mask);
}

/* c tanh(s / c) with a softcap c, else s; where |s / c| < 2^-12 (SOFTCAP_LINEAR_BELOW, which the
 * CPU kernels' vector forms take too), c tanh(s / c) is s to fp32 precision, so s / c never
 * underflows. */
#define SOFTCAP_LINEAR_BELOW 0x1p-12f
inline float softcap_score(float s, const SeqView* v) {
#if SOFTCAP
  return fabs(s) < v->softcap * SOFTCAP_LINEAR_BELOW ? s : v->softcap * tanh(s / v->softcap);
#else
  return s;
#endif
}

/* The one place scores are transformed: s (unit * scale * q.k) becomes the score the softmax sees:
 * softcap first, then ALiBi, then the additive bias (flash-attn's and SDPA's order), or -inf where
 * the key is hidden. Without variants this is only the mask. */
inline float final_score(float s, int row, int key, const SeqView* v, const AttnArgs* a,
                         __global const MASK_T* mask) {
  if (key_masked(row, key, v, a, mask)) return NEG_INF;
  return score_shifts(softcap_score(s, v), row, key, v, a, mask);
}

/* d(final score)/d(raw score): 1 - tanh^2(raw / c) with softcap, else 1 (ALiBi and the bias only
 * add constants). */
inline float score_slope(float raw, const SeqView* v) {
#if SOFTCAP
  const float t = tanh(raw / v->softcap);
  return 1.0f - t * t;
#else
  (void)raw;
  (void)v;
  return 1.0f;
#endif
}

/* ---- the online softmax and its finalisation. fa2 and fa2_cpu take softmax_rescale; fa1 merges
 * two weighted partials (a partial with max -inf drops out, even with a NaN sum) and fa2_mma.cl
 * rescales lazily with ex2.approx: their steps stay their own, their LSE is row_lse ---- */

/* What a row's running sum and output, accumulated against max m_old, are multiplied by when its
 * max becomes m_new >= m_old (fa2's step); 1 while the row has seen nothing (both -inf), so
 * -inf - -inf never makes a NaN. */
inline float softmax_rescale(float m_old, float m_new) { return m_new == NEG_INF ? 1.0f : EXP2_OF(m_old - m_new); }

/* Finalisation: a row's LSE (natural log) from its running max m and sum l, -inf where the row saw
 * nothing (l = 0); a NaN sum (NaN scores) stays NaN. row_lse: m in SCORE_UNIT and l the sum of
 * EXP2_OF(s - m) (the flash kernels); natural_row_lse: m in NATURAL_UNIT and l the sum of
 * exp((s - m) / NATURAL_UNIT) (standard). With HALF_UNITS the two are the same number. */
inline float row_lse(float m, float l) { return l == 0.0f ? NEG_INF : LSE_OF(m, l); }
inline float natural_row_lse(float m, float l) { return l == 0.0f ? NEG_INF : m * (1.0f / NATURAL_UNIT) + log(l); }

/* The (Q block, head, batch) of an fa2 work-group, on a grid of (Q blocks, heads, batches).
 * Work-groups start in the order of their linear id (dimension 0 fastest). Causal calls take each
 * (batch, head)'s Q blocks last first, as the last sees the most keys, and interleave the blocks
 * of the last a->order_tail pairs, longest first across them: the grid then ends on short
 * work-groups everywhere instead of on the long blocks of its last few heads while the other
 * compute units idle. The host sizes the tail (causal_order_tail); K and V of the pairs in flight
 * stay few, so they keep meeting in the cache. Other calls' blocks are equally long: plain order. */
inline void block_coordinates(const AttnArgs* a, int* q_block, int* h, int* b) {
#if CAUSAL
  const int blocks = get_num_groups(0), heads = get_num_groups(1);
  int pair = get_group_id(1) + heads * get_group_id(2), rank = get_group_id(0);
  const int bulk = heads * get_num_groups(2) - a->order_tail;
  if (pair >= bulk) { /* the tail's work-groups, renumbered rank-major across its pairs */
    const int at = (pair - bulk) * blocks + rank;
    rank = at / a->order_tail;
    pair = bulk + at - rank * a->order_tail;
  }
  *q_block = blocks - 1 - rank;
  *h = pair % heads;
  *b = pair / heads;
#else /* the ids themselves, which the compiler can re-read instead of holding in registers: taking
       * them from the pair index cost the 3xTF32 kernel, at 255 registers, 4 % on the H100 */
  (void)a;
  *q_block = get_group_id(0);
  *h = get_group_id(1);
  *b = get_group_id(2);
#endif
}

/* Key blocks [*kb_begin, *kb_end) of width bc that rows [q0, q_end) can see at all: blocks wholly
 * above the causal diagonal or outside the window are never visited. */
inline void key_block_range(int q0, int q_end, int bc, const SeqView* v, const AttnArgs* a, int* kb_begin,
                            int* kb_end) {
  int lo = 0, hi = SV_NK(v, a); /* keys [lo, hi) */
#if CAUSAL
  hi = min(hi, q_end + SV_SHIFT(v, a)); /* the last row, q_end - 1, sees keys <= q_end - 1 + shift */
#endif
#if WINDOW
  if (a->window_right >= 0) hi = min(hi, q_end + SV_SHIFT(v, a) + a->window_right);
  if (a->window_left >= 0) lo = max(lo, q0 + SV_SHIFT(v, a) - a->window_left);
#endif
  *kb_begin = lo / bc;
  *kb_end = hi <= lo ? *kb_begin : (hi + bc - 1) / bc;
}

/* Query blocks [*qb_begin, *qb_end) of height br with a row that sees a key of [k0, k_end) (fa1). */
inline void query_block_range(int k0, int k_end, int br, const SeqView* v, const AttnArgs* a, int* qb_begin,
                              int* qb_end) {
  int lo = 0, hi = SV_NQ(v, a); /* rows [lo, hi) */
#if CAUSAL
  lo = max(lo, k0 - SV_SHIFT(v, a)); /* row + shift >= k0 */
#endif
#if WINDOW
  if (a->window_right >= 0) lo = max(lo, k0 - SV_SHIFT(v, a) - a->window_right);
  if (a->window_left >= 0) hi = min(hi, k_end - SV_SHIFT(v, a) + a->window_left);
#endif
  *qb_begin = lo / br;
  *qb_end = hi <= lo ? *qb_begin : (hi + br - 1) / br;
}

/* True when block [q0, q0 + br) x [k0, k0 + bc) holds a key out of band (KEY_OUT_OF_BAND) for
 * some row: past the keys, above the causal diagonal or outside the window. */
inline bool block_crosses_band(int q0, int br, int k0, int bc, const SeqView* v, const AttnArgs* a) {
  if (k0 + bc > SV_NK(v, a)) return true;
#if CAUSAL
  if (k0 + bc - 1 > q0 + SV_SHIFT(v, a)) return true;
#endif
#if WINDOW
  if (a->window_right >= 0 && k0 + bc - 1 > q0 + SV_SHIFT(v, a) + a->window_right) return true;
  if (a->window_left >= 0 && k0 < q0 + br - 1 + SV_SHIFT(v, a) - a->window_left) return true;
#endif
  return false;
}

/* True when block [q0, q0 + br) x [k0, k0 + bc) needs final_score(): some key may be hidden from
 * some row, or a transform changes every score. */
inline bool block_needs_mask(int q0, int br, int k0, int bc, const SeqView* v, const AttnArgs* a) {
#if SCORE_TRANSFORM || MASK_KIND
  return true;
#else
  return block_crosses_band(q0, br, k0, bc, v, a);
#endif
}
