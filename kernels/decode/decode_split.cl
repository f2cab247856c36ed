/* decode_split.cl: split-KV attention over a KV cache (Flash-Decoding) with GQA packing. One
 * work-group per (row block x split, K/V head, sequence): its BR rows are query rows of the K/V
 * head's whole group (row r = i * group + g: query i of head hk * group + g), so every K/V tile
 * is read from global memory once for all the query heads sharing it. The keys that the block's
 * rows can see (causal, bottom-right; window) are cut into num_splits equal runs of BC-key tiles;
 * the work-group walks its run and writes a normalised partial O (fp32) and its LSE into the
 * workspace for decode_merge.cl (an empty run writes O = 0, LSE = -inf).
 * Prologue: the block's query rows, rotated (ROTARY) and scaled (q_scale), into __local.
 * Main loop per tile: (paged) the tile's block-table entries, one read per page; K and V rows
 * into __local (VEC-wide loads: 16 bytes for fp32 and 16-bit caches when aligned); scores with common.cl's final_score (causal, window, softcap,
 * ALiBi; VARLEN=1 so its lengths are this sequence's: SeqView.seqlen_k = keys after the append);
 * online softmax in common.cl's SCORE_UNIT (base 2, or halves of natural units), each work-item keeping its own copy of its row's max and sum (no
 * reduction, no serial pass: it reads the row's scores and takes the exponentials itself);
 * O += P V with the old part rescaled.
 * Epilogue: O / l and LSE (common.cl's row_lse) per row. */

#ifndef BR
#define BR 4 /* query rows per work-group */
#endif
#ifndef BC
#define BC 32 /* keys per tile */
#endif
#ifndef WG_SIZE
#define WG_SIZE 128 /* work-items per work-group */
#endif
#ifndef PAGE_SLOTS
#define PAGE_SLOTS BC /* PAGED: most pages one tile can span */
#endif
#define DV (HEAD_DIM / VEC)             /* VEC-wide columns of a row */
#define K_STRIDE (HEAD_DIM + 1)         /* K rows padded: the score loop's keys fall in different banks */
#define ACC_N ((BR * DV + WG_SIZE - 1) / WG_SIZE) /* (row, column) slots of O each work-item owns */

#define LOAD_ITERS ((BC * DV + WG_SIZE - 1) / WG_SIZE) /* tile elements (VEC-wide) per work-item */
#if PAGED
#define TILE_PAGES_ARG tile_pages, first_page
#else
#define TILE_PAGES_ARG 0, 0
#endif

/* Tile slot idx (key idx / DV, VEC columns from (idx % DV) * VEC) of keys k0 ... as floats; zeros
 * past k_stop, past the tile and in pages outside the pool. */
inline void load_kv_slot(float* kx, float* vx, int idx, int k0, int k_stop, int slot_row, int hk, const DecodeArgs* d,
                         __global const CACHE_T* k_cache, __global const CACHE_T* v_cache,
                         __local const int* tile_pages, int first_page) {
  const int c = idx / DV, col = idx % DV * VEC, pos = k0 + c;
#pragma unroll
  for (int e = 0; e < VEC; ++e) kx[e] = vx[e] = 0.0f;
  if (idx >= BC * DV || pos >= k_stop) return;
#if PAGED
  const int slot = tile_pages[pos / d->page_size - first_page];
  if (slot < 0) return;
#else
  (void)tile_pages;
  (void)first_page;
  const int slot = slot_row;
#endif
  long kb, vb;
  kv_bases(d, slot, pos, hk, &kb, &vb);
#if VEC == 8
  vstore8(LOAD_CACHE_VEC(k_cache, kb + col), 0, kx);
  vstore8(LOAD_CACHE_VEC(v_cache, vb + col), 0, vx);
#elif VEC == 4
  vstore4(LOAD_CACHE_VEC(k_cache, kb + col), 0, kx);
  vstore4(LOAD_CACHE_VEC(v_cache, vb + col), 0, vx);
#else
  kx[0] = LOAD_CACHE_ELEM(k_cache, kb + col);
  vx[0] = LOAD_CACHE_ELEM(v_cache, vb + col);
#endif
}

inline void store_kv_slot(__local float* k_tile, __local float* v_tile, const float* kx, const float* vx, int idx) {
  if (idx >= BC * DV) return;
  const int c = idx / DV, col = idx % DV * VEC;
#pragma unroll
  for (int e = 0; e < VEC; ++e) {
    k_tile[c * K_STRIDE + col + e] = kx[e];
    v_tile[c * HEAD_DIM + col + e] = vx[e];
  }
}

__kernel __attribute__((reqd_work_group_size(WG_SIZE, 1, 1)))
void decode_split(__global const STORAGE_T* q, __global const CACHE_T* k_cache, __global const CACHE_T* v_cache,
                  __global float* work, __global const int* cache_seqlens,
                  __global const int* block_table, __global const int* batch_idx, __global const float* rot_cos,
                  __global const float* rot_sin, __global const float* alibi_slopes, const DecodeArgs dargs,
                  const AttnArgs attn CACHE_DESCALE_PARAMS) {
  __local float q_tile[BR * HEAD_DIM];
  __local float k_tile[BC * K_STRIDE];
  __local float v_tile[BC * HEAD_DIM];
  __local float p_tile[BR * BC];
  __local float slope_row[BR];
#if PAGED
  __local int tile_pages[PAGE_SLOTS];
#endif
  const DecodeArgs* d = &dargs;
  /* workspace: LSE (B, H, Nq, splits), then O (B, H, Nq, splits, d) */
  __global float* part_lse = work;
  __global float* part_o = work + (long)d->batch * d->heads * d->seqlen_q * d->num_splits;
  const int lid = get_local_id(0), group = d->group;
  const int split = get_group_id(0) % d->num_splits, r0 = get_group_id(0) / d->num_splits * BR;
  const int hk = get_group_id(1), b = get_group_id(2);
  const int r_end = min(r0 + BR, d->rows);

  /* this sequence: keys after the append, or none when its cache row is out of range */
  const int slot_row = cache_row(d, batch_idx, b);
  const int len = slot_row < 0 ? 0 : cached_len(d, cache_seqlens, b);
  const SeqView sv = decode_view(d, &attn, len, slot_row);

  /* prologue: query rows r0 .. r_end - 1 (rows past the end stay 0 and are never written) */
  for (int idx = lid; idx < BR * HEAD_DIM; idx += WG_SIZE)
    q_tile[idx] = query_value(d, q, b, hk, r0 + idx / HEAD_DIM, r_end, idx % HEAD_DIM, len, rot_cos, rot_sin);
#if CACHE_FP8
  for (int idx = lid; idx < BR * HEAD_DIM; idx += WG_SIZE) /* q . (kd * k8): the descale once per query element */
    q_tile[idx] *= CACHE_DESCALE(k_descale, d, b, hk);
#endif
  if (lid < BR) slope_row[lid] = row_slope(d, alibi_slopes, b, hk, r0 + lid);
  /* per owned (row, column) slot: O, and the row's running max and sum (each work-item of a row
   * keeps its own copy: no reduction, no barrier, no serial pass over the row) */
  float acc[ACC_N][VEC], m[ACC_N], l[ACC_N];
#pragma unroll
  for (int t = 0; t < ACC_N; ++t) {
    m[t] = NEG_INF;
    l[t] = 0.0f;
#pragma unroll
    for (int e = 0; e < VEC; ++e) acc[t][e] = 0.0f;
  }

  int t_begin, t_end; /* this split's run of tiles */
  split_run(d, &attn, &sv, r0, r_end, BC, split, &t_begin, &t_end);

  /* main loop */
  for (int kt = t_begin; kt < t_end; ++kt) {
    const int k0 = kt * BC, k_stop = min(k0 + BC, sv.seqlen_k);
    barrier(CLK_LOCAL_MEM_FENCE); /* the previous tile's readers are done (and the prologue's writers) */
#if PAGED
    const int first_page = k0 / d->page_size;
    for (int s = lid; s <= (k_stop - 1) / d->page_size - first_page; s += WG_SIZE)
      tile_pages[s] = page_entry(d, block_table, b, first_page + s);
    barrier(CLK_LOCAL_MEM_FENCE);
#else
    (void)block_table;
#endif
    /* K and V rows into __local: all of a work-item's loads are issued before any is stored, so
     * a tile's bytes are in flight together (LOAD_ITERS <= 16; wider tiles take the plain loop) */
#if LOAD_ITERS <= 16
    float kx[LOAD_ITERS][VEC], vx[LOAD_ITERS][VEC];
#pragma unroll
    for (int it = 0; it < LOAD_ITERS; ++it)
      load_kv_slot(kx[it], vx[it], lid + it * WG_SIZE, k0, k_stop, slot_row, hk, d, k_cache, v_cache, TILE_PAGES_ARG);
#pragma unroll
    for (int it = 0; it < LOAD_ITERS; ++it) store_kv_slot(k_tile, v_tile, kx[it], vx[it], lid + it * WG_SIZE);
#else
    for (int idx = lid; idx < BC * DV; idx += WG_SIZE) {
      float kx[VEC], vx[VEC];
      load_kv_slot(kx, vx, idx, k0, k_stop, slot_row, hk, d, k_cache, v_cache, TILE_PAGES_ARG);
      store_kv_slot(k_tile, v_tile, kx, vx, idx);
    }
#endif
    barrier(CLK_LOCAL_MEM_FENCE);

    /* scores, in SCORE_UNIT */
    for (int idx = lid; idx < BR * BC; idx += WG_SIZE) {
      const int r = idx / BC, c = idx % BC, rg = r0 + r, key = k0 + c;
      float s = NEG_INF;
#if PAGED
      const bool present = key < k_stop && tile_pages[key / d->page_size - first_page] >= 0;
#else
      const bool present = true;
#endif
      if (rg < r_end && present) {
        float dot = 0.0f;
        for (int e = 0; e < HEAD_DIM; ++e) dot = fma(q_tile[r * HEAD_DIM + e], k_tile[c * K_STRIDE + e], dot);
        SeqView rv = sv;
        rv.slope = slope_row[r];
        s = final_score(dot, rg / group, key, &rv, &attn, 0);
      }
      p_tile[idx] = s;
    }
    barrier(CLK_LOCAL_MEM_FENCE);

    /* O = alpha O + P V with P = EXP2_OF(s - m): each work-item takes its row's max over the tile
     * (broadcast reads) and the exponentials itself */
#pragma unroll
    for (int t = 0; t < ACC_N; ++t) {
      const int idx = lid + t * WG_SIZE;
      if (idx < BR * DV) {
        const int r = idx / DV, col = idx % DV * VEC;
        __local const float* s_row = p_tile + r * BC;
        float mx = m[t];
        for (int c = 0; c < BC; ++c) mx = max_keep_nan(mx, s_row[c]);
        if (mx != NEG_INF) { /* else nothing visible yet: acc and l stay 0 */
          const float alpha = EXP2_OF(m[t] - mx); /* 0 when m was -inf */
          l[t] *= alpha;
#pragma unroll
          for (int e = 0; e < VEC; ++e) acc[t][e] *= alpha;
          m[t] = mx;
          for (int c = 0; c < BC; ++c) {
            const float p = EXP2_OF(s_row[c] - mx); /* 0 for hidden keys (-inf) */
            l[t] += p;
#pragma unroll
            for (int e = 0; e < VEC; ++e) acc[t][e] = fma(p, v_tile[c * HEAD_DIM + col + e], acc[t][e]);
          }
        }
      }
    }
  }


  /* epilogue: partial rows (b, h, i) of split `split`; the work-item holding a row's first
   * columns writes its LSE */
#pragma unroll
  for (int t = 0; t < ACC_N; ++t) {
    const int idx = lid + t * WG_SIZE, r = idx / DV, rg = r0 + r;
    if (idx < BR * DV && rg < r_end) {
      const int col = idx % DV * VEC, i = rg / group, h = hk * group + rg % group;
      const long row = ((long)b * d->heads + h) * d->seqlen_q + i;
#if CACHE_FP8
      const float inv = (l[t] > 0.0f ? 1.0f / l[t] : 0.0f) * CACHE_DESCALE(v_descale, d, b, hk); /* P . (vd * v8) */
#else
      const float inv = l[t] > 0.0f ? 1.0f / l[t] : 0.0f;
#endif
#pragma unroll
      for (int e = 0; e < VEC; ++e) part_o[(row * d->num_splits + split) * HEAD_DIM + col + e] = acc[t][e] * inv;
      if (col == 0) part_lse[row * d->num_splits + split] = row_lse(m[t], l[t]); /* NaN kept, as the forward */
    }
  }
}
