/* fa2_mma.cl: FlashAttention-2 forward on NVIDIA tensor cores (compute capability >= 8.0). The
 * operand side comes from mma_f16.cl (fp16/bf16, mma.m16n8k16), mma_wgmma.cl (fp16/bf16, Hopper's
 * wgmma) or mma_tf32.cl (fp32 as 3xTF32, mma.m16n8k8), all with fp32 accumulation; this file is
 * the schedule they share. Built only after the host's probe ran this kernel on a small problem
 * and got it right.
 *
 * One work-group of WARPS warps per (Q block, head, batch); warp w owns MT m-tiles of 16 query
 * rows (FA2's split-Q: no two warps share a row, no reduction across warps); with MT = 2 every
 * K/V fragment read from __local memory feeds two tiles. Lane 4g+t holds rows g and g+8, columns
 * 2t and 2t+1 of every 16x8 accumulator tile. Q stays in registers as A
 * fragments. K and V blocks sit in __local memory (row-major for mma.sync, in the tensor cores'
 * core-matrix layout for wgmma), arriving by cp.async (no registers, no stall until the data is
 * needed) in one of three schedules: one buffer each as in FlashAttention-2 (V(j) copied while
 * S = Q K(j)^T and the softmax run, K(j+1) while O += P V(j) runs), two buffers each (block j+1
 * copied while block j is computed), or, for wgmma's asynchronous products, two buffers with
 * FlashAttention-3's overlap of the softmax and the products (below). The two-buffer schedules
 * synchronise through mbarriers (copies announce themselves as they land, warps announce the
 * buffers they are done with) instead of a work-group barrier per block. The softmax is
 * online per block (running max m and sum l per row, O rescaled by 2^(m_old - m_new)); P goes
 * from the S accumulators straight into the A fragments of P V. O is divided by l and written
 * once, with LSE, at the end (through the free K/V stage as 16-byte row chunks where the
 * schedule and O's strides allow: O_STAGED). Masks: bounds, the causal diagonal and a sliding
 * window, through common.cl's key_block_range, block_needs_mask and KEY_OUT_OF_BAND (the same rules
 * as every path), applied only on the blocks that cross them; GQA maps query heads to K/V heads;
 * packed sequences (VARLEN, 16 and 32 bits) take their bases, lengths and LSE rows from cu_seqlens
 * (common.cl's seq_view, SEQ_BASE, LSE_INDEX), a Q block past its sequence's end visiting nothing
 * (windows and packed sequences unless FLASHCL_TENSOR_CORE_VARIANTS=0, mma_plan.cpp). Softcap, ALiBi,
 * masks and biases (SCORE_TRANSFORM, unless FLASHCL_TENSOR_CORE_TRANSFORMS=0) send every score through
 * common.cl's final_score on every block, in halved natural units (HALF_UNITS) where a slope or bias
 * could overflow base 2 (transform_tile). FP8 variants run on fa2.cl. */

/* ---- The contract with the operand file ----
 * A program is attn_args.h, common.cl, mma_ptx.cl (the PTX helpers and the geometry: WARPS, MT,
 * BC, BR, WG_SIZE, NT_S = BC / 8, NT_O = DPAD / 8, STAGES, VEC_LOAD, LAZY_RESCALE, RESCALE_SLACK),
 * then one operand file (mma_f16.cl and mma_wgmma.cl over mma_half_io.cl, mma_tf32.cl,
 * mma_e4m3.cl and mma_wgmma_e4m3.cl over mma_e4m3_io.cl; the wgmma ones over wgmma_ptx.cl too),
 * then this file (kernels/programs.txt lists each). A new operand type is one new file that
 * defines:
 *   ELEM_T            raw element of Q, K, V in global and __local memory (ushort, float, uchar)
 *   CHUNK             ELEM_Ts per 16-byte copy (16 / sizeof(ELEM_T))
 *   DPAD              the head dim padded to its mma's k (a multiple of 8 and of CHUNK)
 *   QFRAGS            A fragments per 16-row m-tile of Q (DPAD / k)
 *   K_PITCH, V_PITCH  ELEM_Ts per row of a __local K / V tile (BC rows)
 *   qfrag_t           one register of a Q A fragment (a typedef)
 *   load_q(qfrag_t qa[MT][QFRAGS][4], __global const ELEM_T* q, long base, long stride, int row0,
 *          int rows, int t): the warp's query rows as A fragments, 0 past `rows` and HEAD_DIM
 *   load_q_rows(qfrag_t qa[QFRAGS][4], __global const ELEM_T* q, long at_a, long at_b, bool ok_a,
 *          bool ok_b, int t): one m-tile's rows g and g + 8 from their own offsets (decode_mma.cl;
 *          fp16/bf16 operand files only)
 *   qk_block(float s[MT][NT_S][4], const qfrag_t qa[MT][QFRAGS][4], __local const ELEM_T* k_tile,
 *            int lane): S = Q K^T of the block, raw (unscaled), in m16n8's C layout
 *   pv_block(float acc[MT][NT_O][4], const float s[MT][NT_S][4], __local const ELEM_T* v_tile,
 *            int lane): O += P V with P = s in the same C layout
 *   store_o2(__global O_ELEM_T* o, long at, float x0, float x1, bool ok0, bool ok1): O elements at
 *            and at + 1, each where its flag is set (unless O_COLUMN_QUADS)
 * and may define, each with a default below:
 *   O_ELEM_T          O's raw element where it is not ELEM_T (mma_e4m3.cl: 16-bit O)
 *   O_COLUMN_QUADS    1: its C tiles hold interleaved columns; it defines store_o_quads(
 *                     __global O_ELEM_T* o, long row_at, const float acc[NT_O][4], int r, float inv,
 *                     bool in, int t) and store_o2 is not used
 *   FP8_DESCALES      1: the kernel takes q/k/v descale buffers (FP8 inputs)
 *   TILE_CORE_MATRICES 1: it lays tiles out itself: tile_offset(r, c, pitch), tile_writes_visible()
 *   UNROLL_COPIES     0: load_block's copy loop stays a loop (register pressure)
 *   ASYNC_MMA         1: its products are asynchronous (wgmma): it defines qk_issue, pv_issue,
 *                     pack_p, WG_WAIT(n), WG_WAIT_AFTER(n, slot, after), PIN_TILES(x, nt), and
 *                     STAGES 2 takes the overlapped schedule
 *   pack2(lo, hi)     two fp32 to one register of 16-bit values (needed by O_STAGED: fp16/bf16)
 *   Q_LOCAL           1 (with Q_PITCH): Q waits in a __local tile of BR rows of Q_PITCH ELEM_Ts, not
 *                     in registers; load_q and qk_block take the warp's rows (`__local ELEM_T*`) in
 *                     place of qa (mma_e4m3.cl's opt-in form)
 *   V_FETCH_WORDS     (ASYNC_MMA, STAGES 2) V travels through registers in its own layout: each
 *                     work-item holds V_FETCH_WORDS uint of the next block for a step; it defines
 *                     fetch_v(uint w[V_FETCH_WORDS], __global const ELEM_T* v, long base, long stride,
 *                     int k0, int seqlen_k, int lid) (global loads, 0 past the keys and HEAD_DIM) and
 *                     store_v(__local ELEM_T* tile, const uint w[V_FETCH_WORDS], int lid) (the tile
 *                     pv_issue reads), and a V tile is published on an mbarrier of its own
 *                     (mma_wgmma_e4m3.cl: 8-bit wgmma reads B K-major only, so V is transposed)
 *   V_LOAD_OWN        1: V's tiles come from its load_v_block (load_block's arguments, V's base and
 *                     stride) instead of load_block (mma_wgmma_e4m3.cl's V^T under V_TRANSPOSED:
 *                     rows of keys copied as they are stored)
 *   K_ROW_KEY(r)      the key (from the block's first) that load_block copies into K's tile row r,
 *                     i.e. whose score lands in column r of S (default r; mma_wgmma_e4m3.cl under
 *                     V_TRANSPOSED permutes them); the masks map columns back to keys through it
 * Macros are checked here (#error); a missing function is a build error of its own (OpenCL C has
 * no implicit declarations). Scores are in base 2, or in halved natural units (HALF_UNITS) where a
 * score transform's host asks for them. */
#ifndef FOLD_SCALE
#define FOLD_SCALE 0 /* 1 (the host sets it when scale > 0 and no transform): scale * log2(e) folded into the exponent */
#endif
/* TRANSFORM_BAND_SPLIT: the score transforms skip the band's tests on the blocks inside it (two
 * copies of the transform loop). On an H100 (fp16, N 4096, d 64 / 128, causal both; two rounds,
 * docs/perf/nvidia-h100.md, "2026-12-07 22:50") it took 0.84-0.89x the time with ALiBi and
 * 0.72-0.98x with a bias, but 0.85-1.04x with a softcap alone and 1.24-1.33x with a boolean mask
 * (1.03-1.15x with one copy for it): so the default for programs with ALiBi or a bias only. */
#ifndef TRANSFORM_BAND_SPLIT
#define TRANSFORM_BAND_SPLIT (ALIBI || MASK_KIND == 2)
#endif
#ifndef SOFTCAP_EX2
#define SOFTCAP_EX2 0 /* 1 (16 bits, caps up to 64: the host's choice): the softcap's tanh from mma_ptx.cl's ex2 form */
#endif
#if !defined(ELEM_T) || !defined(CHUNK) || !defined(DPAD) || !defined(QFRAGS)
#error "fa2_mma.cl: the operand file must define ELEM_T, CHUNK, DPAD and QFRAGS (see the contract above)"
#endif
#if !defined(K_PITCH) || !defined(V_PITCH)
#error "fa2_mma.cl: the operand file must define K_PITCH and V_PITCH (see the contract above)"
#endif
#if !defined(BR) || !defined(WG_SIZE) || !defined(NT_S) || !defined(NT_O)
#error "fa2_mma.cl: mma_ptx.cl must come before the operand file and this file"
#endif
#if defined(ASYNC_MMA) && (!defined(WG_WAIT) || !defined(WG_WAIT_AFTER) || !defined(PIN_TILES))
#error "fa2_mma.cl: an ASYNC_MMA operand file must define WG_WAIT, WG_WAIT_AFTER and PIN_TILES"
#endif
#if DPAD % 8 != 0 || DPAD % CHUNK != 0
#error "fa2_mma.cl: DPAD must be a multiple of 8 (NT_O's 8-column tiles) and of CHUNK (whole 16-byte copies)"
#endif
#if HALF_UNITS && !SCORE_TRANSFORM
#error "fa2_mma.cl: HALF_UNITS only with a score transform (the host's choice for softcap, ALiBi, a bias)"
#endif
#if SCORE_TRANSFORM && FOLD_SCALE
#error "fa2_mma.cl: a score transform needs the scaled score (FOLD_SCALE=0)"
#endif

#define CHUNKS_PER_ROW (DPAD / CHUNK)
#ifndef O_ELEM_T /* O's raw elements where they differ from Q's (mma_e4m3.cl) */
#define O_ELEM_T ELEM_T
#endif
#ifndef FP8_DESCALES
#define FP8_DESCALES 0
#endif
#ifndef O_COLUMN_QUADS
#define O_COLUMN_QUADS 0 /* 1: the operand file's store_o_quads writes O (its tiles hold interleaved columns) */
#endif

#ifndef TILE_CORE_MATRICES
/* Row-major tiles (mma.sync reads them itself) unless the operand file lays them out for the
 * tensor cores' own reads (mma_wgmma.cl). */
#define TILE_CORE_MATRICES 0
inline int tile_offset(int r, int c, int pitch) { return r * pitch + c; }
inline void tile_writes_visible(void) {}
#endif

#ifndef K_ROW_KEY
#define K_ROW_KEY(r) (r) /* K's rows in the tile in key order */
#endif
/* The row and key of score e (0..3) of n-tile j in lane t's S fragment of an m-tile whose first row
 * in this lane is row_a, on the block from key k0 (mask_tile, transform_tile) */
#define FRAG_ROW(row_a, e) ((row_a) + ((e) >> 1) * 8)
#define FRAG_KEY(k0, j, t, e) ((k0) + K_ROW_KEY(8 * (j) + 2 * (t) + ((e) & 1)))

/* Keys k0 .. k0+BC-1 of a K or V slice into a __local tile (tile_offset's layout); rows past the sequence and
 * columns past the head dim become 0 (so no garbage meets a zero weight). With VEC_LOAD the
 * copies are asynchronous and form one commit group. With UNROLL_COPIES the trip count is a
 * constant (the compiler does not know lid < WG_SIZE), so the loop unrolls and each work-item's
 * chunk positions, which do not depend on k0, leave the key loop: the copy of a block is then a
 * few instructions a chunk, at the price of registers that hold the positions. */
#ifndef UNROLL_COPIES
#define UNROLL_COPIES 1 /* 0: the plain loop (mma_tf32.cl: at 255 registers the held positions cost more) */
#endif
#define LOAD_CHUNKS (BC * CHUNKS_PER_ROW)
#define LOAD_STEPS ((LOAD_CHUNKS + WG_SIZE - 1) / WG_SIZE)
inline void load_block(__local ELEM_T* tile, int pitch, __global const ELEM_T* src, long base, long stride, int k0,
                       int seqlen_k, int lid) {
#if VEC_LOAD
#if UNROLL_COPIES
#pragma unroll
  for (int step = 0; step < LOAD_STEPS; ++step) {
    const int idx = lid + step * WG_SIZE;
    if (LOAD_CHUNKS % WG_SIZE != 0 && idx >= LOAD_CHUNKS) break;
#else
  for (int idx = lid; idx < LOAD_CHUNKS; idx += WG_SIZE) {
#endif
#if TILE_CORE_MATRICES /* 8 consecutive work-items: one chunk column of 8 rows, one core matrix */
    const int r = idx / (8 * CHUNKS_PER_ROW) * 8 + (idx & 7), c = (idx >> 3) % CHUNKS_PER_ROW * CHUNK;
#else /* consecutive work-items: consecutive chunks of a row */
    const int r = idx / CHUNKS_PER_ROW, c = (idx - r * CHUNKS_PER_ROW) * CHUNK;
#endif
    const int key = k0 + K_ROW_KEY(r);
    const bool ok = key < seqlen_k && c < HEAD_DIM;
    copy16_async(tile + tile_offset(r, c, pitch), src + base + (ok ? (long)key * stride + c : 0), ok ? 16 : 0);
  }
  async_commit();
#else
  for (int idx = lid; idx < BC * DPAD; idx += WG_SIZE) {
    const int r = idx / DPAD, c = idx - r * DPAD;
    const int key = k0 + K_ROW_KEY(r);
    tile[tile_offset(r, c, pitch)] = key < seqlen_k && c < HEAD_DIM ? src[base + (long)key * stride + c] : (ELEM_T)0;
  }
#endif
}

#ifndef V_LOAD_OWN
#define load_v_block load_block /* V's tiles laid out as K's */
#endif

/* c = scale * log2(e) (times the FP8 descales; scale / 2 in HALF_UNITS) applied to every score of the warp, before any
 * mask (unless FOLD_SCALE, where the softmax takes raw scores: max(c s) = c max(s) for c > 0, and
 * 2^(c s - m) is one FFMA) */
inline void scale_scores(float s[MT][NT_S][4], float c) {
  if (FOLD_SCALE) return;
#pragma unroll
  for (int i = 0; i < MT; ++i)
#pragma unroll
    for (int j = 0; j < NT_S; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) s[i][j][e] *= c;
}

/* -inf for the scores of one 16-row m-tile (rows row_a and row_a + 8 in this lane) that are past
 * the keys or above the causal diagonal: called only on the blocks that cross one, as a pass of
 * its own so the softmax after it exists once in the program. */
inline void mask_tile(float s[NT_S][4], int row_a, int k0, int t, const SeqView* sv, const AttnArgs* a) {
  const int seqlen_k = SV_NK(sv, a), shift = SV_SHIFT(sv, a);
#pragma unroll
  for (int j = 0; j < NT_S; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int row = FRAG_ROW(row_a, e), key = FRAG_KEY(k0, j, t, e);
      /* common.cl's rules, one select per score (the lengths and shift read once, above) */
      if (KEY_OUT_OF_BAND(row, key, seqlen_k, shift, a)) s[j][e] = NEG_INF;
    }
}

#if SCORE_TRANSFORM
/* scores_to_probs takes the mask or bias only in these programs (the others' code stays as recorded) */
#define MASK_PARAM , __global const MASK_T* mask
#define MASK_ARG , mask
#if TRANSFORM_BAND_SPLIT
/* Every score of one 16-row m-tile (rows row_a and row_a + 8 in this lane) through the variants'
 * rules (as transform_tile below), the band's tests (KEY_OUT_OF_BAND) only where `band` says the
 * block crosses it (a constant at each call; always inlined, as a call would take s through local
 * memory). */
inline __attribute__((always_inline)) void transform_scores(float s[NT_S][4], int row_a, int k0, int t,
                                                            const SeqView* sv, const AttnArgs* a,
                                                            __global const MASK_T* mask, const bool band) {
  const int seqlen_k = SV_NK(sv, a), shift = SV_SHIFT(sv, a);
#pragma unroll
  for (int j = 0; j < NT_S; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int row = FRAG_ROW(row_a, e), key = FRAG_KEY(k0, j, t, e);
      const bool hidden =
          (band && KEY_OUT_OF_BAND(row, key, seqlen_k, shift, a)) || mask_hides(row, key, sv, a, mask);
#if SOFTCAP && SOFTCAP_EX2
      const float capped = sv->softcap * softcap_tanh_ex2(s[j][e], sv->softcap);
#else
      const float capped = softcap_score(s[j][e], sv);
#endif
      s[j][e] = hidden ? NEG_INF : score_shifts(capped, row, key, sv, a, mask);
    }
}

/* transform_scores in two copies: with the band's tests on the blocks that cross it (for the
 * work-group's rows: block_crosses_band), without them on the others. */
inline __attribute__((always_inline)) void transform_tile(float s[NT_S][4], int row_a, int k0, int t, bool band,
                                                          const SeqView* sv, const AttnArgs* a,
                                                          __global const MASK_T* mask) {
  if (band)
    transform_scores(s, row_a, k0, t, sv, a, mask, true);
  else
    transform_scores(s, row_a, k0, t, sv, a, mask, false);
}
#else
/* Every score of one 16-row m-tile (rows row_a and row_a + 8 in this lane) through the variants'
 * rules, on every block (softcap, ALiBi and masks change every score): common.cl's final_score, in the
 * kernel's units (half natural units with HALF_UNITS, so no finite bias or sum of two overflows), with
 * the softcap's tanh in mma_ptx.cl's ex2 form under SOFTCAP_EX2 (16 bits: the library's tanh and a
 * division per score cost more than the two products at d <= 128). */
inline void transform_tile(float s[NT_S][4], int row_a, int k0, int t, const SeqView* sv, const AttnArgs* a,
                           __global const MASK_T* mask) {
#pragma unroll
  for (int j = 0; j < NT_S; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int row = FRAG_ROW(row_a, e), key = FRAG_KEY(k0, j, t, e);
#if SOFTCAP && SOFTCAP_EX2
      s[j][e] = key_masked(row, key, sv, a, mask)
                    ? NEG_INF
                    : score_shifts(sv->softcap * softcap_tanh_ex2(s[j][e], sv->softcap), row, key, sv, a, mask);
#else
      s[j][e] = final_score(s[j][e], row, key, sv, a, mask);
#endif
    }
}
#endif

/* O = 0 for a row that saw no key (its sum is 0), even where a hidden key's V held a NaN or Inf
 * (P V's 0 x NaN): a mask hides keys anywhere in a block, and such rows are O = 0 on every path. A
 * NaN sum (a NaN score) keeps its NaN. */
inline void clear_unseen_row(float acc[NT_O][4], int r, float sum) {
  if (sum != 0.0f) return;
#pragma unroll
  for (int n = 0; n < NT_O; ++n) acc[n][2 * r] = acc[n][2 * r + 1] = 0.0f;
}
#else
#define MASK_PARAM
#define MASK_ARG
#endif

/* Online softmax of one 16-row m-tile over the block's scores (masked; scaled to the kernel's units,
 * or raw with FOLD_SCALE and scaled by c here): S becomes P = 2^((S - m) LOG2_PER_SCORE_UNIT) in
 * place, the running max m and per-lane sum l advance, and alpha = 2^(m_old - m_new) is what O must be multiplied by
 * (rescale_o). Returns whether a row's reference max moved. */
inline bool softmax_tile(float s[NT_S][4], float m[2], float l[2], float alpha[2], float c SHFL_SCRATCH_PARAM) {
  float mx[2] = {NEG_INF, NEG_INF};
#pragma unroll
  for (int j = 0; j < NT_S; ++j) {
    mx[0] = fmax(mx[0], fmax(s[j][0], s[j][1]));
    mx[1] = fmax(mx[1], fmax(s[j][2], s[j][3]));
  }
  float mu[2];
  bool moved = false;
#pragma unroll
  for (int r = 0; r < 2; ++r) { /* row max over the row's four lanes */
    mx[r] = fmax(mx[r], shfl_xor(mx[r], 1));
    mx[r] = fmax(mx[r], shfl_xor(mx[r], 2));
    if (FOLD_SCALE) mx[r] *= c; /* log2 units, as m */
    /* The reference max moves only when the row max passes it by more than RESCALE_SLACK (log2
     * units): P stays below 2^RESCALE_SLACK, exact either way since O and l share the reference,
     * and once the max settles whole blocks skip the rescale of O. A row with nothing visible yet
     * keeps m = -inf and P = 0. */
    const float mn = fmax(m[r], mx[r]);
    const bool up = mn > m[r] + RESCALE_SLACK / LOG2_PER_SCORE_UNIT;
    alpha[r] = up ? ex2_approx((m[r] - mn) * LOG2_PER_SCORE_UNIT) : 1.0f;
    if (up) m[r] = mn;
    mu[r] = m[r] == NEG_INF ? 0.0f : m[r];
    l[r] *= alpha[r];
    moved |= up;
  }
#pragma unroll
  for (int j = 0; j < NT_S; ++j) {
#pragma unroll
    for (int e = 0; e < 4; ++e)
      s[j][e] = ex2_approx(FOLD_SCALE ? fma(s[j][e], c, -mu[e >> 1]) : (s[j][e] - mu[e >> 1]) * LOG2_PER_SCORE_UNIT);
    l[0] += s[j][0] + s[j][1];
    l[1] += s[j][2] + s[j][3];
  }
  return moved;
}

/* The block's scores of every m-tile of the warp become probabilities: scaled, masked only where
 * the block crosses the causal diagonal or the end of the keys (the mask as a pass of its own
 * keeps one copy of the softmax in the program: +5-12 % on the H100), or transformed on every block
 * (SCORE_TRANSFORM, with `mask`: the mask or bias where MASK_KIND says so), then the online softmax.
 * Returns whether O must be rescaled by alpha (in any lane of the warp: the rescale is a
 * warp-uniform branch). */
inline bool scores_to_probs(float s[MT][NT_S][4], float m[MT][2], float l[MT][2], float alpha[MT][2], int q0, int k0,
                            int row0, int t, const SeqView* sv, const AttnArgs* a, float c MASK_PARAM SHFL_SCRATCH_PARAM) {
  scale_scores(s, c);
#if SCORE_TRANSFORM && TRANSFORM_BAND_SPLIT
  const bool band = block_crosses_band(q0, BR, k0, BC, sv, a);
#pragma unroll
  for (int i = 0; i < MT; ++i) transform_tile(s[i], row0 + 16 * i, k0, t, band, sv, a, mask);
#elif SCORE_TRANSFORM
#pragma unroll
  for (int i = 0; i < MT; ++i) transform_tile(s[i], row0 + 16 * i, k0, t, sv, a, mask);
#else
  if (block_needs_mask(q0, BR, k0, BC, sv, a))
#pragma unroll
    for (int i = 0; i < MT; ++i) mask_tile(s[i], row0 + 16 * i, k0, t, sv, a);
#endif
  bool moved = false;
#pragma unroll
  for (int i = 0; i < MT; ++i) moved |= softmax_tile(s[i], m[i], l[i], alpha[i], c SHFL_SCRATCH_ARG);
  return !LAZY_RESCALE || warp_any(moved);
}

/* O *= alpha row by row, when scores_to_probs said so. */
inline void rescale_o(float acc[MT][NT_O][4], const float alpha[MT][2], bool rescale) {
  if (!rescale) return;
#pragma unroll
  for (int i = 0; i < MT; ++i)
#pragma unroll
    for (int n = 0; n < NT_O; ++n) {
      acc[i][n][0] *= alpha[i][0];
      acc[i][n][1] *= alpha[i][0];
      acc[i][n][2] *= alpha[i][1];
      acc[i][n][3] *= alpha[i][1];
    }
}

/* O_STAGED: O leaves through __local memory as 16-byte row chunks (whole sectors, a quarter of the
 * store instructions of pairs; +1-2 % at d = 128 on the H100, docs/perf/nvidia-h100.md v11). Only
 * the mma.sync two-buffer schedule has a stage its last step did not read; the host sets
 * O_VEC_STORE when every O row starts on 16 bytes and the head dim is a multiple of 8. Each warp
 * owns a slice of O_SLICE_ROWS rows of that stage: the first half of the warps in its K tile, the
 * other half in its V tile. */
#if defined(O_VEC_STORE) && O_VEC_STORE && (DTYPE == 1 || DTYPE == 2) && STAGES == 2 && !defined(ASYNC_MMA) && \
    WARPS % 2 == 0 && 2 * BC / WARPS >= 8 && (K_PITCH == V_PITCH || !defined(MMA_EMULATED_SHUFFLE))
#define O_STAGED 1
#define O_SLICE_ROWS (2 * BC / WARPS >= 16 ? 16 : 8)
#define O_CHUNKS (DPAD / CHUNK) /* 16-byte chunks of a row */
#if K_PITCH != V_PITCH /* (the emulated operand files' wider V tiles store O pair by pair instead) */
#error "O_STAGED lays out its slices with the K/V pitch"
#endif
/* Rows row_base .. row_base + 16 MT - 1 of O (this warp's; lane 4g+t holds rows g and g + 8 of
 * each m-tile, columns 8n + 2t and + 1), scaled by inv, in passes of O_SLICE_ROWS rows: the lanes
 * write their pairs into the slice (rows one bank group apart: no conflicts), then read it back
 * as row chunks that go out whole. */
inline void store_o_staged(__global ushort* o, long o_base, long stride, int row_base, int seqlen_q,
                           const float acc[MT][NT_O][4], const float inv[MT][2], __local ushort* slice, int lane,
                           int g, int t) {
#pragma unroll
  for (int pass = 0; pass < 16 * MT / O_SLICE_ROWS; ++pass) {
#pragma unroll
    for (int i = 0; i < MT; ++i)
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        if ((16 * i + 8 * r) / O_SLICE_ROWS != pass) continue; /* decided at compile time */
        __local ushort* dst = slice + (16 * i + 8 * r - pass * O_SLICE_ROWS + g) * K_PITCH + 2 * t;
#pragma unroll
        for (int n = 0; n < NT_O; ++n)
          *(__local uint*)(dst + 8 * n) = pack2(acc[i][n][2 * r] * inv[i][r], acc[i][n][2 * r + 1] * inv[i][r]);
      }
    warp_sync(); /* the slice written before any lane reads it */
#pragma unroll
    for (int j = 0; j < (O_SLICE_ROWS * O_CHUNKS + 31) / 32; ++j) {
      const int idx = lane + 32 * j, sr = idx / O_CHUNKS, c = (idx - sr * O_CHUNKS) * CHUNK;
      const int row = row_base + pass * O_SLICE_ROWS + sr;
      if ((O_SLICE_ROWS * O_CHUNKS) % 32 != 0 && idx >= O_SLICE_ROWS * O_CHUNKS) break;
      if (row < seqlen_q && c < HEAD_DIM)
        *(__global uint4*)(o + o_base + (long)row * stride + c) = *(__local const uint4*)(slice + sr * K_PITCH + c);
    }
    warp_sync(); /* read before the next pass overwrites it */
  }
}
#else
#define O_STAGED 0
#endif

__kernel __attribute__((reqd_work_group_size(WG_SIZE, 1, 1)))
void fa2_mma_forward(__global const STORAGE_T* q, __global const STORAGE_T* k, __global const STORAGE_T* v,
                     __global OUT_STORAGE_T* o, __global float* lse, const AttnArgs args
#if FP8_DESCALES
                     , __global const float* q_descale, __global const float* k_descale,
                     __global const float* v_descale
#endif
#if VARLEN
                     , __global const int* cu_seqlens_q, __global const int* cu_seqlens_k
#endif
#if SCORE_TRANSFORM /* ALiBi's slopes and the mask or bias, each null where absent */
                     , __global const float* alibi_slopes, __global const MASK_T* mask
#endif
) {
  __local ELEM_T k_tile[STAGES][BC * K_PITCH] __attribute__((aligned(128)));
  __local ELEM_T v_tile[STAGES][BC * V_PITCH] __attribute__((aligned(128)));
#if defined(Q_LOCAL) && Q_LOCAL /* the operand file reads Q's fragments from here (mma_e4m3.cl) */
  __local ELEM_T q_tile[BR * Q_PITCH] __attribute__((aligned(16)));
#endif

#ifdef MMA_EMULATED_SHUFFLE
  __local float shfl_scratch[WG_SIZE]; /* the emulated operand files' shuffles (tests/emulated_mma) */
#endif
#if SCORE_TRANSFORM
#define FWD_SLOPES alibi_slopes
#else
#define FWD_SLOPES 0
#endif

  const int lid = get_local_id(0), warp = lid / 32, lane = lid % 32, g = lane / 4, t = lane % 4;
  int q_block, h, b;
  block_coordinates(&args, &q_block, &h, &b);
  const AttnArgs* a = &args;
#if VARLEN /* the sequence's lengths and first rows, from cu_seqlens, before anything is read */
  const SeqView sv = seq_view(a, b, h, SCORE_UNIT, cu_seqlens_q, cu_seqlens_k, FWD_SLOPES);
#endif
#if FP8_DESCALES
  /* FP8: S = q_descale k_descale (Q K^T of the stored values), so the two descales of this
   * (batch, K/V head) join the softmax's scale c; v_descale joins O's final division */
  const int descale_at = b * a->heads_kv + KV_HEAD(a, h);
  const float c = Q_SCALE(a) * (q_descale[descale_at] * k_descale[descale_at]);
  const float o_descale = v_descale[descale_at];
#else
  const float c = Q_SCALE(a); /* scores to the kernel's units: log2, or halves of natural ones (HALF_UNITS) */
  const float o_descale = 1.0f;
#endif
  const int q0 = q_block * BR;
  const int q_end = min(q0 + BR, SV_NQ(&sv, a));
  const long q_base = SEQ_BASE(a, q, b, h, sv.q_start), o_base = SEQ_BASE(a, o, b, h, sv.q_start);
  const long k_base = SEQ_BASE(a, k, b, KV_HEAD(a, h), sv.k_start);
  const long v_base = SEQ_BASE(a, v, b, KV_HEAD(a, h), sv.k_start);
  __global const ELEM_T* kg = (__global const ELEM_T*)k;
  __global const ELEM_T* vg = (__global const ELEM_T*)v;
  const int row0 = q0 + warp * 16 * MT + g; /* this lane's rows: row0 + 16i and row0 + 16i + 8 */

#if defined(Q_LOCAL) && Q_LOCAL
  __local ELEM_T* qa = q_tile + warp * 16 * MT * Q_PITCH; /* the warp's rows; load_q and qk_block take it */
#else
  qfrag_t qa[MT][QFRAGS][4];
#endif
#if !(defined(ASYNC_MMA) && STAGES == 2) /* the wgmma schedule loads Q once its first copies are on their way */
  load_q(qa, (__global const ELEM_T*)q, q_base, a->q_seq_stride, row0, SV_NQ(&sv, a), t);
#endif
  float acc[MT][NT_O][4], m[MT][2], l[MT][2]; /* l: this lane's part of each row sum */
#pragma unroll
  for (int i = 0; i < MT; ++i) {
#pragma unroll
    for (int n = 0; n < NT_O; ++n) acc[i][n][0] = acc[i][n][1] = acc[i][n][2] = acc[i][n][3] = 0.0f;
    m[i][0] = m[i][1] = NEG_INF;
    l[i][0] = l[i][1] = 0.0f;
  }

#if !VARLEN
  const SeqView sv = seq_view(a, b, h, SCORE_UNIT, 0, 0, FWD_SLOPES); /* lengths, shift, a slope */
#endif
  int kb_begin, n_blocks;
  key_block_range(q0, q_end, BC, &sv, a, &kb_begin, &n_blocks);
#if VARLEN /* a Q block past its (shorter) sequence's end visits no key block and writes nothing */
  if (q0 >= SV_NQ(&sv, a)) n_blocks = kb_begin;
#endif
#if STAGES == 2
  /* Two K and two V buffers and no work-group barrier in the key loop: warps meet only through
   * mbarriers, so one that is ahead never waits for the rest to reach a common point. Copies go
   * in batches; each work-item announces its share of a batch on full[batch % 2] as it lands
   * (cp.async.mbarrier.arrive), and a step waits only for the batch it reads. Each warp announces
   * on done[step % 2] that it finished a step, and a batch is issued once every warp is done with
   * the buffers it overwrites. Warps can therefore drift up to a step apart: the barrier per block
   * this replaces held them in lockstep and cost 5-8 % at d = 64 (wgmma) and 4-5 % at d = 128
   * (mma.sync) on the H100 (docs/perf/nvidia-h100.md, v8). */
  __local ulong full[2], done[2];
#ifdef V_FETCH_WORDS
  __local ulong v_full[2]; /* the V tiles stored by the warps (below) */
#endif
  if (lid == 0) {
    mbar_init(&full[0], WG_SIZE);
    mbar_init(&full[1], WG_SIZE);
    mbar_init(&done[0], WARPS);
    mbar_init(&done[1], WARPS);
#ifdef V_FETCH_WORDS
    mbar_init(&v_full[0], WARPS);
    mbar_init(&v_full[1], WARPS);
#endif
  }
  barrier(CLK_LOCAL_MEM_FENCE); /* the barriers initialised before anyone uses them */
#if defined(ASYNC_MMA)
  /* wgmma (asynchronous), FlashAttention-3's intra-warpgroup overlap: S(j+1) = Q K(j+1)^T and
   * O += P(j) V(j) go to the tensor cores together, and the softmax of block j+1 runs while P V
   * does; O is rescaled once P(j) V(j) has landed. Batch c = {K(c), V(c - 1)}: what step c - 1
   * of the loop reads (the prologue, step -1, reads K(0)). Batch c overwrites K(c - 2) and
   * V(c - 3), last read in step c - 3, so step c - 2 issues it once every warp is past step
   * c - 3, right after its own products are on their way. */
  __local float order_slot[WG_SIZE]; /* WG_WAIT_AFTER's stores */
  uint pa[NT_S / 2][4]; /* P of the block whose P V is next */
  float s[MT][NT_S][4], alpha[MT][2];
#ifdef V_FETCH_WORDS
  /* V through registers (the operand file's layout), so batch c is K(c) alone: the step of block
   * blk fetches V(blk + 2) into v_words at its end; the next step stores it once every warp is past
   * the step of blk (whose P V read that tile) and publishes it on v_full, which the step of
   * blk + 2 waits for before its P V. V(j) is on v_full[(j - kb_begin) % 2], initialised above. */
  uint v_words[V_FETCH_WORDS];
#endif
  if (kb_begin < n_blocks) { /* batches 0 and 1 */
    load_block(k_tile[0], K_PITCH, kg, k_base, a->k_seq_stride, kb_begin * BC, SV_NK(&sv, a), lid);
    announce_copies(&full[0]);
#ifdef V_FETCH_WORDS
    fetch_v(v_words, vg, v_base, a->v_seq_stride, kb_begin * BC, SV_NK(&sv, a), lid);
#else
    load_v_block(v_tile[0], V_PITCH, vg, v_base, a->v_seq_stride, kb_begin * BC, SV_NK(&sv, a), lid);
#endif
    if (kb_begin + 1 < n_blocks)
      load_block(k_tile[1], K_PITCH, kg, k_base, a->k_seq_stride, (kb_begin + 1) * BC, SV_NK(&sv, a), lid);
    announce_copies(&full[1]);
  }
  /* meets the copies in flight */
  load_q(qa, (__global const ELEM_T*)q, q_base, a->q_seq_stride, row0, SV_NQ(&sv, a), t);
  if (kb_begin < n_blocks) {
#ifdef V_FETCH_WORDS
    store_v(v_tile[0], v_words, lid); /* V(kb_begin) */
    tile_writes_visible();
    mbar_arrive_warp(&v_full[0], lane);
#endif
    mbar_wait(&full[0], 0);
    tile_writes_visible(); /* the copies (generic proxy) before the tensor cores' reads (async proxy) */
    qk_issue(s, qa, k_tile[0]);
    WG_WAIT(0);
    PIN_TILES(s, NT_S);
    mbar_arrive_warp(&done[0], lane); /* step -1 */
    scores_to_probs(s, m, l, alpha, q0, kb_begin * BC, row0, t, &sv, a, c MASK_ARG SHFL_SCRATCH_ARG); /* O is 0: no rescale */
    pack_p(pa, s);
#ifdef V_FETCH_WORDS
    if (kb_begin + 1 < n_blocks) fetch_v(v_words, vg, v_base, a->v_seq_stride, (kb_begin + 1) * BC, SV_NK(&sv, a), lid);
#endif
  }
  /* every block but the last: no branch around a wgmma or a wait, so ptxas keeps them asynchronous */
  for (int blk = kb_begin; blk + 1 < n_blocks; ++blk) {
    const int step = blk - kb_begin, cur = step & 1, batch = step + 1;
    mbar_wait(&full[batch & 1], (batch >> 1) & 1); /* K(blk + 1), V(blk) */
#ifdef V_FETCH_WORDS
    mbar_wait(&v_full[step & 1], (step >> 1) & 1); /* V(blk), stored by every warp in step - 1 */
#endif
    tile_writes_visible();
    qk_issue(s, qa, k_tile[cur ^ 1]);
    pv_issue(acc, pa, v_tile[cur]);
    mbar_wait(&done[step & 1], (step >> 1) & 1); /* every warp past step - 1 */
    if (blk + 2 < n_blocks)
      load_block(k_tile[cur], K_PITCH, kg, k_base, a->k_seq_stride, (blk + 2) * BC, SV_NK(&sv, a), lid);
#ifdef V_FETCH_WORDS
    announce_copies(&full[(batch + 1) & 1]);
    store_v(v_tile[cur ^ 1], v_words, lid); /* V(blk + 1), fetched a step ago */
    tile_writes_visible();
    mbar_arrive_warp(&v_full[(step + 1) & 1], lane);
#else
    load_v_block(v_tile[cur ^ 1], V_PITCH, vg, v_base, a->v_seq_stride, (blk + 1) * BC, SV_NK(&sv, a), lid);
    announce_copies(&full[(batch + 1) & 1]);
#endif
    WG_WAIT(1); /* S(blk + 1); P(blk) V(blk) may still run */
    PIN_TILES(s, NT_S);
    const bool rescale = scores_to_probs(s, m, l, alpha, q0, (blk + 1) * BC, row0, t, &sv, a, c MASK_ARG SHFL_SCRATCH_ARG);
    WG_WAIT_AFTER(0, order_slot + lid, l[0][0] + l[0][1]); /* P(blk) V(blk), after the softmax */
    PIN_TILES(acc, NT_O);
    mbar_arrive_warp(&done[(step + 1) & 1], lane);
    rescale_o(acc, alpha, rescale);
    pack_p(pa, s);
#ifdef V_FETCH_WORDS
    /* last in the step: its registers are not live through the softmax, and the load's latency
     * ends before the next step's wait for S(blk + 2), where its store stands */
    if (blk + 2 < n_blocks) fetch_v(v_words, vg, v_base, a->v_seq_stride, (blk + 2) * BC, SV_NK(&sv, a), lid);
#endif
  }
  if (kb_begin < n_blocks) { /* the last block: P V only */
    const int batch = n_blocks - kb_begin;
    mbar_wait(&full[batch & 1], (batch >> 1) & 1);
#ifdef V_FETCH_WORDS
    mbar_wait(&v_full[(batch - 1) & 1], ((batch - 1) >> 1) & 1);
#endif
    tile_writes_visible();
    pv_issue(acc, pa, v_tile[(batch - 1) & 1]);
    WG_WAIT(0);
    PIN_TILES(acc, NT_O);
  }
#else
  /* block j+1 is copied into one buffer pair while block j is computed from the other; step j
   * reads batch j = block j, and issues batch j + 1 (over block j - 1) once every warp is done
   * with step j - 1 */
  if (kb_begin < n_blocks) {
    load_block(k_tile[0], K_PITCH, kg, k_base, a->k_seq_stride, kb_begin * BC, SV_NK(&sv, a), lid);
    load_v_block(v_tile[0], V_PITCH, vg, v_base, a->v_seq_stride, kb_begin * BC, SV_NK(&sv, a), lid);
    announce_copies(&full[0]);
  }
  for (int blk = kb_begin; blk < n_blocks; ++blk) {
    const int k0 = blk * BC, step = blk - kb_begin, cur = step & 1;
    mbar_wait(&full[cur], (step >> 1) & 1);
    float s[MT][NT_S][4], alpha[MT][2];
#ifdef MMA_EMULATED_SHUFFLE /* PoCL: the emulated wait (a barrier) outside the nested condition (tests/emulated_mma) */
    if (step > 0) mbar_wait(&done[cur ^ 1], ((step - 1) >> 1) & 1);
    if (blk + 1 < n_blocks) {
#else
    if (blk + 1 < n_blocks) {
      if (step > 0) mbar_wait(&done[cur ^ 1], ((step - 1) >> 1) & 1);
#endif
      load_block(k_tile[cur ^ 1], K_PITCH, kg, k_base, a->k_seq_stride, k0 + BC, SV_NK(&sv, a), lid);
      load_v_block(v_tile[cur ^ 1], V_PITCH, vg, v_base, a->v_seq_stride, k0 + BC, SV_NK(&sv, a), lid);
      announce_copies(&full[cur ^ 1]);
    }
    qk_block(s, qa, k_tile[cur], lane);
    rescale_o(acc, alpha, scores_to_probs(s, m, l, alpha, q0, k0, row0, t, &sv, a, c MASK_ARG SHFL_SCRATCH_ARG));
    pv_block(acc, s, v_tile[cur], lane);
    mbar_arrive_warp(&done[cur], lane);
  }
#endif
#else
  /* one K and one V buffer, FlashAttention-2's pipeline: V(j) lands during Q K(j)^T and the
   * softmax, K(j+1) during P V(j) */
  if (kb_begin < n_blocks)
    load_block(k_tile[0], K_PITCH, kg, k_base, a->k_seq_stride, kb_begin * BC, SV_NK(&sv, a), lid);
  for (int blk = kb_begin; blk < n_blocks; ++blk) {
    const int k0 = blk * BC;
    load_v_block(v_tile[0], V_PITCH, vg, v_base, a->v_seq_stride, k0, SV_NK(&sv, a), lid);
#if VEC_LOAD
    async_wait_prior(); /* this work-item's part of K(blk) has landed; V(blk) may still fly */
#endif
    tile_writes_visible();
    barrier(CLK_LOCAL_MEM_FENCE);

    float s[MT][NT_S][4], alpha[MT][2];
    qk_block(s, qa, k_tile[0], lane);
    rescale_o(acc, alpha, scores_to_probs(s, m, l, alpha, q0, k0, row0, t, &sv, a, c MASK_ARG SHFL_SCRATCH_ARG));

#if VEC_LOAD
    async_wait_all(); /* V(blk) */
#endif
    tile_writes_visible();
    barrier(CLK_LOCAL_MEM_FENCE); /* V(blk) visible to all; every warp is done with K(blk) */
    if (blk + 1 < n_blocks) load_block(k_tile[0], K_PITCH, kg, k_base, a->k_seq_stride, k0 + BC, SV_NK(&sv, a), lid);
    pv_block(acc, s, v_tile[0], lane);
    barrier(CLK_LOCAL_MEM_FENCE); /* every warp is done with V(blk) before V(blk + 1) lands */
  }
#endif

  /* epilogue: full row sums over the row's four lanes, O divided once, O and LSE written once */
  __global O_ELEM_T* og = (__global O_ELEM_T*)o;
#if O_STAGED
  /* the stage the last step did not read is free once every warp is past the step before it */
  const int steps = n_blocks - kb_begin;
  if (steps >= 2) mbar_wait(&done[(steps - 2) & 1], ((steps - 2) >> 1) & 1);
  __local ELEM_T* slice = (warp < WARPS / 2 ? k_tile[steps & 1] : v_tile[steps & 1]) +
                          (warp % (WARPS / 2)) * O_SLICE_ROWS * K_PITCH;
  float inv[MT][2];
#pragma unroll
  for (int i = 0; i < MT; ++i)
#pragma unroll
    for (int r = 0; r < 2; ++r) { /* the sums and LSE as below (the measured order: sums after the wait) */
      const int row = row0 + 16 * i + 8 * r;
      float sum = l[i][r];
      sum += shfl_xor(sum, 1);
      sum += shfl_xor(sum, 2);
      inv[i][r] = sum > 0.0f ? 1.0f / sum : 0.0f;
#if SCORE_TRANSFORM
      clear_unseen_row(acc[i], r, sum);
#endif
      if (a->write_lse && t == 0 && row < SV_NQ(&sv, a))
        lse[LSE_INDEX(a, &sv, b, h, row)] = row_lse(m[i][r], sum);
    }
  store_o_staged(og, o_base, a->o_seq_stride, q0 + warp * 16 * MT, SV_NQ(&sv, a), acc, inv, slice, lane, g, t);
#else
#pragma unroll
  for (int i = 0; i < MT; ++i)
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int row = row0 + 16 * i + 8 * r;
      float sum = l[i][r];
      sum += shfl_xor(sum, 1);
      sum += shfl_xor(sum, 2);
      const float inv = sum > 0.0f ? o_descale / sum : 0.0f;
#if SCORE_TRANSFORM
      clear_unseen_row(acc[i], r, sum);
#endif
      const bool in = row < SV_NQ(&sv, a);
#if O_COLUMN_QUADS
      store_o_quads(og, o_base + (long)row * a->o_seq_stride, acc[i], r, inv, in, t);
#else
#pragma unroll
      for (int n = 0; n < NT_O; ++n) {
        const int col = 8 * n + 2 * t;
        store_o2(og, o_base + (long)row * a->o_seq_stride + col, acc[i][n][2 * r] * inv, acc[i][n][2 * r + 1] * inv,
                 in && col < HEAD_DIM, in && col + 1 < HEAD_DIM);
      }
#endif
      if (a->write_lse && t == 0 && in)
        lse[LSE_INDEX(a, &sv, b, h, row)] = row_lse(m[i][r], sum);
    }
#endif
}
