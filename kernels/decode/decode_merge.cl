/* decode_merge.cl: combines the split-KV partials of decode_split.cl into O and LSE by the LSE
 * rule: L = L_max + log sum_s e^(L_s - L_max), O = sum_s e^(L_s - L_max) / sum * O_s. Splits with
 * L_s = -inf saw no key and are skipped without reading their O (which they need not write); a
 * row whose splits are all empty gets O = 0 and LSE = -inf, one with a split that met a NaN gets NaN
 * (the forward's rows do the same). One work-group per (query row, head, sequence). Its work-items
 * form MERGE_SG groups of 32 that each take every MERGE_SG-th split, a group's lanes 32 adjacent
 * columns (coalesced, HEAD_DIM / 32 each), so a lane's loads are few and independent; the groups'
 * sums meet in __local. (A short call's merge is latency, not bytes: a row's partials are a few
 * tens of KiB, just written to L2 by the split kernel; one work-item a column walking all the splits
 * in turn waited one L2 round trip per split. -DMERGE_SERIAL=1 builds that form, for the A/B.) */

#ifndef MERGE_WG
#define MERGE_WG 64 /* work-items per merged row (plan_decode.cpp) */
#endif
#ifndef MERGE_SERIAL /* the grouped form needs whole groups of 32 and a power of two for its reductions */
#define MERGE_SERIAL (MERGE_WG < 32 || (MERGE_WG & (MERGE_WG - 1)) != 0)
#endif
#define MERGE_SG (MERGE_WG / 32)              /* groups of 32 work-items, each over every MERGE_SG-th split */
#define MERGE_CPL ((HEAD_DIM + 31) / 32)      /* columns a lane: c = lane + 32 k */
#define MERGE_COLS_PAD (32 * MERGE_CPL)

__kernel __attribute__((reqd_work_group_size(MERGE_WG, 1, 1)))
void decode_merge(__global const float* work, __global STORAGE_T* o,
                  __global float* lse, const DecodeArgs args) {
  const DecodeArgs* d = &args;
  const int i = get_group_id(0), h = get_group_id(1), b = get_group_id(2), lid = get_local_id(0);
  const int splits = d->num_splits;
  __global const float* part_lse = work; /* decode_split.cl's layout */
  __global const float* part_o = work + (long)d->batch * d->heads * d->seqlen_q * splits;
  const long row = ((long)b * d->heads + h) * d->seqlen_q + i;
  __global const float* row_lse = part_lse + row * splits;
  __global const float* row_o = part_o + row * splits * HEAD_DIM;
  const long o_base = d->o_offset + (long)b * d->o_batch_stride + (long)i * d->o_seq_stride + (long)h * d->o_head_stride;

#if MERGE_SERIAL
  const float mx = splits_max_lse(row_lse, splits);
  if (mx == NEG_INF) { /* no split saw a key */
    for (int c = lid; c < HEAD_DIM; c += MERGE_WG) STORE_ELEM(o, o_base + c, 0.0f);
    if (lid == 0 && d->write_lse) lse[row] = NEG_INF;
    return;
  }
  float sum = 0.0f;
  for (int s = 0; s < splits; ++s) sum += exp(row_lse[s] - mx); /* exp(-inf) = 0 */
  const float inv = 1.0f / sum;
  for (int c = lid; c < HEAD_DIM; c += MERGE_WG) {
    float acc = 0.0f;
    for (int s = 0; s < splits; ++s) {
      const float ls = row_lse[s];
      if (ls != NEG_INF) acc += exp(ls - mx) * row_o[(long)s * HEAD_DIM + c];
    }
    STORE_ELEM(o, o_base + c, acc * inv);
  }
  if (lid == 0 && d->write_lse) lse[row] = mx + log(sum);
#else
  __local float red[MERGE_WG];               /* the L_max, then the weights' sum, reductions */
  __local float part[MERGE_SG][MERGE_COLS_PAD]; /* each group's weighted O */
  /* L_max: each work-item's splits, then the work-group's (a NaN anywhere makes it NaN) */
  float mx = NEG_INF;
  int nan_split = 0;
  for (int s = lid; s < splits; s += MERGE_WG) {
    mx = fmax(mx, row_lse[s]);
    nan_split |= isnan(row_lse[s]);
  }
  red[lid] = nan_split ? NAN : mx;
  barrier(CLK_LOCAL_MEM_FENCE);
  for (int k = MERGE_WG / 2; k > 0; k >>= 1) {
    if (lid < k) {
      const float a = red[lid], b = red[lid + k];
      red[lid] = isnan(a) || isnan(b) ? NAN : fmax(a, b);
    }
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  mx = red[0];
  barrier(CLK_LOCAL_MEM_FENCE); /* every read of red[0] before it is reused */
  if (mx == NEG_INF) {          /* no split saw a key */
    for (int c = lid; c < HEAD_DIM; c += MERGE_WG) STORE_ELEM(o, o_base + c, 0.0f);
    if (lid == 0 && d->write_lse) lse[row] = NEG_INF;
    return;
  }
  /* this group's splits, weighted, in registers; the weights' sum of this work-item's splits */
  const int sg = lid / 32, lane = lid % 32;
  float acc[MERGE_CPL];
#pragma unroll
  for (int k = 0; k < MERGE_CPL; ++k) acc[k] = 0.0f;
  for (int s = sg; s < splits; s += MERGE_SG) {
    const float ls = row_lse[s];
    if (ls == NEG_INF) continue; /* an empty split: its O is not read */
    const float w = exp(ls - mx);
#pragma unroll
    for (int k = 0; k < MERGE_CPL; ++k) {
      const int c = lane + 32 * k;
      if (c < HEAD_DIM) acc[k] += w * row_o[(long)s * HEAD_DIM + c];
    }
  }
  float wsum = 0.0f;
  for (int s = lid; s < splits; s += MERGE_WG) wsum += exp(row_lse[s] - mx); /* exp(-inf) = 0 */
  red[lid] = wsum;
#pragma unroll
  for (int k = 0; k < MERGE_CPL; ++k) part[sg][lane + 32 * k] = acc[k];
  barrier(CLK_LOCAL_MEM_FENCE);
  for (int k = MERGE_WG / 2; k > 0; k >>= 1) {
    if (lid < k) red[lid] += red[lid + k];
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  const float sum = red[0];
  const float inv = 1.0f / sum;
  for (int c = lid; c < HEAD_DIM; c += MERGE_WG) {
    float o_c = 0.0f;
    for (int g = 0; g < MERGE_SG; ++g) o_c += part[g][c]; /* the groups in a fixed order */
    STORE_ELEM(o, o_base + c, o_c * inv);
  }
  if (lid == 0 && d->write_lse) lse[row] = mx + log(sum);
#endif
}
