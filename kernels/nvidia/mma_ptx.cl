/* mma_ptx.cl: the inline-PTX instructions of the NVIDIA tensor-core path (fa2_mma.cl), each behind
 * a small function so the kernel reads as OpenCL C. Compiled only for NVIDIA devices of compute
 * capability >= 8.0 after the host's probe ran the whole path on a small problem and got it right.
 *
 * __local addresses are passed to PTX as 32-bit offsets in the shared window: the integer value of
 * a __local pointer on NVIDIA's OpenCL compiler (the probe confirms it on each device). Every asm
 * that touches __local memory is volatile so the compiler keeps it between the barriers it was
 * written between. */

/* Geometry shared by the kernel and the operand files (mma_f16.cl / mma_wgmma.cl through
 * mma_half_io.cl, mma_tf32.cl), which define DPAD, the head dim padded to their mma's k. */
#ifndef WARPS
#define WARPS 4 /* warps per work-group: BR = 16 * MT * WARPS query rows */
#endif
#ifndef MT
#define MT 1 /* 16-row m-tiles per warp: 2 reuses every K/V fragment read for two tiles */
#endif
#ifndef BC
#define BC 64 /* keys per block (multiple of 16) */
#endif
#ifndef VEC_LOAD
#define VEC_LOAD 0 /* 1: K/V blocks arrive by 16-byte cp.async (d, offsets, strides multiples of 16 bytes) */
#endif
#ifndef STAGES
#define STAGES 1 /* K/V buffers: 1 (FlashAttention-2's pipeline, three barriers a block) or 2 (mbarriers) */
#endif
#ifndef LAZY_RESCALE
#define LAZY_RESCALE 1 /* 1: skip the rescale of O in blocks where no row's reference max moved */
#endif
#ifndef RESCALE_SLACK
#define RESCALE_SLACK 8.0f /* log2 units the row max may rise before O is rescaled */
#endif
#define BR (16 * MT * WARPS)
#define WG_SIZE (32 * WARPS)
#define NT_S (BC / 8)   /* 8-key tiles of S per warp */
#define NT_O (DPAD / 8) /* 8-column tiles of O per warp */

/* x from the lane whose id differs in `mask` (butterfly within the warp). */
inline float shfl_xor(float x, int mask) {
  float r;
  asm volatile("shfl.sync.bfly.b32 %0, %1, %2, 0x1f, 0xffffffff;" : "=f"(r) : "f"(x), "r"(mask));
  return r;
}

/* Whether `p` holds in any lane of the warp (all lanes take part). */
inline bool warp_any(bool p) {
  uint r;
  asm volatile("{ .reg .pred p, q; setp.ne.u32 p, %1, 0; vote.sync.any.pred q, p, 0xffffffff; selp.u32 %0, 1, 0, q; }"
               : "=r"(r)
               : "r"((uint)p));
  return r != 0;
}

/* 2^x on the special-function unit (relative error ~2^-22; 2^-inf = 0). */
inline float ex2_approx(float x) {
  float r;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(x));
  return r;
}

/* tanh(x / cap) as 1 - 2 / (1 + 2^(2 x log2(e) / cap)): one ex2.approx and one reciprocal instead of
 * the library's tanh and a division, to about 3e-7 absolute (+-1 where 2^ saturates): the 16-bit
 * kernels' softcap (bwd_kv_steps.cl, fa2_mma.cl), whose host builds it for caps up to 64 only, so the
 * score is off by at most 64 * 3e-7, far inside the 16-bit rounding of P. */
inline float softcap_tanh_ex2(float x, float cap) {
  return 1.0f - 2.0f * native_recip(1.0f + ex2_approx(x * (2.0f * LOG2E_F / cap)));
}

/* The warp's lanes meet here (their earlier __local writes visible to each other). */
inline void warp_sync(void) { asm volatile("bar.warp.sync -1;" ::: "memory"); }

/* The emulated shuffles (tests/emulated_mma) exchange through a __local array the kernel declares;
 * the helpers that shuffle take it through these (nothing here). */
#define SHFL_SCRATCH_PARAM
#define SHFL_SCRATCH_ARG

inline uint local_addr(__local const void* p) { return (uint)(ulong)p; }

/* 16 bytes global -> __local without passing through registers; `bytes` = 0 writes 16 zero bytes
 * (rows past the sequence end, columns past the head dim) and reads nothing. */
inline void copy16_async(__local void* dst, __global const void* src, int bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(local_addr(dst)), "l"((ulong)src), "r"(bytes)
               : "memory");
}
/* The same with the .L2::256B hint: L2 fetches the whole 256 bytes around the source at once
 * (decode_mma.cl, where 16 lanes copy a key's 256-byte row: 1.01-1.02x on the H100 at one query, B 8
 * and 1, 32k and 128k keys, both rounds of bench/gpu/decode_rows.sh). */
inline void copy16_async_256(__local void* dst, __global const void* src, int bytes) {
  asm volatile("cp.async.cg.shared.global.L2::256B [%0], [%1], 16, %2;" ::"r"(local_addr(dst)), "l"((ulong)src),
               "r"(bytes)
               : "memory");
}
inline void async_commit(void) { asm volatile("cp.async.commit_group;" ::: "memory"); }
/* Wait until at most the newest `n` groups of this work-item's copies are still in flight. */
#define ASYNC_WAIT_GROUPS(n) asm volatile("cp.async.wait_group " #n ";" ::: "memory")
/* The same for an integer constant expression (decode_mma.cl's RING - 2). */
#define ASYNC_WAIT_GROUPS_N(n) asm volatile("cp.async.wait_group %0;" ::"n"(n) : "memory")
inline void async_wait_prior(void) { ASYNC_WAIT_GROUPS(1); }
inline void async_wait_all(void) { ASYNC_WAIT_GROUPS(0); }

/* mbarriers in __local memory (sm_80+): fa2_mma.cl's split synchronisation of the two-buffer
 * schedules. A barrier completes a phase when its count of arrivals is in; a waiter names the
 * parity of the phase it waits for. */
#ifndef MBAR_TRY_WAIT
#define MBAR_TRY_WAIT 0 /* 1 (sm_90, the host knows): waiters suspend in try_wait instead of spinning on test_wait */
#endif
#if MBAR_TRY_WAIT
#define MBAR_WAIT_OP "mbarrier.try_wait"
#else
#define MBAR_WAIT_OP "mbarrier.test_wait"
#endif
inline void mbar_init(__local ulong* bar, uint count) {
  asm volatile("mbarrier.init.shared.b64 [%0], %1;" ::"r"(local_addr(bar)), "r"(count) : "memory");
}
/* One arrival of this work-item, after (release) its earlier writes. */
inline void mbar_arrive(__local ulong* bar) {
  ulong state;
  asm volatile("mbarrier.arrive.shared.b64 %0, [%1];" : "=l"(state) : "r"(local_addr(bar)) : "memory");
}
/* One arrival for the whole warp once every lane is past this point (the warp's earlier __local
 * reads ordered before it through the warp barrier, then lane 0 arrives). */
inline void mbar_arrive_warp(__local ulong* bar, int lane) {
  warp_sync();
  if (lane == 0) mbar_arrive(bar);
}
/* Until the phase of parity `parity` has completed (acquire: the writes its arrivals released are visible). */
inline void mbar_wait(__local ulong* bar, uint parity) {
  asm volatile("{ .reg .pred done; MBAR_WAIT: " MBAR_WAIT_OP ".parity.shared.b64 done, [%0], %1; @!done bra MBAR_WAIT; }"
               ::"r"(local_addr(bar)), "r"(parity) : "memory");
}
/* This work-item's arrival for a batch of copies (load_block's): once every cp.async it issued has
 * landed (counted in the init count: .noinc), or at once after element-wise stores. */
inline void announce_copies(__local ulong* bar) {
#if VEC_LOAD
  asm volatile("cp.async.mbarrier.arrive.noinc.shared.b64 [%0];" ::"r"(local_addr(bar)) : "memory");
#else
  mbar_arrive(bar);
#endif
}

/* Four 8x8 16-bit matrices from __local: lanes 8i..8i+7 give the row addresses of matrix i; lane
 * 4g+t receives row g, columns 2t and 2t+1 of each (.trans: column g, rows 2t and 2t+1). */
inline void ldsm_x4(uint r[4], __local const ushort* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(local_addr(p)));
}
inline void ldsm_x4_trans(uint r[4], __local const ushort* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(local_addr(p)));
}
