// test_bwd_mma.cpp: the fa2 backward on NVIDIA tensor cores (kernels/nvidia/bwd_mma.cl) against the
// float64 reference gradients (backward_support: fresh random inputs, dQ, dK, dV poisoned with NaN
// first, writes outside the layouts counted), over the calls it takes: fp16 and bf16, d = 64 and
// 128 (and 32, 90, 96, 120: OtherHeadDims), causal on and off, GQA and MQA, Nq != Nk both ways
// (Nq > Nk leaves causal rows that see no key: zero gradients), lengths that are no multiple of any
// block, dense, head-major and padded layouts (the padded one takes the element-wise copies). The bounds are the 16-bit bounds of every
// backward path (twice the error of the reference rounded to the storage type plus a floor), which
// the kernel's rounding of P and dS to 16 bits before their products stays within. The deterministic
// form (bwd_mma_dkdv without dQ adds, then bwd_mma_dq) runs the same cases and must give the same
// bits over ten runs. The variants (window, softcap, ALiBi, masks, packed sequences) run on the same
// kernels (BwdMma.Variants). fp32 through 3xTF32 (BwdMmaTf32, below) has its own switch and runs on
// PoCL too, over emulated operands.
//
// The tests skip where the device is not an NVIDIA GPU of compute capability >= 8.0. Where it is,
// the planner gives these calls to the tensor cores after a probe, and a failed probe would fall
// back to the portable kernels and still pass: bench/gpu/bwd.sh runs this file with
// FLASHCL_BWD_MMA=1, which turns a failed probe into an error.
//
// With FLASHCL_BWD_WGMMA=1 (=overlap: its dQ product overlapped; =dq) every case runs the dK/dV
// kernel and the dQ pass (or the dQ pass alone) on Hopper's wgmma (programs.txt's bwd_mma_wgmma; bench/gpu/bwd_wgmma_ab.sh runs them
// so, with FLASHCL_BWD_MMA=1): on a device other than compute capability 9.0 the switch changes
// nothing, so the tests skip rather than pass on mma.sync.
#include <CL/cl.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <tuple>

#include "backward_support.hpp"

namespace flashcl::test {
namespace {

struct MmaCase {
  int b, h, h_kv, nq, nk, d;
  bool causal;
  DType dtype;
  Layout layout;
};

std::string name(const MmaCase& m) {
  return "B" + std::to_string(m.b) + " H" + std::to_string(m.h) + "/" + std::to_string(m.h_kv) + " " +
         std::to_string(m.nq) + "x" + std::to_string(m.nk) + " d" + std::to_string(m.d) +
         (m.causal ? " causal " : " ") + to_string(m.dtype) +
         (m.layout == Layout::BSHD ? "" : m.layout == Layout::BHSD ? " bhsd" : " padded");
}

Case make(const MmaCase& m, std::uint64_t seed) {
  Case c = make_case(m.nq, m.nk, m.d, m.causal, m.b, m.h, m.layout);
  c.shape.heads_kv = m.h_kv;
  c.dtype = m.dtype;
  c.seed = seed;
  return c;
}

const Path kAtomic{Algorithm::FA2, false, "fa2"};
const Path kDeterministic{Algorithm::FA2, true, "fa2 deterministic"};

// Atomic dQ, then the deterministic form, on the same inputs.
void run(const Case& c, const std::string& what) {
  expect_run_accurate(run_backward(c, kAtomic, false), c.dtype, what);
  expect_run_accurate(run_backward(c, kDeterministic, false), c.dtype, what + " deterministic");
}
void run(const MmaCase& m, std::uint64_t seed) { run(make(m, seed), name(m)); }

class BwdMma : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!tensor_core_device()) GTEST_SKIP() << "not an NVIDIA GPU of compute capability >= 8.0";
    const char* wgmma = std::getenv("FLASHCL_BWD_WGMMA");
    const std::string form = wgmma != nullptr ? wgmma : "";
    if ((form == "1" || form == "dq" || form == "overlap") && !hopper_device())
      GTEST_SKIP() << "FLASHCL_BWD_WGMMA=" << wgmma
                   << " asks for the kernels on wgmma, which needs compute capability 9.0 (sm_90a)";
  }
};

TEST_F(BwdMma, HeadDimsCausalAndTypes) {
  std::uint64_t seed = 2000;
  for (int d : {64, 128})
    for (bool causal : {false, true})
      for (DType dtype : {DType::F16, DType::BF16})
        run({2, 4, 4, 200, 200, d, causal, dtype, Layout::BSHD}, ++seed);
}

// Head dims other than 64 and 128 (the planner takes those whose padded columns its shapes divide:
// bwd_mma_plan.cpp's shape_compiles): 32 with two m-tiles of keys a warp, 96 in 128's shape, 90
// with padding columns and element-wise copies (rows not 16-byte aligned), and 120 in 16 bits.
TEST_F(BwdMma, OtherHeadDims) {
  std::uint64_t seed = 2050;
  for (int d : {32, 90, 96, 120}) {
    run({1, 4, 2, 150, 150, d, true, DType::F16, Layout::BSHD}, ++seed);
    run({2, 2, 2, 77, 130, d, false, DType::BF16, Layout::BSHD}, ++seed);
  }
}

TEST_F(BwdMma, UnequalLengthsAndPartialBlocks) {
  run({1, 4, 4, 77, 300, 64, true, DType::F16, Layout::BSHD}, 2101);    // Nq < Nk, bottom-right
  run({1, 4, 4, 300, 129, 128, true, DType::BF16, Layout::BSHD}, 2102);  // Nq > Nk: rows that see nothing
  run({2, 2, 2, 33, 65, 128, false, DType::F16, Layout::BSHD}, 2103);    // one partial Q block, a 1-key K block
  run({1, 2, 2, 1, 17, 64, true, DType::BF16, Layout::BSHD}, 2104);      // a single query row
}

TEST_F(BwdMma, GroupedQueryHeads) {
  run({2, 8, 2, 77, 300, 64, true, DType::BF16, Layout::BSHD}, 2201);
  run({1, 4, 1, 130, 130, 128, false, DType::F16, Layout::BSHD}, 2202);   // MQA
  run({1, 6, 2, 150, 100, 128, true, DType::F16, Layout::BHSD}, 2203);
}

TEST_F(BwdMma, StridedLayouts) {
  run({2, 2, 2, 100, 150, 64, false, DType::F16, Layout::BHSD}, 2301);
  run({2, 2, 1, 100, 150, 64, true, DType::BF16, Layout::PaddedRows}, 2302);  // element-wise copies
  run({1, 2, 2, 70, 90, 128, false, DType::F16, Layout::PaddedRows}, 2303);
}

// The variants on the tensor cores (bwd_kv_steps.cl's BWD_VARIANTS): windows (narrow ones, and a
// wide band with interior blocks), softcaps (one that saturates), ALiBi, boolean masks (broadcast
// and per head, a row that sees nothing), additive biases (broadcast), packed sequences (empty,
// one-row, keyless and short ones, causal and not, with a window) and all of them together, at d =
// 64 and 128, fp16 and bf16, each by atomic dQ and by the dQ pass. They reach the tensor cores
// unless FLASHCL_TENSOR_CORE_VARIANTS=0 (then the portable kernels); bench/gpu/tensor_core_variants.sh
// runs them on the card and times them against the portable kernels.
// A (B, H / H_kv, Nq x Nk, d) case of the variants, dense (B, S, H, d) layout.
Case variant(int b, int h, int h_kv, int nq, int nk, int d, bool causal, DType dtype, std::uint64_t seed) {
  return make({b, h, h_kv, nq, nk, d, causal, dtype, Layout::BSHD}, seed);
}

TEST_F(BwdMma, Variants) {
  for (int d : {64, 128}) {
    const DType other = d == 64 ? DType::BF16 : DType::F16;
    Case window = variant(2, 4, 2, 150, 170, d, false, DType::F16, 2501);
    window.shape.window_left = 37;
    window.shape.window_right = 11;
    run(window, "window d" + std::to_string(d));
    Case causal_window = variant(1, 4, 4, 200, 160, d, true, other, 2502);
    causal_window.shape.window_left = 50;
    run(causal_window, "causal window d" + std::to_string(d));
    Case softcap = variant(2, 4, 1, 97, 140, d, true, other, 2503);
    softcap.shape.softcap = 2.5;
    run(softcap, "softcap d" + std::to_string(d));
    Case alibi = variant(2, 4, 4, 130, 130, d, true, DType::F16, 2504);
    add_alibi(alibi.shape);
    run(alibi, "alibi d" + std::to_string(d));
    Case mask = variant(2, 2, 2, 90, 120, d, false, DType::F16, 2505);
    add_bool_mask(mask.shape, 2, 1, 7, 2515);
    run(mask, "bool mask d" + std::to_string(d));
    Case bias = variant(2, 4, 2, 70, 110, d, false, other, 2506);
    add_bias(bias.shape, 1, 4, 2516);
    run(bias, "bias d" + std::to_string(d));
    Case packed = varlen(variant(1, 4, 2, 1, 1, d, true, DType::F16, 2507), {77, 0, 130, 1, 40}, {90, 5, 129, 200, 3});
    run(packed, "varlen causal d" + std::to_string(d));
    Case wide = variant(1, 2, 2, 600, 600, d, false, other, 2509);  // a band with interior blocks too
    wide.shape.window_left = 200;
    wide.shape.window_right = 150;
    run(wide, "wide window d" + std::to_string(d));
    Case saturated = variant(1, 4, 4, 100, 120, d, false, DType::F16, 2510);  // raw scores ~3 caps: tanh saturates
    saturated.shape.softcap = 0.1;
    run(saturated, "saturated softcap d" + std::to_string(d));
    Case head_mask = variant(2, 4, 2, 80, 96, d, true, other, 2511);  // a boolean mask per head, GQA
    add_bool_mask(head_mask.shape, 2, 4, 3, 2521);
    run(head_mask, "per-head bool mask d" + std::to_string(d));
    // packed sequences, not causal: keys past a short sequence's end (the early-out), a sequence
    // with queries and no keys, and a Mistral-style window without a score transform
    Case open = varlen(variant(1, 4, 4, 1, 1, d, false, DType::F16, 2512), {50, 30, 0, 90}, {200, 0, 40, 17});
    run(open, "varlen d" + std::to_string(d));
    Case packed_window = varlen(variant(1, 4, 2, 1, 1, d, true, other, 2513), {300, 41, 180}, {300, 60, 250});
    packed_window.shape.window_left = 64;
    run(packed_window, "varlen causal window d" + std::to_string(d));
    Case all = varlen(variant(1, 4, 2, 1, 1, d, true, other, 2508), {65, 0, 100}, {80, 7, 64});
    all.shape.window_left = 20;
    all.shape.softcap = 4.0;
    add_alibi(all.shape);
    add_bias(all.shape, all.shape.batch, 1, 2518);
    run(all, "varlen window softcap alibi bias d" + std::to_string(d));
  }
}

// `runs` runs of the deterministic form on `m` give the same dQ, dK and dV bits.
void expect_bit_identical(const MmaCase& m, std::uint64_t seed, int runs) {
  const Case c = make(m, seed);
  const BackwardRun first = run_backward(c, kDeterministic, false, false);
  for (int run = 1; run < runs; ++run) {
    const BackwardRun again = run_backward(c, kDeterministic, false, false);
    // bytes, not values: the NaN poison around the layouts compares unequal to itself
    for (auto [a, b, what] : {std::tuple{&first.raw_d_q, &again.raw_d_q, "dQ"},
                              std::tuple{&first.raw_d_k, &again.raw_d_k, "dK"},
                              std::tuple{&first.raw_d_v, &again.raw_d_v, "dV"}}) {
      ASSERT_EQ(a->size(), b->size());
      EXPECT_EQ(0, std::memcmp(a->data(), b->data(), a->size() * sizeof(float)))
          << name(m) << ": " << what << " differs between runs";
    }
  }
}

// Ten runs of the deterministic form give the same dQ, dK and dV bits (the atomic form may not).
TEST_F(BwdMma, DeterministicBitIdenticalOverTenRuns) {
  for (const MmaCase& m : {MmaCase{2, 4, 4, 300, 300, 64, true, DType::F16, Layout::BSHD},
                           MmaCase{1, 8, 2, 257, 190, 128, false, DType::BF16, Layout::BSHD}})
    expect_bit_identical(m, 2401, 10);
}

// fp32 through 3xTF32 (programs.txt's bwd_mma_tf32: bwd_mma.cl's contract form over mma_tf32.cl, and
// the dQ pass), unless FLASHCL_BWD_TF32=0: on an NVIDIA GPU of compute capability >= 8.0 (pending.sh 5
// runs them with FLASHCL_BWD_MMA=1), or on any device with FLASHCL_BWD_MMA=any, which
// tests/emulated_mma/run.sh sets to run them on PoCL over the emulated operand files (ctest's
// bwd_mma_tf32_emulated: the schedule, indexing, masks and stores against float64, not the PTX).
// Elsewhere they skip: the calls would run on the portable kernels and prove nothing. The fp32
// bounds of every backward path hold: 3xTF32 keeps fp32-class products.
class BwdMmaTf32 : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* tf32 = std::getenv("FLASHCL_BWD_TF32");
    const char* forced = std::getenv("FLASHCL_BWD_MMA");
    if (tf32 != nullptr && std::string(tf32) == "0")
      GTEST_SKIP() << "FLASHCL_BWD_TF32=0 keeps fp32 off the tensor cores";
    const bool any = forced != nullptr && std::string(forced) == "any";
    if (!tensor_core_device() && !any)
      GTEST_SKIP() << "not an NVIDIA GPU of compute capability >= 8.0, and FLASHCL_BWD_MMA is not 'any'";
    // on a CPU device the CPU-shaped backward takes the whole call before the tensor cores are asked
    const char* cpu = std::getenv("FLASHCL_BWD_CPU");
    if (any && (cpu == nullptr || std::string(cpu) != "0"))
      FAIL() << "FLASHCL_BWD_MMA=any needs FLASHCL_BWD_CPU=0, or a CPU device runs these on its own kernels";
    // the emulated operand files' tiles are wider than the real ones: up to 65 KiB a kernel (d = 64's
    // two 32-row stages of Q and dO at 128 floats a row)
    cl_ulong local_bytes = 0;
    clGetDeviceInfo(session().device(), CL_DEVICE_LOCAL_MEM_SIZE, sizeof local_bytes, &local_bytes, nullptr);
    if (any && !tensor_core_device() && local_bytes < 96 * 1024)
      GTEST_SKIP() << "the emulated kernels need up to 65 KiB of local memory; this device has " << local_bytes << " B";
  }
};

TEST_F(BwdMmaTf32, HeadDimsCausalAndLengths) {
  std::uint64_t seed = 2600;
  for (int d : {64, 128})
    for (bool causal : {false, true}) run({1, 2, 2, 100, 100, d, causal, DType::F32, Layout::BSHD}, ++seed);
  run({1, 2, 2, 45, 130, 64, true, DType::F32, Layout::BSHD}, 2611);   // Nq < Nk, partial blocks
  run({1, 2, 2, 130, 33, 128, true, DType::F32, Layout::BSHD}, 2612);  // Nq > Nk: rows that see nothing
  run({1, 2, 2, 1, 17, 64, false, DType::F32, Layout::BSHD}, 2613);    // a single query row
}

// Head dims other than 64 and 128 (as BwdMma.OtherHeadDims): 30 padded to 32 with element-wise
// copies, 96 in 128's shape (warps in pairs), 124 padded to 128 through the 16-byte copies
TEST_F(BwdMmaTf32, OtherHeadDims) {
  run({1, 2, 1, 45, 70, 30, true, DType::F32, Layout::BSHD}, 2661);
  run({1, 2, 2, 60, 40, 96, false, DType::F32, Layout::BSHD}, 2662);
  run({1, 2, 1, 50, 50, 124, true, DType::F32, Layout::BSHD}, 2663);
}

// The smallest case with every kind of block (GQA, causal, Nq != Nk, partial blocks): what the
// oclgrind runs of the emulated kernels check (ctest oclgrind_*_bwd_mma_tf32_emulated).
TEST_F(BwdMmaTf32, Tiny) { run({1, 2, 1, 20, 37, 64, true, DType::F32, Layout::BSHD}, 2651); }
// d = 128: the dK/dV kernel's warps in pairs (WARP_PAIRS: S^T handed from the K warp to the V warp
// through __local memory), small enough for oclgrind's race and uninitialised-read runs
TEST_F(BwdMmaTf32, TinyWarpPairs) { run({1, 2, 1, 20, 37, 128, true, DType::F32, Layout::BSHD}, 2652); }

TEST_F(BwdMmaTf32, GroupsAndLayouts) {
  run({1, 4, 1, 70, 90, 64, true, DType::F32, Layout::BSHD}, 2621);         // MQA
  run({2, 4, 2, 50, 80, 128, false, DType::F32, Layout::BHSD}, 2622);       // GQA, head-major
  run({1, 2, 2, 60, 75, 64, false, DType::F32, Layout::PaddedRows}, 2623);  // element-wise copies
  run({1, 2, 1, 45, 70, 128, true, DType::F32, Layout::PaddedRows}, 2624);
}

// The variants (the portable kernels take them under FLASHCL_TENSOR_CORE_VARIANTS=0).
TEST_F(BwdMmaTf32, Variants) {
  Case window = variant(1, 2, 2, 90, 110, 64, false, DType::F32, 2631);
  window.shape.window_left = 23;
  window.shape.window_right = 9;
  run(window, "fp32 window");
  Case softcap = variant(1, 4, 2, 70, 90, 128, true, DType::F32, 2632);
  softcap.shape.softcap = 2.5;
  add_alibi(softcap.shape);
  run(softcap, "fp32 softcap alibi");
  Case mask = variant(1, 2, 2, 60, 80, 64, false, DType::F32, 2633);
  add_bool_mask(mask.shape, 1, 2, 5, 2634);
  run(mask, "fp32 bool mask");
  Case packed = varlen(variant(1, 2, 2, 1, 1, 64, true, DType::F32, 2635), {40, 0, 70, 1}, {50, 3, 66, 20});
  run(packed, "fp32 varlen causal");
  Case causal_window = variant(1, 4, 2, 80, 64, 128, true, DType::F32, 2636);
  causal_window.shape.window_left = 30;
  add_bias(causal_window.shape, 1, 4, 2637);
  run(causal_window, "fp32 causal window bias");
  // not causal: keys past a short sequence's end, a sequence with queries and no keys
  Case open = varlen(variant(1, 2, 2, 1, 1, 64, false, DType::F32, 2638), {30, 20, 0, 50}, {70, 0, 25, 9});
  run(open, "fp32 varlen");
  Case all = varlen(variant(1, 4, 2, 1, 1, 64, true, DType::F32, 2639), {45, 0, 60}, {50, 7, 40});
  all.shape.window_left = 20;
  all.shape.softcap = 4.0;
  add_alibi(all.shape);
  add_bias(all.shape, all.shape.batch, 1, 2640);
  run(all, "fp32 varlen window softcap alibi bias");
}

// three runs (the emulated kernels are slow; every fp32 call takes the dQ pass)
TEST_F(BwdMmaTf32, DeterministicBitIdentical) {
  expect_bit_identical({1, 4, 2, 120, 100, 64, true, DType::F32, Layout::BSHD}, 2641, 3);
}

}  // namespace
}  // namespace flashcl::test
