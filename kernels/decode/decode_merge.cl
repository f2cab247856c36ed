/* decode_merge.cl: combines the split-KV partials of decode_split.cl into O and LSE by the LSE
 * rule: L = L_max + log sum_s e^(L_s - L_max), O = sum_s e^(L_s - L_max) / sum * O_s. Splits with
 * L_s = -inf saw no key and are skipped without reading their O (which they need not write); a
 * row whose splits are all empty gets O = 0 and LSE = -inf, one with a split that met a NaN gets NaN
 * (the forward's rows do the same). One work-group per (query row, head, sequence); two forms, the
 * host's choice by split count (plan_decode.cpp):
 *
 * decode_merge_serial (fewer than 32 splits): each work-item a column, walking the splits in turn,
 * MERGE_SERIAL_WG work-items (a build-time stride). Its speed is on record; with few splits a walk
 * is short.
 *
 * decode_merge (32 splits or more): a short call's merge is latency, not bytes: a row's partials
 * are tens of KiB that the split kernel has just left in L2, and walking 49 splits in turn took 9-10
 * us of a 66 us call on the H100 (B 1, 32k keys; docs/DECODE.md). So the work-group (32 x G
 * work-items, G = ceil(splits / 4) up to 8, a launch size) loads the row's split LSEs once into
 * __local; every work-item reads L_max from there, the weights e^(L_s - L_max) go back into
 * __local, and the G groups of 32 each take every G-th split, a lane's columns 32 apart, with
 * loads that wait on nothing but __local values (independent, so in flight together); the groups'
 * sums meet in __local in a fixed order. Five barriers (at d <= 256 one column chunk), two global
 * round trips. A split whose weight underflows to 0 is skipped like an empty one, so a NaN in its
 * partial O (a NaN in V at a visible key) does not reach the row there, where the serial walk's
 * 0 x NaN would. */

#define MERGE_SERIAL_WG (HEAD_DIM >= 64 ? 64 : 32) /* plan_decode.cpp's merge_wg for the serial form */
#define MERGE_MAX_SPLITS 1024                 /* plan_decode.hpp's kMaxDecodeSplits (checked there) */
#define MERGE_MAX_GROUPS 8                    /* groups of (up to) 32 work-items */
#define MERGE_CPL ((HEAD_DIM + 31) / 32)      /* columns a lane takes at a time: c = lane + 32 k */

/* The row's place in the workspace (decode_split.cl's layout) and in O. */
typedef struct {
  long row, o_base;
  __global const float* lse; /* the row's split LSEs */
  __global const float* o;   /* the row's split partial O, HEAD_DIM each */
} MergeRow;

inline MergeRow merge_row(__global const float* work, const DecodeArgs* d) {
  const int i = get_group_id(0), h = get_group_id(1), b = get_group_id(2);
  const int splits = d->num_splits;
  MergeRow m;
  m.row = ((long)b * d->heads + h) * d->seqlen_q + i;
  m.lse = work + m.row * splits;
  m.o = work + (long)d->batch * d->heads * d->seqlen_q * splits + m.row * splits * HEAD_DIM;
  m.o_base = d->o_offset + (long)b * d->o_batch_stride + (long)i * d->o_seq_stride + (long)h * d->o_head_stride;
  return m;
}

__kernel __attribute__((reqd_work_group_size(MERGE_SERIAL_WG, 1, 1)))
void decode_merge_serial(__global const float* work, __global STORAGE_T* o,
                         __global float* lse, const DecodeArgs args) {
  const DecodeArgs* d = &args;
  const int lid = get_local_id(0), splits = d->num_splits;
  const MergeRow m = merge_row(work, d);
  const float mx = splits_max_lse(m.lse, splits);
  if (mx == NEG_INF) { /* no split saw a key */
    for (int c = lid; c < HEAD_DIM; c += MERGE_SERIAL_WG) STORE_ELEM(o, m.o_base + c, 0.0f);
    if (lid == 0 && d->write_lse) lse[m.row] = NEG_INF;
    return;
  }
  float sum = 0.0f;
  for (int s = 0; s < splits; ++s) sum += exp(m.lse[s] - mx); /* exp(-inf) = 0 */
  const float inv = 1.0f / sum;
  for (int c = lid; c < HEAD_DIM; c += MERGE_SERIAL_WG) {
    float acc = 0.0f;
    for (int s = 0; s < splits; ++s) {
      const float ls = m.lse[s];
      if (ls != NEG_INF) acc += exp(ls - mx) * m.o[(long)s * HEAD_DIM + c];
    }
    STORE_ELEM(o, m.o_base + c, acc * inv);
  }
  if (lid == 0 && d->write_lse) lse[m.row] = mx + log(sum);
}

__kernel void decode_merge(__global const float* work, __global STORAGE_T* o,
                           __global float* lse, const DecodeArgs args) {
  const DecodeArgs* d = &args;
  const int lid = get_local_id(0), wg = get_local_size(0), splits = d->num_splits;
  const MergeRow m = merge_row(work, d);
  const long row = m.row, o_base = m.o_base;
  __global const float* row_lse = m.lse;
  __global const float* row_o = m.o;

  __local float weight[MERGE_MAX_SPLITS];                  /* L_s, then e^(L_s - L_max) */
  __local float part[MERGE_MAX_GROUPS][32 * MERGE_CPL];   /* each group's weighted O */
  for (int s = lid; s < splits; s += wg) weight[s] = row_lse[s];
  barrier(CLK_LOCAL_MEM_FENCE);
  float mx = NEG_INF;
  int nan_split = 0;
  for (int s = 0; s < splits; ++s) { /* every work-item the same reads: __local broadcasts */
    mx = fmax(mx, weight[s]);
    nan_split |= isnan(weight[s]);
  }
  if (nan_split || mx == NEG_INF) { /* a NaN reaches the row as in the forward; no key: O = 0 */
    const float fill = nan_split ? NAN : 0.0f;
    for (int c = lid; c < HEAD_DIM; c += wg) STORE_ELEM(o, o_base + c, fill);
    if (lid == 0 && d->write_lse) lse[row] = nan_split ? NAN : NEG_INF;
    return; /* (the same branch for the whole work-group: no barrier follows in it) */
  }
  barrier(CLK_LOCAL_MEM_FENCE); /* every read of the LSEs before they become weights */
  for (int s = lid; s < splits; s += wg) weight[s] = exp(weight[s] - mx); /* exp(-inf) = 0 */
  barrier(CLK_LOCAL_MEM_FENCE);

  const int lanes = min(wg, 32), groups = min(wg / lanes, MERGE_MAX_GROUPS);
  const int lane = lid % lanes, g = lid / lanes;
  float sum = 0.0f;
  for (int s = 0; s < splits; ++s) sum += weight[s];
  const float inv = 1.0f / sum;
  /* columns in chunks of lanes x MERGE_CPL (one chunk where the work-group has 32 lanes) */
  for (int c0 = 0; c0 < HEAD_DIM; c0 += lanes * MERGE_CPL) {
    float acc[MERGE_CPL];
#pragma unroll
    for (int k = 0; k < MERGE_CPL; ++k) acc[k] = 0.0f;
    if (g < groups) {
#pragma unroll 4
      for (int s = g; s < splits; s += groups) {
        const float w = weight[s];
        if (w != 0.0f) { /* an empty split's O is never read */
#pragma unroll
          for (int k = 0; k < MERGE_CPL; ++k) {
            const int c = c0 + lane + lanes * k;
            if (c < HEAD_DIM) acc[k] += w * row_o[(long)s * HEAD_DIM + c];
          }
        }
      }
#pragma unroll
      for (int k = 0; k < MERGE_CPL; ++k) part[g][lane + lanes * k] = acc[k];
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int c = lid; c < lanes * MERGE_CPL && c0 + c < HEAD_DIM; c += wg) {
      float o_c = 0.0f;
      for (int gg = 0; gg < groups; ++gg) o_c += part[gg][c]; /* the groups in a fixed order */
      STORE_ELEM(o, o_base + c0 + c, o_c * inv);
    }
    barrier(CLK_LOCAL_MEM_FENCE); /* part is reused by the next chunk */
  }
  if (lid == 0 && d->write_lse) lse[row] = mx + log(sum);
}
