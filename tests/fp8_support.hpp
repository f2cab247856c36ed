// fp8_support.hpp: the fp8 forward checked the one way every fp8 test checks it (tests/test_fp8.cpp,
// the oclgrind cases of test_tiny_fp8.cpp): random inputs quantised on the host with random
// descales near amax/max (some elements saturate), the call run on the default device with O and
// LSE poisoned with NaN, and O, LSE and O's layout gaps checked against the float64 reference on
// the dequantised inputs by expect_accurate (or O within a bound that allows P rounded to e4m3).
// Also the host twin of quantize_fp8 that the quantisation tests compare the device with.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

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

// An fp8 tensor in its natural layout ((B, S, H, d), or packed (total, H, d) with varlen): the
// bytes, the descales in the attention's layout, and the dequantised values decode(byte)·descale
// that the float64 reference takes.
struct Fp8Tensor {
  std::vector<std::uint8_t> bytes;
  std::vector<float> descale, values;
};

// Runs case c's forward on given fp8 Q, K, V (V is transposed here when c.v_transposed) and checks
// it as run_fp8_case does.
void check_fp8_forward(const Fp8Case& c, const Fp8Tensor& q, const Fp8Tensor& k, const Fp8Tensor& v);

// quantize_fp8 on the host: x holds rows of a.head_dim values, transformed (in double) when
// a.hadamard; slot_of(row) is a row's scale slot, or -1 for a row in no sequence (bytes 0, no
// amax); amax per slot, descale = amax / max in fp32 (1 where amax is 0; per tensor every entry
// takes slot 0's), bytes = to_fp8(x / descale), in x's row order.
Fp8Tensor host_quantize(const QuantizeArgs& a, const std::vector<float>& x, const std::function<int(std::size_t)>& slot_of);

// Runs quantize_fp8(a) with a.in as given into a fresh output of out_bytes bytes poisoned with
// NaN codes (0x7f) and descales poisoned with NaN; returns what the device left there (bytes and
// descales; values empty).
Fp8Tensor quantize_on_device(QuantizeArgs a, std::size_t out_bytes);

// The device's quantisation (bytes, descales) against the host's: exact without the transform; with
// it, the device's fp32 transform differs from the host's float64 one in the last bits, which may
// move a value across a rounding midpoint: descales within 1e-5 relative, bytes at most the
// neighbouring code on at most 1 % of the elements.
void expect_same_quantisation(const std::vector<std::uint8_t>& got, const std::vector<float>& got_descale,
                              const Fp8Tensor& want, bool hadamard, const std::string& what);

// The scale slot of row s of batch (or sequence) b, head h, for a's granularity (the attention's
// descale layouts).
int quant_slot(const QuantizeArgs& a, int b, int s, int h);

// The scale slot of packed row `row` (of a.total x a.heads) of a varlen quantisation with offsets
// cu, or -1 for a row in no sequence, by the rules docs/FP8.md gives the kernels: starts clamped to
// [0, total], ends to [start, total], lengths to seqlen, the sequence found by a binary search over
// the clamped starts.
std::function<int(std::size_t)> varlen_slots(const QuantizeArgs& a, const std::vector<int>& cu);

// A case of the NVIDIA tensor-core kernels (test_fp8_tensor_core.cpp on mma.sync, test_fp8_wgmma.cpp
// on wgmma): e4m3 inputs with per-head descales, H query heads over h_kv K/V heads, O of type `out`
// in `o_layout`, named after its shape; O held to the bound of a path that rounds P to e4m3 before
// P·V (4e-2: half an e4m3 step relative, averaged over the keys; a wrong fragment is off by O(1)).
Fp8Case tensor_core_case(int b, int h, int h_kv, int nq, int nk, int d, bool causal, DType out, Layout o_layout);

}  // namespace flashcl::test
