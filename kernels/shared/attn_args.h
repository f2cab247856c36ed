/* attn_args.h: the one argument block every flashcl kernel receives by value. Compiled both by
 * the host (C/C++) and by the OpenCL C compiler, so it holds only fixed-width fields, 64-bit ones
 * first, and its size is checked on the host. Strides and offsets are in elements. */
#ifndef FLASHCL_ATTN_ARGS_H
#define FLASHCL_ATTN_ARGS_H

#ifdef __OPENCL_VERSION__
typedef long fcl_i64;
typedef int fcl_i32;
typedef float fcl_f32;
#else
#include <stdint.h>
typedef int64_t fcl_i64;
typedef int32_t fcl_i32;
typedef float fcl_f32;
#endif

typedef struct {
  /* element offset and (batch, sequence, head) strides of Q, K, V, O */
  fcl_i64 q_offset, q_batch_stride, q_seq_stride, q_head_stride;
  fcl_i64 k_offset, k_batch_stride, k_seq_stride, k_head_stride;
  fcl_i64 v_offset, v_batch_stride, v_seq_stride, v_head_stride;
  fcl_i64 o_offset, o_batch_stride, o_seq_stride, o_head_stride;
  /* optional mask (MASK_KIND 1 bool, 2 additive bias): offset and strides, 0 on broadcast dims */
  fcl_i64 mask_offset, mask_batch_stride, mask_head_stride, mask_row_stride;
  fcl_i32 batch, heads, seqlen_q, seqlen_k; /* VARLEN: seqlen_q/k are the maximum lengths */
  fcl_i32 causal_shift; /* seqlen_k - seqlen_q: query i sees keys j <= i + causal_shift */
  fcl_i32 write_lse;    /* 1: write LSE (B, H, Nq) */
  fcl_f32 scale;        /* softmax scale */
  fcl_f32 scale_log2;   /* scale * log2(e): the kernels work in base 2 */
  fcl_i32 heads_kv;     /* K/V heads (GQA/MQA): query head h reads K/V head h / kv_group */
  fcl_i32 kv_group;     /* heads / heads_kv */
  fcl_i32 window_left;  /* WINDOW: query i sees keys j >= i + shift - left (-1: unbounded) */
  fcl_i32 window_right; /* WINDOW: ... and j <= i + shift + right (-1: unbounded) */
  fcl_i32 total_q;      /* VARLEN: packed query rows (LSE is (heads, total_q)); 0: cu_seqlens_q[B] */
  fcl_i32 alibi_batch_stride; /* ALIBI: slopes (heads) -> 0, (batch, heads) -> heads */
  fcl_f32 softcap;      /* SOFTCAP: c in s <- c tanh(s / c) */
  fcl_i32 order_tail;   /* fa2, causal: (batch, head) pairs whose Q blocks end the grid interleaved
                         (common.cl's block_coordinates) */
  fcl_i32 rows_q;       /* VARLEN: packed rows Q, O (and LSE) hold; cu_seqlens_q is clamped to them */
  fcl_i32 rows_k;       /* VARLEN: packed rows K and V hold; cu_seqlens_k is clamped to them */
} AttnArgs;

#define FLASHCL_ATTN_ARGS_SIZE 232

#endif
