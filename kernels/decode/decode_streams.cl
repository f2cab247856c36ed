/* decode_streams.cl: the end of the key-group decode kernels (decode_stream.cl, decode_lanes.cl),
 * which run several key groups per work-group, each with its own online-softmax stream, and merge
 * the streams once, by the LSE rule, into the split's partial O and LSE. Its own file because only
 * those two programs define the key-group shapes it reads (BR, HEAD_DIM, WG_SIZE, and the stream
 * state's VEC columns per work-item). */

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
    for (int g = 0; g < nkg; ++g) mx = max_keep_nan(mx, st_m[g * BR + r]); /* a NaN stream: the row NaN */
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

/* The key-group kernels' epilogue: each work-item leaves its stream's unnormalised O (key group kg,
 * the VEC columns from col, BR rows; with an fp8 cache times v_descale first, once per accumulator:
 * P . (vd * v8)) and, in its first column chunk (v == 0), the stream's m and l in scratch, laid out
 * as merge_key_group_streams reads them, which then merges the nkg streams. Every work-item runs it.
 * A macro, not a function: as a function (always_inline) clang's nvptx PTX of decode_lanes came out
 * with two address additions swapped, and NVIDIA's programs are to stay byte-identical. */
#if CACHE_FP8
#define STREAMS_V_DESCALE(acc, d, b, hk)                              \
  do {                                                                \
    const float vd = CACHE_DESCALE(v_descale, d, b, hk);              \
    _Pragma("unroll") for (int r = 0; r < BR; ++r)                    \
      _Pragma("unroll") for (int e = 0; e < VEC; ++e) acc[r][e] *= vd; \
  } while (0)
#else
#define STREAMS_V_DESCALE(acc, d, b, hk) do { } while (0)
#endif
#define END_KEY_GROUP_STREAMS(d, acc, m, l, scratch, nkg, kg, col, v, work, b, hk, r0, r_end, split, lid)        \
  do {                                                                                                           \
    STREAMS_V_DESCALE(acc, d, b, hk);                                                                            \
    barrier(CLK_LOCAL_MEM_FENCE);                                                                                \
    __local float* st_o = scratch;                                                                               \
    __local float* st_m = scratch + (nkg) * BR * HEAD_DIM;                                                       \
    __local float* st_l = st_m + (nkg) * BR;                                                                     \
    _Pragma("unroll") for (int r = 0; r < BR; ++r) {                                                             \
      _Pragma("unroll") for (int e = 0; e < VEC; ++e) st_o[((kg) * BR + r) * HEAD_DIM + (col) + e] = acc[r][e]; \
      if ((v) == 0) {                                                                                            \
        st_m[(kg) * BR + r] = m[r];                                                                              \
        st_l[(kg) * BR + r] = l[r];                                                                              \
      }                                                                                                          \
    }                                                                                                            \
    barrier(CLK_LOCAL_MEM_FENCE);                                                                                \
    merge_key_group_streams(d, scratch, nkg, work, b, hk, r0, r_end, split, lid);                                \
  } while (0)
