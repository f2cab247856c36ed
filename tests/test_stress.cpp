// test_stress.cpp: numerics under stress. NaN and Inf in an input reach only the rows that input
// touches (a query row; the rows that can see a key under the causal mask; the head it lives in),
// every other row stays exact; a very long sequence (N = 65536, fa2, B = H = 1, d = 16) runs in
// memory linear in N while standard refuses cleanly with the bytes it would need; and the forward
// pass is bit-identical run to run. The N = 65536 run takes about a minute on 2 CPU cores, so its
// name carries "Long": it is left out of the default suite and registered as its own CTest test
// with the label `stress` (docs/CHECKS.md).
#include <sys/resource.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "support.hpp"

namespace flashcl::test {
namespace {

const float kNaN = std::numeric_limits<float>::quiet_NaN();
const float kInf = std::numeric_limits<float>::infinity();

struct Poison {
  enum Where { Q, K, V } where;
  float value;
  int row;   // sequence position in the poisoned tensor
  int head;  // head it is in
};

// Runs a (B=1, H=2) causal/non-causal case with one element poisoned; returns O (B, Nq, H, d).
std::vector<float> run_poisoned(Algorithm algorithm, const bench::Shape& s, const Poison& p, std::vector<float>& q,
                                std::vector<float>& k, std::vector<float>& v) {
  q = bench::random_values(s.q_elems(), 501);
  k = bench::random_values(s.kv_elems(), 502);
  v = bench::random_values(s.kv_elems(), 503);
  std::vector<float>& t = p.where == Poison::Q ? q : p.where == Poison::K ? k : v;
  t[(static_cast<std::size_t>(p.row) * s.heads + p.head) * s.head_dim + 3] = p.value;
  DeviceTensor dq(Layout::BSHD, s.batch, s.seqlen_q, s.heads, s.head_dim, &q);
  DeviceTensor dk(Layout::BSHD, s.batch, s.seqlen_k, s.heads, s.head_dim, &k);
  DeviceTensor dv(Layout::BSHD, s.batch, s.seqlen_k, s.heads, s.head_dim, &v);
  DeviceTensor dout(Layout::BSHD, s.batch, s.seqlen_q, s.heads, s.head_dim, nullptr);
  ForwardArgs a = shape_args(s);
  a.algorithm = algorithm;
  a.q = dq.view;
  a.k = dk.view;
  a.v = dv.view;
  a.o = dout.view;
  // The tensor cores multiply a whole block of P by a whole block of V, so a hidden key's NaN/Inf
  // in V meets P = 0 and reaches rows that share its block (FlashAttention-2 behaves the same;
  // README, "Precisions and tensor cores"). Containment of V is a property of the portable paths.
  if (p.where == Poison::V && s.causal &&
      tile_info(session().device(), a).reason.find("tensor cores") != std::string::npos)
    return {};
  forward(session().queue(), a).wait();
  return dout.logical();
}

// Whether query row i of head h can be reached by the poison.
bool touched(const bench::Shape& s, const Poison& p, int i, int h) {
  if (h != p.head) return false;
  if (p.where == Poison::Q) return i == p.row;
  return !s.causal || p.row <= i + (s.seqlen_k - s.seqlen_q);  // key p.row visible to row i
}

struct NonFiniteCase {
  Algorithm algorithm;
  bool causal;
  Poison poison;
};

std::string nonfinite_name(const ::testing::TestParamInfo<NonFiniteCase>& info) {
  const auto& c = info.param;
  const char* where = c.poison.where == Poison::Q ? "Q" : c.poison.where == Poison::K ? "K" : "V";
  return std::string(to_string(c.algorithm)) + (c.causal ? "_causal_" : "_full_") + where +
         (std::isnan(c.poison.value) ? "NaN" : c.poison.value > 0 ? "PosInf" : "NegInf") + "_row" +
         std::to_string(c.poison.row);
}

class NonFiniteInputs : public ::testing::TestWithParam<NonFiniteCase> {};

TEST_P(NonFiniteInputs, ReachOnlyTheRowsTheyTouch) {
  const auto& c = GetParam();
  bench::Shape s;
  s.batch = 1;
  s.heads = 2;
  s.seqlen_q = 37;
  s.seqlen_k = 41;
  s.head_dim = 16;
  s.causal = c.causal;
  std::vector<float> q, k, v;
  const auto o = run_poisoned(c.algorithm, s, c.poison, q, k, v);
  if (o.empty()) GTEST_SKIP() << "causal V poison on the tensor-core path: hidden keys share P V blocks";
  const auto ref = bench::reference_attention(s, q, k, v);
  int clean_rows = 0, touched_rows = 0;
  for (int i = 0; i < s.seqlen_q; ++i)
    for (int h = 0; h < s.heads; ++h) {
      const std::size_t base = (static_cast<std::size_t>(i) * s.heads + h) * s.head_dim;
      if (touched(s, c.poison, i, h)) {
        ++touched_rows;
        continue;  // may be NaN/Inf: the input it depends on is
      }
      ++clean_rows;
      for (int j = 0; j < s.head_dim; ++j) {
        const float got = o[base + j];
        ASSERT_TRUE(std::isfinite(got)) << "row " << i << " head " << h << " never sees the poisoned element";
        EXPECT_NEAR(got, ref.out[base + j], 1e-5 + 1e-5 * std::fabs(ref.out[base + j])) << "row " << i << " head " << h;
      }
    }
  EXPECT_GT(clean_rows, 0);
  EXPECT_GT(touched_rows, 0);
}

std::vector<NonFiniteCase> nonfinite_cases() {
  std::vector<NonFiniteCase> cases;
  for (Algorithm algorithm : {Algorithm::Standard, Algorithm::FA1, Algorithm::FA2})
    for (bool causal : {false, true}) {
      cases.push_back({algorithm, causal, {Poison::Q, kNaN, 11, 0}});
      cases.push_back({algorithm, causal, {Poison::Q, kInf, 30, 1}});
      cases.push_back({algorithm, causal, {Poison::K, kNaN, 20, 1}});
      cases.push_back({algorithm, causal, {Poison::K, -kInf, 33, 0}});
      cases.push_back({algorithm, causal, {Poison::V, kNaN, 25, 0}});
      cases.push_back({algorithm, causal, {Poison::V, kInf, 38, 1}});
    }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Stress, NonFiniteInputs, ::testing::ValuesIn(nonfinite_cases()), nonfinite_name);

// A row whose only visible key scores NaN comes out NaN (O and LSE), as softmax over that score
// is: a kernel that takes a row's max with fmax alone passes over the NaN and may count the row as
// having seen nothing so far (O = 0, LSE = -inf), or drop the NaN from its sum at the next block.
// Causal, Nq = Nk, a NaN in K's head 1 at key 0, which row 0 sees alone; or, under a left window of
// 4, at the last key of the first key block the plan reads (its block_cols on this device), which
// row key + 4 sees alone in that block before four keys of the next. The rows that see the key are
// NaN, every other row finite.
TEST(StressLoneNaN, ARowWhoseOnlyKeyScoresNaNIsNaN) {
  const int heads = 2, d = 16;
  for (Algorithm algorithm : {Algorithm::Standard, Algorithm::FA1, Algorithm::FA2})
    for (const int left : {-1, 4}) {
      bench::Shape s = dense_shape(1, heads, 40, 40, d, true);
      ForwardArgs a = shape_args(s);
      a.algorithm = algorithm;
      a.window = {left, -1};
      int key = 0;
      if (left > 0) {
        const int bc = tile_info(session().device(), a).block_cols;
        ASSERT_GT(bc, 0) << to_string(algorithm);
        key = bc - 1;
        s = dense_shape(1, heads, bc + 2 * left, bc + 2 * left, d, true);
        a = shape_args(s);
        a.algorithm = algorithm;
        a.window = {left, -1};
        ASSERT_EQ(tile_info(session().device(), a).block_cols, bc) << "the key block moved with the length";
      }
      SCOPED_TRACE(std::string(to_string(algorithm)) + " key " + std::to_string(key));
      const int n = s.seqlen_q;
      auto q = bench::random_values(s.q_elems(), 801), k = bench::random_values(s.kv_elems(), 802),
           v = bench::random_values(s.kv_elems(), 803);
      k[(static_cast<std::size_t>(key) * heads + 1) * d + 5] = kNaN;
      DeviceTensor dq(Layout::BSHD, 1, n, heads, d, &q), dk(Layout::BSHD, 1, n, heads, d, &k),
          dv(Layout::BSHD, 1, n, heads, d, &v), dout(Layout::BSHD, 1, n, heads, d, nullptr);
      const float unwritten = -12345.0f;
      DeviceBuffer dlse(static_cast<std::size_t>(heads) * n, unwritten);
      a.q = dq.view;
      a.k = dk.view;
      a.v = dv.view;
      a.o = dout.view;
      a.lse = dlse.mem;
      forward(session().queue(), a).wait();
      const std::vector<float> o = dout.logical(), lse = dlse.read();
      for (int i = 0; i < n; ++i)
        for (int h = 0; h < heads; ++h) {
          const bool sees = h == 1 && key <= i && (left < 0 || key >= i - left);
          const std::size_t base = (static_cast<std::size_t>(i) * heads + h) * d;
          for (int j = 0; j < d; ++j)
            EXPECT_EQ(std::isnan(o[base + j]), sees) << "row " << i << " head " << h << " column " << j;
          const float l = lse[static_cast<std::size_t>(h) * n + i];
          EXPECT_EQ(std::isnan(l), sees) << "LSE row " << i << " head " << h;
          EXPECT_NE(l, unwritten) << "LSE row " << i << " head " << h << " not written";
        }
    }
}

// Bit-identical run to run, for every algorithm, on a shape with partial tiles and the causal mask.
TEST(StressDeterminism, ThreeRunsAreBitIdentical) {
  const Case c = make_case(211, 173, 48, true, 2, 3);
  for (Algorithm algorithm : {Algorithm::Standard, Algorithm::FA1, Algorithm::FA2}) {
    const auto first = run_case(c, algorithm);
    expect_accurate(first, to_string(algorithm));
    for (int run = 0; run < 2; ++run) {
      const auto again = run_case(c, algorithm);
      ASSERT_EQ(again.o.size(), first.o.size());
      EXPECT_EQ(std::memcmp(again.o.data(), first.o.data(), first.o.size() * sizeof(float)), 0) << to_string(algorithm);
      EXPECT_EQ(std::memcmp(again.lse_values.data(), first.lse_values.data(), first.lse_values.size() * sizeof(float)),
                0)
          << to_string(algorithm);
    }
  }
}

ForwardArgs long_shape(Algorithm algorithm, int n = 65536) {
  ForwardArgs a;
  a.batch = a.heads = 1;
  a.seqlen_q = a.seqlen_k = n;
  a.head_dim = 16;
  a.causal = true;
  a.algorithm = algorithm;
  return a;
}

// standard at N = 65536 needs an N x N score matrix (16 GiB), past the largest buffer of most
// devices: refused before anything is allocated, with the bytes it would need; fa2 needs no
// workspace and fa1's grows linearly. A device whose largest buffer holds 16 GiB (an 80 GB GPU's
// quarter) gets N doubled until the matrix is past it.
TEST(StressLongSequence, StandardRefusesWithTheBytesItWouldNeed) {
  cl_ulong max_alloc = 0;
  ASSERT_EQ(clGetDeviceInfo(session().device(), CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof max_alloc, &max_alloc, nullptr),
            CL_SUCCESS);
  std::size_t n = 65536;
  while (n * n * sizeof(float) <= max_alloc) n *= 2;
  const int len = static_cast<int>(n);
  const std::size_t scores = n * n * sizeof(float);
  // the score matrix and at most a few percent more (the CPU form adds each padded row's max)
  const std::size_t needed = workspace_bytes(session().device(), long_shape(Algorithm::Standard, len));
  EXPECT_GE(needed, scores);
  EXPECT_LE(needed, scores + scores / 32);
  EXPECT_EQ(workspace_bytes(session().device(), long_shape(Algorithm::FA2, len)), 0u);
  EXPECT_LT(workspace_bytes(session().device(), long_shape(Algorithm::FA1, len)), n * 64 * sizeof(float));
  const std::size_t io = (4 * n * 16 + n) * sizeof(float);  // Q, K, V, O and LSE
  EXPECT_EQ(device_bytes(session().device(), long_shape(Algorithm::FA2, len)), io);

  const std::vector<float> x(n * 16, 0.25f);
  try {
    session().forward(long_shape(Algorithm::Standard, len), x, x, x);
    ADD_FAILURE() << "standard accepted N = " << n << " (a " << scores << "-byte score matrix; largest buffer "
                  << max_alloc << " bytes)";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), Status::OutOfResources) << e.what();
    EXPECT_NE(std::string(e.what()).find(std::to_string(needed)), std::string::npos) << e.what();
  }
}

// Sizes past 2^64 bytes saturate instead of wrapping: standard at B = H = d = 1, N = 2^31 - 1
// needs a (2^31 - 1)^2 * 4-byte workspace (just under 2^64) plus 2^35 bytes of tensors, a sum that
// wrapped to about 26 GB, small enough for a caller's memory check to pass.
TEST(StressLongSequence, SizesSaturateInsteadOfWrapping) {
  ForwardArgs a;
  a.heads = a.head_dim = 1;
  // the longest sequences validation accepts (seqlen_q + seqlen_k <= 2^31 - 2^24: the kernels'
  // 32-bit row and key indices); S = B·Nq·Nk floats then passes 2^64 bytes from B = 8 on
  a.seqlen_q = a.seqlen_k = (1 << 30) - (1 << 23);
  a.batch = 8;
  a.algorithm = Algorithm::Standard;
  EXPECT_EQ(workspace_bytes(session().device(), a), SIZE_MAX);
  EXPECT_EQ(device_bytes(session().device(), a), SIZE_MAX);
}

long max_rss_mib() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss / 1024;
}

// fa2 at N = 65536 (B = H = 1, d = 16, causal): O checked against float64 on sampled rows (first
// and last included), LSE on the same rows, and the process's peak memory stays far below the
// 16 GiB an N x N matrix would take.
TEST(StressLongSequence, Fa2LongRunsInLinearMemory) {
  const int n = 65536, d = 16;
  bench::Shape s;
  s.seqlen_q = s.seqlen_k = n;
  s.head_dim = d;
  s.causal = true;
  const auto q = bench::random_values(s.q_elems(), 601), k = bench::random_values(s.kv_elems(), 602),
             v = bench::random_values(s.kv_elems(), 603);
  const long rss_before = max_rss_mib();
  std::vector<float> lse;
  const auto o = session().forward(long_shape(Algorithm::FA2), q, k, v, &lse);
  const long rss_growth = max_rss_mib() - rss_before;
  EXPECT_LT(rss_growth, 512) << "peak memory grew by " << rss_growth << " MiB (inputs and output are 4 MiB each)";

  const std::vector<int> rows = bench::sample_rows(s, 2e8);
  const auto ref = bench::reference_attention_rows(s, q, k, v, rows);
  const auto got = bench::gather_rows(s, o, rows);
  const auto e = bench::compare(got, ref.out);
  EXPECT_EQ(e.non_finite, 0u);
  // fp32 rounding over up to 65536 keys; NVIDIA's tensor cores take the call as 3xTF32 products,
  // whose sums measured 2.0e-5 on the H100
  const bool tensor_cores =
      tile_info(session().device(), long_shape(Algorithm::FA2)).reason.find("on tensor cores") != std::string::npos;
  EXPECT_LE(e.rel_norm, tensor_cores ? 4e-5 : 1e-5);
  for (std::size_t r = 0; r < rows.size(); ++r)
    EXPECT_NEAR(lse[rows[r]], ref.lse[r], 1e-5 * std::max(1.0, std::fabs(ref.lse[r]))) << "row " << rows[r];
  std::size_t non_finite = 0;
  for (float x : o) non_finite += std::isfinite(x) ? 0 : 1;
  EXPECT_EQ(non_finite, 0u);
}

}  // namespace
}  // namespace flashcl::test
