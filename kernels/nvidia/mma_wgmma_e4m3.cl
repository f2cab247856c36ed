/* mma_wgmma_e4m3.cl: the FP8 (e4m3) operand side of the tensor-core fa2 (fa2_mma.cl) on Hopper
 * (sm_90a), FlashAttention-3's FP8 form: wgmma.mma_async.m64nNk32 with e4m3 operands and fp32
 * accumulation, issued by a warpgroup (4 warps, 64 query rows) with A from registers (Q's bytes,
 * then P rounded to e4m3 from the S accumulators) and B read by the tensor cores from __local
 * memory through a descriptor. The descales join the softmax's scale (q, k) and O's final division
 * (v) as in mma_e4m3.cl; O is written in 16 bits. The default for e4m3 on compute capability 9.0
 * up to d = 128 (FLASHCL_FP8_WGMMA=0 keeps mma.sync); built through retargeted PTX as mma_wgmma.cl
 * is (wgmma_ptx.cl's ARCH_ONLY), with wgmma_ptx.cl's primitives and mma_e4m3_io.cl's e4m3 pieces
 * (Q's and P's A fragments, O's conversion), which mma_e4m3.cl uses too.
 *
 * For 8-bit types wgmma reads both shared-memory operands K-major only (no transpose flag): each
 * 16-byte row of a core matrix (8 rows x 16 bytes, 128 contiguous bytes) holds 16 consecutive k.
 *  - S = Q K^T: B = K^T with k = the head dim, so K's rows as stored are K-major: K lands by
 *    cp.async (fa2_mma.cl's load_block) in core matrices of 8 keys x 16 dims (tile_offset), the
 *    core matrices of 8 keys one row of DPAD / 16 after another (leading offset 128 bytes, stride
 *    DPAD * 8).
 *  - O += P V: B = V with k = the keys, so V must be transposed: V^T in core matrices of 8 dims x
 *    16 keys, the layout of K with the roles of keys and dims swapped (leading offset 128, stride
 *    BC * 8). V therefore travels through registers (V_FETCH_WORDS, the contract's hook in
 *    fa2_mma.cl): at the end of step j each work-item loads its quads (4 keys x 4 dims, 4-byte
 *    loads) of block j + 2, and in step j + 1, once no warp reads that V^T buffer any more, turns
 *    each quad into four 4-byte words of V^T with eight byte permutes: no __local staging tile, no
 *    shuffle.
 *  - The keys inside a 16-key core row are permuted as mma_e4m3.cl permutes them for mma.sync: k
 *    positions 4t .. 4t + 3 hold keys 2t, 2t + 1, 8 + 2t, 9 + 2t, exactly the probabilities lane
 *    4g + t holds in S's accumulator layout, so P goes from the accumulators to A fragments with no
 *    shuffle (A layout of m64nNk32, per warp that of mma.m16n8k32: lane 4g + t holds rows g, g + 8
 *    and k 4t .. 4t + 3, 16 + 4t .. 16 + 4t + 3, four bytes a register).
 * With V_TRANSPOSED (V stored (B, H_kv, d, Nk), as quantize_fp8 writes it for this instruction) the
 * V^T tile comes by cp.async like K's, 16 keys of one dim a copy (V_LOAD_OWN, load_v_block), with
 * no registers, permutes or stores of the warps' own and no mbarrier of its own; the keys then sit
 * in their order inside a core row, and the permutation moves to K instead: load_block copies key
 * 4t + e (e 0, 1) of a 16-key group into K's row 2t + e and key 4t + 2 + e into row 8 + 2t + e
 * (K_ROW_KEY, fa2_mma.cl's hook, which the masks read too), so the scores lane 4g + t holds
 * (columns 2t, 2t + 1 of each 8-column tile) are those of keys 4t .. 4t + 3 and 16 + 4t .. 16 + 4t
 * + 3 of a 32-key step, P's A fragment as it stands. The tile is still written row after row (8
 * work-items fill one core matrix: no bank conflicts); only the rows' sources move.
 * Accumulators (m64nNk32, fp32) are laid out as m64nNk16's: lane 4g + t holds rows g, g + 8 and
 * columns 2t, 2t + 1 of each 8-column tile, so O's columns are in order and fa2_mma.cl's store_o2
 * epilogue applies. */

#if MT != 1 || WARPS % 4 != 0
#error "mma_wgmma_e4m3.cl: one 16-row m-tile per warp, whole warpgroups (WARPS a multiple of 4)"
#endif
#if STAGES != 2
#error "mma_wgmma_e4m3.cl: the overlapped two-buffer schedule only (V^T is written a step ahead of its P V)"
#endif
#if BC % 32 != 0 || BC > 256
#error "mma_wgmma_e4m3.cl: P V takes keys in k-steps of 32, S at most 256 keys wide"
#endif

#define K_PITCH DPAD /* no padding: core matrices spread a warp's accesses over all banks */
#define V_PITCH DPAD /* V^T: DPAD rows of BC bytes, the same bytes as a V tile */
#define TILE_CORE_MATRICES 1
#define K_CORE_ROW_BYTES (DPAD * 8) /* 8 keys of K: one row of DPAD / 16 core matrices */
#define VT_CORE_ROW_BYTES (BC * 8)  /* 8 dims of V^T: one row of BC / 16 core matrices */

#ifndef V_TRANSPOSED
#define V_TRANSPOSED 0
#endif

#if V_TRANSPOSED
/* The key in K's tile row r (from the block's first): rows 2t + e and 8 + 2t + e of a 16-row group
 * hold keys 4t + e and 4t + 2 + e (the header). */
#define K_ROW_KEY(r) (((r) & ~15) | (((r) & 7) >> 1) << 2 | (((r) >> 3) & 1) << 1 | ((r) & 1))
#endif

/* Byte offset of K's (row r, dim c) in its tile (pitch unused: the layout is fixed by DPAD). */
inline int tile_offset(int r, int c, int pitch) {
  (void)pitch;
  return ((r >> 3) * (DPAD / 16) + (c >> 4)) * 128 + (r & 7) * 16 + (c & 15);
}

/* d[j0 .. j0 + N/8 - 1][0..3] += A (64 x 32 bytes, registers a[0..3]) * B (32 x N, descriptor, K-major;
 * e4m3 takes no transpose operand). */
#define WGMMA8(N, d, j0, a, desc, acc_in) WGMMA_ASYNC(N, "k32.f32.e4m3.e4m3", "", d, j0, a, desc, acc_in)

/* d[0 .. NT-1] += A * B over NT (<= 32, a multiple of 2) 8-column tiles, as wgmmas of 64, 32 and 16
 * columns; the descriptor of the tiles from column 8j on is DESC_AT(desc, j * STEP). */
#define WG_TILES(NT, d, a, desc, STEP, acc_in)                                                         \
  do {                                                                                                 \
    _Pragma("unroll") for (int n64_ = 0; n64_ < (NT) / 8; ++n64_)                                      \
        WGMMA8(64, d, 8 * n64_, a, DESC_AT(desc, 8 * n64_ * (STEP)), acc_in);                          \
    if ((NT) % 8 >= 4) WGMMA8(32, d, (NT) / 8 * 8, a, DESC_AT(desc, (NT) / 8 * 8 * (STEP)), acc_in);   \
    if ((NT) % 4 >= 2) WGMMA8(16, d, (NT) / 4 * 4, a, DESC_AT(desc, (NT) / 4 * 4 * (STEP)), acc_in);   \
  } while (0)

/* wgmma runs asynchronously: fa2_mma.cl's overlapped schedule issues S = Q K^T of the next block
 * and O += P V of this one together and runs the softmax while they run. */
#define ASYNC_MMA 1

/* Issues S = Q K^T for the warpgroup's 64 rows and the block's BC keys (one commit group): per 32
 * dims (two core matrices along k: 256 bytes), one wgmma row over the keys. */
inline void qk_issue(float s[MT][NT_S][4], const qfrag_t qa[MT][QFRAGS][4], __local const uchar* k_tile) {
  const ulong desc = wg_desc(k_tile, 128, K_CORE_ROW_BYTES);
  wg_fence();
  /* the first k-step overwrites S (scale-d 0): no zeroing, no other instruction on S meanwhile */
#pragma unroll
  for (int ks = 0; ks < QFRAGS; ++ks)
    WG_TILES(NT_S, s[0], qa[0][ks], DESC_AT(desc, ks * 256), K_CORE_ROW_BYTES, ks > 0 ? 1 : 0);
  wg_commit();
}

/* P as the A fragments of P V, one per 32 keys: the first NT_S / 4 of fa2_mma.cl's array (sized
 * for 16-bit fragments of 16 keys). */
inline void pack_p(uint pa[NT_S / 2][4], const float s[MT][NT_S][4]) {
#pragma unroll
  for (int kk = 0; kk < NT_S / 4; ++kk) p_fragment(pa[kk], s[0], kk);
}

/* Issues O += P V (one commit group) from the V^T tile: per 32 keys (two core matrices along k:
 * 256 bytes), one wgmma row over the head dim. */
inline void pv_issue(float acc[MT][NT_O][4], const uint pa[NT_S / 2][4], __local const uchar* vt_tile) {
  const ulong desc = wg_desc(vt_tile, 128, VT_CORE_ROW_BYTES);
  PIN_TILES(acc, NT_O); /* O's rescale done before the fence, not sunk between the wgmmas */
  wg_fence();
#pragma unroll
  for (int kk = 0; kk < NT_S / 4; ++kk) WG_TILES(NT_O, acc[0], pa[kk], DESC_AT(desc, kk * 256), VT_CORE_ROW_BYTES, 1);
  wg_commit();
}

#if V_TRANSPOSED
/* ---- V^T as stored: element (key j, dim c) at base + c * stride + j ----
 * Copies of 16 keys of one dim; 8 consecutive work-items copy one core matrix (8 dims, 128
 * contiguous bytes of the tile), as load_block copies K. A copy at the end of the keys takes only
 * the bytes that exist (cp.async zero-fills the rest); dims past the head dim are zeros. */
#define V_LOAD_OWN 1
#define VT_CHUNKS (DPAD * (BC / 16))

/* Byte offset of V^T's (dim r, key c) in its tile: core matrices of 8 dims x 16 keys. */
inline int vt_offset(int r, int c) { return ((r >> 3) * (BC / 16) + (c >> 4)) * 128 + (r & 7) * 16 + (c & 15); }

/* The work-item's index read afresh (an asm that is volatile cannot leave the key loop), so the
 * copies' positions are recomputed each block (a few integer instructions) instead of held in
 * registers across the loop, where the softmax needs them (clang's PTX through ptxas, d = 128
 * non-causal: 196 registers with them held; NVIDIA's compiler on the H100, copies as a loop: 128 at
 * d = 64 and 166-168 at d = 128, at or under the caps of 16 and 12 warps, 4 bytes of spills at most). */
inline int local_id_afresh(void) {
  uint r;
  asm volatile("mov.u32 %0, %%tid.x;" : "=r"(r));
  return (int)r;
}

inline void load_v_block(__local uchar* tile, int pitch, __global const uchar* src, long base, long stride, int k0,
                         int seqlen_k, int lid) {
  (void)pitch;
  (void)lid;
#if VEC_LOAD
  const int id = local_id_afresh();
  /* unrolled: as a loop the same copies measured 0.96-0.98x at d = 64 on the H100, 0.99-1.00x at 128 */
#pragma unroll
  for (int step = 0; step < (VT_CHUNKS + WG_SIZE - 1) / WG_SIZE; ++step) {
    const int idx = id + step * WG_SIZE;
    if (VT_CHUNKS % WG_SIZE != 0 && idx >= VT_CHUNKS) break;
    const int r = idx / (8 * (BC / 16)) * 8 + (idx & 7), c = (idx >> 3) % (BC / 16) * 16;
    const int bytes = r < HEAD_DIM ? clamp(seqlen_k - (k0 + c), 0, 16) : 0;
    copy16_async(tile + vt_offset(r, c), src + base + (bytes > 0 ? (long)r * stride + k0 + c : 0), bytes);
  }
  async_commit();
#else
  for (int idx = local_id_afresh(); idx < BC * DPAD; idx += WG_SIZE) {
    const int r = idx / BC, c = idx - r * BC; /* consecutive work-items: consecutive keys of a dim */
    tile[vt_offset(r, c)] = r < HEAD_DIM && k0 + c < seqlen_k ? src[base + (long)r * stride + k0 + c] : (uchar)0;
  }
#endif
}
#else
/* ---- V through registers, transposed on the way (fa2_mma.cl's V_FETCH_WORDS hook) ----
 * A quad is 4 keys (2t, 2t + 1, 8 + 2t, 9 + 2t of a 16-key group kg) x 4 dims (4dq .. 4dq + 3).
 * Quad lid + 32 * WARPS * step belongs to lane l = lid % 32 of warp w: t = (l / 8) % 4, dq = 8 *
 * (rest % (DPAD / 32)) + l % 8 and kg = rest / (DPAD / 32) with rest = w + WARPS * step. So the
 * 8 lanes of one t read 32 contiguous bytes of a key row (whole sectors), and the stores of a warp
 * fall on 32 distinct banks (below). */
#define V_QUADS (BC * DPAD / 16)
#define V_QUAD_STEPS ((V_QUADS + WG_SIZE - 1) / WG_SIZE)
#define V_FETCH_WORDS (4 * V_QUAD_STEPS)

/* Bytes (key, col .. col + 3) of V at `at` as one register, 0 unless `in` (the key exists) and
 * inside the head dim (col is a multiple of 4). */
inline uint v_word(__global const uchar* v, long at, int col, bool in) {
#if VEC_LOAD /* d and every V row on 16 bytes: a word is wholly inside or past the head dim */
  return in && col < HEAD_DIM ? *(__global const uint*)(v + at) : 0u;
#else
  uint r = 0u;
  for (int e = 0; e < 4; ++e)
    if (in && col + e < HEAD_DIM) r |= (uint)v[at + e] << (8 * e);
  return r;
#endif
}

/* The lane's index read afresh (an asm that is volatile cannot leave the key loop): what fetch_v and
 * store_v derive from it is recomputed each block (a few integer instructions) instead of held in
 * registers across the loop, where the softmax needs them. */
inline int lane_id(void) {
  uint r;
  asm volatile("mov.u32 %0, %%laneid;" : "=r"(r));
  return (int)r;
}

/* This work-item's quads of the V block at keys k0 .. k0 + BC - 1, as stored (four keys' words
 * each; the rows 1, 8 and 9 keys after the first by offsets, so few 64-bit values stay live). */
inline void fetch_v(uint w[V_FETCH_WORDS], __global const uchar* v, long base, long stride, int k0, int seqlen_k,
                    int lid) {
  const int lane = lane_id(), t = (lane >> 3) & 3;
#pragma unroll
  for (int step = 0; step < V_QUAD_STEPS; ++step) {
    const int rest = lid / 32 + step * WARPS;
    if (V_QUADS % WG_SIZE != 0 && rest >= V_QUADS / 32) break; /* warp-uniform */
    const int col = (rest % (DPAD / 32)) * 32 + 4 * (lane & 7), key = k0 + (rest / (DPAD / 32)) * 16 + 2 * t;
    const long at = base + (long)key * stride + col;
    w[4 * step + 0] = v_word(v, at, col, key < seqlen_k);
    w[4 * step + 1] = v_word(v, at + stride, col, key + 1 < seqlen_k);
    w[4 * step + 2] = v_word(v, at + 8 * stride, col, key + 8 < seqlen_k);
    w[4 * step + 3] = v_word(v, at + 9 * stride, col, key + 9 < seqlen_k);
  }
}

/* The quads of fetch_v transposed into a V^T tile: word i of a quad is dim 4dq + ((i + rot) & 3)
 * with the key bytes in k order (keys 2t, 2t + 1, 8 + 2t, 9 + 2t at k 4t .. 4t + 3 of group kg),
 * stored at byte 4t of that dim's 16-byte row in core matrix (dim / 8, kg). The rotation rot =
 * (dq / 2) % 4 gives the 32 lanes of a store 32 distinct (dim % 8, t), i.e. 32 distinct banks. */
inline void store_v(__local uchar* vt_tile, const uint w[V_FETCH_WORDS], int lid) {
  const int lane = lane_id(), t = (lane >> 3) & 3, rot = (lane >> 1) & 3;
  /* first permutes: bytes rot and rot + 1 (sel_a), rot + 2 and rot + 3 (sel_b) of two keys' words, interleaved */
  const uint sel_a = rot | (4 + rot) << 4 | ((rot + 1) & 3) << 8 | (4 + ((rot + 1) & 3)) << 12;
  const uint sel_b = ((rot + 2) & 3) | (4 + ((rot + 2) & 3)) << 4 | ((rot + 3) & 3) << 8 | (4 + ((rot + 3) & 3)) << 12;
#pragma unroll
  for (int step = 0; step < V_QUAD_STEPS; ++step) {
    const int rest = lid / 32 + step * WARPS;
    if (V_QUADS % WG_SIZE != 0 && rest >= V_QUADS / 32) break; /* as fetch_v */
    const int dq = (rest % (DPAD / 32)) * 8 + (lane & 7), kg = rest / (DPAD / 32);
    const uint* x = w + 4 * step;
    const uint a01 = byte_perm(x[0], x[1], sel_a), b01 = byte_perm(x[0], x[1], sel_b);
    const uint a23 = byte_perm(x[2], x[3], sel_a), b23 = byte_perm(x[2], x[3], sel_b);
    /* dim 4dq + e sits in core row (dim / 8) at row 4 (dq % 2) + e */
    __local uchar* row = vt_tile + ((dq >> 1) * (BC / 16) + kg) * 128 + (dq & 1) * 64 + 4 * t;
    *(__local uint*)(row + 16 * (rot & 3)) = byte_perm(a01, a23, 0x5410);
    *(__local uint*)(row + 16 * ((rot + 1) & 3)) = byte_perm(a01, a23, 0x7632);
    *(__local uint*)(row + 16 * ((rot + 2) & 3)) = byte_perm(b01, b23, 0x5410);
    *(__local uint*)(row + 16 * ((rot + 3) & 3)) = byte_perm(b01, b23, 0x7632);
  }
}

#endif /* V_TRANSPOSED */

/* O elements (row, col) and (row, col + 1), rounded once (col is even). */
inline void store_o2(__global ushort* o, long at, float x0, float x1, bool ok0, bool ok1) {
  const uint p = pack2_out(x0, x1);
#if QUAD_IO /* O rows on 4 elements and d a multiple of 4: a pair is wholly inside or past the head dim */
  (void)ok1;
  if (ok0) *(__global uint*)(o + at) = p;
#else
  if (ok0) o[at] = (ushort)p;
  if (ok1) o[at + 1] = (ushort)(p >> 16);
#endif
}
