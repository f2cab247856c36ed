/* ceilings.cl: the two kernels flashcl-bench measures a device's roofline with, in the spirit of
 * clpeak. fma_peak runs CHAINS independent FMA chains of VEC (float, float4, float8) per
 * work-item, enough independent work to hide FMA latency on every pipe; the kernel arguments keep
 * the compiler from folding the chains, and the sum written at the end keeps them alive.
 * copy_peak copies one VEC per work-item, so its bytes are exactly read + written. */

#ifndef VEC
#define VEC float8
#endif
#ifndef CHAINS
#define CHAINS 8
#endif

__kernel void fma_peak(__global VEC* out, const float a, const float b, const int iters) {
  const VEC va = (VEC)(a), vb = (VEC)(b);
  VEC x[CHAINS];
#pragma unroll
  for (int c = 0; c < CHAINS; ++c) x[c] = (VEC)(get_global_id(0) * 1e-7f + c * 1e-3f);
  for (int i = 0; i < iters; ++i) {
#pragma unroll
    for (int c = 0; c < CHAINS; ++c) x[c] = fma(x[c], va, vb);
  }
  VEC sum = x[0];
#pragma unroll
  for (int c = 1; c < CHAINS; ++c) sum += x[c];
  out[get_global_id(0)] = sum;
}

__kernel void copy_peak(__global const VEC* restrict src, __global VEC* restrict dst) {
  const size_t i = get_global_id(0);
  dst[i] = src[i];
}
