// fp8_support.hpp: the fp8 forward checked the one way every fp8 test checks it (tests/test_fp8.cpp,
// the oclgrind cases of test_tiny_fp8.cpp): random inputs quantised on the host with random
// descales near amax/max (some elements saturate), the call run on the default device with O and
// LSE poisoned with NaN, and O, LSE and O's layout gaps checked against the float64 reference on
// the dequantised inputs by expect_accurate.
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
};

// Runs the case and checks it (GoogleTest expectations).
void run_fp8_case(const Fp8Case& c);

// A plain (B, H, Nq, Nk, d) shape, causal or not.
bench::Shape fp8_shape(int b, int h, int nq, int nk, int d, bool causal = false);

}  // namespace flashcl::test
