/* decode_cpu.cl: the split-KV decode kernel shaped for CPUs (PoCL), for few query rows per K/V
 * head (group * Nq = BR <= 8). A work-group is one work-item (PoCL runs it as straight-line code on
 * one core, with no work-item loops around barriers) owning one run of keys (a split) for HB K/V
 * heads (all of them where their state fits) and all BR rows of each head's GQA group. It takes
 * its keys in blocks of KB = 2·BC (32 with AVX-512), each block in three phases:
 *
 * 1. Q·Kᵀ key by key, reading the key's K row of all HB heads: in a dense cache HB·d contiguous
 *    elements, so K is read in address order, which the hardware prefetchers follow. A key's
 *    products are VW-wide vectors, one per (head, row), each K vector loaded once feeding the BR
 *    rows' FMAs; a transposing fold (two shuffles and an add a level, log2 VW levels) sums VW of
 *    them across their lanes into one score vector whose lane h·BRP + r is (head h, row r) (BRP: BR
 *    rounded up to a power of two; padded lanes are zero). Meanwhile the key's V row is prefetched,
 *    in address order, a line at a time between the K loads, for phase 3.
 * 2. The online softmax over the block, lane by lane (each lane is one row: running max and sum
 *    are vectors); a row's accumulators are rescaled only when its max grew (exactly: otherwise
 *    the factor is 1).
 * 3. P·V head by head: per group of CG column vectors the BR rows' accumulators stay in registers
 *    over the block's keys (each V vector loaded once, P broadcast), so they are loaded and stored
 *    once a block, not once a key; meanwhile the next group's V lines move from L2 into L1.
 *
 * Why this shape (measured on the 2-core EPYC, docs/perf/pocl-cpu.md): rows read in address order
 * stream at ~20 GB per CPU-second, a few keys of one head at a time at 10-11, a part of each row
 * at 7-8; accumulators updated in memory once a key cap P·V at ~12 (the stores), where registers
 * over a block of keys and the block's V prefetched in order reach ~16. Same arguments and
 * workspace output as the GPU kernels; grid (row blocks x splits, H_kv / HB, B) of single
 * work-items; splits are cut in blocks. */

#ifndef VW
#define VW 16 /* floats per vector; HEAD_DIM % VW == 0 (the host checks) */
#endif
#ifndef HB
#define HB 1 /* K/V heads per work-item (divides H_kv) */
#endif
#define DV (HEAD_DIM / VW) /* vectors per key row */
/* keys per block: 32 read 5 % more than 16 per CPU-second (two A/B pairs; phase 3's accumulator
 * loads and stores and phase 2's checks are per block), 64 no better */
#define KB (2 * BC)
#define BRP (BR <= 1 ? 1 : BR <= 2 ? 2 : BR <= 4 ? 4 : 8) /* the planner keeps BR <= 8 */
#define NSV ((HB * BRP + VW - 1) / VW)                   /* score vectors per key */
#define NL (NSV * VW)                                     /* score lanes per key */
/* P·V's column vectors per register block: BR·CG accumulators within 16 of the 32 registers */
#define CG (DV % 8 == 0 && 8 * BR <= 16 ? 8 : DV % 4 == 0 && 4 * BR <= 16 ? 4 : DV % 2 == 0 && 2 * BR <= 16 ? 2 : 1)
#define CPU_CAT_(a, b) a##b
#define CPU_CAT(a, b) CPU_CAT_(a, b)
#define CVEC CPU_CAT(float, VW)

/* VW consecutive storage elements at p + i as floats (vload needs element alignment only). fp16 on
 * AVX-512: one 16-wide vcvtph2ps, where PoCL 3.1's vload_half16 gives two 8-wide ones and an insert
 * (no cl_khr_fp16 here); oclgrind and other targets take vload_half. */
#if DTYPE == 0
#define CPU_VLOAD(p, i) CPU_CAT(vload, VW)(0, (p) + (i))
#elif DTYPE == 1 && VW == 16 && defined(__AVX512F__)
#define CPU_VLOAD(p, i) __builtin_ia32_vcvtph2ps512_mask(vload16(0, (__global const short*)((p) + (i))), (float16)(0.0f), (ushort)0xffff, 4)
#elif DTYPE == 1
#define CPU_VLOAD(p, i) CPU_CAT(vload_half, VW)(0, (p) + (i))
#else
#define CPU_VLOAD(p, i) CPU_CAT(as_float, VW)(CPU_CAT(convert_uint, VW)(CPU_CAT(vload, VW)(0, (p) + (i))) << 16)
#endif
#if CACHE_FP8
/* An fp8 cache (decode_common.cl's CACHE_DTYPE): VW bytes through the fp16 converter, as
 * decode_common.cl's cache_fp8x8 does for 8, but VW wide (on AVX-512 one vpmovzxbw, shifts and one
 * 16-wide vcvtph2ps) and without its e4m3 factor 256: the half holds the e4m3 value / 256 exactly
 * (subnormals included), and the 256 is folded with the descales into the query and the partial O
 * (CPU_FP8_SCALE), so a vector costs the shifts and the conversion, and for e4m3 the running
 * maximum that finds its NaN codes (below). e5m2 is the high byte of its half. */
#define CPU_USHORT CPU_CAT(ushort, VW)
#if CACHE_DTYPE == 3
#define CPU_FP8_SCALE 256.0f
#else
#define CPU_FP8_SCALE 1.0f
#endif
#if VW == 16 && defined(__AVX512F__)
#define CPU_HALVES(h) __builtin_ia32_vcvtph2ps512_mask(as_short16(h), (float16)(0.0f), (ushort)0xffff, 4)
#else
#define CPU_HALVES(h) CPU_CAT(vload_half, VW)(0, (const __private half*)&(h))
#endif
#define CPU_UCHAR CPU_CAT(uchar, VW)
#if CACHE_DTYPE == 3
/* e4m3's NaN codes (S.1111.111; the half reads them as 1.875 / 256) are found not by a select per
 * vector but by a running maximum of the loaded bytes doubled (the doubling drops the sign, so a
 * NaN code is 0xfe, the largest value a doubled byte can take: vpaddb and vpmaxub on 16 bytes, not
 * vpand, vpcmpeqb, a NaN broadcast and a masked move on 16 floats), tested once per key in phase 1
 * and once per block and column group in phase 3; where it saw one, an exact pass after the
 * products turns the affected scores (the heads whose K row holds a NaN code: all their rows) or
 * accumulator lanes (the columns where a V row of the block holds one: all rows) into NaN, which is
 * what the per-element decode gives (NaN absorbs every FMA after it, P = 0 included). */
#define CPU_NAN_CHECK 1
#define CPU_NAN_CODE(x) (((x) & (uchar)0x7f) == (uchar)0x7f)
inline CVEC cpu_fp8_load(__global const uchar* p, long i, CPU_UCHAR* seen) {
  const CPU_UCHAR x = CPU_CAT(vload, VW)(0, p + i);
  *seen = max(*seen, x + x);
  /* sign-extended and shifted by 7: the sign lands on bits 15 and 14, the magnitude under fp16's
   * exponent and mantissa; bit 14 cleared (vpmovsxbw, vpsllw, vpand) */
  const CPU_USHORT h = CPU_CAT(as_ushort, VW)(CPU_CAT(convert_short, VW)(CPU_CAT(as_char, VW)(x)) << (short)7) & (ushort)0xbfff;
  return CPU_HALVES(h);
}
/* whether a running maximum of cpu_fp8_load saw a NaN code */
#define CPU_NAN_SEEN(seen) any((seen) == (uchar)0xfe)
#define CPU_VLOAD_SEEN(p, i, seen) cpu_fp8_load((p), (i), &(seen))
#undef CPU_VLOAD /* (every e4m3 load goes through CPU_VLOAD_SEEN) */
#else
inline CVEC cpu_fp8_load(__global const uchar* p, long i) {
  const CPU_UCHAR x = CPU_CAT(vload, VW)(0, p + i);
  const CPU_USHORT h = CPU_CAT(convert_ushort, VW)(x) << (ushort)8;
  return CPU_HALVES(h);
}
#undef CPU_VLOAD
#define CPU_VLOAD(p, i) cpu_fp8_load((p), (i))
#endif
#endif
#ifndef CPU_NAN_CHECK
#define CPU_NAN_CHECK 0
#define CPU_VLOAD_SEEN(p, i, seen) CPU_VLOAD(p, i)
#endif
/* The transposing fold's levels: FOLDk(a, b) adds two shuffles of (a, b) so that the lanes that held
 * a's and b's partial sums are halved. Levels 1 and 2 stay within 128-bit lanes (vshufps), 3 and 4
 * move 128-bit chunks (vshuff32x4); after log2 VW levels on (f[2i], f[2i+1]) pairs, lane i holds
 * the full sum of f[i] (the identity order, checked by a simulation of the index lists). */
#define SV __builtin_shufflevector
#if VW == 16
#define CPU_FOLD1(a, b) (SV(a, b, 0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29) + SV(a, b, 2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31))
#define CPU_FOLD2(a, b) (SV(a, b, 0, 2, 16, 18, 4, 6, 20, 22, 8, 10, 24, 26, 12, 14, 28, 30) + SV(a, b, 1, 3, 17, 19, 5, 7, 21, 23, 9, 11, 25, 27, 13, 15, 29, 31))
#define CPU_FOLD3(a, b) (SV(a, b, 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27) + SV(a, b, 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31))
#define CPU_FOLD4(a, b) CPU_FOLD3(a, b)
#elif VW == 8
#define CPU_FOLD1(a, b) (SV(a, b, 0, 1, 8, 9, 4, 5, 12, 13) + SV(a, b, 2, 3, 10, 11, 6, 7, 14, 15))
#define CPU_FOLD2(a, b) (SV(a, b, 0, 2, 8, 10, 4, 6, 12, 14) + SV(a, b, 1, 3, 9, 11, 5, 7, 13, 15))
#define CPU_FOLD3(a, b) (SV(a, b, 0, 1, 2, 3, 8, 9, 10, 11) + SV(a, b, 4, 5, 6, 7, 12, 13, 14, 15))
#define CPU_FOLD4(a, b) (a) /* unused */
#else
#define CPU_FOLD1(a, b) (SV(a, b, 0, 1, 4, 5) + SV(a, b, 2, 3, 6, 7))
#define CPU_FOLD2(a, b) (SV(a, b, 0, 2, 4, 6) + SV(a, b, 1, 3, 5, 7))
#define CPU_FOLD3(a, b) (a) /* unused */
#define CPU_FOLD4(a, b) (a)
#endif

#ifndef CPU_PREFETCH
#define CPU_PREFETCH 0 /* 1 (CPU devices): phase 1 prefetches the block's V rows for phase 3 */
#endif


__kernel __attribute__((reqd_work_group_size(1, 1, 1)))
void decode_cpu(__global const STORAGE_T* q, __global const CACHE_T* k_cache, __global const CACHE_T* v_cache,
                __global float* work, __global const int* cache_seqlens, __global const int* block_table,
                __global const int* batch_idx, __global const float* rot_cos, __global const float* rot_sin,
                __global const float* alibi_slopes, const DecodeArgs dargs, const AttnArgs attn CACHE_DESCALE_PARAMS) {
  const DecodeArgs* d = &dargs;
  const int split = get_group_id(0) % d->num_splits, r0 = get_group_id(0) / d->num_splits * BR;
  const int hk0 = get_group_id(1) * HB, b = get_group_id(2);
  const int r_end = min(r0 + BR, d->rows);

  const int slot_row = cache_row(d, batch_idx, b);
  const int len = slot_row < 0 ? 0 : cached_len(d, cache_seqlens, b);
  const SeqView sv = decode_view(d, &attn, len, slot_row);
  const int nk = sv.seqlen_k;

  /* prologue: per (head, row) the scaled (and rotated) query and the accumulator, as vectors; per
   * score vector the running max and sum of its lanes' rows */
  CVEC qv[HB][BR][DV], acc[HB][BR][DV], m[NSV], l[NSV];
  float slope[NL];
  for (int i = 0; i < NL; ++i) slope[i] = 0.0f;
  for (int h = 0; h < HB; ++h)
    for (int r = 0; r < BR; ++r) {
      float row[HEAD_DIM];
      for (int c = 0; c < HEAD_DIM; ++c)
        row[c] = query_value(d, q, b, hk0 + h, r0 + r, r_end, c, len, rot_cos, rot_sin);
#if CACHE_FP8
      /* q . (kd * k8): the descale (and CPU_FP8_SCALE) once per query element */
      const float kd = CACHE_DESCALE(k_descale, d, b, hk0 + h) * CPU_FP8_SCALE;
#endif
      for (int v = 0; v < DV; ++v) {
        qv[h][r][v] = CPU_CAT(vload, VW)(v, row);
#if CACHE_FP8
        qv[h][r][v] *= kd;
#endif
        acc[h][r][v] = (CVEC)(0.0f);
      }
      slope[h * BRP + r] = row_slope(d, alibi_slopes, b, hk0 + h, r0 + r);
    }
  for (int n = 0; n < NSV; ++n) {
    m[n] = (CVEC)(NEG_INF);
    l[n] = (CVEC)(0.0f);
  }

  int t_begin, t_end;
  split_run(d, &attn, &sv, r0, r_end, KB, split, &t_begin, &t_end);
  const long k_head = d->k_offset + (long)hk0 * d->k_head_stride, v_head = d->v_offset + (long)hk0 * d->v_head_stride;
  /* the rows' queries are i_lo ... i_hi: a key is plain (no row's score needs a per-lane pass) when
   * it is in band for both (causal and window bounds are monotonic in the row) */
  const int i_lo = r0 / d->group, i_hi = (r_end - 1) / d->group;
#if PAGED
  int page = t_begin * KB / d->page_size, off = t_begin * KB - page * d->page_size;
  int entry = t_begin * KB < nk ? page_entry(d, block_table, b, page) : -1;
  int next_entry = (page + 1) * d->page_size < nk ? page_entry(d, block_table, b, page + 1) : -1;
#else
  (void)block_table;
  const long k_row = k_head + (long)max(slot_row, 0) * d->k_batch_stride;
  const long v_row = v_head + (long)max(slot_row, 0) * d->v_batch_stride;
#endif

  for (int kt = t_begin; kt < t_end; ++kt) {
    const int k0 = kt * KB, nj = min(KB, nk - k0); /* keys past nk are hidden from every row */
    long vb[KB];              /* the keys' V offsets at head hk0; -1: hidden (past nk, off the pool) */
    CVEC s[KB][NSV];          /* the block's scores, lane h·BRP + r */

    /* phase 1: Q·Kᵀ, key by key and head by head (address order) */
    for (int j = 0; j < KB; ++j) {
      const int pos = k0 + j;
#if PAGED
      if ((j > 0 || kt > t_begin) && ++off == d->page_size) { /* the next page, without a division */
        off = 0;
        ++page;
        entry = next_entry;
        next_entry = (page + 1) * d->page_size < nk ? page_entry(d, block_table, b, page + 1) : -1;
      }
#if CPU_PREFETCH
      /* the next page's first 4 KiB of K (at HB = H_kv its first rows), 4 lines a key in the current
       * page's first 16 keys: the hardware prefetchers lose the K stream at every page of the pool
       * (pages of 16: 10.6-11.4 -> 11.5-11.9 GB per CPU-second in three A/B pairs, 8k keys, B 8) */
      if (next_entry >= 0 && off * 4 < 64)
        for (int i = 0; i < 4; ++i)
          __builtin_prefetch((const void*)((ulong)(k_cache + k_head + (long)next_entry * d->k_batch_stride) + (off * 4 + i) * 64), 0, 2);
#endif
      const bool seen = j < nj && entry >= 0;
      const long kb = k_head + (long)entry * d->k_batch_stride + (long)off * d->k_seq_stride;
      vb[j] = seen ? v_head + (long)entry * d->v_batch_stride + (long)off * d->v_seq_stride : -1;
#else
      const bool seen = j < nj;
      const long kb = k_row + (long)pos * d->k_seq_stride;
      vb[j] = seen ? v_row + (long)pos * d->v_seq_stride : -1;
#endif
      if (!seen) {
        #pragma unroll
        for (int n = 0; n < NSV; ++n) s[j][n] = (CVEC)(NEG_INF);
        continue;
      }
#if CPU_NAN_CHECK
      CPU_UCHAR k_seen = (CPU_UCHAR)(0); /* this key's bytes doubled, their running maximum */
#endif
      /* the products of score vector n, folded as soon as its heads are done */
      #pragma unroll
      for (int n = 0; n < NSV; ++n) {
        CVEC f[VW];
        #pragma unroll
        for (int i = 0; i < VW; ++i) f[i] = (CVEC)(0.0f);
        #pragma unroll
        for (int h = n * VW / BRP; h < HB && h * BRP < (n + 1) * VW; ++h)
          #pragma unroll
          for (int v = 0; v < DV; ++v) {
#if CPU_PREFETCH
            /* the key's V row of head h into L2 (prefetcht1), a 64-byte line per prefetch in address
             * order, spread over the head's K loads: 32 prefetches at the start of each key (8 heads of
             * 256 bytes) filled the miss buffers and stalled the K loads behind them (13-16 % of the
             * samples on the prefetches; spread: 11.5-11.9 -> 13.2-13.3 GB per CPU-second, 8k keys,
             * B 8, fp16). OpenCL's prefetch() does nothing in PoCL 3.1, so clang's builtin is used,
             * through an integer (OpenCL C forbids casting the global pointer to a private one; on a
             * CPU device both are the same flat address). Only on CPU devices: oclgrind, say, cannot
             * run llvm.prefetch. */
            if (v * VW * (int)sizeof(CACHE_T) % 64 == 0)
              __builtin_prefetch((const void*)((ulong)(v_cache + vb[j] + h * d->v_head_stride + v * VW)), 0, 2);
#endif
            const CVEC kv = CPU_VLOAD_SEEN(k_cache, kb + h * d->k_head_stride + v * VW, k_seen);
            #pragma unroll
            for (int r = 0; r < BR; ++r) {
              const int i = h * BRP + r - n * VW;
              if (i >= 0 && i < VW) f[i] = fma(qv[h][r][v], kv, f[i]);
            }
          }
        /* one loop per level, each of constant length, so all unroll and f stays in registers */
        #pragma unroll
        for (int i = 0; i < VW / 2; ++i) f[i] = CPU_FOLD1(f[2 * i], f[2 * i + 1]);
        #pragma unroll
        for (int i = 0; i < VW / 4; ++i) f[i] = CPU_FOLD2(f[2 * i], f[2 * i + 1]);
        #pragma unroll
        for (int i = 0; i < VW / 8; ++i) f[i] = CPU_FOLD3(f[2 * i], f[2 * i + 1]);
        #pragma unroll
        for (int i = 0; i < VW / 16; ++i) f[i] = CPU_FOLD4(f[2 * i], f[2 * i + 1]);
        s[j][n] = f[0];
      }
#if CPU_NAN_CHECK
      if (CPU_NAN_SEEN(k_seen)) { /* rare: the scores of each head whose K row holds a NaN code are NaN */
        float t[NL];
        #pragma unroll
        for (int n = 0; n < NSV; ++n) CPU_CAT(vstore, VW)(s[j][n], n, t);
        for (int h = 0; h < HB; ++h) {
          bool nan_code = false;
          for (int v = 0; v < DV; ++v)
            nan_code |= any(CPU_NAN_CODE(CPU_CAT(vload, VW)(0, k_cache + kb + h * d->k_head_stride + v * VW)));
          if (nan_code)
            for (int r = 0; r < BR; ++r) t[h * BRP + r] = NAN;
        }
        #pragma unroll
        for (int n = 0; n < NSV; ++n) s[j][n] = CPU_CAT(vload, VW)(n, t);
      }
#endif
#if SCORE_TRANSFORM
      const bool plain = false;
#else
      const bool plain = !KEY_OUT_OF_BAND(i_lo, pos, nk, sv.shift, &attn) && !KEY_OUT_OF_BAND(i_hi, pos, nk, sv.shift, &attn);
#endif
      if (!plain) { /* masks and transforms (common.cl's final_score), lane by lane; padded lanes -inf */
        float t[NL];
        #pragma unroll
        for (int n = 0; n < NSV; ++n) CPU_CAT(vstore, VW)(s[j][n], n, t);
        SeqView rv = sv;
        for (int i = 0; i < NL; ++i) {
          const int h = i / BRP, r = i % BRP;
          const bool row = h < HB && r < BR && r0 + r < r_end;
          rv.slope = slope[i];
          t[i] = row ? final_score(t[i], (r0 + r) / d->group, pos, &rv, &attn, 0) : NEG_INF;
        }
        #pragma unroll
        for (int n = 0; n < NSV; ++n) s[j][n] = CPU_CAT(vload, VW)(n, t);
      }
    }

    /* phase 2: the online softmax over the block, lane by lane (in the plain case padded lanes see
     * score 0: harmless, never written); p: the block's probabilities by (key, lane) */
    float p[KB][NL];
    #pragma unroll
    for (int n = 0; n < NSV; ++n) {
      CVEC mx = s[0][n];
      for (int j = 1; j < KB; ++j) mx = fmax(mx, s[j][n]);
      const CVEC m_new = fmax(m[n], mx);
      if (any(isgreater(m_new, m[n]))) { /* a row's max grew: rescale its sum and output (by 1 where not) */
        const CVEC alpha = select(EXP2_OF(m[n] - m_new), (CVEC)(1.0f), m_new == m[n]);
        float a[VW];
        CPU_CAT(vstore, VW)(alpha, 0, a);
        l[n] *= alpha;
        m[n] = m_new;
        for (int i = 0; i < VW; ++i) {
          const int h = (n * VW + i) / BRP, r = (n * VW + i) % BRP;
          if (h < HB && r < BR && a[i] != 1.0f)
            for (int v = 0; v < DV; ++v) acc[h][r][v] *= a[i];
        }
      }
      /* a row that has seen nothing (max -inf) has only -inf scores: P = 0 */
      const CVEC m_use = select(m_new, (CVEC)(0.0f), m_new == (CVEC)(NEG_INF));
      CVEC sum = (CVEC)(0.0f);
      for (int j = 0; j < KB; ++j) {
        const CVEC pv = EXP2_OF(s[j][n] - m_use);
        sum += pv;
        CPU_CAT(vstore, VW)(pv, n, p[j]);
      }
      l[n] += sum;
    }

    /* phase 3: P·V, per (head, group of CG column vectors) with the rows' accumulators in
     * registers over the block's keys */
    for (int h = 0; h < HB; ++h)
      #pragma unroll
      for (int c0 = 0; c0 < DV; c0 += CG) {
        CVEC a[BR][CG];
        #pragma unroll
        for (int r = 0; r < BR; ++r)
          #pragma unroll
          for (int c = 0; c < CG; ++c) a[r][c] = acc[h][r][c0 + c];
#if CPU_NAN_CHECK
        CPU_UCHAR v_seen = (CPU_UCHAR)(0); /* the block's V bytes of these columns doubled, their running maximum */
#endif
        for (int j = 0; j < nj; ++j) {
          if (vb[j] < 0) continue;
          CVEC pr[BR];
          #pragma unroll
          for (int r = 0; r < BR; ++r) pr[r] = (CVEC)(p[j][h * BRP + r]);
#if CPU_PREFETCH
          { /* the key's next column group (or the next head's first) from L2 into L1 (prefetcht0),
             * so that the next pass over the block finds it there: phase 3's loads waited on L2
             * (12.3-13.3 -> 13.0-14.6 GB per CPU-second in five A/B pairs, 8k keys, B 8, fp16) */
            const long nxt = c0 + CG < DV ? vb[j] + h * d->v_head_stride + (c0 + CG) * VW : vb[j] + (h + 1) * d->v_head_stride;
            if (c0 + CG < DV || h + 1 < HB)
              #pragma unroll
              for (int c = 0; c < CG * VW * (int)sizeof(CACHE_T); c += 64)
                __builtin_prefetch((const void*)((ulong)(v_cache + nxt) + c), 0, 3);
          }
#endif
          #pragma unroll
          for (int c = 0; c < CG; ++c) {
            const CVEC vv = CPU_VLOAD_SEEN(v_cache, vb[j] + h * d->v_head_stride + (c0 + c) * VW, v_seen);
            #pragma unroll
            for (int r = 0; r < BR; ++r) a[r][c] = fma(pr[r], vv, a[r][c]);
          }
        }
#if CPU_NAN_CHECK
        if (CPU_NAN_SEEN(v_seen)) /* rare: a column where a V row of the block holds a NaN code is NaN in every row */
          #pragma unroll
          for (int c = 0; c < CG; ++c) { /* (unrolled over c and r: a stays in registers in the loop above) */
            CPU_CAT(int, VW) nan_code = (CPU_CAT(int, VW))(0);
            for (int j = 0; j < nj; ++j)
              if (vb[j] >= 0)
                nan_code |= CPU_CAT(convert_int, VW)(CPU_NAN_CODE(CPU_CAT(vload, VW)(0, v_cache + vb[j] + h * d->v_head_stride + (c0 + c) * VW)));
            #pragma unroll
            for (int r = 0; r < BR; ++r) a[r][c] = select(a[r][c], (CVEC)(NAN), nan_code);
          }
#endif
        #pragma unroll
        for (int r = 0; r < BR; ++r)
          #pragma unroll
          for (int c = 0; c < CG; ++c) acc[h][r][c0 + c] = a[r][c];
      }
  }

  /* epilogue: this split's normalised partial O and LSE per (head, row) */
  __global float* part_o = work + PART_O_BASE(d);
  float mr[NL], lr[NL];
  for (int n = 0; n < NSV; ++n) {
    CPU_CAT(vstore, VW)(m[n], n, mr);
    CPU_CAT(vstore, VW)(l[n], n, lr);
  }
  for (int h = 0; h < HB; ++h)
    for (int r = 0; r < BR; ++r) {
      const int rg = r0 + r, i = h * BRP + r;
      if (rg >= r_end) continue;
      const long row = PART_ROW(d, b, hk0 + h, rg);
#if CACHE_FP8
      /* P . (vd * v8): the descale (and CPU_FP8_SCALE) once per accumulator */
      const float inv = (lr[i] > 0.0f ? 1.0f / lr[i] : 0.0f) * (CACHE_DESCALE(v_descale, d, b, hk0 + h) * CPU_FP8_SCALE);
#else
      const float inv = lr[i] > 0.0f ? 1.0f / lr[i] : 0.0f;
#endif
      for (int v = 0; v < DV; ++v)
        CPU_CAT(vstore, VW)(acc[h][r][v] * inv, 0, part_o + (row * d->num_splits + split) * HEAD_DIM + v * VW);
      work[row * d->num_splits + split] = row_lse(mr[i], lr[i]); /* NaN kept, as the forward */
    }
}

/* decode_cpu_merge: decode_merge.cl's LSE rule (O = Σ e^(L_s - L_max) O_s / Σ e^(L_s - L_max),
 * L = L_max + log Σ, splits with L_s = -inf skipped, O = 0 and L = -inf where none saw a key, NaN
 * where one met a NaN) with
 * one work-item per (query row, head, sequence), as PoCL runs best: each split's weight is taken
 * once and its partial output added as VW-wide vectors. decode_merge, shaped for GPUs, takes the
 * weight per column (d·splits exps a row) in work-groups of 64 work-items, which PoCL runs as
 * loops: 20 % of the attention kernel's CPU time at B 1, 8k keys, 16 splits. */
__kernel __attribute__((reqd_work_group_size(1, 1, 1)))
void decode_cpu_merge(__global const float* work, __global STORAGE_T* o, __global float* lse, const DecodeArgs args) {
  const DecodeArgs* d = &args;
  const int i = get_group_id(0), h = get_group_id(1), b = get_group_id(2);
  const int splits = d->num_splits;
  const long row = ((long)b * d->heads + h) * d->seqlen_q + i;
  __global const float* row_lse = work + row * splits; /* decode_split.cl's layout */
  __global const float* row_o = work + PART_O_BASE(d) + row * splits * HEAD_DIM;
  const long o_base = d->o_offset + (long)b * d->o_batch_stride + (long)i * d->o_seq_stride + (long)h * d->o_head_stride;

  const float mx = splits_max_lse(row_lse, splits);
  CVEC acc[DV];
  for (int v = 0; v < DV; ++v) acc[v] = (CVEC)(0.0f);
  float sum = 0.0f;
  if (mx != NEG_INF)
    for (int s = 0; s < splits; ++s) {
      const float ls = row_lse[s];
      if (ls == NEG_INF) continue; /* an empty split: its O is never read */
      const float w = exp(ls - mx);
      sum += w;
      for (int v = 0; v < DV; ++v) acc[v] = fma((CVEC)(w), CPU_CAT(vload, VW)(v, row_o + (long)s * HEAD_DIM), acc[v]);
    }
  const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
  float out[HEAD_DIM];
  for (int v = 0; v < DV; ++v) CPU_CAT(vstore, VW)(acc[v] * inv, v, out);
  for (int c = 0; c < HEAD_DIM; ++c) STORE_ELEM(o, o_base + c, out[c]);
  if (d->write_lse) lse[row] = mx == NEG_INF ? NEG_INF : mx + log(sum);
}
