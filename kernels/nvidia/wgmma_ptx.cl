/* wgmma_ptx.cl: Hopper's warpgroup MMA (wgmma.mma_async, sm_90a) as every operand file on it uses it
 * (mma_wgmma.cl for fp16/bf16, with the backward's bwd_wgmma_*.cl over it; mma_wgmma_e4m3.cl for
 * e4m3): the ARCH_ONLY marker of retargeted builds, the proxy fence before the tensor cores read
 * __local tiles, a warpgroup's fence / commit / wait, no-swizzle tile descriptors, and the asm of
 * one m64nN wgmma with A from registers, whose shape, types and transpose operand the operand file
 * names (WGMMA_ASYNC). Tile layouts and the products built from these stay in the operand files.
 *
 * NVIDIA's OpenCL compiler emits PTX for sm_90, where wgmma does not exist, so the host builds
 * these programs with -DARCH_PTX_RETARGET: every sm_90a instruction is then written behind the PTX
 * comment marker ARCH_ONLY, and the host removes the markers and retargets the PTX to sm_90a
 * before the driver compiles it (src/ptx_retarget.cpp). Built plainly, the source is the same
 * program for a compiler that targets sm_90a itself. */

#ifdef ARCH_PTX_RETARGET
#define ARCH_ONLY "//sm_90a " /* removed by the host before the PTX is compiled for sm_90a */
#else
#define ARCH_ONLY ""
#endif

/* Writes of the generic proxy (cp.async, st.shared) made visible to the tensor cores' reads (the
 * async proxy): by each writer before the work-group barrier that publishes its copies, or by each
 * reader after the mbarrier wait that says they landed. */
inline void tile_writes_visible(void) { asm volatile(ARCH_ONLY "fence.proxy.async.shared::cta;" ::: "memory"); }

inline void wg_fence(void) { asm volatile(ARCH_ONLY "wgmma.fence.sync.aligned;" ::: "memory"); }
inline void wg_commit(void) { asm volatile(ARCH_ONLY "wgmma.commit_group.sync.aligned;" ::: "memory"); }
/* The accumulators are written by the tensor cores until the wait for their group (WG_WAIT) */
#define PIN4(x) asm volatile("" : "+f"((x)[0]), "+f"((x)[1]), "+f"((x)[2]), "+f"((x)[3])::"memory")

/* Descriptor of a no-swizzle tile at `p` with the given leading / stride byte offsets. */
inline ulong wg_desc(__local const void* p, uint lead, uint stride) {
  return (ulong)((local_addr(p) & 0x3FFFFu) >> 4) | (ulong)(lead >> 4) << 16 | (ulong)(stride >> 4) << 32;
}
#define DESC_AT(desc, bytes) ((desc) + (ulong)((bytes) >> 4)) /* same tile, start moved by `bytes` */

/* d[j0 .. j0 + N/8 - 1][0..3] += A (64 rows, registers a[0..3]) * B (N columns, descriptor) as
 * "wgmma.mma_async.sync.aligned.m64n<N><SHAPE_TYPES> D, A, B, scale-d, 1, 1<B_TRANS>;": SHAPE_TYPES
 * the k and types ("k16.f32.f16.f16"), B_TRANS the transpose operand of 16-bit types (", 0" K-major,
 * ", 1" N-major; "" for 8-bit types, which take none). scale-d is a predicate operand set from
 * `acc_in` (0: D = A B, the old D not read), all on one line so the ARCH_ONLY marker comments out
 * the whole statement. The accumulator lists of the three widths used: */
#define WG_ACC8(d, j) "+f"((d)[j][0]), "+f"((d)[j][1]), "+f"((d)[j][2]), "+f"((d)[j][3])
#define WG_ACC16(d, j) WG_ACC8(d, j), WG_ACC8(d, (j) + 1)
#define WG_ACC32(d, j) WG_ACC16(d, j), WG_ACC16(d, (j) + 2)
#define WG_ACC64(d, j) WG_ACC32(d, j), WG_ACC32(d, (j) + 4)
#define WG_REGS16 "{%0,%1,%2,%3,%4,%5,%6,%7}, {%8,%9,%10,%11}, %12, p, 1, 1"
#define WG_REGS32 "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15}, {%16,%17,%18,%19}, %20, p, 1, 1"
#define WG_REGS64                                                                                      \
  "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27," \
  "%28,%29,%30,%31}, {%32,%33,%34,%35}, %36, p, 1, 1"
#define WG_PRED16 "%13"
#define WG_PRED32 "%21"
#define WG_PRED64 "%37"
#define WGMMA_ASYNC(N, SHAPE_TYPES, B_TRANS, d, j0, a, desc, acc_in)                                   \
  asm volatile(ARCH_ONLY "{ .reg .pred p; setp.ne.b32 p, " WG_PRED##N ", 0; "                         \
                         "wgmma.mma_async.sync.aligned.m64n" #N SHAPE_TYPES " " WG_REGS##N B_TRANS "; }" \
               : WG_ACC##N(d, j0)                                                                      \
               : "r"((a)[0]), "r"((a)[1]), "r"((a)[2]), "r"((a)[3]), "l"(desc), "r"(acc_in)            \
               : "memory")

/* Waits until at most the newest `n` committed wgmma groups of this warpgroup are pending. */
#define WG_WAIT(n) asm volatile(ARCH_ONLY "wgmma.wait_group.sync.aligned " #n ";" ::: "memory")
/* WG_WAIT(n), but not before `after` is computed. A wait has no operands, and ptxas schedules it as
 * early as it can: the wait for P V moved above the softmax meant to overlap it (seen in the SASS).
 * A __local store of a value the softmax produced cannot pass the wait (which orders shared
 * memory), so the wait stays behind it. `slot`: this work-item's own word. */
#define WG_WAIT_AFTER(n, slot, after)                                                                  \
  do {                                                                                                 \
    asm volatile("st.shared.f32 [%0], %1;" ::"r"(local_addr(slot)), "f"(after) : "memory");           \
    WG_WAIT(n);                                                                                        \
  } while (0)
/* each accumulator register through an empty asm after a wait, so no read of it moves above it */
#define PIN_TILES(x, nt)                                                                               \
  do {                                                                                                 \
    _Pragma("unroll") for (int n_ = 0; n_ < (nt); ++n_) PIN4((x)[0][n_]);                              \
  } while (0)
