// test_hostile.cpp: careless and hostile callers (issue 19), one test per reproduced defect:
// varlen calls that must neither block nor leave their buffers whatever cu_seqlens hold, finite
// inputs at the edges of what validation accepts (against float64), index arithmetic at the
// largest accepted shapes, outputs that alias inputs, memory objects of the wrong kind or flags,
// special files in the disk cache's place, honest cache statistics, and cached programs that must
// not keep released contexts alive. Buffers that must stay untouched sit between poisoned guard
// regions of one parent buffer (sub-buffers), so any stray write shows.
#include <CL/cl.h>

#include <algorithm>
#include <chrono>
#include <cfloat>
#include <climits>
#include <cmath>
#include <cstring>
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

}  // namespace
}  // namespace flashcl::test
