/* emulated_mma/mma_ptx.cl: stands in for kernels/nvidia/mma_ptx.cl on a device without NVIDIA's
 * PTX (PoCL), for tests/emulated_mma/run.sh: the same geometry macros, the asynchronous 16-byte
 * copies as plain copies (the L2-hinted ones too; the waits then have nothing to wait for), 2^x, the
 * butterfly shuffle and the warp vote through a __local exchange the kernel declares (shfl_scratch,
 * under MMA_EMULATED_SHUFFLE; the helpers that shuffle take it through SHFL_SCRATCH_PARAM) with
 * work-group barriers (every work-item calls them at the same points), and fa2_mma.cl's mbarriers
 * as work-group barriers. What standard_mma.cl, decode_mma.cl and fa2_mma.cl's mma.sync schedules
 * use; ldmatrix and wgmma are not emulated. */
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
#ifndef STAGES
#define STAGES 1
#endif
#ifndef LAZY_RESCALE
#define LAZY_RESCALE 1
#endif
#ifndef RESCALE_SLACK
#define RESCALE_SLACK 8.0f
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

#define SHFL_SCRATCH_PARAM , __local float* shfl_scratch
#define SHFL_SCRATCH_ARG , shfl_scratch

/* Whether p holds in any lane of the caller's warp (the 32 work-items of its 32-aligned group). */
inline bool emulated_warp_any(__local float* scratch, bool p) {
  const int lid = get_local_id(0);
  barrier(CLK_LOCAL_MEM_FENCE);
  scratch[lid] = p ? 1.0f : 0.0f;
  barrier(CLK_LOCAL_MEM_FENCE);
  bool any = false;
  for (int i = 0; i < 32; ++i) any = any || scratch[(lid & ~31) | i] != 0.0f;
  barrier(CLK_LOCAL_MEM_FENCE);
  return any;
}
#define warp_any(p) emulated_warp_any(shfl_scratch, (p))
inline void warp_sync(void) { barrier(CLK_LOCAL_MEM_FENCE); }

inline float softcap_tanh_ex2(float x, float cap) {
  return 1.0f - 2.0f * native_recip(1.0f + ex2_approx(x * (2.0f * LOG2E_F / cap)));
}

/* fa2_mma.cl's mbarriers: the copies land at once, every work-item waits at the same points of the
 * mma.sync schedules, so a wait is a work-group barrier and an arrival is nothing. */
inline void mbar_init(__local ulong* bar, uint count) { (void)bar, (void)count; }
inline void mbar_arrive_warp(__local ulong* bar, int lane) { (void)bar, (void)lane; }
inline void announce_copies(__local ulong* bar) { (void)bar; }
inline void mbar_wait(__local ulong* bar, uint parity) {
  (void)bar, (void)parity;
  barrier(CLK_LOCAL_MEM_FENCE);
}
