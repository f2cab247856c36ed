/* quant_args.h: the argument block of the fp8 quantisation kernels (quantize_fp8.cl), compiled by
 * the host and the OpenCL C compiler alike: fixed-width fields, 64-bit ones first, size checked on
 * the host. Strides and offsets are in elements. */
#ifndef FLASHCL_QUANT_ARGS_H
#define FLASHCL_QUANT_ARGS_H

#ifdef __OPENCL_VERSION__
typedef long fcl_q64;
typedef ulong fcl_qu64;
typedef int fcl_q32;
#else
#include <stdint.h>
typedef int64_t fcl_q64;
typedef uint64_t fcl_qu64;
typedef int32_t fcl_q32;
#endif

typedef struct {
  fcl_q64 in_offset, in_batch_stride, in_seq_stride, in_head_stride;
  fcl_q64 out_offset, out_batch_stride, out_seq_stride, out_head_stride; /* TRANSPOSED: seq_stride is
                                                                            the pitch of a d-row */
  fcl_qu64 signs[4];      /* HADAMARD: bit i of signs[i / 64] set: column i is negated */
  fcl_q32 batch, seqlen, heads;
  fcl_q32 head_group;     /* GRANULARITY 1: heads per scale */
  fcl_q32 block;          /* GRANULARITY 2: rows per scale */
  fcl_q32 descales;       /* entries of the descale buffer */
  fcl_q32 total;          /* VARLEN: packed rows (the grid is total x heads; seqlen is the longest) */
  fcl_q32 pad_;
} QuantArgs;

#define FLASHCL_QUANT_ARGS_SIZE 128

#endif
