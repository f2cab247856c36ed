// mma_plan.cpp: the shape of the NVIDIA tensor-core fa2 for a call (mma_plan.hpp): eligibility,
// instruction, work-group shape, K/V buffers and __local bytes, from device facts, arguments and
// the overrides. The default shapes come from measured runs on the H100 (table below,
// docs/perf/nvidia-h100.md).
#include "plan/mma_plan.hpp"

#include <cfloat>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "base/errors.hpp"
#include "plan/forward_programs.hpp"  // windowed, transforms_scores
#include "plan/head_dims.hpp"
#include "plan/plan_counts.hpp"

namespace flashcl::detail {
namespace {

// Work-group shape: warps, 16-row m-tiles per warp, keys per block, K/V buffers, rescaling.
// FLASHCL_MMA_TILE="WARPSxBC[xMT[xSTAGES[xLAZY]]]" overrides it for experiments. Defaults measured
// on the H100 (docs/perf/nvidia-h100.md).
struct MmaShape {
  int warps = 4, block_cols = 64, m_tiles = 2;
  int stages = 1;            // K/V buffers: 1 (FlashAttention-2's pipeline) or 2 (double-buffered)
  bool lazy_rescale = true;  // rescale O only in blocks where a row's reference max moved
};

// H100, B=8 H=16 N=4096, TFLOP/s non-causal / causal, all measured in one run (docs/perf):
// fp16 d=64  4x64x2: 2 buffers lazy 261.3/197.8, 2 eager 261.1/143.4, 1 eager 248.4/212.5, 1 lazy 238.4/180.4
// fp16 d=128 4x32x2: 2 lazy 278.5/237.2, 2 eager 275.6/222.4, 1 eager 246.6/234.0, 1 lazy 258.3/224.4
// fp32 d=64  4x32x2x1 69.0/61.7 (2 buffers 66.7/61.3); d=128 4x32x1x1 61.7/59.2 (two m-tiles spill:
// 128 accumulators + 128 Q registers; 4x16x1x2 57.3/43.4).
// wgmma, fp16 d=64 (two K/V buffers: the pipelined schedule): 16x64 eager 288.3/243.8, lazy
// 283.5/241.7, 16x32 239.4/219.0, 8x64 255.1/232.8 (mma.sync in the same run: 267.2/241.9); one
// buffer 8x64 252.3/222.2 in an earlier run. At d=128 (BC 32 only) 12x32 260.8/249.7 against
// mma.sync's 297.4/265.7. Once the wait for P V stayed behind the softmax (7c40388): 16x64 lazy
// 316.3/257.3 and 316.0/256.9, eager 300.9/256.3 and 304.2/257.4; at d=128 mma.sync 4x32x2x2
// 313.3/276.6 against wgmma 12x32 264.5/255.2 (8x32 216.2/194.3, 16x32 206.0/180.4) and mma.sync
// 4x64x2x1 231.2/197.3, 8x32x1x2 224.1/209.6, 8x64x1x1 237.4/218.0, 4x32x2x1 259.2/231.5.
// With mbarriers instead of a barrier per block (two-buffer schedules, v8): wgmma 16x64 lazy
// 342.8/307.2, eager 351.7/303.0 (12x64 225.8/233.0, 8x64 251.8/231.3); d=128 mma.sync 4x32x2x2
// lazy 333.4/304.6, eager 312.3/278.7 (4x16x2x2 301.0/267.6, 8x32x1x2 258.1/241.5, 2x32x2x2
// 253.6/228.0); fp32 d=64 4x32x2x1 71.8/66.2 against two buffers 68.6/65.2. wgmma at d=128
// (FLASHCL_WGMMA=1): 12x64x1x1 314.4/264.4, 8x64x1x1 237.2/219.3, 12x32x1x2 219.4/227.5.
// d=128 mma.sync with 256 rows (v9c, two repeats): 8x32x2x2 lazy 347.3, 348.9 / 282.7, 281.8, eager
// 321.4 / 278.0, 6x32x2x2 255.9 / 221.2, against 4x32x2x2 339.5, 337.6 / 307.4, 306.5; at N=8192
// 357.2 / 301.5 against 345.9 / 322.0.
// The default shapes, NVIDIA's table (each reason in H100 TFLOP/s from the runs above, non-causal /
// causal where two): the first row whose operands, head dim and causality match the call.
// Operands: the e4m3 files for FP8 (wgmma's when that is the instruction tried, FLASHCL_FP8_WGMMA),
// else wgmma when that is the instruction tried, else 3xTF32 for fp32, else mma.sync's fp16/bf16.
enum class Operands { E4M3, E4M3Wgmma, Wgmma, Tf32, F16 };
enum class Causal { Any, Yes, No };
struct MmaRow {
  Operands operands;
  int max_head_dim;
  Causal causal;
  MmaShape shape;  // warps, keys per block, m-tiles, K/V buffers, lazy rescaling
  const char* why;
};
const MmaRow kMmaShapes[] = {
    {Operands::E4M3, 256, Causal::Any, {4, 64, 2, 2, true}, "two m-tiles a warp, two K/V buffers of 64 keys (36 KiB at d = 128)"},
    // e4m3 on wgmma (cc 9.0, d <= 128): the fp16 wgmma's 16 warps where registers allow (ptxas sm_90a:
    // 114-127 at d = 64; at d = 128 16 warps' cap of 128 spills, 12 warps fit 168); 64 keys, two K and
    // two V^T buffers. H100 (bench/gpu/fp8_wgmma_ab.sh, B 8, H 16, N 4096): d = 64 384.5/359.5 against
    // 8 warps 370.5/354.0 and mma.sync 244.6/236.9; d = 128 438.0 against 8 warps 340.8, mma.sync 262.7
    {Operands::E4M3Wgmma, 64, Causal::Any, {16, 64, 1, 2, true}, "e4m3 wgmma at d <= 64: 16 warps 384.5/359.5 against 8 370.5/354.0"},
    {Operands::E4M3Wgmma, 128, Causal::Any, {12, 64, 1, 2, true}, "e4m3 wgmma, d = 128: 12 warps 438.0 against 8 340.8"},
    {Operands::Wgmma, 64, Causal::No, {16, 64, 1, 2, false}, "mbarrier schedule: eager 351.7 against lazy 342.8"},
    {Operands::Wgmma, 64, Causal::Yes, {16, 64, 1, 2, true}, "mbarrier schedule: lazy 307.2 against eager 303.0"},
    {Operands::Wgmma, 256, Causal::Any, {12, 64, 1, 1, true}, "FLASHCL_WGMMA=1 above d = 64: one K and one V buffer, 12 warps 314.4/264.4"},
    {Operands::Tf32, 64, Causal::Any, {4, 32, 2, 1, true}, "3xTF32: one buffer 71.8/66.2 against two 68.6/65.2"},
    {Operands::Tf32, 256, Causal::Any, {4, 32, 1, 1, true}, "3xTF32 at d = 128: two m-tiles spill (128 accumulators + 128 Q registers)"},
    {Operands::F16, 64, Causal::No, {4, 64, 2, 2, true}, "two buffers, lazy 261.3 against one eager 248.4"},
    {Operands::F16, 64, Causal::Yes, {4, 64, 2, 1, false}, "causal: one buffer, eager 212.5 against two lazy 197.8"},
    // 256 rows a work-group halve the K/V traffic per product: +3 % at d = 128 non-causal, but -8 %
    // causal, where the diagonal's wasted work and the uneven rows grow with the tile (v9c)
    {Operands::F16, 256, Causal::No, {8, 32, 2, 2, true}, "256 rows: 347.3/348.9 against 128 rows 339.5/337.6"},
    {Operands::F16, 256, Causal::Yes, {4, 32, 2, 2, true}, "causal: 128 rows 307.4/306.5 against 256 rows 282.7/281.8"},
};

MmaShape mma_shape(const ForwardArgs& a, MmaKind kind, const Overrides& o) {
  const Operands operands = is_fp8(a.dtype)            ? (kind == MmaKind::Wgmma ? Operands::E4M3Wgmma : Operands::E4M3)
                            : kind == MmaKind::Wgmma ? Operands::Wgmma
                            : is_tf32(a)             ? Operands::Tf32
                                                     : Operands::F16;
  MmaShape s;
  for (const MmaRow& row : kMmaShapes)
    if (row.operands == operands && a.head_dim <= row.max_head_dim &&
        (row.causal == Causal::Any || (row.causal == Causal::Yes) == a.causal)) {
      s = row.shape;
      break;
    }
  // FLASHCL_FP8_QLOCAL=1 (Q in __local memory): one m-tile a warp and 32 keys a block, the shape
  // whose registers (137 from clang's PTX at d = 128, no spills) let three 4-warp work-groups share
  // an SM instead of two (docs/perf/nvidia-h100.md, "FP8 forward: Q in local memory")
  if (operands == Operands::E4M3 && o.fp8_q_local) s = {4, 32, 1, 2, true};
  // e4m3 at d 129-256 (unless FLASHCL_FP8_D256=0): one m-tile a warp (O's 32 n-tiles are 128 accumulators) and 32
  // keys a block, two K/V buffers of 34 KiB; Q's 32 fragment registers stay (255 registers from
  // clang's PTX, no spills; NVIDIA's ptxas on the H100: 255 and 28 bytes of spill stores at d = 256;
  // with Q in __local memory 52 KiB, past OpenCL's 48). H100, B 8, H 16, N 4096, d 256: 221.0
  // TFLOP/s against the portable fa2's 4.0 (bench/gpu/defaults_ab.sh)
  if (operands == Operands::E4M3 && a.head_dim > kMaxMmaHeadDim) s = {4, 32, 1, 2, true};
  if (!o.mma_tile.empty()) {
    const char* env = o.mma_tile.c_str();
    int lazy = 1;
    s.m_tiles = 1;
    s.stages = 1;
    // fields one at a time, so "4x64junk" fails as surely as "4x64x2x2x1junk"
    int fields = 0, used = 0;
    for (int* field : {&s.warps, &s.block_cols, &s.m_tiles, &s.stages, &lazy}) {
      int len = 0;
      if (std::sscanf(env + used, fields == 0 ? "%d%n" : "x%d%n", field, &len) != 1) break;
      used += len;
      ++fields;
    }
    const int n = env[used] == '\0' ? fields : -1;
    if (n < 2 || n > 5 || s.warps < 1 || s.warps > 16 || s.block_cols < 16 || s.block_cols > 128 ||
        s.block_cols % 16 != 0 || s.m_tiles < 1 || s.m_tiles > 4 || s.stages < 1 || s.stages > 2 || lazy < 0 ||
        lazy > 1)
      fail(Status::InvalidArgument,
           "FLASHCL_MMA_TILE: expected WARPSxBC[xMT[xSTAGES[xLAZY]]] such as 4x64x2x2x1 (mma.sync) or 16x64x1x2x1 "
           "(wgmma) (BC a multiple of 16, MT 1-4, STAGES 1-2, LAZY 0-1), got '",
           env, "'");
    s.lazy_rescale = lazy == 1;
    if (kind == MmaKind::Wgmma && (s.warps % 4 != 0 || s.m_tiles != 1))
      fail(Status::InvalidArgument,
           "FLASHCL_MMA_TILE: wgmma runs whole warpgroups with one m-tile per warp (WARPS a multiple of 4, MT 1; "
           "FLASHCL_WGMMA=0 selects mma.sync), got '",
           env, "'");
    // mma_wgmma_e4m3.cl: the overlapped two-buffer schedule only (V^T written a step ahead), keys in k-steps of 32
    if (operands == Operands::E4M3Wgmma && (s.stages != 2 || s.block_cols % 32 != 0))
      fail(Status::InvalidArgument,
           "FLASHCL_MMA_TILE: e4m3 on wgmma (FLASHCL_FP8_WGMMA) needs two K/V buffers and BC a multiple of 32 "
           "(such as 12x64x1x2x1), got '",
           env, "'");
  }
  return s;
}

// The kernel's padded head dim and __local row pitches (elements), as mma_half_io.cl with
// mma_f16.cl / mma_wgmma.cl, or mma_tf32.cl define them.
struct TileGeometry {
  int padded_head_dim, k_pitch, v_pitch, elem_bytes;
};

TileGeometry geometry(const ForwardArgs& a, MmaKind kind) {
  // FP8: bytes, the head dim padded to the k of 32; mma_e4m3.cl pads rows by 16, mma_wgmma_e4m3.cl's core matrices not
  if (is_fp8(a.dtype)) {
    const int d = (a.head_dim + 31) / 32 * 32;
    return kind == MmaKind::Wgmma ? TileGeometry{d, d, d, 1} : TileGeometry{d, d + 16, d + 16, 1};
  }
  if (is_tf32(a)) {
    const Tf32Tiles t = tf32_tiles(a.head_dim);
    return {t.padded_head_dim, t.k_pitch, t.v_pitch, 4};
  }
  const int d = (a.head_dim + 15) / 16 * 16;
  return kind == MmaKind::Wgmma ? TileGeometry{d, d, d, 2} : TileGeometry{d, d + 8, d + 8, 2};
}

// Whether the head dim and every row start of `t` (offset, batch, sequence and head strides) are
// multiples of `elems` elements.
bool rows_aligned(const ForwardArgs& a, const Tensor& t, int elems) {
  return a.head_dim % elems == 0 && t.offset % elems == 0 && t.seq_stride % elems == 0 &&
         t.batch_stride % elems == 0 && t.head_stride % elems == 0;
}

}  // namespace

bool is_tf32(const ForwardArgs& a) { return a.dtype == DType::F32; }

Tf32Tiles tf32_tiles(int head_dim) {
  const int d = (head_dim + 7) / 8 * 8;
  return {d, d + (40 - d % 32) % 32, d + (36 - d % 32) % 32};
}

// wgmma exists on sm_90a only (compute capability 9.0): fp16/bf16 there at d <= 64.
// FLASHCL_WGMMA=0 turns it off, =1 takes it at every head dim (for measurements: above d = 64
// two K/V buffers of more than 32 keys do not fit the 48 KiB of OpenCL local memory, one K and
// one V buffer of 64 keys lose the overlap of softmax and products, and mma.sync measured faster;
// docs/perf/nvidia-h100.md, v5 and v8).
bool wgmma_wanted(const DeviceFacts& facts, const ForwardArgs& a, const Overrides& o) {
  const std::string& choice = o.wgmma;
  // a bad FLASHCL_FP8_WGMMA is an error on every device, not only where wgmma exists
  const std::string& fp8 = o.fp8_wgmma;
  if (is_fp8(a.dtype) && fp8 != "" && fp8 != "0" && fp8 != "1" && fp8 != "require")
    fail(Status::InvalidArgument, "FLASHCL_FP8_WGMMA: expected '0', '1' or 'require', got '", fp8, "'");
  if (choice == "0" || facts.nv_compute_major != 9 || facts.nv_compute_minor != 0) return false;
  // e4m3 up to d = 128 (mma_wgmma_e4m3.cl): 1.57x mma.sync at d = 64, 1.67x at d = 128 on the H100
  // (docs/perf/nvidia-h100.md, "FP8 forward on wgmma"); FLASHCL_FP8_WGMMA=0 keeps mma.sync
  if (is_fp8(a.dtype)) return fp8 != "0" && a.head_dim <= kMaxMmaHeadDim;
  return !is_tf32(a) && (a.head_dim <= 64 || choice == "1");
}

// 16-byte copies need the head dim and every row start of K and V on a multiple of 16 bytes.
bool rows_are_16_byte_aligned(const ForwardArgs& a) {
  const int chunk = is_tf32(a) ? 4 : is_fp8(a.dtype) ? 16 : 8;
  return rows_aligned(a, a.k, chunk) && rows_aligned(a, a.v, chunk);
}

// Q and O move as pairs of 16-bit elements (4-byte loads and stores) when the head dim and every
// row start of Q and O are even: half the instructions of element-wise access, +3-8 % on the H100
// (docs/perf/nvidia-h100.md, v7).
bool rows_are_pair_aligned(const ForwardArgs& a) {
  return !is_tf32(a) && !is_fp8(a.dtype) && rows_aligned(a, a.q, 2) && rows_aligned(a, a.o, 2);
}

// FP8 (mma_e4m3.cl's QUAD_IO): Q moves as runs of four bytes (4-byte loads), O as runs of four
// 16-bit elements (8-byte stores), when the head dim and every row start of Q and O are multiples of 4.
bool rows_are_quad_aligned(const ForwardArgs& a) {
  return is_fp8(a.dtype) && rows_aligned(a, a.q, 4) && rows_aligned(a, a.o, 4);
}

// O leaves as 16-byte row chunks (staged through __local memory by the mma.sync two-buffer
// schedule) when the head dim and every row start of O are multiples of 8 elements: whole sectors
// and a quarter of the pair stores, +1-2 % at d = 128 on the H100 (docs/perf/nvidia-h100.md, v11).
bool o_rows_are_16_byte_aligned(const ForwardArgs& a) {
  return !is_tf32(a) && !is_fp8(a.dtype) && rows_aligned(a, a.o, 8);
}

TilePlan plan_for_kind(const ForwardArgs& a, MmaKind kind, const Overrides& o) {
  count_plan(kind == MmaKind::Wgmma ? plan_counts().wgmma : plan_counts().mma_sync);
  const MmaShape shape = mma_shape(a, kind, o);
  const TileGeometry geo = geometry(a, kind);
  TilePlan p;
  p.block_rows = 16 * shape.m_tiles * shape.warps;
  p.block_cols = shape.block_cols;
  p.rows_per_team = 16 * shape.m_tiles;
  p.team_size = 32;
  p.padded_head_dim = geo.padded_head_dim;
  p.work_group_size = 32 * static_cast<std::size_t>(shape.warps);
  p.stages = shape.stages;
  p.lazy_rescale = shape.lazy_rescale;
  p.local_bytes = static_cast<std::size_t>(shape.stages) * shape.block_cols * (geo.k_pitch + geo.v_pitch) *
                  geo.elem_bytes;
  if (shape.stages == 2) p.local_bytes += 4 * 8;  // the schedule's four mbarriers
  const bool fp8_wgmma = is_fp8(a.dtype) && kind == MmaKind::Wgmma;
  // the two mbarriers of the V^T tiles stored by the warps (a transposed V arrives by cp.async as K)
  if (fp8_wgmma && !a.fp8.v_transposed) p.local_bytes += 2 * 8;
  p.q_local = is_fp8(a.dtype) && o.fp8_q_local && !fp8_wgmma;
  if (p.q_local) p.local_bytes += static_cast<std::size_t>(p.block_rows) * geo.k_pitch;  // Q's rows, K's pitch
  p.softcap_ex2 = o.fwd_softcap_ex2 && softcap_takes_ex2(a.softcap) && !is_tf32(a);
  if (kind == MmaKind::Wgmma && shape.stages == 2) p.local_bytes += 4 * p.work_group_size;  // WG_WAIT_AFTER's words
  p.reason = concat("fa2 on tensor cores: ", shape.warps, " warps x ", 16 * shape.m_tiles, " rows, ", p.block_cols,
                    " keys per block, ", shape.stages, shape.stages == 1 ? " K/V buffer, " : " K/V buffers, ",
                    fp8_wgmma                 ? (a.fp8.v_transposed ? "wgmma.m64nNk32 e4m3, V^T as stored"
                                                                    : "wgmma.m64nNk32 e4m3, V transposed through registers")
                    : is_fp8(a.dtype)         ? (p.q_local ? "mma.sync.m16n8k32 e4m3, Q in local memory" : "mma.sync.m16n8k32 e4m3")
                    : is_tf32(a)              ? "mma.sync.m16n8k8 3xTF32"
                    : kind == MmaKind::Wgmma ? "wgmma.m64nNk16"
                                             : "mma.sync.m16n8k16");
  return p;
}

bool mma_may_take(const DeviceFacts& facts, const ForwardArgs& a, const Overrides& o) {
  if (o.mma_off) return false;
  if (!o.tile.empty()) return false;  // forced portable tiles
  // e4m3 up to d = 256 unless FLASHCL_FP8_D256=0 (its shape in mma_shape)
  const int max_head_dim = is_fp8(a.dtype) && o.fp8_d256 ? 2 * kMaxMmaHeadDim : kMaxMmaHeadDim;
  if (a.algorithm != Algorithm::FA2 || a.head_dim > max_head_dim || a.tile.block_rows != 0 || a.tile.block_cols != 0) return false;
  // plain attention, GQA, and unless FLASHCL_TENSOR_CORE_VARIANTS=0 windows (fa2_mma.cl's block ranges
  // and mask pass take common.cl's rules) and packed sequences in 16 or 32 bits (its bases and
  // lengths from cu_seqlens); with FLASHCL_TENSOR_CORE_TRANSFORMS softcap, ALiBi, masks and biases
  // in 16 or 32 bits (fa2_mma.cl's transform_tile); fp8 variants (no test covers them on the e4m3
  // kernels) run on the portable fa2
  const bool transform = transforms_scores(a);
  if ((windowed(a.window) || a.cu_seqlens_q != nullptr || transform) && (!o.tensor_core_variants || is_fp8(a.dtype)))
    return false;
  if (transform && !o.tensor_core_transforms) return false;
  // FP8: e4m3 with per-tensor or per-head descales, O in 16 bits; block quantisation, e5m2 and fp32
  // O run on the portable fa2. A transposed V only on wgmma (mma_sync_reads_v)
  if (is_fp8(a.dtype) && (a.dtype != DType::E4M3 || a.fp8.quant_block != 0 ||
                          a.out_dtype.value_or(DType::BF16) == DType::F32))
    return false;
  if (!mma_sync_reads_v(a) && !wgmma_wanted(facts, a, o)) return false;
  // its plain programs keep scores in base 2, where a scale past FLT_MAX / log2 e would overflow
  // (the portable fa2 takes such calls; transform programs are in halves but are gated the same)
  if (std::fabs(a.scale.value_or(1.0f)) > FLT_MAX / 1.4426950408889634) return false;
  // FLASHCL_MMA=any: on any device (PoCL with tests/emulated_mma's operand files)
  if (!o.mma_any && (!facts.is_nvidia() || facts.kind != DeviceKind::GPU || facts.nv_compute_major < 8)) return false;
  // e4m3 mma.sync exists from compute capability 8.9 (Ada, Hopper)
  return !(is_fp8(a.dtype) && facts.nv_compute_major * 10 + facts.nv_compute_minor < 89);
}

bool mma_sync_reads_v(const ForwardArgs& a) { return !(is_fp8(a.dtype) && a.fp8.v_transposed); }

bool mma_eligible(const DeviceFacts& facts, const ForwardArgs& a, const Overrides& o) {
  // a default shape that does not fit this device's local memory leaves the call to the portable
  // kernel; a forced one (FLASHCL_MMA_TILE) that does not fit is an error in try_launch_fa2_mma
  return mma_may_take(facts, a, o) &&
         (!o.mma_tile.empty() || mma_plan(facts, a, o).local_bytes <= facts.local_mem_bytes);
}

// Before any probe: a device whose wgmma probe fails runs the mma.sync plan.
TilePlan mma_plan(const DeviceFacts& facts, const ForwardArgs& a, const Overrides& o) {
  return plan_for_kind(a, wgmma_wanted(facts, a, o) ? MmaKind::Wgmma : MmaKind::MmaSync, o);
}

}  // namespace flashcl::detail
