// test_bwd_mma.cpp: the fa2 backward on NVIDIA tensor cores (kernels/nvidia/bwd_mma.cl) against the
// float64 reference gradients (backward_support: fresh random inputs, dQ, dK, dV poisoned with NaN
// first, writes outside the layouts counted), over the calls it takes: fp16 and bf16, d = 64 and
// 128, causal on and off, GQA and MQA, Nq != Nk both ways (Nq > Nk leaves causal rows that see no
// key: zero gradients), lengths that are no multiple of any block, dense, head-major and padded
// layouts (the padded one takes the element-wise copies). The bounds are the 16-bit bounds of every
// backward path (twice the error of the reference rounded to the storage type plus a floor), which
// the kernel's rounding of P and dS to 16 bits before their products stays within.
//
// The tests skip where the device is not an NVIDIA GPU of compute capability >= 8.0. Where it is,
// the planner gives these calls to the tensor cores after a probe, and a failed probe would fall
// back to the portable kernels and still pass: bench/gpu/bwd.sh runs this file with
// FLASHCL_BWD_MMA=1, which turns a failed probe into an error.
#include <CL/cl.h>

#include <string>

#include "backward_support.hpp"

namespace flashcl::test {
namespace {

constexpr cl_device_info kComputeCapabilityMajorNv = 0x4000;  // cl_nv_device_attribute_query

bool tensor_core_device() {
  const cl_device_id device = session().device();
  char vendor[256] = {};
  if (clGetDeviceInfo(device, CL_DEVICE_VENDOR, sizeof vendor - 1, vendor, nullptr) != CL_SUCCESS) return false;
  if (std::string(vendor).find("NVIDIA") == std::string::npos) return false;
  cl_uint major = 0;
  if (clGetDeviceInfo(device, kComputeCapabilityMajorNv, sizeof major, &major, nullptr) != CL_SUCCESS) return false;
  return major >= 8;
}

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

void run(const MmaCase& m, std::uint64_t seed) {
  Case c = make_case(m.nq, m.nk, m.d, m.causal, m.b, m.h, m.layout);
  c.shape.heads_kv = m.h_kv;
  c.dtype = m.dtype;
  c.seed = seed;
  const Path fa2{Algorithm::FA2, false, "fa2"};
  const BackwardRun r = run_backward(c, fa2, false);
  expect_run_accurate(r, m.dtype, name(m));
}

class BwdMma : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!tensor_core_device()) GTEST_SKIP() << "not an NVIDIA GPU of compute capability >= 8.0";
  }
};

TEST_F(BwdMma, HeadDimsCausalAndTypes) {
  std::uint64_t seed = 2000;
  for (int d : {64, 128})
    for (bool causal : {false, true})
      for (DType dtype : {DType::F16, DType::BF16})
        run({2, 4, 4, 200, 200, d, causal, dtype, Layout::BSHD}, ++seed);
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

}  // namespace
}  // namespace flashcl::test
