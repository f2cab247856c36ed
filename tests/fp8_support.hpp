// fp8_support.hpp: the fp8 forward checked the one way every fp8 test checks it (tests/test_fp8.cpp,
// the oclgrind cases of test_tiny_fp8.cpp): random inputs quantised on the host with random
// descales near amax/max (some elements saturate), the call run on the default device with O and
// LSE poisoned with NaN, and O, LSE and O's layout gaps checked against the float64 reference on
// the dequantised inputs by expect_accurate (or O within a bound that allows P rounded to e4m3).
#pragma once

#include <string>

#include "support.hpp"

namespace flashcl::test {

struct Fp8Case {
  bench::Shape shape;
  DType dtype = DType::E4M3, out = DType::F32;
  int quant_block = 0;
  bool v_transposed = false;
  Layout o_layout = Layout::BSHD;
  Algorithm algorithm = Algorithm::FA2;
  std::string name;
  // 0: expect_accurate's bounds (P kept in fp32). > 0: the bound on O's relative RMS error for a
  // path that rounds P to e4m3 before P·V, as FA3 and the NVIDIA tensor-core kernel do (O, LSE
  // and the layout gaps are checked otherwise as expect_accurate checks them).
  double rounded_p_bound = 0.0;
};

// Runs the case and checks it (GoogleTest expectations).
void run_fp8_case(const Fp8Case& c);

// A case of the NVIDIA tensor-core kernels (test_fp8_tensor_core.cpp on mma.sync, test_fp8_wgmma.cpp
// on wgmma): e4m3 inputs with per-head descales, H query heads over h_kv K/V heads, O of type `out`
// in `o_layout`, named after its shape; O held to the bound of a path that rounds P to e4m3 before
// P·V (4e-2: half an e4m3 step relative, averaged over the keys; a wrong fragment is off by O(1)).
Fp8Case tensor_core_case(int b, int h, int h_kv, int nq, int nk, int d, bool causal, DType out, Layout o_layout);

}  // namespace flashcl::test
