/* fp8_tiles.cl: the tile loads of the portable fa2 for fp8 inputs (DTYPE 3/4, after team.cl). Each
 * staged element is the dequantised value, fp32 decode(x8) * descale (times Q's softmax factor for
 * Q), so S = scale * (q_descale Q8)(k_descale K8)^T and P V uses v_descale V8 exactly as the float64
 * reference on the dequantised inputs does. Descales (docs/FP8.md): one per (batch, K/V head), or
 * with QUANT_BLOCK = n one per n rows of a (batch, head): the row's own, whatever the tile size. */

#ifndef QUANT_BLOCK
#define QUANT_BLOCK 0 /* rows per descale; 0: one descale per (batch, K/V head) */
#endif
#ifndef V_TRANSPOSED
#define V_TRANSPOSED 0 /* 1: V stored (B, H_kv, d, Nk): element (key j, column c) at c * seq_stride + j */
#endif

/* The descale of `row` of a tensor whose descales for this (batch, head) start at `first`. */
#if QUANT_BLOCK
#define ROW_DESCALE(d, first, row) ((d)[(first) + (row) / QUANT_BLOCK])
#else
#define ROW_DESCALE(d, first, row) ((d)[(first)])
#endif

/* Index of the first descale of (b, head): per (B, H_kv) the K/V head's entry; per block, the
 * blocks of (b, head) among `heads` heads, ceil(rows / QUANT_BLOCK) each. */
inline long first_descale(const AttnArgs* a, int b, int head, int heads, int rows) {
#if QUANT_BLOCK
  return ((long)b * heads + head) * ((rows + QUANT_BLOCK - 1) / QUANT_BLOCK);
#else
  (void)heads;
  (void)rows;
  return (long)b * a->heads_kv + head; /* head: the K/V head here */
#endif
}

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
