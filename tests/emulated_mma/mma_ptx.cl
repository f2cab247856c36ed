/* emulated_mma/mma_ptx.cl: stands in for kernels/nvidia/mma_ptx.cl on a device without NVIDIA's
 * PTX (PoCL), for tests/emulated_mma/run.sh: the same geometry macros, and the asynchronous 16-byte
 * copies as plain copies (the waits then have nothing to wait for). Only what standard_mma.cl
 * uses; fa2_mma.cl's mbarriers, shuffles and ldmatrix are not emulated. */
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
inline void async_commit(void) {}
inline void async_wait_prior(void) {}
inline void async_wait_all(void) {}
