/* fp8_tiles.cl: the tile loads of the portable fa2 for fp8 inputs (DTYPE 3/4, after team.cl and
 * fp8_descales.cl). Each staged element is the dequantised value, fp32 decode(x8) * descale (times
 * Q's softmax factor for Q), so S = scale * (q_descale Q8)(k_descale K8)^T and P V uses v_descale V8
 * exactly as the float64 reference on the dequantised inputs does. */

/* load_transposed (team.cl) of fp8 rows, each times mul and its descale. */
inline void load_transposed_fp8(__local float* dst, int pitch, __global const STORAGE_T* src, long base,
                                long seq_stride, int row0, int nrows, int valid, float mul,
                                __global const float* descale, long first, int lid) {
  for (int idx = lid; idx < nrows * D_PAD; idx += WG_SIZE) {
    const int r = idx / D_PAD, c = idx - r * D_PAD;
    float x = 0.0f;
    if (row0 + r < valid && c < HEAD_DIM)
      x = LOAD_ELEM(src, base + (long)(row0 + r) * seq_stride + c) * (mul * ROW_DESCALE(descale, first, row0 + r));
    dst[c * pitch + r] = x;
  }
}

/* load_rows (team.cl) of fp8 V, each key row times its descale; V_TRANSPOSED reads (d, Nk) planes. */
inline void load_rows_fp8(__local float* dst, __global const STORAGE_T* src, long base, long seq_stride, int row0,
                          int valid, __global const float* descale, long first, int lid) {
  for (int idx = lid; idx < BC * D_PAD; idx += WG_SIZE) {
    const int r = idx / D_PAD, c = idx - r * D_PAD;
    float x = 0.0f;
#if V_TRANSPOSED
    const long at = base + (long)c * seq_stride + row0 + r;
#else
    const long at = base + (long)(row0 + r) * seq_stride + c;
#endif
    if (row0 + r < valid && c < HEAD_DIM) x = LOAD_ELEM(src, at) * ROW_DESCALE(descale, first, row0 + r);
    dst[r * V_STRIDE + c] = x;
  }
}
