/* flashcl C API: exact attention (standard, FlashAttention-1, FlashAttention-2) on the caller's
 * OpenCL queue and buffers, for C and other languages. Every function returns an fcl_status; on
 * failure fcl_last_error() gives this thread's message, which names the offending parameter.
 * Nothing is enqueued when an argument is invalid. A call whose OpenCL calls fail partway (an
 * enqueue refused, a program that fails to build after others ran) hands out no event, but the
 * kernels it enqueued before the failure stay queued and may write some outputs: their contents
 * are then unspecified, and clFinish on the queue waits for them. */
#ifndef FLASHCL_FLASHCL_H
#define FLASHCL_FLASHCL_H

#include <CL/cl.h>
#include <stddef.h>
#include <stdint.h>

#include "flashcl/export.h"  /* FCL_API */
#include "flashcl/version.h" /* FLASHCL_VERSION_MAJOR, _MINOR, _PATCH */

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
  FCL_SUCCESS = 0,
  FCL_INVALID_ARGUMENT = -2001,
  FCL_INVALID_HANDLE = -2002,
  FCL_UNSUPPORTED_DTYPE = -2003,
  FCL_OUT_OF_RESOURCES = -2004,
  FCL_BUILD_FAILURE = -2005,
  FCL_DEVICE_NOT_FOUND = -2006,
  FCL_OPENCL_ERROR = -2007,
  FCL_INTERNAL_ERROR = -2099
} fcl_status;

typedef enum { FCL_ALGO_AUTO = 0, FCL_ALGO_STANDARD = 1, FCL_ALGO_FA1 = 2, FCL_ALGO_FA2 = 3 } fcl_algorithm;
/* storage; math is fp32. E4M3/E5M2: fp8 inputs (docs/FP8.md); DEFAULT: out_dtype's "as dtype" */
typedef enum {
  FCL_DTYPE_DEFAULT = -1,
  FCL_DTYPE_F32 = 0,
  FCL_DTYPE_F16 = 1,
  FCL_DTYPE_BF16 = 2,
  FCL_DTYPE_E4M3 = 3,
  FCL_DTYPE_E5M2 = 4
} fcl_dtype;

/* Element (b, s, h, i) is at offset + b*batch_stride + s*seq_stride + h*head_stride + i (elements).
 * All three strides 0: dense (B, S, H, d). */
typedef struct {
  cl_mem buffer;
  int64_t offset, batch_stride, seq_stride, head_stride;
} fcl_tensor;

/* Optional mask, as SDPA's attn_mask: (B or 1, H or 1, Nq, Nk), keys contiguous; element (b, h, i, j)
 * at offset + b*batch_stride + h*head_stride + i*row_stride + j (all strides 0: dense). BOOL: uint8,
 * 0 hides the key; BIAS: fp32 added to the scaled scores. batch/heads: 1 broadcasts, 0 means B/H. */
typedef enum { FCL_MASK_NONE = 0, FCL_MASK_BOOL = 1, FCL_MASK_BIAS = 2 } fcl_mask_kind;
typedef struct {
  fcl_mask_kind kind;
  cl_mem buffer;
  int batch, heads;
  int64_t offset, batch_stride, head_stride, row_stride;
} fcl_mask;

/* struct_size first: fcl_forward_args_init sets it to the sizeof the caller compiled against and
 * every call checks it, so a later library that appends fields still reads an older caller's struct
 * (the new fields taking their defaults). Embedded structs (fcl_tensor, fcl_mask) carry no size of
 * their own: they only ever grow as part of this one. */
typedef struct {
  size_t struct_size;                              /* set by fcl_forward_args_init */
  int batch, heads, seqlen_q, seqlen_k, head_dim; /* head_dim 1..256; varlen: seqlen_q/k are maxima */
  float scale;                                     /* 0: 1/sqrt(head_dim) */
  int causal;                                      /* bottom-right aligned when seqlen_q != seqlen_k */
  fcl_dtype dtype;
  fcl_algorithm algorithm;
  fcl_tensor q, k, v, o;                           /* Q, O: (B, Nq, H, d); K, V: (B, Nk, H_kv, d) */
  cl_mem lse;                                      /* optional (B, H, Nq) fp32 log-sum-exp */
  cl_mem workspace;                                /* optional, >= fcl_workspace_bytes() */
  int block_rows, block_cols;                      /* tile override; 0: planner's choice */
  int heads_kv;                                    /* GQA/MQA: K/V heads, heads % heads_kv == 0; 0: heads */
  int window_left, window_right;                   /* sliding window as flash-attn; -1: unbounded */
  float softcap;                                   /* s <- c*tanh(s/c); 0: off */
  cl_mem alibi_slopes;                             /* fp32 (H), or (B, H) when alibi_per_batch */
  int alibi_per_batch;
  fcl_mask mask;                                   /* optional bias or boolean mask */
  cl_mem cu_seqlens_q, cu_seqlens_k;               /* varlen: int32 (B + 1) offsets; Q/O packed
                                                      (total_q, H, d), K/V (total_k, H_kv, d),
                                                      LSE (H, total_q) */
  /* Appended after the first layout (a caller compiled against it passes the smaller struct_size,
   * up to cu_seqlens_k, and gets the defaults, 0): ForwardArgs::total_q and ::check_device_data. */
  int total_q;                                     /* varlen: packed query rows (LSE is (H, total_q));
                                                      0: the kernels take cu_seqlens_q[B] */
  int check_device_data;                           /* varlen: read cu_seqlens back (blocking, after the
                                                      wait list) and reject offsets the kernels would
                                                      clamp; 0: never read back. fp8: also the descales */
  /* Appended after it too: fp8 inputs (ForwardArgs::out_dtype and ::fp8; layouts in flashcl.hpp's
   * Fp8Scales and docs/FP8.md). */
  fcl_dtype out_dtype;                             /* O's storage after fp8 inputs (F32/F16/BF16);
                                                      FCL_DTYPE_DEFAULT (init): bf16 for fp8, dtype
                                                      otherwise (other dtypes must leave it) */
  cl_mem q_descale, k_descale, v_descale;          /* fp8: fp32 (B, H_kv), or per block of rows */
  int quant_block;                                 /* fp8: rows per descale; 0: per (B, H_kv) */
  int v_transposed;                                /* fp8: V stored (B, H_kv, d, Nk) */
} fcl_forward_args;

/* Zeroes *args and sets struct_size and the defaults (auto algorithm, fp32, default scale, every
 * variant off: window -1/-1). Call it before filling the fields: a zeroed window would be (0, 0),
 * and a struct without struct_size is rejected. */
FCL_API void fcl_forward_args_init(fcl_forward_args* args);

/* Enqueues attention on `queue` after the wait list. `event` (optional) receives the last kernel's
 * event, which the caller releases. */
FCL_API fcl_status fcl_forward(cl_command_queue queue, const fcl_forward_args* args, cl_uint num_wait,
                               const cl_event* wait_list, cl_event* event);

/* Scratch bytes the call needs (0 for fa2), and all device bytes it touches. */
FCL_API fcl_status fcl_workspace_bytes(cl_device_id device, const fcl_forward_args* args, size_t* bytes);
FCL_API fcl_status fcl_device_bytes(cl_device_id device, const fcl_forward_args* args, size_t* bytes);

/* FP8 quantisation (flashcl::QuantizeArgs, flashcl.hpp; docs/FP8.md): fp32/fp16/bf16 (B, S, H, d)
 * to e4m3/e5m2 with amax scaling per tensor, head group or block of rows (granularity 0, 1, 2),
 * optionally after the random-sign Hadamard transform along d (hadamard, hadamard_seed), writing
 * the fp8 tensor (transposed: (B, H, d, S)) and the descales in the layout fcl_forward_args takes.
 * fcl_quantize_args_init sets struct_size and the defaults (e4m3, per tensor, head_group 1).
 * Varlen (cu_seqlens set): packed rows, scales per sequence, as flashcl::QuantizeArgs says. */
typedef struct {
  size_t struct_size;
  int batch, seqlen, heads, head_dim;
  fcl_dtype in_dtype, out_dtype;                  /* F32/F16/BF16 -> E4M3/E5M2 */
  fcl_tensor in, out;                             /* element strides; 0: dense */
  cl_mem descale;                                 /* written: fp32, fcl_quantize_descale_count floats */
  int granularity;                                /* 0 tensor, 1 head group, 2 block of rows */
  int head_group;                                 /* heads per scale (Q under GQA: H / H_kv) */
  int block;                                      /* granularity 2: rows per scale */
  int hadamard;
  uint64_t hadamard_seed;
  int transposed;
  /* appended after the first layout (callers built against it pass its smaller struct_size) */
  cl_mem cu_seqlens;                              /* varlen: int32 (B + 1); in/out packed (total, H, d) */
  int total;                                      /* varlen: packed rows */
} fcl_quantize_args;

FCL_API void fcl_quantize_args_init(fcl_quantize_args* args);
FCL_API fcl_status fcl_quantize_descale_count(const fcl_quantize_args* args, size_t* count);
FCL_API fcl_status fcl_quantize_fp8(cl_command_queue queue, const fcl_quantize_args* args, cl_uint num_wait,
                                    const cl_event* wait_list, cl_event* event);

/* Inference with a KV cache (decode): the fields and their semantics are flashcl::KvCacheArgs's
 * (flashcl.hpp; docs/DECODE.md). struct_size comes first, as in every args struct from here on:
 * fcl_kvcache_args_init sets it to the sizeof the caller compiled, and each call checks it, so a
 * later library can append fields and still accept older callers. Call the init first. */
typedef struct {
  size_t struct_size;
  int batch, heads, heads_kv, seqlen_q, head_dim; /* heads_kv 0: heads */
  float scale;                                    /* 0: 1/sqrt(head_dim) */
  int causal;                                     /* bottom-right aligned */
  fcl_dtype dtype;
  fcl_tensor q, o;                                /* (B, Nq, H, d) */
  cl_mem lse;                                     /* optional (B, H, Nq) fp32 */
  fcl_tensor k_cache, v_cache;                    /* contiguous (cache_batch, cache_seqlen, H_kv, d) or
                                                     paged (num_pages, page_size, H_kv, d) */
  int cache_seqlen, cache_batch;                  /* contiguous; cache_batch 0: batch */
  cl_mem cache_batch_idx;                         /* contiguous, optional int32 (B) */
  cl_mem block_table;                             /* paged: int32 (B, max_pages) */
  int num_pages, page_size, max_pages;
  int64_t block_table_stride;                     /* 0: max_pages */
  cl_mem cache_seqlens;                           /* int32 (B), required */
  fcl_tensor k_new, v_new;                        /* optional (B, seqlen_new, H_kv, d), appended in place */
  int seqlen_new;                                 /* 0: seqlen_q */
  cl_mem rotary_cos, rotary_sin;                  /* optional fp32 (rotary_seqlen, rotary_dim / 2) */
  int rotary_dim, rotary_seqlen, rotary_interleaved; /* rotary_dim 0: head_dim */
  int window_left, window_right;                  /* -1: unbounded */
  float softcap;                                  /* 0: off */
  cl_mem alibi_slopes;                            /* fp32 (H), or (B, H) when alibi_per_batch */
  int alibi_per_batch;
  cl_mem workspace;                               /* optional, >= fcl_kvcache_workspace_bytes() */
  int num_splits;                                 /* 0: planner; 1..1024 forced */
  /* Appended for the fp8 KV cache (KvCacheArgs::cache_dtype; docs/FP8.md "FP8 KV cache"); a caller
   * compiled without these fields (struct_size up to num_splits) gets the defaults. */
  fcl_dtype cache_dtype;                          /* FCL_DTYPE_DEFAULT (init): dtype; E4M3/E5M2: fp8 caches */
  cl_mem k_descale, v_descale;                    /* fp8 caches: fp32 (B, H_kv); value = byte x descale */
  int check_device_data;                          /* fp8 caches: read the descales back, reject <= 0 or
                                                     non-finite (blocking) */
} fcl_kvcache_args;

FCL_API void fcl_kvcache_args_init(fcl_kvcache_args* args);
FCL_API fcl_status fcl_forward_kvcache(cl_command_queue queue, const fcl_kvcache_args* args, cl_uint num_wait,
                                       const cl_event* wait_list, cl_event* event);
FCL_API fcl_status fcl_kvcache_workspace_bytes(cl_device_id device, const fcl_kvcache_args* args, size_t* bytes);

/* The backward of one forward call (flashcl::BackwardArgs in flashcl.hpp; README "Backward"):
 * dQ, dK, dV (and optionally the bias gradient) from Q, K, V, O, dO and the forward's LSE.
 * `forward` is the forward call as made (forward.lse required; forward.workspace unused); the
 * gradients have the forward's dtype and their own strides (0: dense); outputs may not share memory
 * with inputs. d_bias (kind FCL_MASK_BIAS, fp32): the gradient of forward.mask's bias, in the bias's
 * broadcast shape (batch/heads 0: the bias's). deterministic: bit-identical dQ on every run (fa2
 * otherwise accumulates dQ with fp32 atomics; fa1 and standard are always deterministic).
 * struct_size first: fcl_backward_args_init sets it and fcl_backward checks it. */
typedef struct {
  size_t struct_size;
  fcl_forward_args forward;
  fcl_tensor d_o;            /* input, like O */
  fcl_tensor d_q, d_k, d_v;  /* outputs, like Q, K, V */
  fcl_mask d_bias;           /* optional: FCL_MASK_BIAS, or FCL_MASK_NONE */
  int deterministic;
  cl_mem workspace;          /* optional, >= fcl_backward_workspace_bytes() */
} fcl_backward_args;

/* Zeroes *args, sets struct_size and the forward part's defaults (fcl_forward_args_init). */
FCL_API void fcl_backward_args_init(fcl_backward_args* args);
FCL_API fcl_status fcl_backward(cl_command_queue queue, const fcl_backward_args* args, cl_uint num_wait,
                                const cl_event* wait_list, cl_event* event);
FCL_API fcl_status fcl_backward_workspace_bytes(cl_device_id device, const fcl_backward_args* args, size_t* bytes);

/* Program cache: disk cache on/off and directory (NULL or "": default), drop in-memory programs. */
FCL_API fcl_status fcl_set_disk_cache(int enabled, const char* dir);
FCL_API void fcl_clear_memory_cache(void);

/* Program cache counters since the process started (flashcl::CacheStats). The caller sets
 * struct_size to sizeof(fcl_cache_stats) as it compiled it; fcl_get_cache_stats fills the fields it
 * knows that fit (a later library appends fields and still fills an older caller's struct; a
 * struct_size below this first layout is rejected). */
typedef struct {
  size_t struct_size;
  size_t memory_hits, disk_hits, builds; /* builds: programs compiled from source */
  size_t disk_writes;                    /* stores that succeeded */
  size_t disk_rejects;                   /* damaged, truncated or foreign files found and removed */
  size_t memory_entries;                 /* programs held in memory now (released contexts' go) */
} fcl_cache_stats;
FCL_API fcl_status fcl_get_cache_stats(fcl_cache_stats* stats);

/* This thread's message for the last failed call ("" after a success). */
FCL_API const char* fcl_last_error(void);
FCL_API const char* fcl_version(void);

#ifdef __cplusplus
}
#endif

#endif /* FLASHCL_FLASHCL_H */
