// test_hostile.cpp: careless and hostile callers (issue 19), one test per reproduced defect:
// varlen calls that must neither block nor leave their buffers whatever cu_seqlens hold, finite
// inputs at the edges of what validation accepts (against float64), index arithmetic at the
// largest accepted shapes, outputs that alias inputs, memory objects of the wrong kind or flags,
// special files in the disk cache's place, honest cache statistics, and cached programs that must
// not keep released contexts alive. Buffers that must stay untouched sit between poisoned guard
// regions of one parent buffer (sub-buffers), so any stray write shows.
#include <CL/cl.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cfloat>
#include <climits>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>

#include "support.hpp"

namespace flashcl::test {
namespace {

using namespace std::chrono_literals;

cl_context context() { return session().context(); }
cl_command_queue queue() { return session().queue(); }

cl_mem make_buffer(std::size_t bytes, const void* data, cl_mem_flags flags = CL_MEM_READ_WRITE) {
  cl_int err = CL_SUCCESS;
  cl_mem mem = clCreateBuffer(context(), flags | (data != nullptr ? CL_MEM_COPY_HOST_PTR : 0), bytes,
                              const_cast<void*>(data), &err);
  check(err, "clCreateBuffer");
  return mem;
}

// A buffer of `floats` values inside a parent with `kGuard` poisoned bytes on each side: view()
// is a sub-buffer of exactly the payload, guards_intact() says whether anything wrote outside it.
class Guarded {
 public:
  static constexpr std::size_t kGuard = 4096;  // a multiple of every device's base address alignment
  static constexpr float kPoison = 12345.0f;

  Guarded(std::size_t floats, const std::vector<float>* values) : floats_(floats) {
    std::vector<float> init(kGuard / 4 * 2 + floats, kPoison);
    if (values != nullptr) std::copy(values->begin(), values->end(), init.begin() + kGuard / 4);
    parent_ = make_buffer(init.size() * 4, init.data());
    cl_buffer_region region{kGuard, floats * 4};
    cl_int err = CL_SUCCESS;
    view_ = clCreateSubBuffer(parent_, CL_MEM_READ_WRITE, CL_BUFFER_CREATE_TYPE_REGION, &region, &err);
    check(err, "clCreateSubBuffer");
  }
  Guarded(const Guarded&) = delete;
  Guarded& operator=(const Guarded&) = delete;
  ~Guarded() {
    clReleaseMemObject(view_);
    clReleaseMemObject(parent_);
  }
  cl_mem view() const { return view_; }
  std::vector<float> all() const {
    std::vector<float> out(kGuard / 4 * 2 + floats_);
    check(clEnqueueReadBuffer(queue(), parent_, CL_TRUE, 0, out.size() * 4, out.data(), 0, nullptr, nullptr),
          "clEnqueueReadBuffer");
    return out;
  }
  std::vector<float> payload() const {
    const auto a = all();
    return {a.begin() + kGuard / 4, a.begin() + kGuard / 4 + floats_};
  }
  bool guards_intact() const {
    const auto a = all();
    for (std::size_t i = 0; i < kGuard / 4; ++i)
      if (a[i] != kPoison || a[kGuard / 4 + floats_ + i] != kPoison) return false;
    return true;
  }

 private:
  std::size_t floats_;
  cl_mem parent_ = nullptr, view_ = nullptr;
};

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// ---- Defect 8: varlen never blocks the caller and never leaves its buffers -------------------

constexpr int kB = 4, kH = 2, kD = 8, kMax = 8, kRows = 16;  // 16 packed rows in every tensor

struct VarlenBuffers {
  std::vector<float> q = bench::random_values(kRows * kH * kD, 71), k = bench::random_values(kRows * kH * kD, 72),
                     v = bench::random_values(kRows * kH * kD, 73);
  Guarded dq{q.size(), &q}, dk{k.size(), &k}, dv{v.size(), &v}, dout{q.size(), nullptr}, dlse{kH * kRows, nullptr};

  ForwardArgs args(Algorithm algorithm, cl_mem cu_q, cl_mem cu_k) const {
    ForwardArgs a;
    a.batch = kB;
    a.heads = kH;
    a.seqlen_q = a.seqlen_k = kMax;
    a.head_dim = kD;
    a.algorithm = algorithm;
    a.q.buffer = dq.view();
    a.k.buffer = dk.view();
    a.v.buffer = dv.view();
    a.o.buffer = dout.view();
    a.lse = dlse.view();
    a.total_q = kRows;
    a.cu_seqlens_q = cu_q;
    a.cu_seqlens_k = cu_k;
    return a;
  }
};

struct Cu {
  DeviceBytes q, k;
  Cu(const std::vector<int>& cq, const std::vector<int>& ck)
      : q(cq.data(), cq.size() * sizeof(int)), k(ck.data(), ck.size() * sizeof(int)) {}
};

const Algorithm kPortable[] = {Algorithm::Standard, Algorithm::FA1, Algorithm::FA2};

// A user event the caller sets only after forward() returns: the old read-back of cu_seqlens
// waited on it inside forward(), so one thread deadlocked. The gate is opened from here after a
// timeout, so a regression fails instead of hanging.
TEST(HostileVarlen, UserEventSetAfterEnqueueDoesNotDeadlock) {
  VarlenBuffers buf;
  Cu cu({0, 3, 8, 8, 16}, {0, 5, 5, 13, 16});
  for (Algorithm algorithm : kPortable) {
    cl_int err = CL_SUCCESS;
    cl_event gate = clCreateUserEvent(context(), &err);
    check(err, "clCreateUserEvent");
    const ForwardArgs a = buf.args(algorithm, cu.q.mem, cu.k.mem);
    auto call = std::async(std::launch::async, [&] { return forward(queue(), a, {gate}); });
    const bool returned = call.wait_for(20s) == std::future_status::ready;
    check(clSetUserEventStatus(gate, CL_COMPLETE), "clSetUserEventStatus");
    Launch launch = call.get();
    launch.wait();
    clReleaseEvent(gate);
    EXPECT_TRUE(returned) << to_string(algorithm) << ": forward() waited on the caller's event";
    const auto gated = buf.dout.payload();
    forward(queue(), a).wait();  // the same call without a gate computes the same output
    EXPECT_TRUE(same_bits(gated, buf.dout.payload())) << to_string(algorithm);
  }
}

// A null q is an argument error known on the host: reported at once, before any wait.
TEST(HostileVarlen, NullQFailsBeforeAnyWait) {
  VarlenBuffers buf;
  Cu cu({0, 3, 8, 8, 16}, {0, 5, 5, 13, 16});
  cl_int err = CL_SUCCESS;
  cl_event gate = clCreateUserEvent(context(), &err);
  check(err, "clCreateUserEvent");
  ForwardArgs a = buf.args(Algorithm::FA2, cu.q.mem, cu.k.mem);
  a.q.buffer = nullptr;
  auto call = std::async(std::launch::async, [&] {
    try {
      forward(queue(), a, {gate});
    } catch (const Error& e) {
      return e.status();
    }
    return Status::Success;
  });
  const bool returned = call.wait_for(20s) == std::future_status::ready;
  check(clSetUserEventStatus(gate, CL_COMPLETE), "clSetUserEventStatus");
  EXPECT_EQ(call.get(), Status::InvalidHandle);
  EXPECT_TRUE(returned) << "the error came only after the caller's event";
  clReleaseEvent(gate);
}

// Without total_q the LSE layout (H, total_q) takes total_q = cu_seqlens_q[B] on the device: the
// same LSE as when the caller gives it, and as the opt-in read-back finds.
TEST(HostileVarlen, LseLayoutWithoutTotalQ) {
  Cu cu({0, 3, 8, 8, 12}, {0, 5, 5, 13, 16});
  for (Algorithm algorithm : kPortable) {
    VarlenBuffers given, device, checked;
    forward(queue(), given.args(algorithm, cu.q.mem, cu.k.mem)).wait();  // total_q = 16 rows
    ForwardArgs a = device.args(algorithm, cu.q.mem, cu.k.mem);
    a.total_q = 0;
    forward(queue(), a).wait();
    a = checked.args(algorithm, cu.q.mem, cu.k.mem);
    a.total_q = 0;
    a.check_device_data = true;
    forward(queue(), a).wait();
    const auto g = given.dlse.payload(), d = device.dlse.payload(), c = checked.dlse.payload();
    for (int h = 0; h < kH; ++h)
      for (int row = 0; row < 12; ++row) {
        EXPECT_EQ(d[h * 12 + row], g[h * kRows + row]) << to_string(algorithm) << " head " << h << " row " << row;
        EXPECT_EQ(c[h * 12 + row], g[h * kRows + row]) << to_string(algorithm) << " head " << h << " row " << row;
      }
  }
}

// Offsets that are negative, decreasing, longer than the maximum or past the buffers: accepted
// without a read-back and clamped by every kernel, so nothing outside Q, K, V, O, LSE is written.
TEST(HostileVarlen, HostileOffsetsStayInBounds) {
  const std::vector<std::vector<int>> hostile = {
      {-5, 6, 2, 40, INT_MAX}, {INT_MIN, 3, 100, 9, -1}, {INT_MAX, INT_MAX, INT_MAX, INT_MAX, INT_MAX},
      {0, INT_MIN, INT_MAX, INT_MIN, INT_MAX}, {15, 16, 17, 18, 19}};
  for (Algorithm algorithm : kPortable)
    for (const auto& cq : hostile)
      for (const auto& ck : hostile) {
        VarlenBuffers buf;
        Cu cu(cq, ck);
        forward(queue(), buf.args(algorithm, cu.q.mem, cu.k.mem)).wait();
        for (const Guarded* g : {&buf.dq, &buf.dk, &buf.dv, &buf.dout, &buf.dlse})
          ASSERT_TRUE(g->guards_intact()) << to_string(algorithm) << ": a write outside a buffer";
        // with check_device_data the same offsets are named errors
        ForwardArgs checked = buf.args(algorithm, cu.q.mem, cu.k.mem);
        checked.check_device_data = true;
        EXPECT_THROW(forward(queue(), checked).wait(), Error);
      }
}

// The clamping is the documented one: a hostile call computes exactly what the equivalent valid
// offsets compute (start clamped to [0, rows], end to [start, rows], length to the maximum).
TEST(HostileVarlen, ClampedOffsetsMatchTheirValidEquivalent) {
  // q: [0, 5), empty, [5, 16) truncated to 8 rows, empty past the end
  // k: empty (end before start), [1, 9), [9, 16) (past the end), empty
  Cu hostile({-3, 5, 5, 20, 30}, {2, 1, 9, 30, 12});
  Cu valid({0, 5, 5, 13, 13}, {1, 1, 9, 16, 16});
  for (Algorithm algorithm : kPortable) {
    VarlenBuffers a, b;
    forward(queue(), a.args(algorithm, hostile.q.mem, hostile.k.mem)).wait();
    forward(queue(), b.args(algorithm, valid.q.mem, valid.k.mem)).wait();
    const auto out = a.dout.payload();
    EXPECT_NE(std::count(out.begin(), out.end(), Guarded::kPoison), static_cast<long>(out.size()));  // it ran
    EXPECT_TRUE(same_bits(a.dout.all(), b.dout.all())) << to_string(algorithm);
    EXPECT_TRUE(same_bits(a.dlse.all(), b.dlse.all())) << to_string(algorithm);
  }
}

// ---- Defect 1: finite inputs at the edges of validation, against float64 ------------------------

// One extreme case: a shape (with its variants) and its inputs.
struct Extreme {
  std::string name;
  bench::Shape shape;
  std::vector<float> q, k, v;
};

bench::Shape small_shape() {
  bench::Shape s;
  s.batch = 1;
  s.heads = 2;
  s.seqlen_q = 6;
  s.seqlen_k = 37;
  s.head_dim = 16;
  return s;
}

std::vector<float> scaled(std::vector<float> x, float by) {
  for (float& e : x) e *= by;
  return x;
}

Extreme extreme(const std::string& name, bench::Shape s, float qk_amplitude = 1.0f) {
  Extreme e{name, s, {}, {}, {}};
  e.q = scaled(bench::random_values(s.q_elems(), 81), qk_amplitude);
  e.k = scaled(bench::random_values(s.kv_elems(), 82), qk_amplitude);
  e.v = bench::random_values(s.kv_elems(), 83);
  return e;
}

// The scale or softcap the kernels receive (fp32), so the reference sees the same value.
double as_float(double x) { return static_cast<float>(x); }

std::vector<Extreme> extreme_cases() {
  std::vector<Extreme> cases;
  {  // HF's masks: rows whose every key has -FLT_MAX, and +-FLT_MAX and near-FLT_MAX biases mixed
    bench::Shape s = small_shape();
    s.mask = bench::MaskMode::Bias;
    s.mask_values.assign(static_cast<std::size_t>(s.seqlen_q) * s.seqlen_k, 0.0f);
    for (int j = 0; j < s.seqlen_k; ++j) {
      float* row = &s.mask_values[j];
      row[0 * s.seqlen_k] = -FLT_MAX;                          // every key hidden the HF way: uniform
      row[1 * s.seqlen_k] = j % 2 ? 0.0f : -FLT_MAX;           // half the keys
      row[2 * s.seqlen_k] = FLT_MAX;                           // every key: uniform again
      row[3 * s.seqlen_k] = j == 3 ? FLT_MAX : -FLT_MAX;       // one key
      row[4 * s.seqlen_k] = j % 3 ? -3.0e38f : -3.3e38f;       // near the edge, 3e37 apart: two thirds
    }
    cases.push_back(extreme("bias_flt_max", s));
  }
  {
    bench::Shape s = small_shape();
    s.scale = as_float(3e38);
    Extreme e = extreme("scale_3e38_q0", s);
    std::fill(e.q.begin(), e.q.end(), 0.0f);
    cases.push_back(e);
    cases.push_back(extreme("scale_3e38", s, 1e-19f));  // scale * q.k of order 1
    s.scale = as_float(-3e38);
    cases.push_back(extreme("scale_-3e38", s, 1e-19f));
    s.scale = as_float(2e38);  // below FLT_MAX / log2 e: still the base-2 path
    cases.push_back(extreme("scale_2e38", s, 1e-19f));
    s.scale = as_float(1e-45);  // a denormal
    cases.push_back(extreme("scale_denormal", s));
  }
  for (double cap : {3e38, double(FLT_MAX), 1e-45, 1e-30}) {
    bench::Shape s = small_shape();
    s.softcap = as_float(cap);
    cases.push_back(extreme("softcap_" + std::to_string(cap), s));
  }
  {
    bench::Shape s = small_shape();
    s.scale = as_float(3e38);
    s.softcap = as_float(3e38);
    cases.push_back(extreme("scale_and_softcap_3e38", s, 1e-19f));
    cases.push_back(extreme("denormal_qk", small_shape(), 1e-40f));
  }
  {  // ALiBi and a -FLT_MAX bias together (HF's padded rows with ALiBi models)
    bench::Shape s = small_shape();
    s.alibi_slopes = {0.5f, 0.25f};
    s.mask = bench::MaskMode::Bias;
    s.mask_values.assign(static_cast<std::size_t>(s.seqlen_q) * s.seqlen_k, 0.0f);
    for (int j = 30; j < s.seqlen_k; ++j)
      for (int i = 0; i < s.seqlen_q; ++i) s.mask_values[i * s.seqlen_k + j] = -FLT_MAX;
    for (int j = 0; j < s.seqlen_k; ++j) s.mask_values[5 * s.seqlen_k + j] = -FLT_MAX;
    s.softcap = 20.0;
    cases.push_back(extreme("alibi_softcap_bias", s));
  }
  return cases;
}

void expect_float64(const Extreme& e, Algorithm algorithm) {
  const bench::Shape& s = e.shape;
  ForwardArgs a = shape_args(s);
  a.algorithm = algorithm;
  a.softcap = static_cast<float>(s.softcap);
  HostVariants host;
  host.alibi_slopes = s.alibi_slopes;
  if (s.mask == bench::MaskMode::Bias) {
    a.mask.kind = MaskKind::Bias;
    a.mask.batch = a.mask.heads = 1;
    host.bias = s.mask_values;
  }
  std::vector<float> lse;
  const std::vector<float> out = session().forward(a, e.q, e.k, e.v, host, &lse);
  const bench::Reference ref = bench::reference_attention(s, e.q, e.k, e.v);
  const std::string what = e.name + " " + to_string(algorithm);
  for (std::size_t i = 0; i < out.size(); ++i)
    ASSERT_NEAR(out[i], ref.out[i], 2e-5 * std::max(1.0, std::fabs(ref.out[i]))) << what << ": O[" << i << "]";
  for (std::size_t i = 0; i < lse.size(); ++i) {
    const double want = static_cast<float>(ref.lse[i]);  // the float64 LSE as fp32 holds it
    if (std::isinf(want)) {
      ASSERT_EQ(lse[i], want) << what << ": LSE[" << i << "]";
    } else {
      ASSERT_NEAR(lse[i], want, 1e-5 * std::max(1.0, std::fabs(want))) << what << ": LSE[" << i << "]";
    }
  }
}

TEST(HostileValues, ExtremeFiniteInputsMatchFloat64) {
  for (const Extreme& e : extreme_cases())
    for (Algorithm algorithm : kPortable) expect_float64(e, algorithm);
}

// K and V broadcast through a sequence stride of 0 over 2^22 keys: every key is the same, so the
// answer is V's one row and LSE = scale q.k + ln Nk.
TEST(HostileValues, BroadcastKeysHugeNk) {
  const int nq = 3, nk = 1 << 22, d = 4;
  const std::vector<float> q = bench::random_values(nq * d, 91), kv = bench::random_values(2 * d, 92);
  DeviceBytes dq(q.data(), q.size() * 4), dk(kv.data(), d * 4), dv(kv.data() + d, d * 4);
  for (Algorithm algorithm : kPortable) {
    DeviceBuffer o(nq * d, NAN), lse(nq, NAN);
    ForwardArgs a;
    a.batch = a.heads = 1;
    a.seqlen_q = nq;
    a.seqlen_k = nk;
    a.head_dim = d;
    a.algorithm = algorithm;
    a.q.buffer = dq.mem;
    a.k = {dk.mem, 0, 0, 0, d};  // seq stride 0: one key row for all Nk
    a.v = {dv.mem, 0, 0, 0, d};
    a.k.head_stride = a.v.head_stride = d;
    a.o.buffer = o.mem;
    a.lse = lse.mem;
    forward(queue(), a).wait();
    const auto got = o.read(), got_lse = lse.read();
    for (int i = 0; i < nq; ++i) {
      double dot = 0.0;
      for (int c = 0; c < d; ++c) dot += double(q[i * d + c]) * kv[c];
      EXPECT_NEAR(got_lse[i], dot * 0.5 + std::log(double(nk)), 1e-5 * 16) << to_string(algorithm) << " row " << i;
      // O sums 2^22 equal terms in fp32 accumulators (as every fp32 attention): it drifts by up to
      // ~Nk * 2^-24 relative, 3e-2 here; LSE's sum of ones is exact (powers of two)
      for (int c = 0; c < d; ++c) EXPECT_NEAR(got[i * d + c], kv[d + c], 3e-2) << to_string(algorithm);
    }
  }
}

// ---- Defect 4: 32-bit index arithmetic at the largest accepted shapes ---------------------------

// The reproducer's shape, Nq = 1 and Nk = 2^30 through a K/V sequence stride of 0, with a window
// that leaves only the last key visible (cheap on any device): the kernels' right bound
// q_end + (Nk - Nq) + right, with right clamped to Nq + Nk, reached 2^31 + 1 and wrapped, hiding
// every key (O = 0, LSE = -inf). The answer is V's row and LSE = q.k.
TEST(HostileIndex, WindowBoundPast2To31) {
  const float q = 0.5f, k = 1.0f, v = 1.0f;
  DeviceBytes dq(&q, 4), dk(&k, 4), dv(&v, 4);
  for (Algorithm algorithm : {Algorithm::FA1, Algorithm::FA2}) {
    DeviceBuffer o(1, NAN), lse(1, NAN);
    ForwardArgs a;
    a.batch = a.heads = 1;
    a.seqlen_q = 1;
    a.seqlen_k = 1 << 30;
    a.head_dim = 1;
    a.algorithm = algorithm;
    a.window = {0, INT_MAX};
    a.q.buffer = dq.mem;
    a.k = {dk.mem, 0, 0, 0, 1};  // seq stride 0 (head stride 1 keeps the tensor from reading dense)
    a.v = {dv.mem, 0, 0, 0, 1};
    a.o.buffer = o.mem;
    a.lse = lse.mem;
    forward(queue(), a).wait();
    EXPECT_EQ(o.read()[0], 1.0f) << to_string(algorithm);
    EXPECT_NEAR(lse.read()[0], 0.5f, 1e-6) << to_string(algorithm);
  }
}

// Shapes whose bounds would not fit the kernels' int32 arithmetic are named errors, not wraps.
TEST(HostileIndex, LimitsOfTheIndexArithmeticAreNamed) {
  const float x = 1.0f;
  DeviceBytes d(&x, 4);
  ForwardArgs a;
  a.batch = a.heads = 1;
  a.seqlen_q = a.seqlen_k = 1;
  a.head_dim = 1;
  for (Tensor* t : {&a.q, &a.k, &a.v, &a.o}) *t = {d.mem, 0, 0, 0, 1};
  auto expect_named = [&](const ForwardArgs& args, const std::string& name) {
    try {
      forward(queue(), args).wait();
      ADD_FAILURE() << "accepted; expected an error naming " << name;
    } catch (const Error& e) {
      EXPECT_EQ(e.status(), Status::InvalidArgument);
      EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
    }
  };
  ForwardArgs big = a;
  big.seqlen_q = big.seqlen_k = 1 << 30;  // Nq + Nk = 2^31
  expect_named(big, "seqlen_q + seqlen_k");
  big = a;
  big.batch = big.heads = 50000;  // 2.5e9 (batch, head) pairs
  expect_named(big, "batch*heads");
}

}  // namespace
}  // namespace flashcl::test
