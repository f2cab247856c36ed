/* decode_args.h: the argument block of the KV-cache (decode) kernels, decode_append.cl,
 * decode_split.cl and decode_merge.cl. Like attn_args.h it is compiled by both the host and the
 * OpenCL C compiler, so it holds fixed-width fields only, 64-bit ones first, and its size is
 * checked on the host. Offsets and strides are in elements. The K/V cache is either contiguous
 * (cache row, position, head, i) or paged (page, row in page, head, i): the "batch" stride of a
 * paged cache is the page stride and the position of key p is (block_table[b][p / page_size],
 * p % page_size). The attention-only settings (window, softcap) travel in an AttnArgs next to
 * this block, so common.cl's visibility and score helpers apply unchanged. */
#ifndef FLASHCL_DECODE_ARGS_H
#define FLASHCL_DECODE_ARGS_H

#ifndef __OPENCL_VERSION__
#include "attn_args.h" /* fcl_i64 and friends; the kernels get attn_args.h first in their file list */
#endif

typedef struct {
  fcl_i64 q_offset, q_batch_stride, q_seq_stride, q_head_stride;     /* q (B, Nq, H, d) */
  fcl_i64 o_offset, o_batch_stride, o_seq_stride, o_head_stride;     /* o (B, Nq, H, d) */
  fcl_i64 k_offset, k_batch_stride, k_seq_stride, k_head_stride;     /* K cache (batch = page when paged) */
  fcl_i64 v_offset, v_batch_stride, v_seq_stride, v_head_stride;     /* V cache */
  fcl_i64 kn_offset, kn_batch_stride, kn_seq_stride, kn_head_stride; /* k_new (B, Nnew, H_kv, d) */
  fcl_i64 vn_offset, vn_batch_stride, vn_seq_stride, vn_head_stride; /* v_new */
  fcl_i64 block_table_stride; /* PAGED: int32 entries between two sequences' rows */
  fcl_i32 batch, heads, heads_kv, group; /* group = heads / heads_kv */
  fcl_i32 seqlen_q;     /* Nq: query rows per sequence */
  fcl_i32 seqlen_new;   /* rows of k_new/v_new appended before attending (0: none) */
  fcl_i32 capacity;     /* keys a sequence can hold: S_cache, or max_pages * page_size */
  fcl_i32 cache_batch;  /* contiguous: cache rows (cache_batch_idx picks one per sequence) */
  fcl_i32 page_size, num_pages, max_pages; /* PAGED */
  fcl_i32 num_splits;   /* key chunks per (sequence, K/V head, row block) */
  fcl_i32 rows;         /* group * Nq: the query rows of one K/V head, row r = i * group + g */
  fcl_i32 write_lse;    /* 1: the merge writes LSE (B, H, Nq) */
  fcl_i32 rotary_dim;   /* ROTARY: rotated leading dims (even) */
  fcl_i32 rotary_seqlen; /* ROTARY: rows of the cos/sin tables (S_rot, rotary_dim / 2) */
  fcl_i32 rotary_q_rows; /* ROTARY: 1 rotates query i at position len + i, 0 all at len (flash-attn) */
  fcl_i32 alibi_batch_stride; /* ALIBI: slopes (H) -> 0, (B, H) -> H */
  fcl_f32 q_scale;      /* softmax scale in common.cl's SCORE_UNIT: scale * log2(e) in base 2, scale / 2
                         * with HALF_UNITS (no fp32 overflow for scales past FLT_MAX / log2 e) */
  fcl_i32 reserved;     /* keeps the size a multiple of 8 */
} DecodeArgs;

#define FLASHCL_DECODE_ARGS_SIZE 280

#endif
