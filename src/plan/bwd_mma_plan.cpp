// bwd_mma_plan.cpp: eligibility, shape and build switches of the NVIDIA tensor-core backward
// (bwd_mma_plan.hpp). The shapes are those that fit OpenCL's 48 KiB of static __local memory with
// dK, dV and V of 16 keys a warp in registers (d = 128: 64 + 64 accumulators and 32 V registers per
// lane, so 32 query rows a block); the defaults are the fastest of the H200 sweep of bench/gpu/bwd.sh.
#include "plan/bwd_mma_plan.hpp"

#include <cfloat>
#include <cmath>
#include <cstdio>

#include "base/errors.hpp"
#include "plan/forward_programs.hpp"  // windowed, transforms_scores
#include "plan/head_dims.hpp"          // kMaxMmaHeadDim
#include "plan/mma_plan.hpp"          // tf32_tiles, softcap_takes_ex2

namespace flashcl::detail {
namespace {

// Whether the head dim and every row start of `t` are multiples of `elems` elements.
bool rows_aligned(int head_dim, const Tensor& t, int elems) {
  return head_dim % elems == 0 && t.offset % elems == 0 && t.seq_stride % elems == 0 && t.batch_stride % elems == 0 &&
         t.head_stride % elems == 0;
}

// The kernel's compile-time rules (bwd_mma.cl's #error): BQ a multiple of 16, the warps a multiple
// of BQ / 16 (each dQ m-tile shared by whole warps), an even number of 8-column tiles of dK/dV (NT_O)
// and of dQ per warp, the columns those of the head dim padded to the operand file's mma k (DPAD:
// 16 for fp16/bf16, mma_half_io.cl; 8 for fp32, mma_tf32.cl). So the default shapes (two warps a dQ
// m-tile) take head dims whose DPAD is a multiple of 32: 17-32, 49-64, 81-96, 113-128 in 16 bits,
// 25-32, 57-64, 89-96, 121-128 in fp32; the padding columns are loaded as zeros.
bool shape_compiles(int warps, int query_rows, int head_dim, DType dtype) {
  if (warps < 1 || warps > 16 || query_rows < 16 || query_rows % 16 != 0) return false;
  const int m_tiles = query_rows / 16;
  if (warps % m_tiles != 0) return false;
  const int k = dtype == DType::F32 ? 8 : 16;
  const int tiles = (head_dim + k - 1) / k * k / 8, split = warps / m_tiles;
  return tiles % 2 == 0 && tiles % split == 0 && (tiles / split) % 2 == 0;
}

// Elements of the call's storage type in one 16-byte cp.async.
int vec_elems(DType dtype) { return dtype == DType::F32 ? 4 : 8; }

// FLASHCL_BWD_MMA_TILE's fields, "WARPSxBQ[xSTAGES[xMK]]" (STAGES and MK default to 1); false if
// malformed.
bool parse_tile(const std::string& text, int& warps, int& rows, int& stages, int& mk) {
  int used = 0, more = 0;
  const char* env = text.c_str();
  bool ok = std::sscanf(env, "%dx%d%n", &warps, &rows, &used) == 2;
  if (ok && env[used] == 'x') {
    ok = std::sscanf(env + used, "x%d%n", &stages, &more) == 1;
    used += more;
  }
  if (ok && env[used] == 'x') {
    ok = std::sscanf(env + used, "x%d%n", &mk, &more) == 1;
    used += more;
  }
  return ok && env[used] == '\0';
}

// The fp32 (3xTF32) shape: bwd_mma.cl's contract form holds K_w, V_w (A fragments) and dK_w, dV_w
// of 16 keys a warp in registers (4 d / 8 fp32 registers a lane: 128 at d = 64; at d = 128 256,
// where clang's PTX through ptxas (sm_90) spilled 1.4 KiB a lane, so above d = 64 two warps share
// the 16 keys, each with half of them: WARP_PAIRS, no spills there, 39 KiB of __local memory) and
// only Q_i, dO_i in __local memory; the dQ pass's key blocks are the Q blocks' size (its products
// are the same qk_block and pv_block: BC = BQ). Four warps x 32 query rows, with two Q/dO (K/V)
// buffers where they fit 37 KiB (d <= 64). A first shape for the card to measure, not a tuned one.
// FLASHCL_BWD_MMA_TILE's WARPSxBQ[xSTAGES] sets it, under bwd_mma.cl's compile-time rules
// (shape_compiles) and up to 128 rows; its MK is the 16-bit kernels' (fp32 keeps one m-tile a warp,
// so one setting serves a run over both).
BwdMmaPlan tf32_plan(const ForwardArgs& a, const Overrides& o) {
  BwdMmaPlan p;
  p.dq_pass = true;  // no atomic form on fp32: FLASHCL_BWD_MMA_DQ=atomic changes nothing here
  p.warps = 4;
  p.query_rows = 32;
  p.stages = a.head_dim <= 64 ? 2 : 1;
  if (!o.bwd_mma_tile.empty()) {
    int warps = 0, rows = 0, stages = 1, mk = 1;
    if (!parse_tile(o.bwd_mma_tile, warps, rows, stages, mk) || rows > 128 || (stages != 1 && stages != 2) ||
        (mk != 1 && mk != 2) || !shape_compiles(warps, rows, a.head_dim, a.dtype))
      fail(Status::InvalidArgument,
           "FLASHCL_BWD_MMA_TILE: on fp32 expected WARPSxBQ[xSTAGES[xMK]] such as 4x32 or 4x32x2 (BQ a multiple of 16 "
           "up to 128, WARPS 1-16 and a multiple of BQ / 16, an even number of 8-column dQ tiles per warp, STAGES 1 "
           "or 2, MK 1 or 2 but taken as 1), got '",
           o.bwd_mma_tile, "'");
    p.warps = warps;
    p.query_rows = rows;
    p.stages = stages;
  }
  p.warp_pairs = a.head_dim > 64 && p.warps % 2 == 0;
  p.split_each_product = o.bwd_tf32_split.value_or(a.head_dim > 64);
  p.dq_keys = p.query_rows;
  p.dq_stages = p.stages;
  p.local_bytes = bwd_tf32_local_bytes(p.query_rows, a.head_dim, p.stages) +
                  (p.warp_pairs ? bwd_tf32_handover_bytes(p.warps, p.query_rows) : 0);
  p.dq_local_bytes = bwd_tf32_dq_local_bytes(p.dq_keys, a.head_dim, p.dq_stages);
  p.reason = concat("fa2 backward on tensor cores: ", p.warps, p.warp_pairs ? " warps in pairs" : " warps",
                    " x 16 keys, ", p.query_rows, " query rows per block, ", p.stages,
                    p.stages == 1 ? " Q/dO buffer" : " Q/dO buffers", ", mma.sync.m16n8k8 3xTF32");
  return p;
}

}  // namespace

std::size_t bwd_tf32_local_bytes(int query_rows, int head_dim, int stages) {
  const std::size_t rows = static_cast<std::size_t>(stages) * static_cast<std::size_t>(query_rows);
  return sizeof(float) * (2 * rows * tf32_tiles(head_dim).k_pitch + 2 * rows);  // (ONE_PITCH: K's pitch)
}

std::size_t bwd_tf32_handover_bytes(int warps, int query_rows) {
  return sizeof(float) * static_cast<std::size_t>(warps / 2) * (query_rows / 2) * 32;  // s_handover
}

std::size_t bwd_tf32_dq_local_bytes(int keys, int head_dim, int stages) {
  const std::size_t rows = static_cast<std::size_t>(stages) * static_cast<std::size_t>(keys);
  return sizeof(float) * 2 * rows * tf32_tiles(head_dim).k_pitch;
}

std::size_t bwd_mma_local_bytes(int warps, int query_rows, int head_dim, int stages) {
  const std::size_t keys = 16 * static_cast<std::size_t>(warps), rows = query_rows, n = stages;
  const std::size_t pitch = (head_dim + 15) / 16 * 16 + 8;
  return 2 * (keys * pitch + 2 * n * rows * pitch + keys * (rows + 8)) + 2 * sizeof(float) * n * rows;
}

std::size_t bwd_mma_dq_local_bytes(int keys, int head_dim, int stages) {
  const std::size_t pitch = (head_dim + 15) / 16 * 16 + 8;
  return 2 * 2 * static_cast<std::size_t>(stages) * static_cast<std::size_t>(keys) * pitch;
}

BwdMmaPlan bwd_mma_plan(const ForwardArgs& a, const Overrides& o) {
  BwdMmaPlan p;
  if (o.bwd_mma_dq != "" && o.bwd_mma_dq != "pass" && o.bwd_mma_dq != "atomic")
    fail(Status::InvalidArgument, "FLASHCL_BWD_MMA_DQ: expected 'pass' or 'atomic', got '", o.bwd_mma_dq, "'");
  if (a.dtype == DType::F32) return tf32_plan(a, o);
  p.dq_pass = o.bwd_mma_dq != "atomic";
  // its error is about c * 3e-7 absolute in a score (P relative): taken only where that stays
  // far inside 16-bit rounding
  p.softcap_ex2 = o.bwd_softcap_ex2 && softcap_takes_ex2(a.softcap);
  // Measured on the H200 (fp16, B 8, H 16, N 4096, backward TFLOP/s non-causal / causal;
  // docs/perf/nvidia-h200.md): d = 64 takes 8 warps x 32 rows (122.3 / 101.9, against 113.5 / 97.0
  // for 4 x 64, 97.1 / 84.9 for 4 x 32); not profiled, but 128 keys a work-group read each Q_i,
  // dO_i once for twice the keys, and 32-row blocks keep S^T and dP^T at 32 registers. d = 128 keeps 4 x 32
  // (104.0 / 96.6; 4 x 16 94.8 / 87.7, 2 x 32 67.0 / 59.8): V_w (32), dK_w and dV_w (64 + 64)
  // registers a lane leave room for 32 query rows only, and 8 warps do not fit 48 KiB with them.
  // With dQ in its own pass (the default; bwd_mma_dkdv then has no dQ product), d = 64 takes 4 x 64
  // (dK/dV kernel and dQ pass together 174.1 / 167.7, against 139.1 / 124.6 for 8 x 32; same run).
  p.warps = a.head_dim > 64 || p.dq_pass ? 4 : 8;
  p.query_rows = a.head_dim <= 64 && p.dq_pass ? 64 : 32;
  // Two m-tiles a warp at d <= 64 (bwd_mma_dkdv's MK 2: 4 warps x 32 keys, 32-row Q blocks, two
  // Q/dO buffers; the dQ pass's MT 2 with 32-key blocks): every ldmatrix fragment serves two
  // m-tiles. H100 (bench/gpu/bwd_ab.sh, B 8, H 16, N 4096, backward TFLOP/s non-causal / causal):
  // fp16 191.7 / 180.8 against 174.9 / 166.9, bf16 192.7 / 183.8 against 175.7 / 171.8. Not under
  // FLASHCL_BWD_WGMMA, whose kernels hold one m-tile a warp (and measured slower: 0.82-0.84x).
  const bool two_tiles = a.head_dim <= 64 && p.dq_pass && (o.bwd_wgmma.empty() || o.bwd_wgmma == "0");
  if (two_tiles) {
    p.query_rows = 32;
    p.stages = 2;
    p.key_mtiles = 2;
  }
  if (!o.bwd_mma_tile.empty()) {
    int warps = 0, rows = 0, stages = 1, mk = 1;
    const char* env = o.bwd_mma_tile.c_str();
    if (!parse_tile(o.bwd_mma_tile, warps, rows, stages, mk) || (stages != 1 && stages != 2) || (mk != 1 && mk != 2) ||
        !shape_compiles(warps, rows, a.head_dim, a.dtype))
      fail(Status::InvalidArgument,
           "FLASHCL_BWD_MMA_TILE: expected WARPSxBQ[xSTAGES[xMK]] such as 4x64, 4x32x2 or 4x32x2x2 (BQ a multiple of "
           "16, WARPS 1-16 and a multiple of BQ / 16, an even number of 8-column dQ tiles per warp, STAGES 1 or 2, MK "
           "1 or 2 16-key m-tiles a warp), got '",
           env, "'");
    p.warps = warps;
    p.query_rows = rows;
    p.stages = stages;
    // MK 2 (32 keys a warp: every Q_i/dO_i fragment read serves two m-tiles) holds dK, dV and V of
    // 32 keys a lane's warp: 160 registers at d = 64 (255 in all at BQ 32, no spills, clang + ptxas
    // sm_90), twice the register file at d = 128; and bwd_mma_dkdv's atomic dQ is laid out for one.
    // So it is taken with the dQ pass at d <= 64 only, 1 elsewhere (one setting for a run over both).
    p.key_mtiles = p.dq_pass && a.head_dim <= 64 ? mk : 1;
  }
  p.local_bytes = bwd_mma_local_bytes(p.warps * p.key_mtiles, p.query_rows, a.head_dim, p.stages);
  // The dQ pass's kernel: two K/V buffers so the next block's copies overlap this one's products, as
  // many keys as keep both within 36 KiB: 64 at d = 64 (S and dP 32 registers each), 32 at d = 128
  // (Q, dO as A fragments and dQ take 128 registers a lane there already). The H200 sweep agrees
  // within 1 % (d = 128: 64x1 182.7 / 168.5 against 181.9 / 167.4; d = 64: 128x1 139.8 / 123.3
  // against 139.1 / 124.6 at 8 x 32).
  p.dq_keys = a.head_dim > 64 || two_tiles ? 32 : 64;
  p.dq_stages = 2;
  if (two_tiles) p.dq_mtiles = 2;
  if (!o.bwd_mma_dq_tile.empty()) {
    int keys = 0, stages = 0, mtiles = 1, used = 0, more = 0;
    const char* env = o.bwd_mma_dq_tile.c_str();
    bool ok = std::sscanf(env, "%dx%d%n", &keys, &stages, &used) == 2;
    if (ok && env[used] == 'x') {
      ok = std::sscanf(env + used, "x%d%n", &mtiles, &more) == 1;
      used += more;
    }
    if (!ok || env[used] != '\0' || keys < 16 || keys > 256 || keys % 16 != 0 || (stages != 1 && stages != 2) ||
        (mtiles != 1 && mtiles != 2))
      fail(Status::InvalidArgument,
           "FLASHCL_BWD_MMA_DQ_TILE: expected KEYSxSTAGES[xMT] such as 64x2 or 32x2x2 (KEYS a multiple of 16 up to "
           "256, STAGES 1 or 2, MT 1 or 2 m-tiles a warp), got '",
           env, "'");
    p.dq_keys = keys;
    p.dq_stages = stages;
    // MT 2 holds Q, dO (A fragments) and dQ of 32 rows a warp: 128 registers a lane at d = 64 (244
    // in all with 32-key blocks, no spills, clang + ptxas sm_90), twice the register file at d = 128,
    // which keeps 1 (so one setting serves a run over both head dims)
    p.dq_mtiles = a.head_dim <= 64 ? mtiles : 1;
  }
  p.dq_local_bytes = bwd_mma_dq_local_bytes(p.dq_keys, a.head_dim, p.dq_stages);
  p.reason = concat("fa2 backward on tensor cores: ", p.warps, " warps x ", 16 * p.key_mtiles, " keys, ", p.query_rows,
                    " query rows per block, ", p.stages, p.stages == 1 ? " Q/dO buffer" : " Q/dO buffers",
                    ", mma.sync.m16n8k16");
  return p;
}

bool bwd_mma_has_variants(const ForwardArgs& a) {
  return windowed(a.window) || transforms_scores(a) || a.cu_seqlens_q != nullptr;
}

bool bwd_mma_eligible(const DeviceFacts& facts, const BackwardArgs& args, const Overrides& o) {
  const ForwardArgs& a = args.forward;
  if (o.bwd_mma == "0") return false;
  // FLASHCL_BWD_MMA=any: on whatever device runs the call (tests/emulated_mma/run.sh, PoCL)
  if (o.bwd_mma != "any" && (!facts.is_nvidia() || facts.kind != DeviceKind::GPU || facts.nv_compute_major < 8))
    return false;
  if (a.algorithm != Algorithm::FA2) return false;
  if (a.dtype != DType::F16 && a.dtype != DType::BF16 && !(a.dtype == DType::F32 && o.bwd_tf32)) return false;
  if (a.head_dim > kMaxMmaHeadDim) return false;
  // every variant but a bias gradient, which needs dS written out (the portable kernels' DBIAS)
  if (args.d_bias.kind != MaskKind::None) return false;
  if (bwd_mma_has_variants(a) && !o.tensor_core_variants) return false;
  // scores in base 2: scale * log2 e must stay finite
  if (std::fabs(a.scale.value_or(1.0f)) > FLT_MAX / 1.4426950408889634) return false;
  // a FLASHCL_BWD_MMA_TILE that is well formed but does not compile at this head dim leaves the call
  // to the portable kernels (bwd_mma_plan would refuse it; malformed text still fails there)
  int warps = 0, rows = 0, stages = 1, mk = 1;
  if (!o.bwd_mma_tile.empty() && parse_tile(o.bwd_mma_tile, warps, rows, stages, mk) &&
      !shape_compiles(warps, rows, a.head_dim, a.dtype))
    return false;
  const BwdMmaPlan p = bwd_mma_plan(a, o);
  // head dims other than 64 and 128 where the planned shape compiles for them (shape_compiles)
  if (!shape_compiles(p.warps, p.query_rows, a.head_dim, a.dtype)) return false;
  return p.local_bytes <= facts.local_mem_bytes &&
         (!bwd_mma_writes_dq(p, args) || p.dq_local_bytes <= facts.local_mem_bytes);
}

bool bwd_mma_takes_dq(const DeviceFacts& facts, const BackwardArgs& args, const Overrides& o) {
  return bwd_mma_eligible(facts, args, o) && bwd_mma_writes_dq(bwd_mma_plan(args.forward, o), args);
}

std::size_t bwd_wgmma_dkdv_local_bytes(int query_rows, int head_dim, int stages) {
  const std::size_t rows = static_cast<std::size_t>(stages) * static_cast<std::size_t>(query_rows);
  return 2 * 2 * rows * ((head_dim + 15) / 16 * 16) + 2 * sizeof(float) * rows;
}

std::size_t bwd_wgmma_dq_overlap_local_bytes(int keys, int head_dim, int warps) {
  return 2 * 5 * static_cast<std::size_t>(keys) * ((head_dim + 15) / 16 * 16) + sizeof(float) * 32 * warps;
}

void check_bwd_wgmma_switch(const Overrides& o) {
  const std::string& v = o.bwd_wgmma;
  if (v != "" && v != "0" && v != "1" && v != "dq" && v != "overlap")
    fail(Status::InvalidArgument,
         "FLASHCL_BWD_WGMMA: expected '1' (dQ pass and dK/dV kernel), 'overlap' (the same, the dQ product "
         "overlapped), 'dq' or '0', got '",
         v, "'");
}

BwdWgmmaKernels bwd_wgmma_kernels(const DeviceFacts& facts, const BackwardArgs& args, const BwdMmaPlan& plan,
                                  const Overrides& o) {
  check_bwd_wgmma_switch(o);
  const std::string& v = o.bwd_wgmma;
  BwdWgmmaKernels k;
  // mma_wgmma.cl's rules: a warpgroup computes 64 rows, 16 a warp (MT 1), and its products span at most
  // 16 tiles of 8 columns (WG_TILES): key blocks up to 128 (FLASHCL_BWD_MMA_DQ_TILE allows 256)
  // (at the head dims they were measured at, 64 and 128)
  k.dq = (v == "1" || v == "dq" || v == "overlap") && !bwd_mma_has_variants(args.forward) &&
         (args.forward.head_dim == 64 || args.forward.head_dim == 128) &&
         args.forward.dtype != DType::F32 && facts.is_nvidia() &&
         facts.nv_compute_major == 9 &&
         facts.nv_compute_minor == 0 && bwd_mma_writes_dq(plan, args) && plan.warps % 4 == 0 && plan.dq_mtiles == 1 &&
         plan.dq_keys <= 128;
  k.dkdv = k.dq && (v == "1" || v == "overlap") && plan.key_mtiles == 1 && plan.query_rows <= 128 &&
           bwd_wgmma_dkdv_local_bytes(plan.query_rows, args.forward.head_dim, plan.stages) <= facts.local_mem_bytes;
  k.dq_overlap = k.dq && v == "overlap" &&
                 bwd_wgmma_dq_overlap_local_bytes(plan.dq_keys, args.forward.head_dim, plan.warps) <=
                     facts.local_mem_bytes;
  return k;
}

BwdMmaPlan bwd_wgmma_dkdv_shape(const DeviceFacts& facts, const BwdMmaPlan& plan, int head_dim, const Overrides& o) {
  BwdMmaPlan p = plan;
  if (o.bwd_mma_tile.empty() && bwd_wgmma_dkdv_local_bytes(p.query_rows, head_dim, 2) <= facts.local_mem_bytes)
    p.stages = 2;
  p.local_bytes = bwd_wgmma_dkdv_local_bytes(p.query_rows, head_dim, p.stages);
  return p;
}

bool bwd_mma_vec_load(const BackwardArgs& args, const BwdMmaPlan& plan) {
  const ForwardArgs& a = args.forward;
  const int d = a.head_dim, elems = vec_elems(a.dtype);
  return rows_aligned(d, a.q, elems) && rows_aligned(d, a.k, elems) && rows_aligned(d, args.d_o, elems) &&
         (!bwd_mma_writes_dq(plan, args) || rows_aligned(d, a.v, elems));
}

std::string bwd_mma_options(const BackwardArgs& args, const BwdMmaPlan& plan) {
  const ForwardArgs& a = args.forward;
  const int d = a.head_dim;
  // 16-byte cp.async of Q, dO and K rows; 4-byte pairs of V (its A fragments) and of dK, dV
  // (the dQ pass: its kernel also copies V's rows and reads Q, dO and writes dQ in pairs)
  const bool det = bwd_mma_writes_dq(plan, args);
  const bool vec = bwd_mma_vec_load(args, plan);
  const bool pairs = rows_aligned(d, a.v, 2) && rows_aligned(d, args.d_k, 2) && rows_aligned(d, args.d_v, 2) &&
                     (!det || (rows_aligned(d, a.q, 2) && rows_aligned(d, args.d_o, 2) && rows_aligned(d, args.d_q, 2)));
  std::string options = concat(" -DWARPS=", plan.warps, " -DBQ=", plan.query_rows, " -DQSTAGES=", plan.stages,
                               " -DVEC_LOAD=", vec ? 1 : 0);
  if (a.dtype != DType::F32) options += concat(" -DPAIR_IO=", pairs ? 1 : 0);  // mma_half_io.cl's
  if (det) options += concat(" -DDQ_ATOMIC=0 -DBC=", plan.dq_keys, " -DDQ_STAGES=", plan.dq_stages);
  if (det && plan.dq_mtiles != 1) options += concat(" -DMT=", plan.dq_mtiles);  // absent at 1: the recorded programs
  if (plan.key_mtiles != 1) options += concat(" -DMK=", plan.key_mtiles);  // only with the dQ pass (DQ_ATOMIC=0)
  if (a.dtype == DType::F32) options += " -DONE_PITCH=1";  // mma_tf32.cl: every tile at one pitch
  if (plan.warp_pairs) options += " -DWARP_PAIRS=1";
  if (plan.split_each_product) options += " -DSPLIT_A_EACH_PRODUCT=1";
  if (plan.softcap_ex2) options += " -DSOFTCAP_EX2=1";
  return options;
}

}  // namespace flashcl::detail
