/* decode_mma.cl: the split-KV decode kernel on NVIDIA's tensor cores (FLASHCL_DECODE=mma[-b<BC>s<RING>];
 * issue 22). decode_lanes.cl forms each score and each P*V term with FMAs and warp shuffles, about
 * a hundred instructions per 16 bytes of cache a work-item reads: at the copy ceiling that is most
 * of the SM's issue rate, so it stops short of it. Here a warp computes S = Q K^T and O += P V with
 * mma.sync m16n8k16 for a block of 16 query rows of one K/V head (row r: query r / group of head
 * hk * group + r % group, as every decode kernel packs GQA), the rows as the 16-row m-tile (rows
 * past the block's are zeros: the tensor cores have throughput to spare, the cache's bytes are the
 * cost), a few instructions per 16 bytes. A work-group is WARPS such warps (one where the K/V head
 * has up to 16 rows; up to 4 for chunked prefill) sharing each tile, so the cache is read once per
 * BR = 16 WARPS rows. The split's K and V tiles (BC keys each) arrive by cp.async in a ring of RING
 * tiles in __local, RING - 1 tiles ahead of the one computed, with one work-group barrier per tile
 * (every lane's copies of a tile visible, every lane past the reads of the stage the next copies
 * overwrite). A paged cache is read as runs of DM_RUN keys that lie together on a page
 * (gcd(page_size, BC) where that is 8 or more: pages of 16, 256, ...), each from one block-table
 * entry held in registers and read a tile ahead, with stepped copy pointers; a contiguous cache's
 * tile is one run (H100: 1.00-1.09x each copy addressed on its own, docs/DECODE.md). Other
 * shapes address each copy on its own: a paged cache's key offsets then come from a double-buffered
 * table in __local that the lanes fill a tile before its copies read it (any page size, pages in
 * any order). The online softmax is fa2_mma.cl's with the lazy rescale; scores go through
 * common.cl's final_score where a variant (causal, window, softcap, ALiBi) needs
 * it. Same grid, arguments and workspace output as decode_lanes.cl (decode_merge.cl combines the
 * splits), with row blocks of BR rows.
 *
 * The operand side is fa2_mma.cl's contract (mma_f16.cl over mma_half_io.cl: load_q_rows, qk_block,
 * pv_block, K_PITCH, V_PITCH), so tests/emulated_mma runs this kernel on PoCL over emulated
 * operands (the decode_mma_emulated test). The host takes it only for 16-bit caches at 8 elements
 * a load (16-byte copies), without rotary embedding (plan_decode.cpp). */

#ifndef RING
#define RING 2 /* tiles in the cp.async ring: RING - 1 in flight while one is computed */
#endif
#if MT != 1
#error "decode_mma: one 16-row m-tile per warp"
#endif
#if RING < 2 || BC % 16 != 0
#error "decode_mma: RING >= 2, BC a multiple of 16"
#endif
#if CACHE_FP8 || VEC != 8 || ROTARY
#error "decode_mma: 16-bit caches at 8 elements a load, no rotary embedding"
#endif

#define DM_CPR (HEAD_DIM / CHUNK)          /* 16-byte chunks of a K/V row */
#define DM_COPIES (BC * DM_CPR / WG_SIZE)  /* 16-byte copies of a tile's K (and of its V) per lane */
#if (BC * DM_CPR) % WG_SIZE != 0
#error "decode_mma: a tile's 16-byte chunks must be a multiple of the work-group"
#endif
#ifndef RESCALE_SLACK
#define RESCALE_SLACK 8.0f /* (mma_ptx.cl's; the emulated operand files have none) */
#endif
/* RESCALE_SLACK in score units: P stays below 2^RESCALE_SLACK, within fp16 */
#if HALF_UNITS
#define DM_SLACK (RESCALE_SLACK / (2.0f * LOG2E_F))
#define DM_EXP(x) ex2_approx((x) * (2.0f * LOG2E_F))
#else
#define DM_SLACK RESCALE_SLACK
#define DM_EXP(x) ex2_approx(x)
#endif
#ifndef DM_EDGE_ONLY
#define DM_EDGE_ONLY 1 /* 0 (an A/B switch): final_score on every tile */
#endif
/* a score needs common.cl's final_score (else only the key and row bounds) */
#define DM_TRANSFORM (SOFTCAP || ALIBI || CAUSAL || WINDOW)

#ifndef DM_CONTIGUOUS_RUNS
#define DM_CONTIGUOUS_RUNS 1 /* a contiguous cache's tile as one run (0: each copy on its own) */
#endif
#if !defined(DM_RUN) && !PAGED && DM_CONTIGUOUS_RUNS && WG_SIZE % DM_CPR == 0 && BC % (WG_SIZE / DM_CPR) == 0
#define DM_RUN BC
#endif
#ifndef DM_RUN
#define DM_RUN 0
#endif
#ifndef DM_NO_RUNS
#define DM_NO_RUNS 0 /* 1 (an A/B switch): each copy addressed on its own even where runs would serve */
#endif
#define DM_RUNS_FORM (DM_RUN > 0 && !DM_NO_RUNS)
#define DM_TABLE_FORM (PAGED && !DM_RUNS_FORM)

#if DM_RUNS_FORM
#if DM_RUN % 8 != 0 || BC % DM_RUN != 0
#error "decode_mma: DM_RUN a multiple of 8 dividing BC"
#endif
#define DM_RUNS (BC / DM_RUN)
/* A tile's runs: each run's pool entry (-1: past nk or outside the pool; contiguous: 0, the cache row
 * being in the head's offset) and its first key's offset in the page (contiguous: in the row).
 * next_runs fills them for the tile at the cursor (pos: the key, page/off: its block-table index and
 * offset) and moves the cursor a tile on, without a division: DM_RUN divides the page size, so
 * a run ends a page exactly when off reaches it. Every lane reads the same entries (one transaction
 * a warp), a tile before their copies need them. */
typedef struct {
  int entry[DM_RUNS], off[DM_RUNS];
} TileRuns;
inline void next_runs(TileRuns* tr, int* pos, int* page, int* off, const DecodeArgs* d,
                      __global const int* block_table, int b, int nk) {
#pragma unroll
  for (int u = 0; u < DM_RUNS; ++u) {
#if PAGED
    tr->entry[u] = *pos < nk ? page_entry(d, block_table, b, *page) : -1; /* (pos < nk: page < max_pages) */
    tr->off[u] = *off;
    *off += DM_RUN;
    if (*off == d->page_size) {
      *off = 0;
      ++*page;
    }
#else
    (void)page;
    (void)off;
    (void)block_table;
    (void)b;
    (void)nk;
    tr->entry[u] = 0;
    tr->off[u] = *pos;
#endif
    *pos += DM_RUN;
  }
}
/* The bits of tr's runs that are there (run u: bit u). */
inline uint runs_present(const TileRuns* tr) {
  uint bits = 0;
#pragma unroll
  for (int u = 0; u < DM_RUNS; ++u) bits |= (uint)(tr->entry[u] >= 0) << u;
  return bits;
}
#endif

#if DM_TABLE_FORM
/* A paged tile's key offsets, in two steps so that the block-table reads are in flight while a
 * tile is computed: fetch_entries reads the pool entries of tile kt's keys lid + WG_SIZE * i into
 * registers (-1: past nk or outside the pool); write_table turns them into the K and V element
 * offsets (head and lane column excluded; -1 where absent) of `at` ([0, BC): K, [BC, 2 BC): V). */
#define DM_KEYS_PER_LANE ((BC + WG_SIZE - 1) / WG_SIZE)
inline void fetch_entries(int entry[DM_KEYS_PER_LANE], const DecodeArgs* d, __global const int* block_table, int b,
                          int kt, int nk, int lid) {
#pragma unroll
  for (int i = 0; i < DM_KEYS_PER_LANE; ++i) {
    const int pos = kt * BC + lid + WG_SIZE * i;
    entry[i] = lid + WG_SIZE * i < BC && pos < nk ? page_entry(d, block_table, b, pos / d->page_size) : -1;
  }
}
inline void write_table(__local long* at, const int entry[DM_KEYS_PER_LANE], const DecodeArgs* d, int kt, int lid) {
#pragma unroll
  for (int i = 0; i < DM_KEYS_PER_LANE; ++i) {
    const int key = lid + WG_SIZE * i, off = (kt * BC + key) % d->page_size;
    if (key >= BC) break;
    at[key] = entry[i] < 0 ? -1 : (long)entry[i] * d->k_batch_stride + (long)off * d->k_seq_stride;
    at[BC + key] = entry[i] < 0 ? -1 : (long)entry[i] * d->v_batch_stride + (long)off * d->v_seq_stride;
  }
}
#endif


#if DM_RUNS_FORM
/* issue_tile for the runs form. A lane's chunk column is fixed and its rows are DM_RSTEP apart (the
 * host takes the form only where a key row's chunks divide the work-group and DM_RSTEP divides the
 * run), so copy i of run u is row row0 + u DM_RUN + i DM_RSTEP, known but for row0, and its
 * source is the run's lane pointer stepped i times: one 64-bit add a copy. A key past nk or on a run
 * outside the pool becomes 16 zero bytes. */
#if WG_SIZE % DM_CPR != 0 || DM_RUN % (WG_SIZE / DM_CPR) != 0
#error "decode_mma: page runs need a key row's chunks to divide the work-group and its rows to divide the run"
#endif
inline void issue_tile_runs(__local ELEM_T* k_stage, __local ELEM_T* v_stage, __global const ELEM_T* k_cache,
                            __global const ELEM_T* v_cache, const DecodeArgs* d, long head_k, long head_v, int kt,
                            int nk, const TileRuns* tr, int lid) {
  const int rstep = WG_SIZE / DM_CPR, row0 = lid / DM_CPR, col = (lid % DM_CPR) * CHUNK;
  const long kstep = (long)rstep * d->k_seq_stride, vstep = (long)rstep * d->v_seq_stride;
#pragma unroll
  for (int u = 0; u < DM_RUNS; ++u) {
    const bool there = tr->entry[u] >= 0;
    const int page = max(tr->entry[u], 0), first = tr->off[u] + row0;
    __global const ELEM_T* kp = k_cache + head_k + (long)page * d->k_batch_stride + (long)first * d->k_seq_stride + col;
    __global const ELEM_T* vp = v_cache + head_v + (long)page * d->v_batch_stride + (long)first * d->v_seq_stride + col;
#pragma unroll
    for (int i = 0; i < DM_RUN / rstep; ++i, kp += kstep, vp += vstep) {
      const int row = row0 + u * DM_RUN + i * rstep;
      const bool ok = there && kt * BC + row < nk;
      copy16_async_256(k_stage + row * K_PITCH + col, ok ? kp : k_cache, ok ? 16 : 0);
      copy16_async_256(v_stage + row * V_PITCH + col, ok ? vp : v_cache, ok ? 16 : 0);
    }
  }
}
#endif

/* The copies of tile `kt` into one stage of the ring: work-item `lid` takes chunks lid + WG_SIZE * i
 * (consecutive work-items, consecutive 16 bytes of a row). A key that is not there becomes 16 zero
 * bytes (read from nowhere). head_k/head_v: the lane-independent offsets of head hk (and of the
 * cache row, contiguous); table: the tile's write_table, and present: the stage's flags of which keys
 * are there (the table form: a key on a page outside the pool is hidden, not a zero key). */
inline void issue_tile(__local ELEM_T* k_stage, __local ELEM_T* v_stage, __global const ELEM_T* k_cache,
                       __global const ELEM_T* v_cache, const DecodeArgs* d, long head_k, long head_v, int kt, int nk,
                       __local const long* table, __local int* present, int lid) {
#pragma unroll
  for (int i = 0; i < DM_COPIES; ++i) {
    const int c = lid + WG_SIZE * i, row = c / DM_CPR, col = (c - row * DM_CPR) * CHUNK;
#if DM_TABLE_FORM
    const long ko = table[row], vo = table[BC + row];
    const bool ok = ko >= 0;
    if (col == 0) present[row] = ok;
#else
    (void)table;
    (void)present;
    const int pos = kt * BC + row;
    const bool ok = pos < nk;
    const long ko = (long)pos * d->k_seq_stride, vo = (long)pos * d->v_seq_stride;
#endif
    copy16_async_256(k_stage + row * K_PITCH + col, k_cache + head_k + col + (ok ? ko : 0), ok ? 16 : 0);
    copy16_async_256(v_stage + row * V_PITCH + col, v_cache + head_v + col + (ok ? vo : 0), ok ? 16 : 0);
  }
}

__kernel __attribute__((reqd_work_group_size(WG_SIZE, 1, 1)))
void decode_mma(__global const STORAGE_T* q, __global const CACHE_T* k_cache, __global const CACHE_T* v_cache,
                __global float* work, __global const int* cache_seqlens, __global const int* block_table,
                __global const int* batch_idx, __global const float* rot_cos, __global const float* rot_sin,
                __global const float* alibi_slopes, const DecodeArgs dargs, const AttnArgs attn) {
  __local ELEM_T k_ring[RING][BC * K_PITCH] __attribute__((aligned(128)));
  __local ELEM_T v_ring[RING][BC * V_PITCH] __attribute__((aligned(128)));
#if DM_TABLE_FORM
  __local long tables[2][2 * BC]; /* write_table's, of the next tiles by tile parity */
  __local int present[RING][BC];  /* per stage: which of its keys are there (issue_tile) */
#else
  __local long* tables[2] = {0, 0};
  __local int* present[RING] = {0};
#endif
#ifdef MMA_EMULATED_SHUFFLE
  __local float shfl_scratch[WG_SIZE]; /* the emulated operand files' shuffles (tests/emulated_mma) */
#endif
  (void)rot_cos;
  (void)rot_sin;
  const DecodeArgs* d = &dargs;
  const int lid = get_local_id(0), lane = lid % 32, g = lane >> 2, t = lane & 3;
  const int split = get_group_id(0) % d->num_splits, r0 = get_group_id(0) / d->num_splits * BR;
  const int hk = get_group_id(1), b = get_group_id(2);
  const int r_end = min(r0 + BR, d->rows); /* this work-group's rows [r0, r_end) */
  const int rw = r0 + 16 * (lid / 32);     /* this warp's 16 */

  const int slot_row = cache_row(d, batch_idx, b);
  const int len = slot_row < 0 ? 0 : cached_len(d, cache_seqlens, b);
  const SeqView sv = decode_view(d, &attn, len, slot_row);
  const int nk = sv.seqlen_k;
  int t_begin, t_end;
  split_run(d, &attn, &sv, r0, r_end, BC, split, &t_begin, &t_end);

  /* the head's offsets in the caches (contiguous: and its cache row's) */
  const long head_k = d->k_offset + (long)hk * d->k_head_stride +
                      (PAGED ? 0 : (long)max(slot_row, 0) * d->k_batch_stride);
  const long head_v = d->v_offset + (long)hk * d->v_head_stride +
                      (PAGED ? 0 : (long)max(slot_row, 0) * d->v_batch_stride);

#if DPAD > HEAD_DIM /* columns past the head dim are never copied: zeros, once */
  for (int idx = lid; idx < RING * BC * (DPAD - HEAD_DIM); idx += WG_SIZE) {
    const int s = idx / (BC * (DPAD - HEAD_DIM)), r = idx / (DPAD - HEAD_DIM) % BC, c = HEAD_DIM + idx % (DPAD - HEAD_DIM);
    k_ring[s][r * K_PITCH + c] = 0;
    v_ring[s][r * V_PITCH + c] = 0;
  }
#endif

#if DM_RUNS_FORM
  /* the runs' cursor at the split's first key; pend: the runs of the next tile to issue; seen: the
   * present bits of the ring's tiles, DM_RUNS each, tile kt's lowest */
  int run_pos = t_begin * BC, run_page = PAGED ? run_pos / d->page_size : 0, run_off = run_pos - run_page * d->page_size;
  TileRuns pend;
  ulong seen = 0;
#endif
  /* the first RING - 1 tiles' copies (the table form: each tile's table published by a barrier
   * before its copies) */
  for (int s = 0; s < RING - 1; ++s) {
    const int kt = t_begin + s;
#if DM_RUNS_FORM
    next_runs(&pend, &run_pos, &run_page, &run_off, d, block_table, b, nk);
    seen |= (ulong)runs_present(&pend) << (s * DM_RUNS);
    if (kt < t_end)
      issue_tile_runs(k_ring[s], v_ring[s], (__global const ELEM_T*)k_cache, (__global const ELEM_T*)v_cache, d,
                      head_k, head_v, kt, nk, &pend, lid);
#else
#if DM_TABLE_FORM
    int entry[DM_KEYS_PER_LANE];
    fetch_entries(entry, d, block_table, b, kt, nk, lid);
    write_table(tables[kt & 1], entry, d, kt, lid);
    barrier(CLK_LOCAL_MEM_FENCE);
#endif
    if (kt < t_end)
      issue_tile(k_ring[s], v_ring[s], (__global const ELEM_T*)k_cache, (__global const ELEM_T*)v_cache, d, head_k,
                 head_v, kt, nk, tables[kt & 1], present[s], lid);
#endif
    async_commit();
  }
#if DM_RUNS_FORM
  next_runs(&pend, &run_pos, &run_page, &run_off, d, block_table, b, nk);
#elif DM_TABLE_FORM
  {
    int entry[DM_KEYS_PER_LANE];
    fetch_entries(entry, d, block_table, b, t_begin + RING - 1, nk, lid);
    write_table(tables[(t_begin + RING - 1) & 1], entry, d, t_begin + RING - 1, lid);
  }
#endif

  /* this lane's rows rw + g and rw + g + 8 as A fragments */
  long q_at[2];
  float slope[2];
  for (int h = 0; h < 2; ++h) {
    const int r = rw + g + 8 * h;
    q_at[h] = d->q_offset + (long)b * d->q_batch_stride + (long)(r / d->group) * d->q_seq_stride +
              (long)(hk * d->group + r % d->group) * d->q_head_stride;
    slope[h] = row_slope(d, alibi_slopes, b, hk, r);
  }
  qfrag_t qa[1][QFRAGS][4];
  load_q_rows(qa[0], (__global const ELEM_T*)q, q_at[0], q_at[1], rw + g < r_end, rw + g + 8 < r_end, t);

  float acc[1][NT_O][4], m[2] = {NEG_INF, NEG_INF}, l[2] = {0.0f, 0.0f};
#pragma unroll
  for (int n = 0; n < NT_O; ++n) acc[0][n][0] = acc[0][n][1] = acc[0][n][2] = acc[0][n][3] = 0.0f;

  for (int kt = t_begin; kt < t_end; ++kt) {
    ASYNC_WAIT_GROUPS_N(RING - 2); /* this lane's copies of tile kt are in */
    barrier(CLK_LOCAL_MEM_FENCE);  /* every lane's are, and every lane is past tile kt - 1's reads */
    const int ahead = kt + RING - 1, stage = (kt - t_begin) % RING, ahead_stage = (ahead - t_begin) % RING;
#if DM_RUNS_FORM
    seen |= (ulong)runs_present(&pend) << ((RING - 1) * DM_RUNS);
    if (ahead < t_end)
      issue_tile_runs(k_ring[ahead_stage], v_ring[ahead_stage], (__global const ELEM_T*)k_cache,
                      (__global const ELEM_T*)v_cache, d, head_k, head_v, ahead, nk, &pend, lid);
#else
    if (ahead < t_end)
      issue_tile(k_ring[ahead_stage], v_ring[ahead_stage], (__global const ELEM_T*)k_cache,
                 (__global const ELEM_T*)v_cache, d, head_k, head_v, ahead, nk, tables[ahead & 1], present[ahead_stage],
                 lid);
#endif
    async_commit();
    /* the block-table entries of the tile after it, in flight while this tile is computed */
#if DM_TABLE_FORM
    int entry[DM_KEYS_PER_LANE];
    fetch_entries(entry, d, block_table, b, ahead + 1, nk, lid);
#elif DM_RUNS_FORM
    next_runs(&pend, &run_pos, &run_page, &run_off, d, block_table, b, nk);
    const uint here = (uint)seen & ((1u << DM_RUNS) - 1); /* tile kt's runs */
#endif

    float s[1][NT_S][4];
    qk_block(s, qa, k_ring[stage], lane);
    /* scores in SCORE_UNIT; -inf past the keys, past the rows, and where a variant hides the key.
     * final_score only on the tiles a mask or window edge crosses (common.cl's block_needs_mask, in
     * query units; every tile with softcap or ALiBi): on every tile, causal rows read 0.35-0.7x the
     * non-causal ones; edge tiles only, 1.39x / 2.10x that at 4 / 16 causal queries, B 8, 32k keys
     * (1.24x / 1.68x at B 1; H100, bench/gpu/decode_quick.sh STEPS=edge, one call). */
#if DM_TRANSFORM
    const int q_lo = r0 / d->group;
    const bool edge = !DM_EDGE_ONLY || block_needs_mask(q_lo, (r_end - 1) / d->group - q_lo + 1, kt * BC, BC, &sv, &attn);
#endif
    float mx[2] = {NEG_INF, NEG_INF};
#pragma unroll
    for (int j = 0; j < NT_S; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int r = rw + g + 8 * (e >> 1), col = 8 * j + 2 * t + (e & 1), key = kt * BC + col;
        float sc = s[0][j][e] * d->q_scale;
#if DM_TABLE_FORM
        const bool there = present[stage][col]; /* (and key < nk) */
#elif DM_RUNS_FORM
        const bool there = (here >> (8 * j / DM_RUN)) & 1; /* (col's run: 8 j <= col < 8 j + 8) */
#else
        const bool there = true;
#endif
#if DM_TRANSFORM
        if (edge) {
          SeqView rv = sv;
          rv.slope = slope[e >> 1];
          sc = r < r_end && there ? final_score(sc, r / d->group, key, &rv, &attn, 0) : NEG_INF;
        } else {
          sc = r < r_end && there ? sc : NEG_INF; /* (every key of the tile is < nk and visible) */
        }
#else
        sc = key < nk && r < r_end && there ? sc : NEG_INF;
#endif
        s[0][j][e] = sc;
        mx[e >> 1] = fmax(mx[e >> 1], sc);
      }
    /* the online softmax of fa2_mma.cl: the reference max moves only past DM_SLACK */
    float mu[2], alpha[2];
    bool moved = false;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      mx[h] = fmax(mx[h], shfl_xor(mx[h], 1));
      mx[h] = fmax(mx[h], shfl_xor(mx[h], 2));
      const float mn = fmax(m[h], mx[h]);
      const bool up = mn > m[h] + DM_SLACK;
      alpha[h] = up ? DM_EXP(m[h] - mn) : 1.0f;
      if (up) m[h] = mn;
      mu[h] = m[h] == NEG_INF ? 0.0f : m[h];
      l[h] *= alpha[h];
      moved |= up;
    }
#pragma unroll
    for (int j = 0; j < NT_S; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) s[0][j][e] = DM_EXP(s[0][j][e] - mu[e >> 1]);
      l[0] += s[0][j][0] + s[0][j][1];
      l[1] += s[0][j][2] + s[0][j][3];
    }
    if (moved)
#pragma unroll
      for (int n = 0; n < NT_O; ++n) {
        acc[0][n][0] *= alpha[0];
        acc[0][n][1] *= alpha[0];
        acc[0][n][2] *= alpha[1];
        acc[0][n][3] *= alpha[1];
      }
    pv_block(acc, s, v_ring[stage], lane);
#if DM_TABLE_FORM /* its table, into the buffer tile ahead - 1's copies read before this iteration's barrier */
    write_table(tables[(ahead + 1) & 1], entry, d, ahead + 1, lid);
#elif DM_RUNS_FORM
    seen >>= DM_RUNS;
#endif
  }
  async_wait_all();

  /* the split's partial O (normalised) and LSE of rows g and g + 8, decode_split.cl's layout */
  __global float* part_o = work + PART_O_BASE(d);
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int r = rw + g + 8 * h;
    float sum = l[h];
    sum += shfl_xor(sum, 1);
    sum += shfl_xor(sum, 2);
    if (r >= r_end) continue;
    const long row = PART_ROW(d, b, hk, r);
    const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
#pragma unroll
    for (int n = 0; n < NT_O; ++n) {
      const int col = 8 * n + 2 * t;
      if (col < HEAD_DIM) { /* HEAD_DIM is a multiple of 8: col + 1 too */
        part_o[(row * d->num_splits + split) * HEAD_DIM + col] = acc[0][n][2 * h] * inv;
        part_o[(row * d->num_splits + split) * HEAD_DIM + col + 1] = acc[0][n][2 * h + 1] * inv;
      }
    }
    if (t == 0) work[row * d->num_splits + split] = row_lse(m[h], sum);
  }
}
