/* cpu_blocks.cl: the tiles and register blocks that the CPU-shaped forward kernels (fa2_cpu.cl and
 * standard_cpu.cl) share, so the two compute their scores and P.V products with one piece of code:
 * the tile defaults and the names derived from them (RW query rows per score vector, SG row
 * vectors and SR rows per score block, KJ keys per score register block), the vector macros, the
 * K/V prefetch into L2, the score register block (S^T = K Q^T with the query rows in the vector
 * lanes, each key element a broadcast) and the P.V key loop (RM rows x CG column vectors, each V
 * vector load feeding RM FMAs). Each kernel keeps its own check of the tiles (#error), its staging
 * and its softmax. Needs common.cl (STORAGE_T) and HEAD_DIM, D_PAD. */

#ifndef VW
#define VW 16 /* floats per vector: the device's preferred float width (4, 8 or 16) */
#endif
#ifndef BR
#define BR 64 /* query rows per work-item (row block) */
#endif
#ifndef BC
#define BC 64 /* keys per staged K/V block; a multiple of KJ */
#endif
#ifndef RM
#define RM 4 /* rows per P.V register block, and row vectors per score block */
#endif
#ifndef CG
#define CG 4 /* output column vectors per P.V register block; divides D_PAD / VW */
#endif

#define DV (D_PAD / VW) /* column vectors of a row */
#if BR < VW             /* rows per row vector (the score lanes); a plain number, as it names types */
#define RW BR
#else
#define RW VW
#endif
#define SG (BR / RW < RM ? BR / RW : RM) /* row vectors per score block */
#define SR (SG * RW)                     /* rows per score block */
#define KJ 4                             /* keys per score register block */

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define VEC_T CAT(float, VW)
#define VLOAD(p) CAT(vload, VW)(0, (p))
#define VSTORE(x, p) CAT(vstore, VW)((x), 0, (p))
#define RVEC_T CAT(float, RW)
#define RVLOAD(p) CAT(vload, RW)(0, (p))
#define RVSTORE(x, p) CAT(vstore, RW)((x), 0, (p))

/* EXP2_OF(x) for a score x minus its row's max (x <= 0). With ALiBi, 0 where it is below 2^-126:
 * PoCL's vector exp2 takes a slow path for arguments that underflow, which made the far keys under
 * ALiBi cost 3x the plain kernel's time (fa2_cpu, d 64, N 2048, 2-core PoCL); a term dropped is
 * below 2^-126 of the row's largest, which is 1 (O moves by at most that times max |V| / l, and a
 * NaN or Inf in V at such a key no longer reaches O). NaN stays NaN, -inf gives 0. Other programs
 * keep EXP2_OF: their scores rarely underflow (a bias program measured 1.05-1.10x slower with this
 * and the vector loop together). */
inline RVEC_T exp2_of_score(RVEC_T x) {
#if ALIBI
  const RVEC_T t = x * LOG2_PER_SCORE_UNIT;
  const CAT(int, RW) under = t < (RVEC_T)(EXP2_FLUSH_BELOW);
  return select(exp2(select(t, (RVEC_T)(EXP2_FLUSH_BELOW), under)), (RVEC_T)(0.0f), under);
#else
  return EXP2_OF(x);
#endif
}

/* Where the kernel is compiled for the host CPU (PoCL: __x86_64__, __aarch64__), the next K/V
 * block is prefetched into L2 while this one is used: the staging copies otherwise waited on
 * misses for most of their time (perf annotate: 75 % of fa2_cpu's body at d = 64), as rows 2-4 KiB
 * apart defeat the hardware prefetchers. OpenCL's prefetch() does nothing in PoCL 3.1, and
 * oclgrind (spir) cannot run clang's builtin, hence the gate. */
#if defined(__x86_64__) || defined(__aarch64__)
#define KV_PREFETCH 1
inline void prefetch_rows(__global const STORAGE_T* src, long base, long seq_stride, int row0, int n) {
  for (int r = 0; r < n; ++r)
    for (int c = 0; c < HEAD_DIM * (int)sizeof(STORAGE_T); c += 64)
      __builtin_prefetch((const void*)((ulong)(src + base + (long)(row0 + r) * seq_stride) + c), 0, 2);
}
#else
#define KV_PREFETCH 0
#endif

/* s[jj][g] = q(r0 + g * RW + lane) . k(j0 + jj), s being an RVEC_T [KJ][SG] that the macro declares
 * (with kr) in the caller's scope: keys [j0, j0 + KJ) of the staged block (ks, fp32 rows of pitch
 * D_PAD) against the SR rows at r0 of the transposed Q block (qt, pitch BR). Each Q^T vector load
 * feeds KJ FMAs and each key element (a broadcast) SG. A macro, not a function: clang-14
 * optimises an inline function's body before inlining it, and the kernels' x86 IR then came out
 * different (same work, other address arithmetic); the macro keeps it to the letter. */
#define CPU_SCORE_TILE(s, qt, ks, j0, r0)                                                         \
  __local const float* kr[KJ];                                                                    \
  _Pragma("unroll") for (int jj = 0; jj < KJ; ++jj) kr[jj] = (ks) + ((j0) + jj) * D_PAD;          \
  RVEC_T s[KJ][SG];                                                                               \
  _Pragma("unroll") for (int jj = 0; jj < KJ; ++jj)                                               \
    _Pragma("unroll") for (int g = 0; g < SG; ++g) s[jj][g] = (RVEC_T)(0.0f);                     \
  for (int c = 0; c < HEAD_DIM; ++c) {                                                            \
    RVEC_T qv[SG];                                                                                \
    _Pragma("unroll") for (int g = 0; g < SG; ++g) qv[g] = RVLOAD((qt) + c * BR + (r0) + g * RW); \
    _Pragma("unroll") for (int jj = 0; jj < KJ; ++jj) {                                           \
      const RVEC_T kb = (RVEC_T)(kr[jj][c]);                                                      \
      _Pragma("unroll") for (int g = 0; g < SG; ++g) s[jj][g] = fma(kb, qv[g], s[jj][g]);         \
    }                                                                                             \
  }

/* acc[r][g] += sum_{j < n} p[j * pitch + r0 + r] V(j)[cg0 + g] for one P.V register block: the RM
 * rows at r0 of p (key j's row r at j * pitch + r) and the CG column vectors at cg0 of the staged V
 * block (vs, fp32 rows of pitch D_PAD). A macro, as p lies in private memory in fa2_cpu and in the
 * global workspace in standard_cpu (OpenCL 1.2 has no generic pointers). `masked` (a constant at
 * each use): hidden keys (p = 0) add nothing even where V holds NaN or Inf, which 0 * V would
 * spread. */
#define CPU_PV_KEYS(acc, p, pitch, r0, vs, cg0, n, masked)                                 \
  for (int j = 0; j < (n); ++j) {                                                      \
    VEC_T vv[CG];                                                                      \
    _Pragma("unroll") for (int g = 0; g < CG; ++g) vv[g] = VLOAD((vs) + j * D_PAD + ((cg0) + g) * VW); \
    _Pragma("unroll") for (int r = 0; r < RM; ++r) {                                   \
      const float pj = (p)[j * (pitch) + (r0) + r];                                         \
      if ((masked) && pj == 0.0f) continue;                                            \
      const VEC_T pv = (VEC_T)(pj);                                                    \
      _Pragma("unroll") for (int g = 0; g < CG; ++g) acc[r][g] = fma(pv, vv[g], acc[r][g]); \
    }                                                                                  \
  }
