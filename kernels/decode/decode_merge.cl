/* decode_merge.cl: combines the split-KV partials of decode_split.cl into O and LSE by the LSE
 * rule: L = L_max + log sum_s e^(L_s - L_max), O = sum_s e^(L_s - L_max) / sum * O_s. Splits with
 * L_s = -inf saw no key and are skipped without reading their O (which they need not write); a
 * row whose splits are all empty gets O = 0 and LSE = -inf, one with a split that met a NaN gets NaN
 * (the forward's rows do the same). One work-group per (query row, head,
 * sequence); its work-items share the head-dim columns. */

#ifndef MERGE_WG
#define MERGE_WG 64 /* work-items per merged row */
#endif

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
}
