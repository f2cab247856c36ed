/* emulated_mma/mma_operands.cl: stands in for the operand files (kernels/nvidia/mma_f16.cl over
 * mma_half_io.cl, and mma_tf32.cl) on PoCL, for tests/emulated_mma/run.sh. The contract of
 * fa2_mma.cl with the same fragment layouts a lane sees (S and O in m16n8's C layout: lane 4g+t
 * holds rows g and g+8, columns 2t and 2t+1 of every 8-column tile), computed without the tensor
 * cores: a lane keeps its two query rows whole (qfrag_t is a vector wide enough), and P.V trades
 * P between the lanes through spare columns of the V tile (V_PITCH is wider than the real one),
 * with work-group barriers where a warp would not need them. P is rounded to fp16/bf16 as
 * pack2's cvt.rn does; 3xTF32 is taken as fp32. What this checks: the kernels' indexing, masks,
 * block ranges, stores and barriers; not the PTX. */
#if DTYPE == 0
#define ELEM_T float
#define CHUNK 4
#define DPAD ((HEAD_DIM + 7) / 8 * 8)
#define QFRAGS (DPAD / 8)
typedef float4 qfrag_t; /* QFRAGS * 4 * 4 = 2 DPAD floats: the lane's rows g and g + 8 */
#define ELEMS_PER_FLOAT 1
#else
#define ELEM_T ushort
#define CHUNK 8
#define DPAD ((HEAD_DIM + 15) / 16 * 16)
#define QFRAGS (DPAD / 16)
typedef float8 qfrag_t; /* QFRAGS * 4 * 8 = 2 DPAD floats */
#define ELEMS_PER_FLOAT 2
#endif
/* the V rows, then per key row the P values of every row of the work-group (WARPS * 16 * MT floats) */
#define V_PITCH (DPAD + WARPS * 16 * MT * ELEMS_PER_FLOAT)
#if ONE_PITCH /* the backward reads its tiles both ways (mma_tf32.cl's ONE_PITCH) */
#define K_PITCH V_PITCH
#else
#define K_PITCH (DPAD + 8)
#endif

inline float elem_local(__local const ELEM_T* p) {
#if DTYPE == 0
  return *p;
#elif DTYPE == 1
  return vload_half(0, (__local const half*)p);
#else
  return as_float((uint)*p << 16);
#endif
}
inline float elem_global(__global const ELEM_T* p) {
#if DTYPE == 0
  return *p;
#elif DTYPE == 1
  return vload_half(0, (__global const half*)p);
#else
  return as_float((uint)*p << 16);
#endif
}
/* x rounded as the tensor-core operand is (cvt.rn to 16 bits; fp32 kept) */
inline float operand(float x) {
#if DTYPE == 0
  return x;
#elif DTYPE == 1
  ushort h; /* OpenCL 1.2 has no half variables: the bits, through vstore/vload_half */
  vstore_half_rte(x, 0, (half*)&h);
  return vload_half(0, (const half*)&h);
#else
  return as_float((uint)float_to_bf16(x) << 16);
#endif
}

inline void load_q(qfrag_t qa[MT][QFRAGS][4], __global const ELEM_T* q, long base, long stride, int row0, int rows,
                   int t) {
  (void)t;
  for (int i = 0; i < MT; ++i) {
    float* f = (float*)qa[i];
    for (int h = 0; h < 2; ++h) {
      const int row = row0 + 16 * i + 8 * h;
      for (int c = 0; c < DPAD; ++c)
        f[h * DPAD + c] = row < rows && c < HEAD_DIM ? elem_global(q + base + (long)row * stride + c) : 0.0f;
    }
  }
}

inline void load_q_rows(qfrag_t qa[QFRAGS][4], __global const ELEM_T* q, long at_a, long at_b, bool ok_a, bool ok_b,
                        int t) {
  (void)t;
  float* f = (float*)qa;
  for (int c = 0; c < DPAD; ++c) {
    f[c] = ok_a && c < HEAD_DIM ? elem_global(q + at_a + c) : 0.0f;
    f[DPAD + c] = ok_b && c < HEAD_DIM ? elem_global(q + at_b + c) : 0.0f;
  }
}

inline void qk_block(float s[MT][NT_S][4], const qfrag_t qa[MT][QFRAGS][4], __local const ELEM_T* k_tile, int lane) {
  const int t = lane & 3;
  for (int i = 0; i < MT; ++i) {
    const float* f = (const float*)qa[i];
    for (int j = 0; j < NT_S; ++j)
      for (int e = 0; e < 4; ++e) {
        const int key = 8 * j + 2 * t + (e & 1);
        float acc = 0.0f;
        for (int c = 0; c < DPAD; ++c) acc += f[(e >> 1) * DPAD + c] * elem_local(k_tile + key * K_PITCH + c);
        s[i][j][e] = acc;
      }
  }
}

inline void pv_block(float acc[MT][NT_O][4], const float s[MT][NT_S][4], __local const ELEM_T* v_tile, int lane) {
  __local ELEM_T* v = (__local ELEM_T*)v_tile;
  const int g = lane >> 2, t = lane & 3, warp = get_local_id(0) / 32;
#define P_AT(key, row) (*(__local float*)(v + (key) * V_PITCH + DPAD + ((warp * 16 * MT) + (row)) * ELEMS_PER_FLOAT))
  barrier(CLK_LOCAL_MEM_FENCE);
  for (int i = 0; i < MT; ++i)
    for (int j = 0; j < NT_S; ++j)
      for (int e = 0; e < 4; ++e) P_AT(8 * j + 2 * t + (e & 1), 16 * i + g + 8 * (e >> 1)) = operand(s[i][j][e]);
  barrier(CLK_LOCAL_MEM_FENCE);
  for (int i = 0; i < MT; ++i)
    for (int n = 0; n < NT_O; ++n)
      for (int e = 0; e < 4; ++e) {
        const int row = 16 * i + g + 8 * (e >> 1), col = 8 * n + 2 * t + (e & 1);
        float x = 0.0f;
        for (int key = 0; key < BC; ++key) x += P_AT(key, row) * elem_local(v + key * V_PITCH + col);
        acc[i][n][e] += x;
      }
  barrier(CLK_LOCAL_MEM_FENCE);
#undef P_AT
}

inline void store_o2(__global ELEM_T* o, long at, float x0, float x1, bool ok0, bool ok1) {
#if DTYPE == 0
  if (ok0) o[at] = x0;
  if (ok1) o[at + 1] = x1;
#elif DTYPE == 1
  if (ok0) vstore_half_rte(x0, at, (__global half*)o);
  if (ok1) vstore_half_rte(x1, at + 1, (__global half*)o);
#else
  if (ok0) o[at] = float_to_bf16(x0);
  if (ok1) o[at + 1] = float_to_bf16(x1);
#endif
}
