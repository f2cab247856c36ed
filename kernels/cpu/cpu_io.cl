/* cpu_io.cl: moving rows between the storage dtype (fp32, fp16, bf16) and the fp32 tiles of the
 * CPU-shaped kernels (fa2_cpu.cl, bwd_cpu.cl), 16 elements at a time. Per element, PoCL's
 * vload_half is about ten integer operations (its library converts by bit manipulation, as the
 * device reports no cl_khr_fp16) and the 16-bit rows of the CPU forward spent a third of their
 * kernel time staging (perf annotate, fp16, N = 1024, d = 128, causal). Where the kernel is compiled
 * for an x86 host with F16C (PoCL defines the target's feature macros), fp16 goes through the
 * hardware conversion instead: one vcvtph2ps / vcvtps2ph per 16 (AVX-512) or 8 elements, the same
 * values (fp16 -> fp32 is exact; fp32 -> fp16 rounds to nearest even, as vstore_half_rte). bf16 is a
 * vector shift each way. Everything else (oclgrind's spir, other CPUs) takes vload_half16 /
 * vstore_half16_rte, the same values again. The transposed staging (Q^T in the forward, K^T and V^T
 * in the backward) goes through 16 x 16 tiles: reading a column of rows 2-4 KiB apart touched one
 * cache line per element in the same few L1 sets (43 % of the fp32 forward's own body, N = 1024,
 * d = 128), while a tile reads 16 whole rows once. fp8 inputs (DTYPE 3/4, the fa2_cpu_fp8 program)
 * go through the same fp16 conversion: e5m2 is the high byte of an fp16, and e4m3's bits shifted
 * under fp16's exponent and mantissa are its value / 256 exactly (decode_common.cl's cache_fp8x8
 * says why), so 16 bytes cost a widening, shifts and one conversion; O is then stored as OUT_DTYPE
 * (common.cl's OUT_STORAGE_T). Needs common.cl (DTYPE, STORAGE_T, LOAD_ELEM, OUT_STORAGE_T), with
 * fp8 fp8_codec.cl and fp8_descales.cl, and HEAD_DIM, D_PAD. */

#if defined(__x86_64__) && defined(__AVX512F__)
#define CPU_HALF_CVT 2 /* one zmm conversion per 16 */
#elif defined(__x86_64__) && defined(__F16C__)
#define CPU_HALF_CVT 1 /* two ymm conversions per 16 */
#else
#define CPU_HALF_CVT 0
#endif
#define CPU_HALF_HW (DTYPE == 1 ? CPU_HALF_CVT : 0) /* fp16 rows read by the hardware converter */
#if FP8
#define CPU_OUT_KIND OUT_DTYPE /* O's storage: 0 fp32, 1 fp16, 2 bf16 */
#else
#define CPU_OUT_KIND DTYPE
#endif
#define CPU_OUT_HALF_HW (CPU_OUT_KIND == 1 ? CPU_HALF_CVT : 0)

/* 16-element vectors at element alignment: plain loads and stores (vmovups) where PoCL's vload16
 * and vstore16 split into 4-wide pieces or, for ushort, 16 scalar stores with extracts (perf
 * annotate: the fp16 forward's O store). */
typedef float16 cpu_float16_u __attribute__((aligned(4)));
typedef ushort16 cpu_ushort16_u __attribute__((aligned(2)));
#define CPU_LOAD16(as, type, p) (*(as const type*)(p))
#define CPU_STORE16(as, type, p, x) (*(as type*)(p) = (x))

/* 16 fp16 bit patterns as fp32 (exact). */
inline float16 cpu_halves16(ushort16 h) {
#if CPU_HALF_CVT == 2
  return __builtin_ia32_vcvtph2ps512_mask(as_short16(h), (float16)(0.0f), (ushort)0xffff, 4 /* current rounding: exact */);
#elif CPU_HALF_CVT == 1
  const short16 s = as_short16(h);
  return (float16)(__builtin_ia32_vcvtph2ps256(s.lo), __builtin_ia32_vcvtph2ps256(s.hi));
#else
  return vload_half16(0, (const __private half*)&h);
#endif
}

/* Elements [at, at + 16) of src as fp32; all 16 must lie inside the row. */
inline float16 cpu_load16(__global const STORAGE_T* src, long at) {
#if DTYPE == 3 /* e4m3: value / 256 as an fp16, times 256; S.1111.111 is NaN (fp8_codec.cl) */
  const ushort16 u = convert_ushort16(vload16(0, src + at));
  return select(cpu_halves16(E4M3_HALF_BITS(u)) * 256.0f, (float16)(NAN), convert_int16(E4M3_IS_NAN(u)));
#elif DTYPE == 4 /* e5m2: the high byte of its fp16 */
  return cpu_halves16(convert_ushort16(vload16(0, src + at)) << (ushort)8);
#elif DTYPE == 0
  return CPU_LOAD16(__global, cpu_float16_u, src + at);
#elif DTYPE == 1 && CPU_HALF_HW != 0
  return cpu_halves16(CPU_LOAD16(__global, cpu_ushort16_u, src + at));
#elif DTYPE == 1
  return vload_half16(0, src + at);
#elif DTYPE == 2
  return as_float16(convert_uint16(CPU_LOAD16(__global, cpu_ushort16_u, src + at)) << 16);
#else
#error "cpu_io.cl: fp32, fp16, bf16, e4m3 or e5m2 storage only"
#endif
}

/* x into elements [at, at + 16) of dst in O's storage dtype (fp16: nearest even; bf16: nearest
 * even, NaN kept a NaN, as common.cl's float_to_bf16). */
inline void cpu_store16(float16 x, __global OUT_STORAGE_T* dst, long at) {
#if CPU_OUT_KIND == 0
  CPU_STORE16(__global, cpu_float16_u, dst + at, x);
#elif CPU_OUT_KIND == 1 && CPU_OUT_HALF_HW == 2
  const short16 h = __builtin_ia32_vcvtps2ph512_mask(x, 0 /* nearest even */, (short16)(0), (ushort)0xffff);
  CPU_STORE16(__global, cpu_ushort16_u, dst + at, as_ushort16(h));
#elif CPU_OUT_KIND == 1 && CPU_OUT_HALF_HW == 1
  const short16 h = (short16)(__builtin_ia32_vcvtps2ph256(x.lo, 0), __builtin_ia32_vcvtps2ph256(x.hi, 0));
  CPU_STORE16(__global, cpu_ushort16_u, dst + at, as_ushort16(h));
#elif CPU_OUT_KIND == 1
  vstore_half16_rte(x, 0, dst + at);
#else
  const uint16 u = as_uint16(x);
  const uint16 rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16, nan = (u >> 16) | 0x40u;
  CPU_STORE16(__global, cpu_ushort16_u, dst + at, convert_ushort16(select(rounded, nan, (u & 0x7fffffffu) > 0x7f800000u)));
#endif
}

/* Columns [c0, c0 + 16) of the row at `at`, times mul, as fp32; columns past HEAD_DIM read 0. */
inline float16 cpu_load_cols(__global const STORAGE_T* src, long at, int c0, float mul) {
  if (c0 + 16 <= HEAD_DIM) return cpu_load16(src, at + c0) * mul;
  float t[16];
  for (int c = 0; c < 16; ++c) t[c] = c0 + c < HEAD_DIM ? LOAD_ELEM(src, at + c0 + c) * mul : 0.0f;
  return CPU_LOAD16(__private, cpu_float16_u, t);
}

/* One row at `at` into dst[0, D_PAD) as fp32 times mul; columns past HEAD_DIM, and the whole row
 * where !inside, read 0. */
inline void cpu_stage_row(__local float* dst, __global const STORAGE_T* src, long at, bool inside, float mul) {
  int c = 0;
  if (inside) {
    for (; c + 16 <= HEAD_DIM; c += 16) CPU_STORE16(__local, cpu_float16_u, dst + c, cpu_load16(src, at + c) * mul);
    for (; c < HEAD_DIM; ++c) dst[c] = LOAD_ELEM(src, at + c) * mul;
  }
  for (; c < D_PAD; ++c) dst[c] = 0.0f;
}

/* With fp8 inputs a staged row also takes its descale (fp8_descales.cl's ROW_DESCALE of the
 * descales from `first`): the extra parameters of cpu_stage_rows_t, and the factor of row `row`. */
#if FP8
#define CPU_ROW_DESCALE_PARAMS , __global const float *row_descale, long descale_first
#define CPU_ROW_DESCALE_ARGS(d, first) , (d), (first)
#define CPU_ROW_DESCALE(row) ROW_DESCALE(row_descale, descale_first, row)
#else
#define CPU_ROW_DESCALE_PARAMS
#define CPU_ROW_DESCALE_ARGS(d, first)
#define CPU_ROW_DESCALE(row) 1.0f
#endif

/* Rows [row0, row0 + n) of a (seq, d) slice, times mul (and, fp8, each row's descale), transposed:
 * dst[c * n + r] for c < D_PAD. Rows at or past `valid` and columns past HEAD_DIM read 0 (and no
 * descale is read for them). 16 rows x 16 columns at a time. */
inline void cpu_stage_rows_t(__local float* dst, __global const STORAGE_T* src, long base, long seq_stride, int row0,
                             int n, int valid, float mul CPU_ROW_DESCALE_PARAMS) {
  for (int r0 = 0; r0 < n; r0 += 16) {
    const int rows = min(16, n - r0);
    for (int c0 = 0; c0 < D_PAD; c0 += 16) {
      float t[16][16];
      for (int r = 0; r < rows; ++r) {
        const int row = row0 + r0 + r;
        const float16 x =
            row < valid ? cpu_load_cols(src, base + (long)row * seq_stride, c0, mul * CPU_ROW_DESCALE(row)) : (float16)(0.0f);
        CPU_STORE16(__private, cpu_float16_u, t[r], x);
      }
      const int cols = min(16, D_PAD - c0);
      for (int c = 0; c < cols; ++c)
#pragma clang loop vectorize(disable) /* vectorised, the stores become scatters */
        for (int r = 0; r < rows; ++r) dst[(c0 + c) * n + r0 + r] = t[r][c];
    }
  }
}

/* src[0, HEAD_DIM) times mul into the row at `at` of dst, in O's storage dtype. */
inline void cpu_store_row(__global OUT_STORAGE_T* dst, long at, __local const float* src, float mul) {
  int c = 0;
  for (; c + 16 <= HEAD_DIM; c += 16) cpu_store16(CPU_LOAD16(__local, cpu_float16_u, src + c) * mul, dst, at + c);
  for (; c < HEAD_DIM; ++c) STORE_OUT(dst, at + c, src[c] * mul);
}
