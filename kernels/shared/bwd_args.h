/* bwd_args.h: the second argument block of every backward kernel (after AttnArgs, which still
 * describes Q, K, V, O and the variants): where dO, dQ, dK, dV and the bias gradient live and how
 * the fp32 workspace is split. Compiled by the host and by the OpenCL C compiler, so fixed-width
 * fields only, 64-bit ones first; its size is checked on the host. Offsets and strides in elements. */
#ifndef FLASHCL_BWD_ARGS_H
#define FLASHCL_BWD_ARGS_H

typedef struct {
  /* element offset and (batch, sequence, head) strides of dO (input) and dQ, dK, dV (outputs) */
  fcl_i64 dout_offset, dout_batch_stride, dout_seq_stride, dout_head_stride;
  fcl_i64 dq_offset, dq_batch_stride, dq_seq_stride, dq_head_stride;
  fcl_i64 dk_offset, dk_batch_stride, dk_seq_stride, dk_head_stride;
  fcl_i64 dv_offset, dv_batch_stride, dv_seq_stride, dv_head_stride;
  /* DBIAS: where dS (the gradient of the score each bias element was added to) is written per
   * (batch, head): the caller's d_bias when it has the full (B, H) shape, else a dense (B, H, Nq, Nk)
   * workspace region that bwd_dbias_reduce sums over the broadcast dimensions in a fixed order */
  fcl_i64 ds_offset, ds_batch_stride, ds_head_stride, ds_row_stride;
  /* DBIAS: the caller's d_bias, (dbias_batch, dbias_heads, Nq, Nk) */
  fcl_i64 dbias_offset, dbias_batch_stride, dbias_head_stride, dbias_row_stride;
  /* workspace (fp32) regions: D = rowsum(dO * O) and the dQ accumulator, indexed like LSE (times
   * HEAD_DIM); standard only: P and dS, (B * H, Nq, Nk) */
  fcl_i64 ws_d_offset, ws_dq_offset, ws_p_offset, ws_ds_offset;
  fcl_i32 dbias_batch, dbias_heads; /* DBIAS: 1 (broadcast) or B, 1 or H */
  /* how the K/V-block kernels add to dQ: 0 not at all (bwd_dq does it: fa2 deterministic, standard),
   * 1 atomic adds into the fp32 accumulator (fa2), 2 plain read-modify-write (fa1). An argument, not
   * a build option, so every path of a call shares one program (one compile) */
  fcl_i32 dq_mode;
  fcl_i32 unused; /* keeps the size a multiple of 8 */
} BwdArgs;

#define FLASHCL_BWD_ARGS_SIZE 240

#endif
