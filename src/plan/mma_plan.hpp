// mma_plan.hpp: how the NVIDIA tensor-core fa2 (launch_fa2_mma.cpp, kernels/nvidia/fa2_mma.cl) is
// shaped for a call: whether the device and arguments qualify, which instruction (wgmma or
// mma.sync), the work-group shape and K/V buffering measured best on the H100, the __local bytes
// that takes, and which copy and Q/O access forms the tensor strides allow. Pure functions of
// device facts, arguments and the FLASHCL_MMA / FLASHCL_WGMMA / FLASHCL_TILE / FLASHCL_MMA_TILE
// overrides (overrides.hpp; the process's by default), so tests can plan for simulated devices.
#pragma once

#include "plan/device_facts.hpp"
#include "flashcl/flashcl.hpp"
#include "plan/overrides.hpp"
#include "plan/tile_planner.hpp"

namespace flashcl::detail {

// The largest softcap c the 16-bit tensor-core kernels take in mma_ptx.cl's ex2 form (their default,
// forward and backward): its tanh is exact to about 3e-7 absolute, so a score to c * 3e-7 (2e-5 at
// 64, against 16-bit rounding's 4.9e-4 relative); a larger c keeps the library's tanh (the form's
// constant 2 log2 e / c even underflows near FLT_MAX).
inline constexpr float kSoftcapEx2Max = 64.0f;
// ... and the smallest: below it the form's 2 log2 e / c (halved c in the forward) overflows, and a
// score of 0 would become 0 * inf = NaN; the library's tanh takes such caps.
inline constexpr float kSoftcapEx2Min = 0x1p-60f;
// Whether a softcap c lies in that range (0, off, does not), for the forward's and backward's plans.
inline bool softcap_takes_ex2(float c) { return c >= kSoftcapEx2Min && c <= kSoftcapEx2Max; }

// Which tensor-core instruction the kernel is built around.
enum class MmaKind { MmaSync, Wgmma };

// fp32 storage: the 3xTF32 operand file (mma_tf32.cl).
bool is_tf32(const ForwardArgs& a);

// mma_tf32.cl's head dim padded to the mma k of 8 and its __local row pitches in floats: K rows at
// 8 (mod 32) words, V rows at 4 (mod 32), so each product's reads cover the banks once (with
// ONE_PITCH, the backward's, V's pitch is K's). The forward, standard and backward planners' bytes.
struct Tf32Tiles {
  int padded_head_dim, k_pitch, v_pitch;
};
Tf32Tiles tf32_tiles(int head_dim);

// Whether a call on this device should try wgmma first (Hopper, fp16/bf16, d <= 64 unless
// FLASHCL_WGMMA=1; e4m3 at d <= 128 unless FLASHCL_FP8_WGMMA=0; never with FLASHCL_WGMMA=0).
bool wgmma_wanted(const DeviceFacts& facts, const ForwardArgs& a, const Overrides& o = process_overrides());

// Whether the mma.sync kernels can read the call's V: not an fp8 V stored transposed
// (Fp8Scales::v_transposed), which only the wgmma e4m3 kernel reads as stored.
bool mma_sync_reads_v(const ForwardArgs& a);

// The launch plan of `kind` for `a` (its __local bytes included). A malformed FLASHCL_MMA_TILE is
// an InvalidArgument error.
TilePlan plan_for_kind(const ForwardArgs& a, MmaKind kind, const Overrides& o = process_overrides());

// Whether K and V rows allow 16-byte cp.async copies, Q and O rows 4-byte pair accesses, and
// O rows (fp16/bf16) 16-byte stores.
bool rows_are_16_byte_aligned(const ForwardArgs& a);
bool rows_are_pair_aligned(const ForwardArgs& a);
bool rows_are_quad_aligned(const ForwardArgs& a);
bool o_rows_are_16_byte_aligned(const ForwardArgs& a);

// Whether the device, the arguments and the overrides let the tensor-core path take the call,
// before its shape is planned (call_plan.cpp then checks that the shape fits).
bool mma_may_take(const DeviceFacts& facts, const ForwardArgs& a, const Overrides& o);

// Whether the tensor-core path may take the call (before its probe: mma_may_take and a shape that
// fits), and the plan of the instruction the device qualifies for.
bool mma_eligible(const DeviceFacts& facts, const ForwardArgs& a, const Overrides& o = process_overrides());
TilePlan mma_plan(const DeviceFacts& facts, const ForwardArgs& a, const Overrides& o = process_overrides());

}  // namespace flashcl::detail
