/* decode_streams.cl: the end of the key-group decode kernels (decode_stream.cl, decode_lanes.cl),
 * which run several key groups per work-group, each with its own online-softmax stream, and merge
 * the streams once, by the LSE rule, into the split's partial O and LSE. Its own file because only
 * those two programs define the key-group shapes it reads (BR, HEAD_DIM, WG_SIZE). */

/* The end of the key-group kernels' epilogue (decode_stream.cl, decode_lanes.cl): scratch holds
 * each of the nkg streams' unnormalised O (nkg, BR, d), then their m and l (nkg, BR); they are
 * merged by the LSE rule into split `split`'s partial O and LSE for rows r0 ... r_end - 1. */
void merge_key_group_streams(const DecodeArgs* d, __local const float* scratch, int nkg, __global float* work, int b,
                             int hk, int r0, int r_end, int split, int lid) {
  __local const float* st_o = scratch;
  __local const float* st_m = scratch + nkg * BR * HEAD_DIM;
  __local const float* st_l = st_m + nkg * BR;
  __global float* part_o = work + PART_O_BASE(d);
  for (int idx = lid; idx < BR * HEAD_DIM; idx += WG_SIZE) {
    const int r = idx / HEAD_DIM, c = idx % HEAD_DIM, rg = r0 + r;
    if (rg >= r_end) continue;
    float mx = NEG_INF;
    for (int g = 0; g < nkg; ++g) mx = fmax(mx, st_m[g * BR + r]);
    float sum = 0.0f, o = 0.0f;
    if (mx != NEG_INF)
      for (int g = 0; g < nkg; ++g) {
        const float w = EXP2_OF(st_m[g * BR + r] - mx); /* 0 for streams that saw nothing */
        sum += w * st_l[g * BR + r];
        o += w * st_o[(g * BR + r) * HEAD_DIM + c];
      }
    const long row = PART_ROW(d, b, hk, rg);
    /* as the forward's rows: 0 and -inf where the split saw no key, NaN kept where it met one */
    part_o[(row * d->num_splits + split) * HEAD_DIM + c] = o * (sum > 0.0f ? 1.0f / sum : 0.0f);
    if (c == 0) work[row * d->num_splits + split] = row_lse(mx, sum);
  }
}
