// overrides.hpp: every environment variable flashcl reads, in one value. overrides.cpp is the
// only file of src/ that calls getenv: it reads them all once per process (process_overrides()),
// and the planners, the program and disk caches, the kernel source and the session are given this
// value instead of reading the environment themselves, so each is a function of its inputs and a
// test drives it with an explicit Overrides. Values stay text where their parser lives with their
// user (FLASHCL_TILE: tile_planner; FLASHCL_MMA_TILE: mma_plan; FLASHCL_FAULT_INJECT:
// fault_injection), so a malformed value is reported by the call that uses it, naming the variable.
#pragma once

#include <functional>
#include <optional>
#include <string>

namespace flashcl::detail {

// Whether the variants run on NVIDIA's tensor cores unless FLASHCL_TENSOR_CORE_VARIANTS=0 says not: on
// since an H100 passed their float64 tests and the whole suite with them on (2026-12-07; docs/BACKWARD.md).
inline constexpr bool kTensorCoreVariantsByDefault = true;
// Whether the forward's softcap, ALiBi, masks and biases run on NVIDIA's tensor cores (fa2_mma.cl's
// SCORE_TRANSFORM) unless FLASHCL_TENSOR_CORE_TRANSFORMS=0 says not: on since an H100 passed their
// float64 tests with it and measured 5.2-15.6x the portable fa2 (2026-12-07; docs/perf/nvidia-h100.md).
inline constexpr bool kTensorCoreTransformsByDefault = true;
// Whether fp32 backward calls run on NVIDIA's tensor cores (3xTF32) unless FLASHCL_BWD_TF32=0 says not:
// on since an H100 passed their float64 tests and the whole suite with them on (2026-12-07).
inline constexpr bool kTf32BackwardByDefault = true;

struct Overrides {
  std::string tile;            // FLASHCL_TILE: portable fa1/fa2 tiles, "BRxBC[xTPRxTM]"
  std::string mma_tile;        // FLASHCL_MMA_TILE: tensor-core shape, "WARPSxBC[xMT[xSTAGES[xLAZY]]]"
  bool mma_off = false;        // FLASHCL_MMA=0: never the tensor-core fa2 (nor the tensor-core standard)
  bool mma_any = false;        // FLASHCL_MMA=any: the tensor-core fa2 on any device, its probe required
                               // (tests/emulated_mma/run.sh on PoCL)
  std::string standard_mma;    // FLASHCL_STANDARD_MMA: "0" never the tensor-core standard (the portable one's A/B),
                               // "1" required, on any device (a failed probe is an error), else chosen where eligible
  std::string fa2_cpu;         // FLASHCL_FA2_CPU: "0" never the CPU-shaped fa2, "1" on every device, else on CPUs
  std::string standard_cpu;    // FLASHCL_STANDARD_CPU: "0" never the CPU-shaped standard, "1" on every device, else on CPUs
  std::string bwd_cpu;         // FLASHCL_BWD_CPU: "0" never the CPU-shaped backward, "1" on every device, else on CPUs
  bool bwd_red = true;         // the portable backward adds dQ with NVIDIA's red.global.add.f32 instead of the
                               // compare-and-swap loop on NVIDIA (1.04-1.11x its fa2 backward on the H100,
                               // docs/BACKWARD.md); FLASHCL_BWD_RED=0 keeps the loop there (the A/B)
  bool fp8_cvt = true;         // FLASHCL_FP8_CVT=0: fp8 KV caches on cc >= 8.9 keep the bit decode, not cvt.rn.f16x2.e4m3x2
                               // (the default since an H100 ran the fp8 decode tests with it: docs/FP8.md)
  bool fp8_q_local = false;    // FLASHCL_FP8_QLOCAL=1: the e4m3 tensor-core fa2 keeps Q in __local memory, not in
                               // registers (mma_e4m3.cl's Q_LOCAL; opt-in until the card has measured it)
  bool fp8_d256 = true;        // e4m3 calls of head dim 129-256 on the tensor-core fa2 (4x32x1x2; 56x the portable
                               // fa2 on the H100); FLASHCL_FP8_D256=0 leaves them to the portable fa2
  std::string fp8_wgmma;       // FLASHCL_FP8_WGMMA: e4m3 calls up to d = 128 on compute capability 9.0 try Hopper's
                               // wgmma first (mma_wgmma_e4m3.cl; a failed probe falls back to mma.sync); "require"
                               // makes a failed probe an error (tests, A/B runs), "0" keeps mma.sync
  std::string decode;          // FLASHCL_DECODE: "lanes", "lanes-single", "cpu", "stream" or "staged" forces that decode kernel where it can run;
                               // "lanes-wide", "lanes-wide-np", "lanes-wide16": decode_lanes' wide form (docs/DECODE.md;
                               // paged 16-bit caches on NVIDIA at 5-8 rows take it unforced); "lanes-async" or
                               // "lanes-async-k<KPT>s<stages>": its async form (NVIDIA's default for 16-bit caches
                               // at 4 rows; a call it cannot take gets the unforced plan)
  std::string wgmma;           // FLASHCL_WGMMA: "0" never wgmma, "1" at every head dim, else the default
  std::string bwd_mma;         // FLASHCL_BWD_MMA: "0" never the tensor-core backward, "1" required where eligible
                               // (a failed probe is an error, not a fallback), "any" required on any device
                               // (tests/emulated_mma/run.sh on PoCL), else chosen where eligible
  std::string bwd_mma_tile;    // FLASHCL_BWD_MMA_TILE: tensor-core backward shape, "WARPSxBQ"
  std::string bwd_mma_dq;      // FLASHCL_BWD_MMA_DQ: "atomic" adds dQ atomically instead of its own pass
  std::string bwd_mma_dq_tile;  // FLASHCL_BWD_MMA_DQ_TILE: its deterministic dQ kernel's keys per block, "KEYSxSTAGES"
  std::string bwd_wgmma;       // FLASHCL_BWD_WGMMA: the tensor-core backward on Hopper's wgmma (cc 9.0; programs.txt's
                               // bwd_mma_wgmma; opt-in until the card has measured it): "1" its dQ pass and dK/dV
                               // kernel, "overlap" the same with the dQ pass's product overlapped, "dq" the dQ
                               // pass alone; else (or "0") mma.sync
  bool tensor_core_variants = kTensorCoreVariantsByDefault;
                               // the variants on NVIDIA's tensor cores: the forward's windows, packed sequences and
                               // score transforms (fa2_mma.cl), the backward's windows, softcaps, ALiBi, masks and packed sequences
                               // (bwd_kv_steps.cl's BWD_VARIANTS); FLASHCL_TENSOR_CORE_VARIANTS=1 or 0 sets it
  bool tensor_core_transforms = kTensorCoreTransformsByDefault;
                               // the forward's softcap, ALiBi, masks and biases on the tensor-core fa2
                               // (FLASHCL_TENSOR_CORE_TRANSFORMS=1 or 0; FLASHCL_TENSOR_CORE_VARIANTS=0 turns
                               // them off too)
  bool fwd_softcap_ex2 = true; // the 16-bit tensor-core fa2 takes a softcap's tanh in mma_ptx.cl's ex2 form;
                               // FLASHCL_FWD_SOFTCAP_EX2=0 keeps the library's tanh (the A/B)
  bool bwd_tf32 = kTf32BackwardByDefault;
                               // fp32 backward calls on the tensor cores through 3xTF32 (programs.txt's
                               // bwd_mma_tf32); FLASHCL_BWD_TF32=1 or 0 sets it
  // The fp32 tensor-core backward splits its A fragments at each product instead of once per kernel
  // (fewer registers, no spills at d = 128). Unset: at d > 64, where an H100 measured it 1.11x; at
  // d = 64 it measured 0.99x (bench/gpu/bwd_kernels_ab.sh, 2026-12-07). FLASHCL_BWD_TF32_SPLIT=1 or 0
  // forces it on or off at every head dim.
  std::optional<bool> bwd_tf32_split;
  // The 16-bit tensor-core backward takes a softcap's tanh from one ex2.approx and one reciprocal (1.9x
  // the library's tanh at d = 128, 2.5x at d = 64 on an H100, the same run); FLASHCL_BWD_SOFTCAP_EX2=0
  // keeps the library's tanh.
  bool bwd_softcap_ex2 = true;
  std::string build_options;   // FLASHCL_BUILD_OPTIONS: appended to every kernel build (and cache key)
  bool build_log = false;      // FLASHCL_BUILD_LOG=1: successful builds' logs and probe failures on stderr
  std::string kernel_dir;      // FLASHCL_KERNEL_DIR: kernel files read from here instead of the embedded ones
  bool disk_cache_off = false;  // FLASHCL_DISK_CACHE=0
  std::string cache_dir;       // FLASHCL_CACHE_DIR, else $XDG_CACHE_HOME/flashcl, else $HOME/.cache/flashcl
  std::string platform;        // FLASHCL_PLATFORM: Session's default platform (index or name substring)
  std::string device;          // FLASHCL_DEVICE: Session's default device
  std::string fault_inject;    // FLASHCL_FAULT_INJECT: test-only fault rules (fault_injection.hpp)
};

// The overrides a variable lookup gives (lookup returns null for an unset variable); tests pass a
// map instead of changing the process environment.
Overrides read_overrides(const std::function<const char*(const char*)>& lookup);

// read_overrides(getenv), read on first use and kept for the life of the process.
const Overrides& process_overrides();

}  // namespace flashcl::detail
