/* read_patterns.c: how fast one core reads a KV cache in the orders a CPU decode kernel can take,
 * in GB per second of the thread's CPU time (so other processes on a shared machine disturb it
 * little). The cache: rows of 8 heads x 128 halves (2 KiB, one key of a (B, L, H_kv = 8, d = 128)
 * fp16 cache), 256 MiB, or its first W bytes over and over (READ_WINDOW: cache-resident). The
 * figures in docs/perf/pocl-cpu.md (decode section) came from these loops; decode_cpu.cl's shape
 * follows from them.
 *
 *   gcc -O3 -funroll-loops -march=native bench/cpu/read_patterns.c -o /tmp/read_patterns
 *   [READ_WINDOW=W] /tmp/read_patterns seq | block KS | part HB | qk | pv-mem | pv-reg KS [pf]
 *
 * seq: rows in address order. block KS: KS keys at a time, head by head. part HB: HB of each row's
 * 8 heads, K and V rows alternating. qk: each 16-half vector converted and fed to 4 rows' FMAs
 * with queries from L1, key by key. pv-mem: 4 rows' accumulators in memory, updated once a key.
 * pv-reg: 16 accumulators (4 rows x 4 column vectors) in registers over KS keys, head by head;
 * pf: the next block prefetched (prefetcht1) in address order meanwhile. */
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { HEADS = 8, D = 128, ROW = HEADS * D /* halves */ };
static float qv[HEADS][4][D] __attribute__((aligned(64)));
static float acc[HEADS][4][D] __attribute__((aligned(64)));

static double cpu_seconds(void) {
  struct timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

static __m512 load_half16(const unsigned short* p) { return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)p)); }

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: [READ_WINDOW=bytes] %s seq | block KS | part HB | qk | pv-mem | pv-reg KS [pf]\n", argv[0]);
    return 2;
  }
  const char* mode = argv[1];
  const int arg = argc > 2 ? atoi(argv[2]) : 16;
  const int pf = argc > 3 && strcmp(argv[3], "pf") == 0;
  const size_t n = (size_t)256 << 20, keys = n / 2 / ROW;
  const char* window = getenv("READ_WINDOW");
  size_t w_keys = window ? strtoul(window, 0, 10) / 2 / ROW : keys; /* keys of the reused window */
  if (w_keys < 64) w_keys = 64 < keys ? 64 : keys;
  unsigned short* kv = aligned_alloc(4096, 2 * n); /* K, then V */
  memset(kv, 0, 2 * n);
  for (int i = 0; i < HEADS * 4 * D; ++i) ((float*)qv)[i] = i * 1e-3f;
#define ROW_AT(base, key) ((base) + ((key) % w_keys) * ROW)
  __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
  double best = 1e30;
  size_t bytes = 0;
  for (int round = 0; round < 4; ++round) {
    const double t0 = cpu_seconds();
    bytes = 0;
    if (!strcmp(mode, "seq") || !strcmp(mode, "block")) {
      const int ks = !strcmp(mode, "seq") ? 1 : arg;
      for (size_t k = 0; k + ks <= keys; k += ks)
        for (int h = 0; h < HEADS; ++h)
          for (int j = 0; j < ks; ++j) {
            const float* p = (const float*)(ROW_AT(kv, k + j) + h * D);
            s0 = _mm512_add_ps(s0, _mm512_load_ps(p));
            s1 = _mm512_add_ps(s1, _mm512_load_ps(p + 16));
            s2 = _mm512_add_ps(s2, _mm512_load_ps(p + 32));
            s3 = _mm512_add_ps(s3, _mm512_load_ps(p + 48));
            bytes += 2 * D;
          }
    } else if (!strcmp(mode, "part")) {
      for (size_t k = 0; k < keys; ++k)
        for (int c = 0; c < 2; ++c)
          for (int h = 0; h < arg; ++h) {
            const float* p = (const float*)(ROW_AT(kv + c * n / 2, k) + h * D);
            s0 = _mm512_add_ps(s0, _mm512_load_ps(p));
            s1 = _mm512_add_ps(s1, _mm512_load_ps(p + 16));
            s2 = _mm512_add_ps(s2, _mm512_load_ps(p + 32));
            s3 = _mm512_add_ps(s3, _mm512_load_ps(p + 48));
            bytes += 2 * D;
          }
    } else if (!strcmp(mode, "qk")) {
      for (size_t k = 0; k < keys; ++k)
        for (int h = 0; h < HEADS; ++h) {
          __m512 f0 = _mm512_setzero_ps(), f1 = f0, f2 = f0, f3 = f0;
          for (int v = 0; v < D; v += 16) {
            const __m512 x = load_half16(ROW_AT(kv, k) + h * D + v);
            f0 = _mm512_fmadd_ps(_mm512_load_ps(&qv[h][0][v]), x, f0);
            f1 = _mm512_fmadd_ps(_mm512_load_ps(&qv[h][1][v]), x, f1);
            f2 = _mm512_fmadd_ps(_mm512_load_ps(&qv[h][2][v]), x, f2);
            f3 = _mm512_fmadd_ps(_mm512_load_ps(&qv[h][3][v]), x, f3);
          }
          s0 = _mm512_add_ps(s0, _mm512_add_ps(_mm512_add_ps(f0, f1), _mm512_add_ps(f2, f3)));
          bytes += 2 * D;
        }
    } else if (!strcmp(mode, "pv-mem")) {
      for (size_t k = 0; k < keys; ++k)
        for (int h = 0; h < HEADS; ++h) {
          for (int v = 0; v < D; v += 16) {
            const __m512 x = load_half16(ROW_AT(kv, k) + h * D + v);
            for (int r = 0; r < 4; ++r)
              _mm512_store_ps(&acc[h][r][v],
                              _mm512_fmadd_ps(_mm512_set1_ps(qv[0][r][h]), x, _mm512_load_ps(&acc[h][r][v])));
          }
          bytes += 2 * D;
        }
    } else if (!strcmp(mode, "pv-reg")) {
      const int ks = arg;
      for (size_t k = 0; k + ks <= keys; k += ks)
        for (int h = 0; h < HEADS; ++h)
          for (int c0 = 0; c0 < D; c0 += 64) {
            if (pf) { /* this (head, column group)'s share of the next block, in address order */
              const char* next =
                  (const char*)ROW_AT(kv, k + ks) + (size_t)(h * (D / 64) + c0 / 64) * (ks * ROW * 2 / 16);
              for (int l = 0; l < ks * ROW * 2 / 16; l += 64) _mm_prefetch(next + l, _MM_HINT_T1);
            }
            __m512 a[4][4];
            for (int r = 0; r < 4; ++r)
              for (int c = 0; c < 4; ++c) a[r][c] = _mm512_load_ps(&acc[h][r][c0 + 16 * c]);
            for (int j = 0; j < ks; ++j) {
              const unsigned short* p = ROW_AT(kv, k + j) + h * D + c0;
              const __m512 b0 = _mm512_set1_ps(qv[j & 7][0][h]), b1 = _mm512_set1_ps(qv[j & 7][1][h]);
              const __m512 b2 = _mm512_set1_ps(qv[j & 7][2][h]), b3 = _mm512_set1_ps(qv[j & 7][3][h]);
              for (int c = 0; c < 4; ++c) {
                const __m512 x = load_half16(p + 16 * c);
                a[0][c] = _mm512_fmadd_ps(b0, x, a[0][c]);
                a[1][c] = _mm512_fmadd_ps(b1, x, a[1][c]);
                a[2][c] = _mm512_fmadd_ps(b2, x, a[2][c]);
                a[3][c] = _mm512_fmadd_ps(b3, x, a[3][c]);
              }
              bytes += 2 * 64;
            }
            for (int r = 0; r < 4; ++r)
              for (int c = 0; c < 4; ++c) _mm512_store_ps(&acc[h][r][c0 + 16 * c], a[r][c]);
          }
    } else {
      fprintf(stderr, "unknown mode %s\n", mode);
      return 2;
    }
    const double t = cpu_seconds() - t0;
    if (t < best) best = t;
  }
  float out[16];
  _mm512_storeu_ps(out, _mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
  printf("%s %s%s: %.1f GB per CPU-second (%g %g)\n", mode, argc > 2 ? argv[2] : "", pf ? " pf" : "",
         bytes / best / 1e9, out[0], acc[1][1][1]);
  return 0;
}
