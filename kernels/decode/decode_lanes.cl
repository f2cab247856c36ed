/* decode_lanes.cl: the split-KV kernel for decode (group * Nq <= 8 rows per K/V head) shaped for
 * NVIDIA GPUs: no barrier in the main loop (and no __local but in the async form's ring). A key's head dimension lies on L_DV
 * adjacent work-items (one VEC-wide, 16-byte chunk each; L_DV a power of two <= 32, so the lanes
 * of one key sit in one warp), and each work-item walks KPT consecutive keys of every tile,
 * loading their K and V chunks first (2 * KPT independent 16-byte loads in flight), then forming
 * partial dots with its query chunks for every row of the GQA group (so each K/V byte is read once
 * per work-group) and summing them over the key's lanes by a butterfly: warp shuffles
 * (shfl.sync.bfly, inline PTX) with LANE_SHUFFLE, else partial dots through __local with two
 * barriers per tile (the portable form, for tests on other devices). Every lane then holds the
 * full scores of its keys and runs its own online softmax over them; the key groups' streams are
 * merged by the LSE rule once, at the end, through __local. With LANE_PIPELINE the next tile's
 * loads are issued before this tile's arithmetic, so each warp keeps its loads in flight while it
 * computes (twice the K/V registers). A paged tile's block-table entry is read once per lane and
 * tile (again only where a lane's keys cross a page), a tile before its loads need it. Same grid,
 * arguments and workspace output as decode_split.cl and decode_stream.cl. */

#ifndef KPT
#define KPT 4 /* consecutive keys per work-item per tile */
#endif
#ifndef LANE_SHUFFLE
#define LANE_SHUFFLE 0
#endif
#ifndef LANE_PIPELINE
#define LANE_PIPELINE 0 /* 1: the next tile's loads are issued before this tile's arithmetic (registers x2) */
#endif
#ifndef LANE_WIDE
#define LANE_WIDE 0 /* 1: the wide form (below lane_issue_wide): its page cursor; the async form's base (LANE_ASYNC) */
#endif
#ifndef LANE_PAGE_KPT
#define LANE_PAGE_KPT 0 /* wide, paged: 1 where the host knows page_size % KPT == 0 (a lane's keys never cross a page) */
#endif
#ifndef LANE_PREFETCH
#define LANE_PREFETCH 0 /* wide, NVIDIA: the K/V lines of the tile this many tiles ahead prefetched into L2 (0: none) */
#endif
#ifndef LANE_ASYNC
#define LANE_ASYNC 0 /* wide, NVIDIA, 16-byte loads: K/V tiles arrive by cp.async in a ring of this many stages in __local (0: loads into registers) */
#endif
#if VEC == 8
#define CAT_VEC_FLOAT float8
#else
#define CAT_VEC_FLOAT float4
#endif
#define L_DV (HEAD_DIM / VEC)     /* lanes per key (the host makes this a power of two <= 32) */
#define L_KG (WG_SIZE / L_DV)     /* key groups: BC = L_KG * KPT */
#define L_PD (L_DV + 1)           /* portable reduction: one (row, key)'s partial dots, padded */
#define L_STREAMS (L_KG * BR * (HEAD_DIM + 2))
#if LANE_SHUFFLE
#define L_SCRATCH L_STREAMS
#else
#define L_SCRATCH (BR * BC * L_PD > L_STREAMS ? BR * BC * L_PD : L_STREAMS)
#endif

#if LANE_SHUFFLE
/* x plus its value on the lane `mask` away (all 32 lanes take part: the loop trip counts are the
 * same for the whole work-group). */
inline float lane_xor_add(float x, int mask) {
  float y;
  asm volatile("shfl.sync.bfly.b32 %0, %1, %2, 0x1f, 0xffffffff;" : "=f"(y) : "f"(x), "r"(mask));
  return x + y;
}
#endif

/* A lane's VEC cache elements as loaded (lane_raw: 16-bit elements stay packed, 4 registers for
 * 8, until lane_widen makes floats of them at their use), by one 16-byte load (fp16/bf16 at VEC 4:
 * 8 bytes): the host picks VEC only where offsets and strides are multiples of it (decode.cpp's
 * vector_width), so the address is aligned, and the vector type tells the compiler so (vload_half8
 * promises 2-byte alignment only, which a compiler may split into 2-byte loads). fp16 widens by
 * PTX's cvt on NVIDIA (no cl_khr_fp16 there), by vload_half elsewhere; bf16 is a float's high half. */
#if VEC == 1
typedef float lane_raw;
#define LANE_LOAD(p, i) LOAD_CACHE_ELEM(p, i)
#elif CACHE_FP8 && VEC == 16 /* fp8, wide form: 16 bytes, one uint4 load (16 elements a lane) */
typedef uint4 lane_raw;
#define LANE_LOAD(p, i) (*(__global const lane_raw*)((p) + (i)))
#elif CACHE_FP8 && VEC == 8 /* fp8: VEC bytes, one 8-byte (uint2) or 4-byte load, decoded at use */
typedef uint2 lane_raw;
#define LANE_LOAD(p, i) (*(__global const lane_raw*)((p) + (i)))
#elif CACHE_FP8
typedef uint lane_raw;
#define LANE_LOAD(p, i) (*(__global const lane_raw*)((p) + (i)))
#elif DTYPE == 0
typedef CAT_VEC_FLOAT lane_raw;
#define LANE_LOAD(p, i) (*(__global const lane_raw*)((p) + (i)))
#elif VEC == 8
typedef uint4 lane_raw;
#define LANE_LOAD(p, i) (*(__global const lane_raw*)((p) + (i)))
#else
typedef uint2 lane_raw;
#define LANE_LOAD(p, i) (*(__global const lane_raw*)((p) + (i)))
#endif

inline void lane_widen(lane_raw x, float* y) {
#if VEC == 1
  y[0] = x;
#elif CACHE_FP8 && VEC == 16
  vstore8(cache_fp8x8(as_uchar8(x.lo)), 0, y);
  vstore8(cache_fp8x8(as_uchar8(x.hi)), 0, y + 8);
#elif CACHE_FP8 && VEC == 8
  vstore8(cache_fp8x8(as_uchar8(x)), 0, y);
#elif CACHE_FP8
  vstore4(cache_fp8x4(as_uchar4(x)), 0, y);
#elif DTYPE == 0 && VEC == 8
  vstore8(x, 0, y);
#elif DTYPE == 0
  vstore4(x, 0, y);
#else
#if VEC == 8
  const uint u[4] = {x.s0, x.s1, x.s2, x.s3};
#else
  const uint u[2] = {x.s0, x.s1};
#endif
#pragma unroll
  for (int w = 0; w < VEC / 2; ++w) {
#if DTYPE == 2
    y[2 * w] = as_float(u[w] << 16);
    y[2 * w + 1] = as_float(u[w] & 0xffff0000u);
#elif LANE_SHUFFLE /* fp16 on NVIDIA */
    float lo, hi;
    asm("{ .reg .b16 l, h; mov.b32 {l, h}, %2; cvt.f32.f16 %0, l; cvt.f32.f16 %1, h; }" : "=f"(lo), "=f"(hi) : "r"(u[w]));
    y[2 * w] = lo;
    y[2 * w + 1] = hi;
#else
    y[2 * w] = vload_half(2 * w, (const __private half*)u);
    y[2 * w + 1] = vload_half(2 * w + 1, (const __private half*)u);
#endif
  }
#endif
}

/* Key j (at position pos) of the per-key page walk, in the KPT loops below (lane_issue; lane_issue_wide
 * where pages are not a multiple of KPT): where the key crosses into the next page (page sizes < KPT
 * or unaligned), page and off move to it and its block-table entry is read into entry; then seen[j]
 * (pos < nk and its page in the pool) and, declared here, kb and vb: its K and V offsets. Macros, this
 * and LANE_LOAD_KEY: as inline functions clang orders the address arithmetic otherwise
 * (bench/gpu/ptx_diff.py). */
#define LANE_PAGE_KEY(j, pos)                                                             \
  if ((j) > 0 && ++off == d->page_size) {                                                 \
    off = 0;                                                                              \
    ++page;                                                                               \
    entry = (pos) < nk ? page_entry(d, block_table, b, page) : -1;                        \
  }                                                                                       \
  seen[j] = (pos) < nk && entry >= 0;                                                     \
  const long kb = base_k + (long)entry * d->k_batch_stride + (long)off * d->k_seq_stride; \
  const long vb = base_v + (long)entry * d->v_batch_stride + (long)off * d->v_seq_stride

/* Key j's K and V registers, in the KPT loops below (kr, vr, seen, k_cache, v_cache): its loads at
 * kb and vb where it is there (seen[j]), else 0. */
#define LANE_LOAD_KEY(j, kb, vb)      \
  do {                                \
    kr[j] = vr[j] = (lane_raw)(0);    \
    if (seen[j]) {                    \
      kr[j] = LANE_LOAD(k_cache, kb); \
      vr[j] = LANE_LOAD(v_cache, vb); \
    }                                 \
  } while (0)

/* Issues the K and V loads of this lane's KPT keys from kfirst into kr and vr (seen: the key exists
 * and its page is in the pool; else the registers hold 0). base_k/base_v: the lane's chunk at
 * position 0 of its cache row (contiguous) or of page 0 (paged). Paged: *entry holds the tile's
 * block-table entry, read a tile before (the tile's first key at page *pg, offset *pg_off); this
 * advances them to the next tile and reads its entry, which is in flight until then. */
inline void lane_issue(const DecodeArgs* d, __global const CACHE_T* k_cache, __global const CACHE_T* v_cache,
                       __global const int* block_table, int b, int kfirst, int nk, long base_k, long base_v, int* pg,
                       int* pg_off, int* entry_ahead, lane_raw* kr, lane_raw* vr, bool* seen) {
#if PAGED
  int entry = *entry_ahead, page = *pg, off = *pg_off;
  *pg_off += BC;
  if (*pg_off >= d->page_size) {
    if (d->page_size >= BC) { /* one subtraction where pages hold a tile or more */
      *pg_off -= d->page_size;
      ++*pg;
    } else {
      *pg += *pg_off / d->page_size;
      *pg_off %= d->page_size;
    }
  }
  *entry_ahead = kfirst + BC < nk ? page_entry(d, block_table, b, *pg) : -1;
#else
  (void)block_table;
  (void)b;
  (void)pg;
  (void)pg_off;
  (void)entry_ahead;
#endif
#pragma unroll
  for (int j = 0; j < KPT; ++j) {
    const int pos = kfirst + j;
#if PAGED
    LANE_PAGE_KEY(j, pos);
#else
    seen[j] = pos < nk;
    const long kb = base_k + (long)pos * d->k_seq_stride, vb = base_v + (long)pos * d->v_seq_stride;
#endif
    LANE_LOAD_KEY(j, kb, vb);
  }
}

#if LANE_WIDE
/* The wide form (FLASHCL_DECODE=lanes-wide; issue 22's paged bar and bytes in flight). A lane's
 * page cursor: the page and offset of its first key of the coming tile, that tile's block-table
 * entry (read one tile before its loads need it), and BC as whole pages plus a remainder, taken
 * once, so the cursor moves a tile with an add, an add and one compare: no division or modulo per
 * tile whatever the page size (the single form divides per tile where pages are shorter than BC). */
typedef struct {
  int pg, off, entry_ahead, pages_per_tile, tile_rem;
} LaneCursor;

inline void lane_cursor_init(const DecodeArgs* d, __global const int* block_table, int b, int first, int nk,
                             LaneCursor* c) {
#if PAGED
  c->pg = first / d->page_size;
  c->off = first - c->pg * d->page_size;
  c->pages_per_tile = BC / d->page_size;
  c->tile_rem = BC - c->pages_per_tile * d->page_size;
  c->entry_ahead = first < nk ? page_entry(d, block_table, b, c->pg) : -1;
#else
  (void)d;
  (void)block_table;
  (void)b;
  (void)first;
  (void)nk;
  c->pg = c->off = c->pages_per_tile = c->tile_rem = c->entry_ahead = 0;
#endif
}

/* The coming tile's entry, page and offset; the cursor then moves a tile and reads that tile's
 * entry (next_first: its first key of it; in flight until the next call). */
inline void lane_cursor_step(const DecodeArgs* d, __global const int* block_table, int b, int next_first, int nk,
                             LaneCursor* c, int* entry, int* page, int* off) {
  *entry = c->entry_ahead;
  *page = c->pg;
  *off = c->off;
#if PAGED
  c->pg += c->pages_per_tile;
  c->off += c->tile_rem;
  if (c->off >= d->page_size) { /* tile_rem < page_size: one subtraction at most */
    c->off -= d->page_size;
    ++c->pg;
  }
  c->entry_ahead = next_first < nk ? page_entry(d, block_table, b, c->pg) : -1;
#else
  (void)d;
  (void)block_table;
  (void)b;
  (void)next_first;
  (void)nk;
#endif
}

/* lane_issue for the wide form. Contiguous, and paged with LANE_PAGE_KPT (the host knows
 * page_size % KPT == 0; a lane's KPT keys start at a multiple of KPT, so they share one page): one
 * 64-bit base per lane and tile and the keys at j seq strides from it, so a paged tile costs what
 * a contiguous one does but for the entry's product, with no per-key page test, entry read or
 * product. Other page sizes: the single form's per-key page walk. */
/* The tile's cursor step (entry, page, off: the tile's first key of the lane, as lane_cursor_step
 * gives them) and, contiguous or with LANE_PAGE_KPT pages, the lane's K and V offsets of that key
 * (its KPT keys at j seq strides from them); returns whether its page is in the pool. Shared by
 * lane_issue_wide and lane_issue_async. */
inline bool lane_tile_base(const DecodeArgs* d, __global const int* block_table, int b, int kfirst, int nk, long base_k,
                           long base_v, LaneCursor* c, long* kb0, long* vb0, int* entry, int* page, int* off) {
  lane_cursor_step(d, block_table, b, kfirst + BC, nk, c, entry, page, off);
#if !PAGED
  *kb0 = base_k + (long)kfirst * d->k_seq_stride;
  *vb0 = base_v + (long)kfirst * d->v_seq_stride;
  return true;
#else
  *kb0 = base_k + (long)*entry * d->k_batch_stride + (long)*off * d->k_seq_stride;
  *vb0 = base_v + (long)*entry * d->v_batch_stride + (long)*off * d->v_seq_stride;
  return *entry >= 0;
#endif
}

inline void lane_issue_wide(const DecodeArgs* d, __global const CACHE_T* k_cache, __global const CACHE_T* v_cache,
                            __global const int* block_table, int b, int kfirst, int nk, long base_k, long base_v,
                            LaneCursor* c, lane_raw* kr, lane_raw* vr, bool* seen) {
  int entry, page, off;
  long kb0, vb0;
  const bool in_pool = lane_tile_base(d, block_table, b, kfirst, nk, base_k, base_v, c, &kb0, &vb0, &entry, &page, &off);
#pragma unroll
  for (int j = 0; j < KPT; ++j) {
    const int pos = kfirst + j;
#if !PAGED || LANE_PAGE_KPT
    seen[j] = pos < nk && in_pool;
    const long kb = kb0 + (long)j * d->k_seq_stride, vb = vb0 + (long)j * d->v_seq_stride;
#else
    LANE_PAGE_KEY(j, pos);
#endif
    LANE_LOAD_KEY(j, kb, vb);
  }
}

#if LANE_PIPELINE
#error "LANE_WIDE is a single-buffer form: not with LANE_PIPELINE"
#endif
#if LANE_PREFETCH && (!LANE_SHUFFLE || (PAGED && !LANE_PAGE_KPT))
#error "LANE_PREFETCH: NVIDIA PTX (LANE_SHUFFLE), contiguous or LANE_PAGE_KPT pages only"
#endif
#if LANE_PREFETCH
/* Bytes in flight without registers: the K and V rows of this lane's key group in the tile
 * LANE_PREFETCH tiles ahead are requested into L2 (prefetch.global.L2), one 128-byte line per lane
 * (a key group's KPT keys x K, V x L_LINES lines, dealt over its L_DV lanes: 16 over 16 at fp16,
 * d 128; where the lines outnumber the lanes, d <= 32 at fp16, the first L_DV only: a hint), so
 * when that tile's loads come they hit L2, and the DRAM requests a work-group keeps open are its
 * loads plus these. The lane's line (key j of its run, K or V, line of the row) is fixed, so its
 * pointer and strides are taken once (LanePrefetch); per tile one product and the prefetch. */
#define L_LINES ((HEAD_DIM * (int)sizeof(CACHE_T) + 127) / 128) /* 128-byte lines per key row */
#define L_PF_LINES (KPT * 2 * L_LINES)
typedef struct {
  __global const CACHE_T* row0; /* the lane's line in the row of position 0 (contiguous) or page 0, offset 0 */
  long seq_stride, page_stride;
  int j;                        /* its key within the lane group's KPT */
  bool active;                  /* v < L_PF_LINES */
} LanePrefetch;

inline void l2_prefetch(__global const CACHE_T* p) {
  asm volatile("prefetch.global.L2 [%0];" : : "l"((ulong)p));
}

/* head_k/head_v: the row starts of head hk (and of the cache row, contiguous), without the lane's column */
inline LanePrefetch lane_prefetch_init(const DecodeArgs* d, __global const CACHE_T* k_cache,
                                       __global const CACHE_T* v_cache, int v, long head_k, long head_v) {
  LanePrefetch f;
  const int is_v = (v / L_LINES) % 2;
  f.j = v / (2 * L_LINES);
  f.active = v < L_PF_LINES;
  f.row0 = (is_v ? v_cache + head_v : k_cache + head_k) + (v % L_LINES) * (128 / (int)sizeof(CACHE_T));
  f.seq_stride = is_v ? d->v_seq_stride : d->k_seq_stride;
  f.page_stride = is_v ? d->v_batch_stride : d->k_batch_stride;
  return f;
}

/* kfirst_ahead: the lane's first key of that tile; entry/off: its page entry and offset (paged,
 * LANE_PAGE_KPT: the lane's keys share the page). Keys past nk or off the pool are not requested. */
inline void lane_prefetch(const LanePrefetch* f, int kfirst_ahead, int nk, int entry, int off) {
#if PAGED
  if (f->active && kfirst_ahead + f->j < nk && entry >= 0)
    l2_prefetch(f->row0 + (long)entry * f->page_stride + (long)(off + f->j) * f->seq_stride);
#else
  (void)entry;
  (void)off;
  if (f->active && kfirst_ahead + f->j < nk) l2_prefetch(f->row0 + (long)(kfirst_ahead + f->j) * f->seq_stride);
#endif
}
#endif
#endif

#if LANE_ASYNC
#if !LANE_WIDE || !LANE_SHUFFLE || LANE_PREFETCH || (PAGED && !LANE_PAGE_KPT) || CACHE_FP8 || VEC != 8 || DTYPE == 0
#error "LANE_ASYNC: the wide form on NVIDIA, 16-bit caches at 8 elements a load, contiguous or LANE_PAGE_KPT pages"
#endif
/* The async form (FLASHCL_DECODE=lanes-async*): bytes in flight without registers. Each work-item
 * copies its own K and V chunks of a tile (the 2 * KPT 16-byte loads lane_issue_wide makes) by
 * cp.async into its own slots of a ring of LANE_ASYNC tiles in __local, LANE_ASYNC - 1 tiles ahead
 * of the one it computes, and reads them back after waiting for that tile's group: a work-item
 * reads only what it copied, so no barrier. Slot (stage, j) of work-item lid is
 * ring[(stage * 2 * KPT + j) * WG_SIZE + lid]: a warp's 16-byte reads are 512 adjacent bytes. A key
 * that is not there (past nk or off the pool) is copied as 16 zero bytes and its seen bit is 0; the
 * bits of the tiles in flight wait in one register (pending). */
#define L_STAGE (2 * KPT * WG_SIZE) /* slots of one tile */
#define L_RING_SLOTS (LANE_ASYNC * L_STAGE)
#define L_SCRATCH_SLOTS ((L_SCRATCH * 4 + 15) / 16)
#define L_RING (L_RING_SLOTS > L_SCRATCH_SLOTS ? L_RING_SLOTS : L_SCRATCH_SLOTS)

/* 16 bytes global -> __local without registers; bytes 0: 16 zero bytes, nothing read */
inline void lane_copy_async(__local lane_raw* dst, __global const CACHE_T* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"((uint)(ulong)dst), "l"((ulong)src),
               "r"(valid ? 16 : 0)
               : "memory");
}
inline void lane_async_commit(void) { asm volatile("cp.async.commit_group;" ::: "memory"); }
/* all but the newest LANE_ASYNC - 1 groups of this work-item's copies complete */
inline void lane_async_wait_oldest(void) { asm volatile("cp.async.wait_group %0;" ::"n"(LANE_ASYNC - 1) : "memory"); }
inline void lane_async_wait_all(void) { asm volatile("cp.async.wait_group 0;" ::: "memory"); }

/* lane_issue_wide's addresses, copied into `slot` (this work-item's slots of one stage); returns the
 * seen bits of its KPT keys. */
inline uint lane_issue_async(const DecodeArgs* d, __global const CACHE_T* k_cache, __global const CACHE_T* v_cache,
                             __global const int* block_table, int b, int kfirst, int nk, long base_k, long base_v,
                             LaneCursor* c, __local lane_raw* slot) {
  int entry, page, off;
  long kb0, vb0;
  const bool in_pool = lane_tile_base(d, block_table, b, kfirst, nk, base_k, base_v, c, &kb0, &vb0, &entry, &page, &off);
  uint bits = 0;
#pragma unroll
  for (int j = 0; j < KPT; ++j) {
    const bool seen = kfirst + j < nk && in_pool;
    /* an absent key's source is the lane's own chunk of position 0: never read (0 bytes) */
    lane_copy_async(slot + (2 * j) * WG_SIZE, k_cache + (seen ? kb0 + (long)j * d->k_seq_stride : base_k), seen);
    lane_copy_async(slot + (2 * j + 1) * WG_SIZE, v_cache + (seen ? vb0 + (long)j * d->v_seq_stride : base_v), seen);
    bits |= (uint)seen << j;
  }
  return bits;
}
#endif

__kernel __attribute__((reqd_work_group_size(WG_SIZE, 1, 1)))
void decode_lanes(__global const STORAGE_T* q, __global const CACHE_T* k_cache, __global const CACHE_T* v_cache,
                  __global float* work, __global const int* cache_seqlens, __global const int* block_table,
                  __global const int* batch_idx, __global const float* rot_cos, __global const float* rot_sin,
                  __global const float* alibi_slopes, const DecodeArgs dargs, const AttnArgs attn CACHE_DESCALE_PARAMS) {
#if LANE_ASYNC
  __local lane_raw ring[L_RING]; /* the cp.async ring; at the end the streams' state (after a barrier) */
  __local float* scratch = (__local float*)ring;
#else
  __local float scratch[L_SCRATCH]; /* the streams' state at the end (and the portable reduction) */
#endif
  const DecodeArgs* d = &dargs;
  const int lid = get_local_id(0), v = lid % L_DV, kg = lid / L_DV, col = v * VEC;
  const int split = get_group_id(0) % d->num_splits, r0 = get_group_id(0) / d->num_splits * BR;
  const int hk = get_group_id(1), b = get_group_id(2);
  const int r_end = min(r0 + BR, d->rows);

  const int slot_row = cache_row(d, batch_idx, b);
  const int len = slot_row < 0 ? 0 : cached_len(d, cache_seqlens, b);
  const SeqView sv = decode_view(d, &attn, len, slot_row);
  const int nk = sv.seqlen_k;

  /* prologue: this work-item's query chunk of every row, in registers */
  float qv[BR][VEC], acc[BR][VEC], m[BR], l[BR], slope[BR];
#pragma unroll
  for (int r = 0; r < BR; ++r) {
    m[r] = NEG_INF;
    l[r] = 0.0f;
    slope[r] = row_slope(d, alibi_slopes, b, hk, r0 + r);
#pragma unroll
    for (int e = 0; e < VEC; ++e) {
      qv[r][e] = query_value(d, q, b, hk, r0 + r, r_end, col + e, len, rot_cos, rot_sin);
#if CACHE_FP8
      qv[r][e] *= CACHE_DESCALE(k_descale, d, b, hk); /* q . (kd * k8): the descale once per query element */
#endif
      acc[r][e] = 0.0f;
    }
  }

  int t_begin, t_end;
  split_run(d, &attn, &sv, r0, r_end, BC, split, &t_begin, &t_end);

  /* element offsets of this lane's chunk of head hk: plus (position) * seq stride, and for a
   * paged cache plus (page entry) * page stride */
  const long k_head = d->k_offset + (long)hk * d->k_head_stride + col;
  const long v_head = d->v_offset + (long)hk * d->v_head_stride + col;
  /* the lane's tile position: paged, page and offset of its first key and the entry read ahead */
#if PAGED
  const long base_k = k_head, base_v = v_head;
  int pg = (t_begin * BC + kg * KPT) / d->page_size, pg_off = t_begin * BC + kg * KPT - pg * d->page_size;
  int entry_ahead = t_begin * BC + kg * KPT < nk ? page_entry(d, block_table, b, pg) : -1;
#else
  const long base_k = k_head + (long)max(slot_row, 0) * d->k_batch_stride;
  const long base_v = v_head + (long)max(slot_row, 0) * d->v_batch_stride;
  int pg = 0, pg_off = 0, entry_ahead = 0;
#endif
#if LANE_WIDE
  LaneCursor cur; /* the wide form's cursor (pg, pg_off and entry_ahead above go unused and vanish) */
  lane_cursor_init(d, block_table, b, t_begin * BC + kg * KPT, nk, &cur);
#if LANE_PREFETCH
  LaneCursor pf; /* LANE_PREFETCH tiles ahead of cur */
  lane_cursor_init(d, block_table, b, (t_begin + LANE_PREFETCH) * BC + kg * KPT, nk, &pf);
  const LanePrefetch pfl = lane_prefetch_init(d, k_cache, v_cache, v, base_k - col, base_v - col);
#endif
#endif

  lane_raw kr[KPT], vr[KPT]; /* the tile's K and V chunks as loaded: widened at their use */
  bool seen[KPT];
#if LANE_PIPELINE
  /* the first tile's loads now; each iteration issues the next tile's before computing its own */
  if (t_begin < t_end)
    lane_issue(d, k_cache, v_cache, block_table, b, t_begin * BC + kg * KPT, nk, base_k, base_v, &pg, &pg_off,
               &entry_ahead, kr, vr, seen);
#endif

#if LANE_ASYNC
  /* the first LANE_ASYNC - 1 tiles' copies now; each iteration issues the one that many ahead */
  __local lane_raw* my_ring = ring + lid;
  uint pending = 0; /* seen bits of the tiles in flight, KPT a tile, the newest lowest */
  for (int s = 0; s < LANE_ASYNC - 1; ++s) {
    const uint bits = t_begin + s < t_end ? lane_issue_async(d, k_cache, v_cache, block_table, b, (t_begin + s) * BC + kg * KPT,
                                                             nk, base_k, base_v, &cur, my_ring + s * L_STAGE)
                                          : 0u;
    lane_async_commit();
    pending = pending << KPT | bits;
  }
#endif

  /* main loop: no barrier with LANE_SHUFFLE */
  for (int kt = t_begin; kt < t_end; ++kt) {
    const int kfirst = kt * BC + kg * KPT; /* this lane's first key of the tile */
#if LANE_PIPELINE
    lane_raw kr_next[KPT], vr_next[KPT];
    bool seen_next[KPT];
    if (kt + 1 < t_end)
      lane_issue(d, k_cache, v_cache, block_table, b, kfirst + BC, nk, base_k, base_v, &pg, &pg_off, &entry_ahead,
                 kr_next, vr_next, seen_next);
    else
#pragma unroll
      for (int j = 0; j < KPT; ++j) {
        kr_next[j] = vr_next[j] = (lane_raw)(0);
        seen_next[j] = false;
      }
#elif LANE_ASYNC
    {
      const int ahead = kt + LANE_ASYNC - 1;
      const uint bits = ahead < t_end ? lane_issue_async(d, k_cache, v_cache, block_table, b, kfirst + (LANE_ASYNC - 1) * BC,
                                                         nk, base_k, base_v, &cur,
                                                         my_ring + ((ahead - t_begin) % LANE_ASYNC) * L_STAGE)
                                      : 0u;
      lane_async_commit();
      pending = pending << KPT | bits;
      lane_async_wait_oldest(); /* this tile's copies (the oldest group) are in */
      const uint mine = pending >> ((LANE_ASYNC - 1) * KPT);
      pending &= (1u << ((LANE_ASYNC - 1) * KPT)) - 1u;
      __local const lane_raw* slot = my_ring + ((kt - t_begin) % LANE_ASYNC) * L_STAGE;
#pragma unroll
      for (int j = 0; j < KPT; ++j) {
        kr[j] = slot[(2 * j) * WG_SIZE];
        vr[j] = slot[(2 * j + 1) * WG_SIZE];
        seen[j] = (mine >> j) & 1u;
      }
    }
#elif LANE_WIDE
    lane_issue_wide(d, k_cache, v_cache, block_table, b, kfirst, nk, base_k, base_v, &cur, kr, vr, seen);
#else
    lane_issue(d, k_cache, v_cache, block_table, b, kfirst, nk, base_k, base_v, &pg, &pg_off, &entry_ahead, kr, vr,
               seen);
#endif

    /* partial dots over this lane's chunk, then summed over the key's lanes */
    float s[KPT][BR];
#pragma unroll
    for (int j = 0; j < KPT; ++j) {
      float kx[VEC];
      lane_widen(kr[j], kx);
#pragma unroll
      for (int r = 0; r < BR; ++r) {
        float dot = 0.0f;
#pragma unroll
        for (int e = 0; e < VEC; ++e) dot = fma(qv[r][e], kx[e], dot);
        s[j][r] = dot;
      }
    }
#if LANE_SHUFFLE
#pragma unroll
    for (int mask = L_DV / 2; mask > 0; mask /= 2)
#pragma unroll
      for (int j = 0; j < KPT; ++j)
#pragma unroll
        for (int r = 0; r < BR; ++r) s[j][r] = lane_xor_add(s[j][r], mask);
#else
    barrier(CLK_LOCAL_MEM_FENCE); /* the previous tile's readers are done */
#pragma unroll
    for (int j = 0; j < KPT; ++j)
#pragma unroll
      for (int r = 0; r < BR; ++r) scratch[(r * BC + kg * KPT + j) * L_PD + v] = s[j][r];
    barrier(CLK_LOCAL_MEM_FENCE);
#pragma unroll
    for (int j = 0; j < KPT; ++j)
#pragma unroll
      for (int r = 0; r < BR; ++r) {
        float dot = 0.0f;
        for (int w = 0; w < L_DV; ++w) dot += scratch[(r * BC + kg * KPT + j) * L_PD + w];
        s[j][r] = dot;
      }
#endif

    /* this stream's online softmax over its KPT keys; hidden keys and rows past the end -inf */
    float p[KPT][BR];
#pragma unroll
    for (int r = 0; r < BR; ++r) {
      float mx = m[r];
#pragma unroll
      for (int j = 0; j < KPT; ++j) {
        float sc = NEG_INF;
        if (seen[j] && r0 + r < r_end) {
          SeqView rv = sv;
          rv.slope = slope[r];
          sc = final_score(s[j][r], (r0 + r) / d->group, kfirst + j, &rv, &attn, 0);
        }
        s[j][r] = sc;
        mx = max_keep_nan(mx, sc);
      }
      const bool none = mx == NEG_INF; /* nothing visible to this stream yet: P = 0, state kept */
      const float alpha = none ? 1.0f : EXP2_OF(m[r] - mx); /* 0 when m was -inf */
      m[r] = none ? m[r] : mx;
      l[r] *= alpha;
#pragma unroll
      for (int e = 0; e < VEC; ++e) acc[r][e] *= alpha;
#pragma unroll
      for (int j = 0; j < KPT; ++j) {
        p[j][r] = none ? 0.0f : EXP2_OF(s[j][r] - mx); /* 0 for hidden keys */
        l[r] += p[j][r];
      }
    }
    /* P times V, each key's V chunk widened once for all rows */
#pragma unroll
    for (int j = 0; j < KPT; ++j) {
      float vx[VEC];
      lane_widen(vr[j], vx);
#pragma unroll
      for (int r = 0; r < BR; ++r)
#pragma unroll
        for (int e = 0; e < VEC; ++e) acc[r][e] = fma(p[j][r], vx[e], acc[r][e]);
    }
#if LANE_WIDE && LANE_PREFETCH
    { /* at the tile's end, where the K/V registers are free: the tile LANE_PREFETCH ahead into L2 */
      int pf_entry, pf_page, pf_off;
      lane_cursor_step(d, block_table, b, kfirst + (LANE_PREFETCH + 1) * BC, nk, &pf, &pf_entry, &pf_page, &pf_off);
      if (kt + LANE_PREFETCH < t_end) /* not past the split: another split's or nobody's keys */
        lane_prefetch(&pfl, kfirst + LANE_PREFETCH * BC, nk, pf_entry, pf_off);
    }
#endif
#if LANE_PIPELINE
#pragma unroll
    for (int j = 0; j < KPT; ++j) { /* the next tile's registers become this one's (renamed, not copied, once unrolled) */
      kr[j] = kr_next[j];
      vr[j] = vr_next[j];
      seen[j] = seen_next[j];
    }
#endif
  }

  /* epilogue: the L_KG streams left in scratch and merged by the LSE rule (decode_streams.cl) */
#if LANE_ASYNC
  lane_async_wait_all(); /* (only empty groups are left) before the ring becomes the streams' scratch */
#endif
  END_KEY_GROUP_STREAMS(d, acc, m, l, scratch, L_KG, kg, col, v, work, b, hk, r0, r_end, split, lid);
}
