/* emulated_mma/mma_ptx.cl: stands in for kernels/nvidia/mma_ptx.cl on a device without NVIDIA's
 * PTX (PoCL), for tests/emulated_mma/run.sh: the same geometry macros, the asynchronous 16-byte
 * copies as plain copies (the L2-hinted ones too; the waits then have nothing to wait for), 2^x, and the butterfly shuffle
 * through a __local exchange the kernel declares (shfl_scratch, under MMA_EMULATED_SHUFFLE) with
 * work-group barriers (every work-item calls it at the same points). What standard_mma.cl and
 * decode_mma.cl use; fa2_mma.cl's mbarriers and ldmatrix are not emulated. */
#ifndef WARPS
#define WARPS 4
#endif
#ifndef MT
#define MT 1
#endif
#ifndef BC
#define BC 64
#endif
#ifndef VEC_LOAD
#define VEC_LOAD 0
#endif
#define BR (16 * MT * WARPS)
#define WG_SIZE (32 * WARPS)
#define NT_S (BC / 8)
#define NT_O (DPAD / 8)

inline void copy16_async(__local void* dst, __global const void* src, int bytes) {
  __local uchar* d = (__local uchar*)dst;
  __global const uchar* s = (__global const uchar*)src;
  for (int i = 0; i < 16; ++i) d[i] = bytes ? s[i] : (uchar)0;
}
#define copy16_async_256 copy16_async /* (the L2 hint's form) */
inline void async_commit(void) {}
inline void async_wait_prior(void) {}
inline void async_wait_all(void) {}
#define ASYNC_WAIT_GROUPS_N(n) do { } while (0)

inline float ex2_approx(float x) { return exp2(x); }

#define MMA_EMULATED_SHUFFLE 1
inline float emulated_shfl_xor(__local float* scratch, float x, int mask) {
  const int lid = get_local_id(0);
  barrier(CLK_LOCAL_MEM_FENCE);
  scratch[lid] = x;
  barrier(CLK_LOCAL_MEM_FENCE);
  const float r = scratch[(lid & ~31) | ((lid & 31) ^ mask)];
  barrier(CLK_LOCAL_MEM_FENCE);
  return r;
}
#define shfl_xor(x, mask) emulated_shfl_xor(shfl_scratch, (x), (mask))
