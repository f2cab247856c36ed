/* decode_stream.cl: the split-KV kernel for few query rows per K/V head (decode: group * Nq <= 8),
 * where staging K and V in __local (decode_split.cl) costs more __local traffic than the tile's
 * global reads. Same grid, arguments and workspace output as decode_split. Work-item lid owns
 * the VEC-wide column chunk v = lid % S_DV of the head dimension and belongs to key group
 * kg = lid / S_DV; a tile is BC = S_KG * KPT keys, key c handled by group c % S_KG. Per tile each
 * work-item loads its KPT keys' K and V chunks straight into registers (16-byte loads where the
 * layout allows, all issued before use), multiplies the K chunk with its query chunk (kept in
 * registers) for every row, and leaves the partial dots in __local; after one barrier the BR x BC
 * scores are summed over the chunks and transformed (common.cl's final_score); after another,
 * each work-item folds its keys' P times its V chunk into its own online softmax per row. Each key
 * group is thus an independent softmax stream over its keys; the epilogue merges the S_KG streams
 * by the LSE rule in __local and writes the split's normalised partial O and LSE. */

#ifndef KPT
#define KPT 4 /* keys per work-item per tile */
#endif
#define S_DV (HEAD_DIM / VEC)     /* column chunks: work-items per key */
#define S_KG (WG_SIZE / S_DV)     /* key groups (the host makes WG_SIZE = S_DV * S_KG, BC = S_KG * KPT) */
#define PD_STRIDE (S_DV + 1)      /* partial dots of one (row, key), padded against bank conflicts */
#define STREAM_SCRATCH (BR * BC * PD_STRIDE > S_KG * BR * (HEAD_DIM + 2) ? BR * BC * PD_STRIDE : S_KG * BR * (HEAD_DIM + 2))

__kernel __attribute__((reqd_work_group_size(WG_SIZE, 1, 1)))
void decode_stream(__global const STORAGE_T* q, __global const CACHE_T* k_cache, __global const CACHE_T* v_cache,
                   __global float* work, __global const int* cache_seqlens, __global const int* block_table,
                   __global const int* batch_idx, __global const float* rot_cos, __global const float* rot_sin,
                   __global const float* alibi_slopes, const DecodeArgs dargs, const AttnArgs attn CACHE_DESCALE_PARAMS) {
  __local float scratch[STREAM_SCRATCH]; /* partial dots per tile; the streams' state at the end */
  __local float s_tile[BR * BC];
  __local float slope_row[BR];
#if PAGED
  __local int tile_pages[PAGE_SLOTS];
#endif
  const DecodeArgs* d = &dargs;
  const int lid = get_local_id(0), v = lid % S_DV, kg = lid / S_DV, col = v * VEC;
  const int split = get_group_id(0) % d->num_splits, r0 = get_group_id(0) / d->num_splits * BR;
  const int hk = get_group_id(1), b = get_group_id(2);
  const int r_end = min(r0 + BR, d->rows);

  const int slot_row = cache_row(d, batch_idx, b);
  const int len = slot_row < 0 ? 0 : cached_len(d, cache_seqlens, b);
  const SeqView sv = decode_view(d, &attn, len, slot_row);

  /* prologue: this work-item's query chunk of every row, in registers */
  float qv[BR][VEC], acc[BR][VEC], m[BR], l[BR];
#pragma unroll
  for (int r = 0; r < BR; ++r) {
    m[r] = NEG_INF;
    l[r] = 0.0f;
#pragma unroll
    for (int e = 0; e < VEC; ++e) {
      qv[r][e] = query_value(d, q, b, hk, r0 + r, r_end, col + e, len, rot_cos, rot_sin);
#if CACHE_FP8
      qv[r][e] *= CACHE_DESCALE(k_descale, d, b, hk); /* q . (kd * k8): the descale once per query element */
#endif
      acc[r][e] = 0.0f;
    }
  }
  if (lid < BR) slope_row[lid] = row_slope(d, alibi_slopes, b, hk, r0 + lid);

  int t_begin, t_end;
  split_run(d, &attn, &sv, r0, r_end, BC, split, &t_begin, &t_end);

  /* main loop */
  for (int kt = t_begin; kt < t_end; ++kt) {
    const int k0 = kt * BC, k_stop = min(k0 + BC, sv.seqlen_k);
    barrier(CLK_LOCAL_MEM_FENCE); /* the previous tile's readers of scratch, s_tile, tile_pages are done */
#if PAGED
    const int first_page = k0 / d->page_size;
    for (int s = lid; s <= (k_stop - 1) / d->page_size - first_page; s += WG_SIZE)
      tile_pages[s] = page_entry(d, block_table, b, first_page + s);
    barrier(CLK_LOCAL_MEM_FENCE);
#else
    (void)block_table;
#endif
    /* this work-item's keys: loads first, all in flight together */
    float kx[KPT][VEC], vx[KPT][VEC];
#pragma unroll
    for (int j = 0; j < KPT; ++j) {
      const int c = kg + j * S_KG, pos = k0 + c;
#pragma unroll
      for (int e = 0; e < VEC; ++e) kx[j][e] = vx[j][e] = 0.0f;
#if PAGED
      const int slot = pos < k_stop ? tile_pages[pos / d->page_size - first_page] : -1;
#else
      const int slot = pos < k_stop ? slot_row : -1;
#endif
      if (slot >= 0) {
        long kb, vb;
        kv_bases(d, slot, pos, hk, &kb, &vb);
#if VEC == 8
        vstore8(LOAD_CACHE_VEC(k_cache, kb + col), 0, kx[j]);
        vstore8(LOAD_CACHE_VEC(v_cache, vb + col), 0, vx[j]);
#elif VEC == 4
        vstore4(LOAD_CACHE_VEC(k_cache, kb + col), 0, kx[j]);
        vstore4(LOAD_CACHE_VEC(v_cache, vb + col), 0, vx[j]);
#else
        kx[j][0] = LOAD_CACHE_ELEM(k_cache, kb + col);
        vx[j][0] = LOAD_CACHE_ELEM(v_cache, vb + col);
#endif
      }
    }
    /* partial dots over this chunk */
#pragma unroll
    for (int j = 0; j < KPT; ++j)
#pragma unroll
      for (int r = 0; r < BR; ++r) {
        float dot = 0.0f;
#pragma unroll
        for (int e = 0; e < VEC; ++e) dot = fma(qv[r][e], kx[j][e], dot);
        scratch[(r * BC + kg + j * S_KG) * PD_STRIDE + v] = dot;
      }
    barrier(CLK_LOCAL_MEM_FENCE);

    /* scores: chunks summed, then masks and transforms; hidden keys and rows past the end -inf */
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
        for (int w = 0; w < S_DV; ++w) dot += scratch[idx * PD_STRIDE + w];
        SeqView rv = sv;
        rv.slope = slope_row[r];
        s = final_score(dot, rg / d->group, key, &rv, &attn, 0);
      }
      s_tile[idx] = s;
    }
    barrier(CLK_LOCAL_MEM_FENCE);

    /* this stream's online softmax over its KPT keys */
#pragma unroll
    for (int r = 0; r < BR; ++r) {
      float s[KPT], mx = m[r];
#pragma unroll
      for (int j = 0; j < KPT; ++j) {
        s[j] = s_tile[r * BC + kg + j * S_KG];
        mx = max_keep_nan(mx, s[j]);
      }
      if (mx == NEG_INF) continue; /* nothing visible to this stream yet */
      const float alpha = EXP2_OF(m[r] - mx); /* 0 when m was -inf */
      m[r] = mx;
      l[r] *= alpha;
#pragma unroll
      for (int e = 0; e < VEC; ++e) acc[r][e] *= alpha;
#pragma unroll
      for (int j = 0; j < KPT; ++j) {
        const float p = EXP2_OF(s[j] - mx); /* 0 for hidden keys */
        l[r] += p;
#pragma unroll
        for (int e = 0; e < VEC; ++e) acc[r][e] = fma(p, vx[j][e], acc[r][e]);
      }
    }
  }

  /* epilogue: the S_KG streams left in scratch and merged by the LSE rule (decode_streams.cl) */
  END_KEY_GROUP_STREAMS(d, acc, m, l, scratch, S_KG, kg, col, v, work, b, hk, r0, r_end, split, lid);
}
