// test_bwd_cpu.cpp: the CPU-shaped backward (kernels/cpu/bwd_cpu.cl) on shapes the variant cases of
// test_backward.cpp are too small for: several K/V and Q blocks with partial tails, several dQ
// partials per K/V head (MQA with B = 1: the planner splits each K/V head into chunks), d = 128,
// a window crossing blocks, 16-bit storage, and softcaps, ALiBi and masks over several blocks.
// Fresh random inputs, outputs poisoned with NaN, float64 reference (run_backward), and
// bit-identical dQ, dK, dV over repeated runs (its dQ is a fixed-order sum, so even the
// non-deterministic fa2 call is). On a device the CPU form does not take (a GPU), these cases
// exercise the portable kernels instead and still must pass.
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "backward_support.hpp"

namespace flashcl::test {
namespace {

Case cpu_case(int nq, int nk, int d, bool causal, int b, int h, int h_kv, std::uint64_t seed) {
  Case c = make_case(nq, nk, d, causal, b, h);
  c.shape.heads_kv = h_kv;
  c.seed = seed;
  return c;
}

const Path& fa2() { return kBackwardPaths[2]; }
const Path& fa2_deterministic() { return kBackwardPaths[3]; }

TEST(BwdCpu, MqaChunksCausal) {  // 5 K/V blocks of 64 keys, 5 chunks for the one K/V head
  const Case c = cpu_case(203, 270, 64, true, 1, 2, 1, 501);
  for (const Path* p : {&fa2(), &fa2_deterministic()})
    expect_run_accurate(run_backward(c, *p, false), DType::F32, std::string(p->name) + " mqa chunks causal");
}

TEST(BwdCpu, MultiBlockD128) {  // 2 K/V blocks of 256 keys, 5 Q blocks of 32 rows, 2 chunks per K/V head
  const Case c = cpu_case(150, 300, 128, false, 1, 2, 2, 502);
  expect_run_accurate(run_backward(c, fa2(), false), DType::F32, "fa2 d=128 multi-block");
}

TEST(BwdCpu, WindowAcrossBlocks) {
  Case c = cpu_case(190, 190, 64, true, 2, 2, 2, 503);
  c.shape.window_left = 70;
  c.shape.window_right = 5;
  expect_run_accurate(run_backward(c, fa2(), false), DType::F32, "fa2 window across blocks");
}

TEST(BwdCpu, HalfAndBFloat16MultiBlock) {
  for (DType dtype : {DType::F16, DType::BF16}) {
    Case c = cpu_case(160, 140, 64, true, 1, 2, 1, 504);
    c.dtype = dtype;
    expect_run_accurate(run_backward(c, fa2(), false), dtype, std::string("fa2 ") + to_string(dtype));
  }
}

// Programs with a score transform take the CPU form's vector rules (softmax_grad_row_vectors) on every
// block: blocks crossing the causal diagonal, the window's left edge and the keys' end (Nq != Nk:
// bottom-right), GQA, a boolean mask with a fully hidden row (lane by lane), and a bias with and
// without its gradient (written lane by lane; causal with a window over two key blocks, MQA).
TEST(BwdCpu, SoftcapAlibiMasksAcrossBlocks) {
  Case banded = cpu_case(150, 203, 64, true, 1, 4, 2, 506);
  banded.shape.window_left = 100;
  banded.shape.softcap = 1.5;
  add_bool_mask(banded.shape, 1, 4, 7, 561);
  expect_run_accurate(run_backward(banded, fa2(), false), DType::F32, "fa2 softcap window bool mask");
  Case shifted = cpu_case(170, 140, 64, false, 2, 2, 1, 507);
  shifted.shape.softcap = 1.5;
  add_alibi(shifted.shape);
  add_bias(shifted.shape, 1, 2, 571);
  expect_run_accurate(run_backward(shifted, fa2(), false), DType::F32, "fa2 softcap alibi bias");
  expect_run_accurate(run_backward(shifted, fa2(), true), DType::F32, "fa2 softcap alibi bias gradient");
  Case graded = cpu_case(190, 300, 64, true, 1, 2, 1, 510);  // two key blocks where the CPU form takes 256
  graded.shape.window_left = 120;
  add_bias(graded.shape, 1, 2, 581);
  expect_run_accurate(run_backward(graded, fa2(), true), DType::F32, "fa2 window bias gradient");
  for (DType dtype : {DType::F16, DType::BF16}) {
    Case half = cpu_case(150, 130, 64, true, 1, 2, 2, 508);
    half.dtype = dtype;
    add_alibi(half.shape);
    expect_run_accurate(run_backward(half, fa2(), false), dtype, std::string("fa2 alibi ") + to_string(dtype));
  }
}

// A bias that is NaN or +inf wherever the causal band hides the key (such a bias is never read:
// the band decides first, in the forward, the reference and every backward path alike), over a
// softcap and several blocks: the CPU form's vector rules apply the band after the bias.
TEST(BwdCpu, NonFiniteBiasOnHiddenKeys) {
  Case c = cpu_case(150, 203, 64, true, 1, 2, 2, 509);
  c.shape.softcap = 1.5;
  add_bias(c.shape, 1, 1, 591);
  const int shift = c.shape.seqlen_k - c.shape.seqlen_q;
  for (int i = 0; i < c.shape.seqlen_q; ++i)
    for (int j = i + shift + 1; j < c.shape.seqlen_k; ++j)
      c.shape.mask_values[static_cast<std::size_t>(i) * c.shape.seqlen_k + j] =
          (i + j) % 2 == 0 ? std::numeric_limits<float>::quiet_NaN() : std::numeric_limits<float>::infinity();
  expect_run_accurate(run_backward(c, fa2(), false), DType::F32, "fa2 non-finite bias on hidden keys");
}

// Whether fa2's backward runs the CPU form here: a CPU device, FLASHCL_BWD_CPU not "0" (the
// planner's rule; CTest's backward_portable_kernel runs this file with it off).
bool cpu_form_runs() {
  cl_device_type type = 0;
  clGetDeviceInfo(session().device(), CL_DEVICE_TYPE, sizeof type, &type, nullptr);
  const char* env = std::getenv("FLASHCL_BWD_CPU");
  const std::string value = env != nullptr ? env : "";
  return value == "1" || (value != "0" && (type & CL_DEVICE_TYPE_GPU) == 0 && (type & CL_DEVICE_TYPE_CPU) != 0);
}

// The deterministic path always; the atomic one too where the CPU form takes it (its dQ is a
// fixed-order sum).
TEST(BwdCpu, ChunkedRunsAreBitIdentical) {
  const Case c = cpu_case(130, 200, 40, false, 1, 4, 1, 505);
  std::vector<const Path*> paths = {&fa2_deterministic()};
  if (cpu_form_runs()) paths.push_back(&fa2());
  for (const Path* p : paths) {
    const BackwardRun first = run_backward(c, *p, false, false);
    for (int run = 1; run < 5; ++run) {
      const BackwardRun again = run_backward(c, *p, false, false);
      EXPECT_EQ(0, std::memcmp(first.raw_d_q.data(), again.raw_d_q.data(), first.raw_d_q.size() * sizeof(float)))
          << p->name << ": dQ differs between runs";
      EXPECT_EQ(0, std::memcmp(first.raw_d_k.data(), again.raw_d_k.data(), first.raw_d_k.size() * sizeof(float)))
          << p->name << ": dK differs between runs";
      EXPECT_EQ(0, std::memcmp(first.raw_d_v.data(), again.raw_d_v.data(), first.raw_d_v.size() * sizeof(float)))
          << p->name << ": dV differs between runs";
    }
  }
}

}  // namespace
}  // namespace flashcl::test
