// test_fp8_quantize_varlen.cpp: quantize_fp8 on packed (varlen) tensors, issue 23. Scales per
// sequence (per tensor, per head group, per block of a sequence's rows, with and without the
// Hadamard transform) against the host quantisation, with rows in no sequence written as zeros and
// guards around the output; cu_seqlens that would lead outside the tensors kept inside them; the
// named errors; the C API in both of its layouts; and a varlen fp8 attention on the library's own
// per-sequence quantisation against the float64 reference.
#include <gtest/gtest.h>

#include <cmath>
#include <cstddef>
#include <functional>
#include <limits>
#include <string>

#include "flashcl/flashcl.h"
#include "fp8_experiment.hpp"
#include "fp8_support.hpp"
#include "support.hpp"

namespace flashcl::test {
namespace {

const float kNaN = std::numeric_limits<float>::quiet_NaN();

template <typename T>
std::vector<T> read_back(cl_mem mem, std::size_t n) {
  std::vector<T> out(n);
  check(clEnqueueReadBuffer(session().queue(), mem, CL_TRUE, 0, n * sizeof(T), out.data(), 0, nullptr, nullptr), "read");
  return out;
}

struct VarlenCase {
  DType in = DType::F32, out = DType::E4M3;
  QuantGranularity granularity = QuantGranularity::Head;
  int head_group = 1, block = 0, d = 64;
  bool hadamard = false;
  std::vector<int> cu = {0, 13, 13, 40, 41};  // an empty sequence; rows past 41 are in none
  int total = 44, seqlen = 27;               // seqlen: the longest sequence
};

constexpr int kHeads = 4;
constexpr std::size_t kGuard = 64;  // bytes after out's rows that must keep their poison

// Quantises a strided packed input (NaN gaps) into a poisoned output with guard bytes after its
// rows, and checks bytes, descales, gaps and guards against the host quantisation.
void run_varlen_case(const VarlenCase& c, const std::string& what) {
  const std::size_t elems = std::size_t(c.total) * kHeads * c.d;
  const std::vector<float> x = round_to(c.in, bench::outlier_values(elems, 300 + c.d + c.block));
  DeviceTensor in(Layout::PaddedRows, 1, c.total, kHeads, c.d, &x, c.in);
  DeviceBytes cu(c.cu.data(), c.cu.size() * sizeof(int));
  QuantizeArgs a;
  a.batch = static_cast<int>(c.cu.size()) - 1;
  a.seqlen = c.seqlen;
  a.heads = kHeads;
  a.head_dim = c.d;
  a.in_dtype = c.in;
  a.out_dtype = c.out;
  a.granularity = c.granularity;
  a.head_group = c.head_group;
  a.block = c.block;
  a.hadamard = c.hadamard;
  a.hadamard_seed = 11;
  a.cu_seqlens = cu.mem;
  a.total = c.total;
  a.in = in.view;
  Fp8Tensor got = quantize_on_device(a, elems + kGuard);
  const std::vector<std::uint8_t> guard(got.bytes.begin() + static_cast<std::ptrdiff_t>(elems), got.bytes.end());
  got.bytes.resize(elems);
  expect_same_quantisation(got.bytes, got.descale, host_quantize(a, x, varlen_slots(a, c.cu)), c.hadamard, what);
  EXPECT_EQ(guard, std::vector<std::uint8_t>(kGuard, 0x7f)) << what << ": wrote past out's rows";
  EXPECT_EQ(in.gap_elements_changed(), 0u) << what;
}

TEST(Fp8QuantizeVarlen, PerSequenceHeadGroupsMatchHost) {
  run_varlen_case({DType::F16, DType::E4M3, QuantGranularity::Head, 2}, "f16 head groups of 2");
}

TEST(Fp8QuantizeVarlen, PerSequenceBlocksWithHadamardMatchHost) {
  VarlenCase c{DType::F32, DType::E4M3, QuantGranularity::Block, 1, 8, 128, true};
  run_varlen_case(c, "f32 blocks of 8 hadamard d 128");
}

TEST(Fp8QuantizeVarlen, PerTensorBf16E5M2MatchesHost) {
  run_varlen_case({DType::BF16, DType::E5M2, QuantGranularity::Tensor, 1, 0, 32}, "bf16 e5m2 per tensor");
}

// Offsets that decrease, go negative, pass the rows and exceed seqlen: every write stays in out,
// every row is written (by a scale or as zeros), and the result follows the clamping rules.
TEST(Fp8QuantizeVarlen, HostileOffsetsStayInBounds) {
  VarlenCase c{DType::F32, DType::E4M3, QuantGranularity::Block, 1, 4, 32};
  c.cu = {0, 30, 10, -5, 999};
  c.total = 40;
  c.seqlen = 16;
  run_varlen_case(c, "hostile cu_seqlens");
  c.cu = {7, 3, 3, 2, -1};  // decreasing throughout: no row is in a sequence
  run_varlen_case(c, "decreasing cu_seqlens");
}

// The library's per-sequence scales feed a varlen fp8 attention (GQA, causal), checked as every
// fp8 forward is: against float64 on the dequantised inputs, O and LSE poisoned.
TEST(Fp8QuantizeVarlen, VarlenAttentionOnLibraryScales) {
  for (int quant_block : {0, 8}) {
    bench::Shape s = dense_shape(3, 4, 27, 27, 32, true);
    s.heads_kv = 2;
    s.cu_seqlens_q = {0, 13, 40, 41};
    s.cu_seqlens_k = {0, 20, 27, 54};
    auto quantised = [&](const std::vector<int>& cu, int heads, int head_group, std::uint64_t seed) {
      const int total = cu.back();
      const std::vector<float> x = bench::random_values(std::size_t(total) * heads * s.head_dim, seed, 2.0f);
      DeviceBytes in(x.data(), x.size() * sizeof(float)), cu_mem(cu.data(), cu.size() * sizeof(int));
      QuantizeArgs a;
      a.batch = s.batch;
      a.seqlen = s.seqlen_q;  // 27: the longest sequence of Q and of K
      a.heads = heads;
      a.head_dim = s.head_dim;
      a.granularity = quant_block > 0 ? QuantGranularity::Block : QuantGranularity::Head;
      a.head_group = quant_block > 0 ? 1 : head_group;
      a.block = quant_block;
      a.cu_seqlens = cu_mem.mem;
      a.total = total;
      a.in = {in.mem};
      Fp8Tensor t = quantize_on_device(a, x.size());
      const std::function<int(std::size_t)> slot = varlen_slots(a, cu);
      const std::vector<float> decoded = from_fp8(DType::E4M3, t.bytes);
      t.values.resize(x.size());
      std::size_t far = 0;  // each value within e4m3's rounding of x: its bytes carry the scale its slot says
      for (std::size_t i = 0; i < x.size(); ++i) {
        const float descale = t.descale[slot(i / s.head_dim)];
        t.values[i] = static_cast<float>(double(decoded[i]) * descale);
        far += std::fabs(t.values[i] - x[i]) > 0.0625f * std::fabs(x[i]) + descale * 0x1p-9f;
      }
      EXPECT_EQ(far, 0u) << "quant_block " << quant_block << ": values off their inputs by more than e4m3's rounding";
      return t;
    };
    const int group = s.heads / s.heads_kv;
    const Fp8Tensor q = quantised(s.cu_seqlens_q, s.heads, group, 41), k = quantised(s.cu_seqlens_k, s.heads_kv, 1, 42),
                    v = quantised(s.cu_seqlens_k, s.heads_kv, 1, 43);
    check_fp8_forward({s, DType::E4M3, DType::F32, quant_block, false, Layout::BSHD, Algorithm::FA2,
                       "varlen gqa causal, library scales, quant_block " + std::to_string(quant_block)},
                      q, k, v);
  }
}

void expect_error(const QuantizeArgs& a, Status status, const std::string& names) {
  try {
    quantize_fp8(session().queue(), a).wait();
    ADD_FAILURE() << "no error; expected one naming " << names;
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), status) << e.what();
    EXPECT_NE(std::string(e.what()).find(names), std::string::npos) << "message: " << e.what();
  }
}

TEST(Fp8QuantizeVarlen, NamedErrors) {
  const int total = 20, heads = 2, d = 32;
  std::vector<float> x(std::size_t(total) * heads * d, 1.0f);
  const std::vector<int> offsets = {0, 5, 20};
  DeviceBytes in(x.data(), x.size() * 4), out(x.data(), x.size()), descale(x.data(), 4 * 4), cu(offsets.data(), 12),
      cu_short(offsets.data(), 8);
  QuantizeArgs base;
  base.batch = 2;
  base.seqlen = 15;
  base.heads = heads;
  base.head_dim = d;
  base.granularity = QuantGranularity::Head;
  base.in = {in.mem};
  base.out = {out.mem};
  base.descale = descale.mem;
  base.cu_seqlens = cu.mem;
  base.total = total;
  quantize_fp8(session().queue(), base).wait();  // valid: 4 descales
  auto with = [&](const std::function<void(QuantizeArgs&)>& change) {
    QuantizeArgs a = base;
    change(a);
    return a;
  };
  expect_error(with([](QuantizeArgs& a) { a.total = 0; }), Status::InvalidArgument, "total");
  expect_error(with([](QuantizeArgs& a) { a.cu_seqlens = nullptr; }), Status::InvalidArgument, "total");
  expect_error(with([](QuantizeArgs& a) { a.transposed = true; }), Status::InvalidArgument, "transposed");
  expect_error(with([&](QuantizeArgs& a) { a.cu_seqlens = cu_short.mem; }), Status::InvalidArgument, "cu_seqlens");
  expect_error(with([](QuantizeArgs& a) { a.cu_seqlens = a.out.buffer; }), Status::InvalidArgument, "cu_seqlens");
  expect_error(with([](QuantizeArgs& a) { a.total = 21; }), Status::InvalidArgument, "in");
}

// fcl_quantize_args of the first release (up to `transposed`), written out here as that header had
// it: its sizeof is what a caller built against it passes as struct_size.
struct FirstQuantizeArgs {
  size_t struct_size;
  int batch, seqlen, heads, head_dim;
  fcl_dtype in_dtype, out_dtype;
  fcl_tensor in, out;
  cl_mem descale;
  int granularity, head_group, block, hadamard;
  uint64_t hadamard_seed;
  int transposed;
};

// fcl_quantize_fp8 with cu_seqlens writes the C++ call's bytes; a caller built against the first
// layout is still served, its varlen fields left at their defaults.
TEST(Fp8QuantizeVarlen, CApiMatchesCppInBothLayouts) {
  const int total = 30, heads = 2, d = 32;
  const std::vector<float> x = bench::random_values(std::size_t(total) * heads * d, 77, 3.0f);
  const std::vector<int> offsets = {0, 12, 12, 30};
  DeviceBytes in(x.data(), x.size() * 4), cu(offsets.data(), offsets.size() * sizeof(int));
  std::vector<std::uint8_t> poison(x.size(), 0x7f);
  DeviceBytes out_c(poison.data(), poison.size()), out_cpp(poison.data(), poison.size());
  DeviceBuffer descale_c(3 * 2, kNaN), descale_cpp(3 * 2, kNaN);

  fcl_quantize_args qa;
  fcl_quantize_args_init(&qa);
  EXPECT_EQ(qa.cu_seqlens, nullptr);
  EXPECT_EQ(qa.total, 0);
  qa.batch = 3;
  qa.seqlen = 18;
  qa.heads = heads;
  qa.head_dim = d;
  qa.granularity = 1;
  qa.in.buffer = in.mem;
  qa.out.buffer = out_c.mem;
  qa.descale = descale_c.mem;
  qa.cu_seqlens = cu.mem;
  qa.total = total;
  ASSERT_EQ(fcl_quantize_fp8(session().queue(), &qa, 0, nullptr, nullptr), FCL_SUCCESS) << fcl_last_error();
  QuantizeArgs a;
  a.batch = 3;
  a.seqlen = 18;
  a.heads = heads;
  a.head_dim = d;
  a.granularity = QuantGranularity::Head;
  a.in = {in.mem};
  a.out = {out_cpp.mem};
  a.descale = descale_cpp.mem;
  a.cu_seqlens = cu.mem;
  a.total = total;
  quantize_fp8(session().queue(), a).wait();
  EXPECT_EQ(read_back<std::uint8_t>(out_c.mem, x.size()), read_back<std::uint8_t>(out_cpp.mem, x.size()));
  EXPECT_EQ(descale_c.read(), descale_cpp.read());

  // The first layout: the same call read as (B 1, S 30) dense, since cu_seqlens is beyond its size.
  constexpr std::size_t first_size = sizeof(FirstQuantizeArgs);
  static_assert(first_size < sizeof(fcl_quantize_args));
  qa.struct_size = first_size;
  qa.batch = 1;
  qa.seqlen = total;
  ASSERT_EQ(fcl_quantize_fp8(session().queue(), &qa, 0, nullptr, nullptr), FCL_SUCCESS) << fcl_last_error();
  QuantizeArgs dense = a;
  dense.batch = 1;
  dense.seqlen = total;
  dense.cu_seqlens = nullptr;
  dense.total = 0;
  quantize_fp8(session().queue(), dense).wait();
  EXPECT_EQ(read_back<std::uint8_t>(out_c.mem, x.size()), read_back<std::uint8_t>(out_cpp.mem, x.size()));
  EXPECT_EQ(descale_c.read(), descale_cpp.read());
  qa.struct_size = first_size + 4;  // neither layout
  EXPECT_EQ(fcl_quantize_fp8(session().queue(), &qa, 0, nullptr, nullptr), FCL_INVALID_ARGUMENT);
  EXPECT_NE(std::string(fcl_last_error()).find("struct_size"), std::string::npos) << fcl_last_error();
}

}  // namespace
}  // namespace flashcl::test
