/* fp8_descales.cl: where an fp8 forward finds its descales (docs/FP8.md), shared by the portable fa2
 * (fp8_tiles.cl) and the CPU-shaped fa2 (fa2_cpu.cl): one per (batch, K/V head), or with
 * QUANT_BLOCK = n one per n rows of a (batch, head), the row's own whatever the tile size; and the
 * kernels' three descale arguments (FP8_PARAMS, after the argument block). After common.cl. */

#define FP8_PARAMS , __global const float *q_descale, __global const float *k_descale, __global const float *v_descale

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
  /* ceil(rows / QUANT_BLOCK) without rows + QUANT_BLOCK - 1, which overflows int for a block near 2^31 */
  return ((long)b * heads + head) * (rows > 0 ? (rows - 1) / QUANT_BLOCK + 1 : 0);
#else
  (void)heads;
  (void)rows;
  return (long)b * a->heads_kv + head; /* head: the K/V head here */
#endif
}
