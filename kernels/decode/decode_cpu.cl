/* decode_cpu.cl: the split-KV decode kernel shaped for CPUs (PoCL), for few query rows per K/V
 * head (group * Nq <= 8). A work-group is one work-item (PoCL runs it as straight-line code on one
 * core, with no work-item loops around barriers), and it takes HB K/V heads at once: a cache row
 * holds every head of one key next to each other, so walking the keys for HB heads reads memory
 * in order, where one head alone would touch a new 4 KiB page per key (TLB misses and no
 * hardware prefetch: a third of the time went there). Vectors come from the code: a key row of a
 * head is DV vectors of VW floats (the device's preferred width), each K vector feeding the BR
 * rows' FMAs into one product vector per (row, key); KB = VW keys form a block, whose VW product
 * vectors per row are summed across their lanes by a transposing fold (.even + .odd, log2 VW
 * levels), leaving one vector of VW scores per row, key j in lane j. The online softmax runs on
 * those vectors, then each key's V vectors feed the rows' accumulators, the key's P broadcast.
 * The block's page and offset advance per key without a division. Same arguments and workspace
 * output as the GPU kernels; grid (row blocks x splits, H_kv / HB, B) of single work-items. */

#ifndef VW
#define VW 16 /* floats per vector; HEAD_DIM % VW == 0 (the host checks) */
#endif
#ifndef HB
#define HB 1 /* K/V heads per work-item (divides H_kv) */
#endif
#define KB VW                 /* keys per block: one score vector per row */
#define DV (HEAD_DIM / VW)    /* vectors per key row */
#define CPU_CAT_(a, b) a##b
#define CPU_CAT(a, b) CPU_CAT_(a, b)
#define CVEC CPU_CAT(float, VW)

/* VW consecutive storage elements at p + i as floats (vload needs element alignment only). */
#if DTYPE == 0
#define CPU_VLOAD(p, i) CPU_CAT(vload, VW)(0, (p) + (i))
#elif DTYPE == 1
#define CPU_VLOAD(p, i) CPU_CAT(vload_half, VW)(0, (p) + (i))
#else
#define CPU_VLOAD(p, i) CPU_CAT(as_float, VW)(CPU_CAT(convert_uint, VW)(CPU_CAT(vload, VW)(0, (p) + (i))) << 16)
#endif
/* Two vectors' adjacent lanes summed pairwise, a's then b's: one level of the transposing fold. */
#define CPU_FOLD(a, b) ((CVEC)((a).even + (a).odd, (b).even + (b).odd))

#ifndef CPU_PREFETCH
#define CPU_PREFETCH 0 /* 1 (CPU devices): software prefetch of the next block's rows */
#endif

#if CPU_PREFETCH
/* A software prefetch of one head's key row at p (each 64-byte line). OpenCL's prefetch() does
 * nothing in PoCL 3.1, so clang's builtin is used; it takes a private-space pointer, which on a
 * CPU device is the same flat address (through an integer: OpenCL C forbids the direct cast).
 * Only on CPU devices: oclgrind, say, cannot run llvm.prefetch. */
inline void cpu_prefetch_row(__global const STORAGE_T* p) {
  for (int c = 0; c < HEAD_DIM * (int)sizeof(STORAGE_T); c += 64) __builtin_prefetch((const void*)((ulong)p + c));
}
#endif

inline float cpu_vmax(CVEC x) {
  float m = x.s0;
  float t[VW];
  CPU_CAT(vstore, VW)(x, 0, t);
  for (int i = 1; i < VW; ++i) m = fmax(m, t[i]);
  return m;
}

inline float cpu_vsum(CVEC x) {
  float t[VW];
  CPU_CAT(vstore, VW)(x, 0, t);
  float s = 0.0f;
  for (int i = 0; i < VW; ++i) s += t[i];
  return s;
}

__kernel __attribute__((reqd_work_group_size(1, 1, 1)))
void decode_cpu(__global const STORAGE_T* q, __global const STORAGE_T* k_cache, __global const STORAGE_T* v_cache,
                __global float* work, __global const int* cache_seqlens, __global const int* block_table,
                __global const int* batch_idx, __global const float* rot_cos, __global const float* rot_sin,
                __global const float* alibi_slopes, const DecodeArgs dargs, const AttnArgs attn) {
  const DecodeArgs* d = &dargs;
  const int split = get_group_id(0) % d->num_splits, r0 = get_group_id(0) / d->num_splits * BR;
  const int hk0 = get_group_id(1) * HB, b = get_group_id(2);
  const int r_end = min(r0 + BR, d->rows);

  const int slot_row = cache_row(d, batch_idx, b);
  const int len = slot_row < 0 ? 0 : cached_len(d, cache_seqlens, b);
  const SeqView sv = decode_view(d, &attn, len, slot_row);
  const int nk = sv.seqlen_k;

  /* prologue: the rows' scaled (and rotated) queries, as vectors, for each of the HB heads */
  CVEC qv[HB][BR][DV], acc[HB][BR][DV];
  float m[HB][BR], l[HB][BR], slope[HB][BR];
  for (int h = 0; h < HB; ++h)
    #pragma unroll
    for (int r = 0; r < BR; ++r) {
      float row[HEAD_DIM];
      for (int c = 0; c < HEAD_DIM; ++c)
        row[c] = query_value(d, q, b, hk0 + h, r0 + r, r_end, c, len, rot_cos, rot_sin);
      #pragma unroll
      for (int v = 0; v < DV; ++v) {
        qv[h][r][v] = CPU_CAT(vload, VW)(v, row);
        acc[h][r][v] = (CVEC)(0.0f);
      }
      m[h][r] = NEG_INF;
      l[h][r] = 0.0f;
      slope[h][r] = row_slope(d, alibi_slopes, b, hk0 + h, r0 + r);
    }

  int t_begin, t_end;
  split_run(d, &attn, &sv, r0, r_end, KB, split, &t_begin, &t_end);
  const long k_head = d->k_offset + (long)hk0 * d->k_head_stride, v_head = d->v_offset + (long)hk0 * d->v_head_stride;
#if !PAGED
  (void)block_table;
  const long k_row = k_head + (long)max(slot_row, 0) * d->k_batch_stride;
  const long v_row = v_head + (long)max(slot_row, 0) * d->v_batch_stride;
#endif

  for (int kt = t_begin; kt < t_end; ++kt) {
    const int k0 = kt * KB;
    long kb[KB], vb[KB]; /* element offsets of the block's keys at head hk0; -1: hidden (past the end, off the pool) */
#if PAGED
    int page = k0 / d->page_size, off = k0 - page * d->page_size;
    int entry = k0 < nk ? page_entry(d, block_table, b, page) : -1;
#endif
    bool any_hidden = false;
    for (int j = 0; j < KB; ++j) {
      const int pos = k0 + j;
#if PAGED
      if (j > 0 && ++off == d->page_size) {
        off = 0;
        ++page;
        entry = pos < nk ? page_entry(d, block_table, b, page) : -1;
      }
      const bool seen = pos < nk && entry >= 0;
      kb[j] = seen ? k_head + (long)entry * d->k_batch_stride + (long)off * d->k_seq_stride : -1;
      vb[j] = seen ? v_head + (long)entry * d->v_batch_stride + (long)off * d->v_seq_stride : -1;
#else
      kb[j] = pos < nk ? k_row + (long)pos * d->k_seq_stride : -1;
      vb[j] = pos < nk ? v_row + (long)pos * d->v_seq_stride : -1;
#endif
      any_hidden |= kb[j] < 0;
    }

#if CPU_PREFETCH
    /* the next block's rows requested now (the same page offsets one block on; paged: where the
     * block stays in its page), so the loads below find them on their way */
    for (int j = 0; j < KB; ++j)
#if PAGED
      if (kb[j] >= 0 && (k0 + j) % d->page_size + KB < d->page_size && k0 + j + KB < nk)
#else
      if (k0 + j + KB < nk)
#endif
        for (int h = 0; h < HB; ++h) {
          cpu_prefetch_row(k_cache + kb[j] + (long)KB * d->k_seq_stride + h * d->k_head_stride);
          cpu_prefetch_row(v_cache + vb[j] + (long)KB * d->v_seq_stride + h * d->v_head_stride);
        }
#endif

    /* products, key by key and head by head (the order of memory): one vector per (head, row, key) */
    CVEC prod[HB][BR][KB];
    for (int j = 0; j < KB; ++j)
      for (int h = 0; h < HB; ++h) {
        CVEC pr[BR];
        #pragma unroll
        for (int r = 0; r < BR; ++r) pr[r] = (CVEC)(0.0f);
        if (kb[j] >= 0)
          #pragma unroll
          for (int v = 0; v < DV; ++v) {
            const CVEC kv = CPU_VLOAD(k_cache, kb[j] + h * d->k_head_stride + v * VW);
            #pragma unroll
            for (int r = 0; r < BR; ++r) pr[r] = fma(qv[h][r][v], kv, pr[r]);
          }
        #pragma unroll
        for (int r = 0; r < BR; ++r) prod[h][r][j] = pr[r];
      }

    /* per head and row: the fold to one score vector, masks where needed, the online softmax */
    float p[HB][BR][KB];
    for (int h = 0; h < HB; ++h)
      #pragma unroll
      for (int r = 0; r < BR; ++r) {
        #pragma unroll
        for (int n = KB / 2; n >= 1; n /= 2)
          #pragma unroll
          for (int i = 0; i < n; ++i) prod[h][r][i] = CPU_FOLD(prod[h][r][2 * i], prod[h][r][2 * i + 1]);
        CVEC s = prod[h][r][0];
#if CAUSAL || WINDOW || SCORE_TRANSFORM
        const bool plain = false;
#else
        const bool plain = !any_hidden;
#endif
        if (!plain) { /* hidden keys, masks and transforms (common.cl's final_score), key by key */
          float t[VW];
          CPU_CAT(vstore, VW)(s, 0, t);
          SeqView rv = sv;
          rv.slope = slope[h][r];
          for (int j = 0; j < KB; ++j)
            t[j] = kb[j] >= 0 && r0 + r < r_end ? final_score(t[j], (r0 + r) / d->group, k0 + j, &rv, &attn, 0) : NEG_INF;
          s = CPU_CAT(vload, VW)(0, t);
        }
        const float mx = fmax(m[h][r], cpu_vmax(s));
        if (mx == NEG_INF) { /* nothing visible yet: P = 0 */
          for (int j = 0; j < KB; ++j) p[h][r][j] = 0.0f;
          continue;
        }
        const float alpha = EXP2_OF(m[h][r] - mx); /* 0 when m was -inf */
        const CVEC pv = EXP2_OF(s - (CVEC)(mx));
        m[h][r] = mx;
        l[h][r] = l[h][r] * alpha + cpu_vsum(pv);
        #pragma unroll
        for (int v = 0; v < DV; ++v) acc[h][r][v] *= alpha;
        CPU_CAT(vstore, VW)(pv, 0, p[h][r]);
      }

    /* P times V: per (head, column vector) the rows' accumulators stay in registers over the
     * block's keys (a block's V rows, 16 keys x HB heads, stay in L1/L2 across the column loop) */
    for (int h = 0; h < HB; ++h)
      #pragma unroll
      for (int v = 0; v < DV; ++v) {
        CVEC ar[BR];
        #pragma unroll
        for (int r = 0; r < BR; ++r) ar[r] = acc[h][r][v];
        for (int j = 0; j < KB; ++j)
          if (vb[j] >= 0) {
            const CVEC vv = CPU_VLOAD(v_cache, vb[j] + h * d->v_head_stride + v * VW);
            #pragma unroll
            for (int r = 0; r < BR; ++r) ar[r] = fma((CVEC)(p[h][r][j]), vv, ar[r]);
          }
        #pragma unroll
        for (int r = 0; r < BR; ++r) acc[h][r][v] = ar[r];
      }
  }

  /* epilogue: this split's normalised partial O and LSE per (head, row) */
  __global float* part_o = work + PART_O_BASE(d);
  for (int h = 0; h < HB; ++h)
    #pragma unroll
    for (int r = 0; r < BR; ++r) {
      const int rg = r0 + r;
      if (rg >= r_end) continue;
      const long row = PART_ROW(d, b, hk0 + h, rg);
      const float inv = l[h][r] > 0.0f ? 1.0f / l[h][r] : 0.0f;
      #pragma unroll
      for (int v = 0; v < DV; ++v)
        CPU_CAT(vstore, VW)(acc[h][r][v] * inv, 0, part_o + (row * d->num_splits + split) * HEAD_DIM + v * VW);
      work[row * d->num_splits + split] = l[h][r] > 0.0f ? LSE_OF(m[h][r], l[h][r]) : NEG_INF;
    }
}
