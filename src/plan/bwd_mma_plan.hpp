// bwd_mma_plan.hpp: whether the NVIDIA tensor-core backward (kernels/nvidia/bwd_mma.cl, launched by
// launch/launch_bwd_mma.cpp) may take a backward call, and its shape: warps per work-group (16 keys
// each) and query rows per Q block, with the __local bytes that takes. Pure functions of device
// facts, the call and the FLASHCL_BWD_MMA / FLASHCL_BWD_MMA_TILE overrides, so tests plan for
// simulated devices.
#pragma once

#include <cstddef>
#include <string>

#include "flashcl/flashcl.hpp"
#include "plan/device_facts.hpp"
#include "plan/mma_plan.hpp"  // softcap_takes_ex2
#include "plan/overrides.hpp"

namespace flashcl::detail {

struct BwdMmaPlan {
  int warps = 4;              // warps per work-group; the K/V block is 16 * warps keys
  int query_rows = 64;        // BQ: query rows per Q block
  int stages = 1;             // Q/dO buffers: 1, or 2 (the next Q block copied during this one)
  // 16-key m-tiles a warp of bwd_mma_dkdv (MK): 2 by default with the dQ pass at d <= 64 (else 1;
  // FLASHCL_BWD_MMA_TILE's fourth field forces it there): the K/V block is then 32 * warps keys and
  // every Q_i/dO_i fragment read by ldmatrix serves two m-tiles
  int key_mtiles = 1;
  // fp32 (3xTF32) at d > 64: warps in pairs over each 16 keys of bwd_mma_dkdv (-DWARP_PAIRS=1), one
  // holding K_w and dV_w, the other V_w and dK_w, so the K/V block is 8 * warps keys (bwd_mma.cl)
  bool warp_pairs = false;
  // fp32: the A fragments split at each product (-DSPLIT_A_EACH_PRODUCT=1, mma_tf32.cl's a_operand),
  // not hoisted out of the key loop; at d > 64 unless FLASHCL_BWD_TF32_SPLIT says otherwise
  bool split_each_product = false;
  // 16 bits with a softcap up to kSoftcapEx2Max: tanh from one ex2.approx and one reciprocal
  // (-DSOFTCAP_EX2=1, bwd_kv_steps.cl's variant_entry) unless FLASHCL_BWD_SOFTCAP_EX2=0
  bool softcap_ex2 = false;
  std::size_t local_bytes = 0;
  // dQ by its own pass (bwd_mma_dq.cl: no atomics, so bit-identical run to run), for every call;
  // false (FLASHCL_BWD_MMA_DQ=atomic) adds dQ with red.global.add into the fp32 accumulator in
  // bwd_mma_dkdv instead, for calls that do not ask for determinism. The pass is the default
  // because it measured faster on the H200 (docs/perf/nvidia-h200.md: 1.2-1.7x the atomic form).
  bool dq_pass = true;
  // the dQ pass: one work-group of `warps` warps per Q block of 16 * warps rows, stepping through
  // blocks of dq_keys keys with dq_stages K/V buffers
  int dq_keys = 64;
  int dq_stages = 2;
  // 16-row m-tiles a warp of the dQ pass holds (MT): 2 by default at d <= 64 (with MK 2), else 1
  // (FLASHCL_BWD_MMA_DQ_TILE's third field forces it at d <= 64): every K_j/V_j fragment read by
  // ldmatrix then serves two m-tiles, half the __local traffic per product, 32 rows a warp
  int dq_mtiles = 1;
  std::size_t dq_local_bytes = 0;
  // the dQ pass on wgmma with its product left in flight over the next block's (BwdWgmmaKernels::dq_overlap;
  // -DDQ_OVERLAP=1: three K buffers, two V buffers); set by the planner of the call, not here
  bool dq_overlap = false;
  std::string reason;
};

// __local bytes of bwd_mma.cl with this shape: K_j (16 * warps rows), Q_i and dO_i (query_rows
// rows, `stages` times), all 16-bit at a pitch of the padded head dim + 8, dS^T (16 * warps x
// query_rows + 8) and LSE_i, D_i (fp32, `stages` times).
std::size_t bwd_mma_local_bytes(int warps, int query_rows, int head_dim, int stages = 1);

// Keys per K/V block of bwd_mma_dkdv (bwd_kv_steps.cl's BKV: 16 a key m-tile a warp, half that
// with warps in pairs) and query rows per Q block of bwd_mma_dq (16 an m-tile a warp).
inline int bwd_mma_block_keys(const BwdMmaPlan& p) { return 16 * p.key_mtiles * p.warps / (p.warp_pairs ? 2 : 1); }
inline int bwd_mma_dq_block_rows(const BwdMmaPlan& p) { return 16 * p.dq_mtiles * p.warps; }

// __local bytes of bwd_mma_dq.cl: K_j and V_j (keys rows each, 16-bit at the same pitch), `stages`
// times.
std::size_t bwd_mma_dq_local_bytes(int keys, int head_dim, int stages);

// Whether bwd_mma_dq writes dQ for this call (the plan's dQ pass, or a deterministic call), rather
// than bwd_mma_dkdv's atomic adds.
inline bool bwd_mma_writes_dq(const BwdMmaPlan& plan, const BackwardArgs& args) {
  return plan.dq_pass || args.deterministic;
}

// The shape for `a` (the forward part of a backward call): measured defaults, or
// FLASHCL_BWD_MMA_TILE ("WARPSxBQ[xSTAGES[xMK]]"), FLASHCL_BWD_MMA_DQ_TILE ("KEYSxSTAGES[xMT]", the dQ
// pass's kernel) and FLASHCL_BWD_MMA_DQ ("pass" or "atomic"); a malformed or impossible one is an
// InvalidArgument error.
BwdMmaPlan bwd_mma_plan(const ForwardArgs& a, const Overrides& o = process_overrides());

// Whether the call has a variant beyond causal and GQA (window, softcap, ALiBi, a mask, packed
// sequences): the mma.sync kernels take those (bwd_kv_steps.cl's BWD_VARIANTS), the wgmma ones not.
bool bwd_mma_has_variants(const ForwardArgs& a);

// Whether the tensor-core backward may take the call (before its probe): an NVIDIA GPU of compute
// capability >= 8.0 (any device under FLASHCL_BWD_MMA=any), fa2 (dQ by bwd_mma_dq, or atomic adds),
// fp16/bf16 (fp32 through 3xTF32 unless FLASHCL_BWD_TF32=0, dQ by its pass), d <= 128 where the
// planned shape compiles (shape_compiles: 64, 128, 32, 96, ...; a FLASHCL_BWD_MMA_TILE that does not
// compile at d leaves the call to the portable kernels), any
// variant but a bias gradient, a plan whose kernels fit the device's local memory, and
// FLASHCL_BWD_MMA not "0". `args.forward` is normalised (concrete algorithm, resolved scale).
bool bwd_mma_eligible(const DeviceFacts& facts, const BackwardArgs& args, const Overrides& o = process_overrides());

// Whether the tensor cores write this call's dQ in a pass of its own (bwd_mma_eligible and
// bwd_mma_writes_dq): the call then needs no fp32 dQ accumulator whichever kernels run, since a
// failed probe leaves dQ to the portable kernels' own pass too (launch_backward's dq_mode 0).
bool bwd_mma_takes_dq(const DeviceFacts& facts, const BackwardArgs& args, const Overrides& o = process_overrides());

// __local bytes of bwd_wgmma_dkdv.cl: Q_i and dO_i (query_rows rows of the padded head dim, no row
// padding) with LSE_i and D_i, `stages` times (no K tile: K_w and V_w stay in registers).
std::size_t bwd_wgmma_dkdv_local_bytes(int query_rows, int head_dim, int stages);

// __local bytes of bwd_mma_dq.cl's overlapped schedule on wgmma: three K and two V buffers of `keys`
// rows (no row padding) and one float a work-item (WG_WAIT_AFTER's slots).
std::size_t bwd_wgmma_dq_overlap_local_bytes(int keys, int head_dim, int warps);

// Which kernels of the tensor-core backward run on Hopper's wgmma (opt-in: they measured 0.82-0.84x
// the mma.sync kernels on the H100; plain, causal and GQA calls only), decided together from one
// reading of FLASHCL_BWD_WGMMA.
struct BwdWgmmaKernels {
  // bwd_mma_dq on wgmma (programs.txt's bwd_mma_wgmma: bwd_mma_dq.cl over mma_wgmma.cl, built
  // through retargeted PTX) rather than mma.sync: FLASHCL_BWD_WGMMA "1", "dq" or "overlap", compute
  // capability 9.0 (sm_90a), a call the dQ pass writes, whole warpgroups (warps a multiple of 4),
  // one m-tile a warp (dq_mtiles 1) and key blocks of at most 128 (WG_TILES). Its tiles have no row
  // padding, so dq_local_bytes bounds its __local bytes from above.
  bool dq = false;
  // bwd_mma_dkdv on wgmma too (bwd_wgmma_dkdv.cl, in the same program with -DWGMMA_DKDV=1):
  // FLASHCL_BWD_WGMMA "1" or "overlap" where `dq` holds, one m-tile of keys a warp (key_mtiles 1), Q
  // blocks of at most 128 rows (wgmma's N of S^T) and its __local bytes within the device's.
  bool dkdv = false;
  // the wgmma dQ pass overlaps its dQ product with the next block's S, dP and dS (-DDQ_OVERLAP=1):
  // FLASHCL_BWD_WGMMA=overlap where `dq` holds and its buffers fit the device's __local memory.
  bool dq_overlap = false;
};
BwdWgmmaKernels bwd_wgmma_kernels(const DeviceFacts& facts, const BackwardArgs& args, const BwdMmaPlan& plan,
                                  const Overrides& o = process_overrides());

// A value of FLASHCL_BWD_WGMMA other than "", "0", "1", "dq" and "overlap" is an InvalidArgument
// error naming it, on every device (plan_backward_programs checks it before any device test).
void check_bwd_wgmma_switch(const Overrides& o);

// The shape the wgmma dK/dV kernel runs with (where BwdWgmmaKernels::dkdv holds): `plan`'s, with two Q/dO
// buffers unless FLASHCL_BWD_MMA_TILE chose the shape, where they fit the device's __local memory
// (no K tile, no row padding: 33 KiB at d = 64 with 64-row Q blocks, at d = 128 with 32), so the
// next Q block's copies overlap this one's products. A guess until the card has measured it.
BwdMmaPlan bwd_wgmma_dkdv_shape(const DeviceFacts& facts, const BwdMmaPlan& plan, int head_dim,
                                const Overrides& o = process_overrides());

// The fp32 (3xTF32) form's __local bytes, every tile at mma_tf32.cl's K pitch (ONE_PITCH): the dK/dV
// kernel's (Q_i, dO_i and LSE_i, D_i, `stages` times; no K tile: K_w stays in registers) and the dQ
// pass's (K_j, V_j, `stages` times).
std::size_t bwd_tf32_local_bytes(int query_rows, int head_dim, int stages);
std::size_t bwd_tf32_dq_local_bytes(int keys, int head_dim, int stages);
// With WARP_PAIRS, each pair's S^T handed from its K warp to its V warp (fp32, BQ / 2 a lane).
std::size_t bwd_tf32_handover_bytes(int warps, int query_rows);

// Whether the call's Q, K and dO rows (and V's, where bwd_mma_dq runs) allow 16-byte cp.async
// copies (VEC_LOAD=1; the probe runs the same copy form).
bool bwd_mma_vec_load(const BackwardArgs& args, const BwdMmaPlan& plan);

// The -D options of bwd_mma.cl beyond common_options(): shape, and the copy and pair access forms
// the tensors' strides allow; where bwd_mma_dq writes dQ, DQ_ATOMIC=0 and bwd_mma_dq.cl's shape (BC,
// DQ_STAGES), its tensors (V copied, Q, dO and dQ read or written in pairs) in the same checks.
std::string bwd_mma_options(const BackwardArgs& args, const BwdMmaPlan& plan);

}  // namespace flashcl::detail
