/* decode_common.cl: what the KV-cache kernels (decode_append.cl, decode_split.cl) share: the
 * switches of a decode program, the guards that turn hostile device values into in-bounds ones,
 * the cache addressing (contiguous or paged) and the rotary embedding. The guards, in one place:
 * cache_seqlens[b] is clamped to [0, capacity - seqlen_new], so the append and every key read
 * stay inside the sequence's capacity; a cache_batch_idx outside [0, cache_batch) makes the
 * sequence empty (no append, no key); a block-table entry outside [0, num_pages) hides the keys
 * of that page (never read) and drops the appended rows that would land there. */

#ifndef PAGED
#define PAGED 0 /* 1: paged cache through block_table; 0: contiguous (cache row, position) */
#endif
#ifndef ROTARY
#define ROTARY 0 /* 0: off, 1: interleaved pairs (2j, 2j+1), 2: half-split pairs (j, j + rotary_dim/2) */
#endif
#ifndef BATCH_IDX
#define BATCH_IDX 0 /* 1: cache_batch_idx picks each sequence's cache row (contiguous caches) */
#endif
#ifndef VEC
#define VEC 1 /* elements per cache load (1, 4, 8): 16 bytes where d, strides and offsets allow */
#endif

/* VEC consecutive storage elements at p + i, as floats. */
#if VEC == 8
#if DTYPE == 0
#define LOAD_VEC(p, i) vload8(0, (p) + (i))
#elif DTYPE == 1
#define LOAD_VEC(p, i) vload_half8(0, (p) + (i))
#else
#define LOAD_VEC(p, i) as_float8(convert_uint8(vload8(0, (p) + (i))) << 16)
#endif
#elif VEC == 4
#if DTYPE == 0
#define LOAD_VEC(p, i) vload4(0, (p) + (i))
#elif DTYPE == 1
#define LOAD_VEC(p, i) vload_half4(0, (p) + (i))
#else
#define LOAD_VEC(p, i) as_float4(convert_uint4(vload4(0, (p) + (i))) << 16)
#endif
#endif

/* The caches' storage: DTYPE's (CACHE_T = STORAGE_T, the loads above) unless CACHE_DTYPE names an
 * fp8 format (3 = e4m3, 4 = e5m2; the program then lists fp8_codec.cl first). An fp8 cache holds
 * bytes x8 standing for x8 * descale, with fp32 descales (B, H_kv) per sequence and K/V head
 * (FlashAttention-3's k_descale/v_descale): the kernels decode the bytes exactly, fold k_descale into
 * the query (scores = q . (kd * k8)) and v_descale into the split's partial O, so the inner loops
 * pay only the decode; the append stores fp8(x / descale) (round to nearest even, saturating).
 * q, o, k_new and v_new keep DTYPE. Non-fp8 programs are unchanged: every fp8 line sits behind
 * CACHE_FP8. */
#if defined(CACHE_DTYPE) && (CACHE_DTYPE == 3 || CACHE_DTYPE == 4)
#define CACHE_FP8 1
#define CACHE_T uchar
#if CACHE_DTYPE == 3
#define CACHE_DECODE(x) e4m3_to_float(x)
#define CACHE_ENCODE(x) float_to_e4m3(x)
#else
#define CACHE_DECODE(x) e5m2_to_float(x)
#define CACHE_ENCODE(x) float_to_e5m2(x)
#endif
#define LOAD_CACHE_ELEM(p, i) CACHE_DECODE((p)[(i)])
#ifndef NV_FP8_CVT
#define NV_FP8_CVT 0
#endif
#if NV_FP8_CVT
/* NVIDIA, compute capability >= 8.9 (the host adds -DNV_FP8_CVT=1 only there, for the vector loads
 * of decode_lanes, decode_stream and decode_split): four cache bytes (as one 32-bit word, byte 0
 * lowest) decoded by the hardware: cvt.rn.f16x2.{e4m3x2,e5m2x2} (PTX ISA 7.8, sm_89) makes two fp16
 * of the two bytes of a 16-bit half (the low byte into the low half), exactly, NaN codes to NaN
 * (e4m3's S.1111.111, e5m2's NaNs; e5m2's infinities stay infinite), then cvt.f32.f16 widens each.
 * 6 instructions for 4 elements instead of the bit decode's shifts, masks, converts and NaN select. */
#if CACHE_DTYPE == 3
#define NV_FP8X2 "e4m3x2"
#else
#define NV_FP8X2 "e5m2x2"
#endif
inline float4 cache_fp8x4_word(uint w) {
  float f0, f1, f2, f3; /* scalar outputs (not vector components) for any front end */
  asm("{ .reg .b16 a, b, x0, x1, y0, y1;\n"
      " .reg .b32 x, y;\n"
      " mov.b32 {a, b}, %4;\n"
      " cvt.rn.f16x2." NV_FP8X2 " x, a;\n"
      " cvt.rn.f16x2." NV_FP8X2 " y, b;\n"
      " mov.b32 {x0, x1}, x;\n"
      " mov.b32 {y0, y1}, y;\n"
      " cvt.f32.f16 %0, x0;\n"
      " cvt.f32.f16 %1, x1;\n"
      " cvt.f32.f16 %2, y0;\n"
      " cvt.f32.f16 %3, y1;\n"
      "}"
      : "=f"(f0), "=f"(f1), "=f"(f2), "=f"(f3)
      : "r"(w));
  return (float4)(f0, f1, f2, f3);
}
#endif
/* VEC (4 or 8) bytes at p + i (vloadn: byte alignment suffices), decoded */
inline float4 cache_fp8x4(uchar4 x) {
#if NV_FP8_CVT
  return cache_fp8x4_word(as_uint(x));
#else
  return (float4)(CACHE_DECODE(x.s0), CACHE_DECODE(x.s1), CACHE_DECODE(x.s2), CACHE_DECODE(x.s3));
#endif
}
#if VEC == 8 || VEC == 16 /* 16: decode_lanes' wide form only (two cache_fp8x8 per 16-byte load) */
#if VEC == 8
#define LOAD_CACHE_VEC(p, i) cache_fp8x8(vload8(0, (p) + (i)))
#endif
/* 8 bytes through the fp16 converter (exact, and on CPUs one vcvtph2ps for 8 elements: 1.40x the
 * decode_stream kernel's speed on PoCL against 8 fp8_codec.cl decodes). e5m2 is the high byte of an
 * fp16 (same bias, exponent and special values), so x << 8 is its half. e4m3's magnitude shifted
 * by 7 puts its 4 exponent and 3 mantissa bits under fp16's: 2^(e-15)(1 + m/8), or m 2^-17 for
 * subnormals, which times 2^8 is e4m3's 2^(e-7)(1 + m/8) and m 2^-9, exactly (power-of-two
 * scaling in range); S.1111.111 is NaN. Every code is checked against the host codec by
 * Decode.Fp8CacheDecodesEveryCode. (A whole-vector conversion, not (float8)(float4, float4), which
 * oclgrind 21.10 --uninitialized crashes on.) */
inline float8 cache_fp8x8(uchar8 x) {
#if NV_FP8_CVT
  const uint2 w = as_uint2(x);
  return (float8)(cache_fp8x4_word(w.x), cache_fp8x4_word(w.y));
#elif CACHE_DTYPE == 4
  const ushort8 u = convert_ushort8(x);
  const ushort8 h = u << (ushort)8;
  return vload_half8(0, (const __private half*)&h);
#else
  const ushort8 u = convert_ushort8(x);
  const ushort8 h = E4M3_HALF_BITS(u);
  const float8 f = vload_half8(0, (const __private half*)&h) * 256.0f;
  return select(f, (float8)(NAN), convert_int8(E4M3_IS_NAN(u)));
#endif
}
#elif VEC == 4
#define LOAD_CACHE_VEC(p, i) cache_fp8x4(vload4(0, (p) + (i)))
#endif
/* the kernels' extra arguments, after their last one, and sequence b's descale of head hk */
#define CACHE_DESCALE_PARAMS , __global const float *k_descale, __global const float *v_descale
#define CACHE_DESCALE(s, d, b, hk) ((s)[(long)(b) * (d)->heads_kv + (hk)])
#else
#define CACHE_FP8 0
#define CACHE_T STORAGE_T
#define LOAD_CACHE_ELEM(p, i) LOAD_ELEM(p, i)
#define LOAD_CACHE_VEC(p, i) LOAD_VEC(p, i)
#define CACHE_DESCALE_PARAMS
#endif

/* The cache row of sequence b, or -1 when cache_batch_idx points outside the cache. */
inline int cache_row(const DecodeArgs* d, __global const int* batch_idx, int b) {
#if BATCH_IDX
  const int row = batch_idx[b];
  return row >= 0 && row < d->cache_batch ? row : -1;
#else
  (void)d;
  (void)batch_idx;
  return b;
#endif
}

/* Keys cached for sequence b before the append, clamped so that the append fits the capacity. */
inline int cached_len(const DecodeArgs* d, __global const int* cache_seqlens, int b) {
  return clamp(cache_seqlens[b], 0, d->capacity - d->seqlen_new);
}

/* Block-table entry `page` of sequence b (page < max_pages), or -1 when outside the pool. */
inline int page_entry(const DecodeArgs* d, __global const int* block_table, int b, int page) {
  const int e = block_table[(long)b * d->block_table_stride + page];
  return e >= 0 && e < d->num_pages ? e : -1;
}

/* Element offsets of key `pos`, K/V head hk, in the caches: `slot` is the cache row (contiguous)
 * or the pool page holding pos (paged; pos taken modulo the page size). */
inline void kv_bases(const DecodeArgs* d, int slot, int pos, int hk, long* k_base, long* v_base) {
#if PAGED
  pos %= d->page_size;
#endif
  *k_base = d->k_offset + (long)slot * d->k_batch_stride + (long)pos * d->k_seq_stride + (long)hk * d->k_head_stride;
  *v_base = d->v_offset + (long)slot * d->v_batch_stride + (long)pos * d->v_seq_stride + (long)hk * d->v_head_stride;
}

#if ROTARY
/* Element c of the row at p + base rotated to position pos: pairs (x1, x2) become
 * (x1 cos - x2 sin, x1 sin + x2 cos) with the tables' row pos (clamped to the table) and column
 * j, the pair's index; elements past rotary_dim pass through. */
inline float rotated(__global const STORAGE_T* p, long base, int c, int pos, const DecodeArgs* d,
                     __global const float* rot_cos, __global const float* rot_sin) {
  const float x = LOAD_ELEM(p, base + c);
  if (c >= d->rotary_dim) return x;
  const int half_dim = d->rotary_dim / 2; /* (half is a type name in OpenCL C) */
#if ROTARY == 1
  const int j = c / 2, partner = c ^ 1;
  const bool second = (c & 1) != 0;
#else
  const bool second = c >= half_dim;
  const int j = second ? c - half_dim : c, partner = second ? c - half_dim : c + half_dim;
#endif
  const float y = LOAD_ELEM(p, base + partner);
  const long t = (long)min(pos, d->rotary_seqlen - 1) * half_dim + j;
  const float cs = rot_cos[t], sn = rot_sin[t];
  return second ? y * sn + x * cs : x * cs - y * sn;
}
#endif

/* Sequence b as the attention kernels see it (common.cl's SeqView, in its SCORE_UNIT: base 2, or
 * halved natural units with HALF_UNITS, as fa2): keys after the append, none when the cache row is
 * out of range (slot_row < 0); `len` is cached_len(). */
inline SeqView decode_view(const DecodeArgs* d, const AttnArgs* attn, int len, int slot_row) {
  SeqView sv;
  sv.seqlen_q = d->seqlen_q;
  sv.seqlen_k = slot_row < 0 ? 0 : len + d->seqlen_new;
  sv.shift = sv.seqlen_k - sv.seqlen_q;
  sv.q_start = sv.k_start = 0;
  sv.mask_base = 0;
  sv.softcap = attn->softcap * SCORE_UNIT;
  sv.slope = 0.0f;
  sv.unit = SCORE_UNIT;
  return sv;
}

/* The tiles [*t_begin, *t_end) of width bc that split `split` walks: the tiles rows r0 ... r_end - 1
 * (row r = query r / group) can see at all, cut into num_splits equal runs. */
inline void split_run(const DecodeArgs* d, const AttnArgs* attn, const SeqView* sv, int r0, int r_end, int bc,
                      int split, int* t_begin, int* t_end) {
  int kb_begin, kb_end;
  key_block_range(r0 / d->group, (r_end - 1) / d->group + 1, bc, sv, attn, &kb_begin, &kb_end);
  const int per_split = (kb_end - kb_begin + d->num_splits - 1) / d->num_splits;
  *t_begin = kb_begin + split * per_split;
  *t_end = min(kb_end, *t_begin + per_split);
}

/* Element c of query row rg (query rg / group of head hk * group + rg % group) of sequence b,
 * rotated (ROTARY) and scaled by the scale in SCORE_UNIT (q_scale); 0 for rows past the end. */
inline float query_value(const DecodeArgs* d, __global const STORAGE_T* q, int b, int hk, int rg, int r_end, int c,
                         int len, __global const float* rot_cos, __global const float* rot_sin) {
  if (rg >= r_end) return 0.0f;
  const int i = rg / d->group, h = hk * d->group + rg % d->group;
  const long base = d->q_offset + (long)b * d->q_batch_stride + (long)i * d->q_seq_stride + (long)h * d->q_head_stride;
#if ROTARY
  return rotated(q, base, c, len + (d->rotary_q_rows ? i : 0), d, rot_cos, rot_sin) * d->q_scale;
#else
  (void)len;
  (void)rot_cos;
  (void)rot_sin;
  return LOAD_ELEM(q, base + c) * d->q_scale;
#endif
}

/* ALiBi slope of row rg in SCORE_UNIT (0 without ALIBI). 64-bit: the decode's B and H are each
 * up to 65535, so b * H may pass 2^31 (the forward's validation keeps B * H below it). */
inline float row_slope(const DecodeArgs* d, __global const float* alibi_slopes, int b, int hk, int rg) {
#if ALIBI
  return alibi_slopes[(long)b * d->alibi_batch_stride + hk * d->group + min(rg, d->rows - 1) % d->group] * SCORE_UNIT;
#else
  (void)d;
  (void)alibi_slopes;
  (void)b;
  (void)hk;
  (void)rg;
  return 0.0f;
#endif
}

/* Element offset of partial (row (b, h, i), split) in decode_split's workspace layout: LSE
 * (B, H, Nq, splits) first, then O (B, H, Nq, splits, d). */
#define PART_ROW(d, b, hk, rg) ((((long)(b) * (d)->heads + (hk) * (d)->group + (rg) % (d)->group) * (d)->seqlen_q + (rg) / (d)->group))
#define PART_O_BASE(d) ((long)(d)->batch * (d)->heads * (d)->seqlen_q * (d)->num_splits)

/* A softmax stream's running max that keeps a NaN score: fmax passes over NaN, so a stream whose
 * only visible key so far scored NaN (a NaN in the cache, an fp8 NaN code) would count as having
 * seen nothing and drop it, where its row must come out NaN as the forward's rows do. Once NaN, the
 * stream's max, l and O stay NaN (what the streams' and splits' merges then carry to the row).
 * (Measured against a NaN flag per block instead, fmax a score and the max made NaN only where it
 * stayed -inf: the flag lost on the H100, 0.75-0.96x in the wide form and with paged caches in the
 * async form, docs/DECODE.md; this form costs 0.94-1.01x against no NaN handling at all.) */
inline float max_keep_nan(float m, float s) { return isnan(m) || isnan(s) ? NAN : fmax(m, s); }

/* The largest of a row's split LSEs (the merges' L_max), or NaN where a split met a NaN: fmax
 * alone would pass over it, and the row must come out NaN as the forward's does. */
inline float splits_max_lse(__global const float* split_lse, int splits) {
  float mx = NEG_INF;
  int nan_split = 0;
  for (int s = 0; s < splits; ++s) {
    mx = fmax(mx, split_lse[s]);
    nan_split |= isnan(split_lse[s]);
  }
  return nan_split ? NAN : mx;
}
