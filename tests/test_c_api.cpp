// test_c_api.cpp: the C API computes the same as the reference, returns the last kernel's event,
// and turns every invalid argument into a status code plus a thread-local message.
#include "flashcl/flashcl.h"

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <thread>

#include "backward_reference.hpp"
#include "support.hpp"

namespace flashcl::test {
namespace {

TEST(CApi, ForwardMatchesReferenceAndReturnsEvent) {
  bench::Shape s;
  s.batch = 2;
  s.heads = 3;
  s.seqlen_q = 70;
  s.seqlen_k = 90;
  s.head_dim = 24;
  s.causal = true;
  const auto q = bench::random_values(s.q_elems(), 21), k = bench::random_values(s.kv_elems(), 22),
             v = bench::random_values(s.kv_elems(), 23);
  const auto ref = bench::reference_attention(s, q, k, v);
  DeviceTensor dq(Layout::BSHD, s.batch, s.seqlen_q, s.heads, s.head_dim, &q);
  DeviceTensor dk(Layout::BSHD, s.batch, s.seqlen_k, s.heads, s.head_dim, &k);
  DeviceTensor dv(Layout::BSHD, s.batch, s.seqlen_k, s.heads, s.head_dim, &v);
  for (fcl_algorithm algorithm : {FCL_ALGO_STANDARD, FCL_ALGO_FA1, FCL_ALGO_FA2, FCL_ALGO_AUTO}) {
    DeviceTensor dout(Layout::BSHD, s.batch, s.seqlen_q, s.heads, s.head_dim, nullptr);
    DeviceBuffer lse(s.rows(), std::numeric_limits<float>::quiet_NaN());
    fcl_forward_args a;
    fcl_forward_args_init(&a);
    a.batch = s.batch;
    a.heads = s.heads;
    a.seqlen_q = s.seqlen_q;
    a.seqlen_k = s.seqlen_k;
    a.head_dim = s.head_dim;
    a.causal = 1;
    a.algorithm = algorithm;
    a.q.buffer = dq.view.buffer;
    a.k.buffer = dk.view.buffer;
    a.v.buffer = dv.view.buffer;
    a.o.buffer = dout.view.buffer;
    a.lse = lse.mem;
    cl_event event = nullptr;
    ASSERT_EQ(fcl_forward(session().queue(), &a, 0, nullptr, &event), FCL_SUCCESS) << fcl_last_error();
    ASSERT_NE(event, nullptr);
    ASSERT_EQ(clWaitForEvents(1, &event), CL_SUCCESS);
    clReleaseEvent(event);
    EXPECT_STREQ(fcl_last_error(), "");
    const auto e = bench::compare(dout.logical(), ref.out);
    EXPECT_EQ(e.non_finite, 0u);
    EXPECT_LE(e.rel_norm, 1e-5) << algorithm;
    EXPECT_LE(bench::compare(lse.read(), ref.lse).rel_norm, 1e-5);
    size_t bytes = 0;
    ASSERT_EQ(fcl_workspace_bytes(session().device(), &a, &bytes), FCL_SUCCESS);
    // standard materialises the scores: at least rows x keys floats (the CPU form pads its row panels)
    if (algorithm == FCL_ALGO_STANDARD) EXPECT_GE(bytes, s.rows() * s.seqlen_k * sizeof(float));
    if (algorithm == FCL_ALGO_FA2) EXPECT_EQ(bytes, 0u);
  }
}

TEST(CApi, InvalidArgumentsGiveStatusAndMessage) {
  fcl_forward_args a;
  fcl_forward_args_init(&a);
  EXPECT_EQ(fcl_forward(session().queue(), nullptr, 0, nullptr, nullptr), FCL_INVALID_ARGUMENT);
  EXPECT_NE(std::string(fcl_last_error()).find("args"), std::string::npos);
  EXPECT_EQ(fcl_forward(session().queue(), &a, 0, nullptr, nullptr), FCL_INVALID_ARGUMENT);
  EXPECT_NE(std::string(fcl_last_error()).find("batch"), std::string::npos);
  a.batch = a.heads = a.seqlen_q = a.seqlen_k = 4;
  a.head_dim = 8;
  a.dtype = static_cast<fcl_dtype>(7);
  EXPECT_EQ(fcl_forward(session().queue(), &a, 0, nullptr, nullptr), FCL_UNSUPPORTED_DTYPE);
  EXPECT_NE(std::string(fcl_last_error()).find("dtype"), std::string::npos);
  a.dtype = FCL_DTYPE_F32;
  a.algorithm = static_cast<fcl_algorithm>(9);
  EXPECT_EQ(fcl_forward(session().queue(), &a, 0, nullptr, nullptr), FCL_INVALID_ARGUMENT);
  EXPECT_NE(std::string(fcl_last_error()).find("algorithm"), std::string::npos);
  a.algorithm = FCL_ALGO_FA2;
  EXPECT_EQ(fcl_forward(nullptr, &a, 0, nullptr, nullptr), FCL_INVALID_HANDLE);
  EXPECT_NE(std::string(fcl_last_error()).find("queue"), std::string::npos);
  EXPECT_EQ(fcl_forward(session().queue(), &a, 0, nullptr, nullptr), FCL_INVALID_HANDLE);
  EXPECT_NE(std::string(fcl_last_error()).find("q: null"), std::string::npos);
  EXPECT_EQ(fcl_forward(session().queue(), &a, 2, nullptr, nullptr), FCL_INVALID_ARGUMENT);
  EXPECT_NE(std::string(fcl_last_error()).find("wait_list"), std::string::npos);
  EXPECT_EQ(fcl_workspace_bytes(session().device(), &a, nullptr), FCL_INVALID_ARGUMENT);
  EXPECT_NE(std::string(fcl_last_error()).find("bytes"), std::string::npos);
}

// Stores `value` into a C enum field as a C caller can, without a C++ cast to the enum type
// (itself undefined for a value outside the enum's range).
template <typename Enum>
void store_raw(Enum& field, int value) {
  static_assert(sizeof(Enum) == sizeof(int), "C enums are int-sized here");
  std::memcpy(&field, &value, sizeof value);
}

// Every C enum field is read as an integer: out-of-range values are named errors (under UBSan a
// load of the enum type itself would abort: "load of value 7, which is not a valid value for type
// 'fcl_mask_kind'").
TEST(CApi, OutOfRangeEnumsAreNamedErrors) {
  fcl_forward_args a;
  fcl_forward_args_init(&a);
  a.batch = a.heads = a.seqlen_q = a.seqlen_k = 4;
  a.head_dim = 8;
  for (int value : {7, -1, 3}) {  // 3: one past the last kind (the dtype's is 5, after E5M2)
    fcl_forward_args b = a;
    store_raw(b.mask.kind, value);
    EXPECT_EQ(fcl_forward(session().queue(), &b, 0, nullptr, nullptr), FCL_INVALID_ARGUMENT) << value;
    EXPECT_NE(std::string(fcl_last_error()).find("mask.kind"), std::string::npos) << fcl_last_error();
    b = a;
    store_raw(b.dtype, value == 3 ? 5 : value);
    EXPECT_EQ(fcl_forward(session().queue(), &b, 0, nullptr, nullptr), FCL_UNSUPPORTED_DTYPE) << value;
    EXPECT_NE(std::string(fcl_last_error()).find("dtype"), std::string::npos) << fcl_last_error();
  }
  for (int value : {9, -1, 4}) {
    fcl_forward_args b = a;
    store_raw(b.algorithm, value);
    size_t bytes = 0;
    EXPECT_EQ(fcl_workspace_bytes(session().device(), &b, &bytes), FCL_INVALID_ARGUMENT) << value;
    EXPECT_NE(std::string(fcl_last_error()).find("algorithm"), std::string::npos) << fcl_last_error();
  }
}

// struct_size guards the layout: a struct that did not go through fcl_forward_args_init, or one from
// a newer header, is rejected by name before anything else is read.
TEST(CApi, StructSizeIsChecked) {
  fcl_forward_args a;
  fcl_forward_args_init(&a);
  EXPECT_EQ(a.struct_size, sizeof(fcl_forward_args));
  const size_t first = offsetof(fcl_forward_args, total_q);  // 0.1's layout: the smallest accepted
  for (size_t size : {size_t{0}, size_t{1}, first - 4, sizeof(fcl_forward_args) + 8, SIZE_MAX}) {
    a.struct_size = size;
    size_t bytes = 0;
    EXPECT_EQ(fcl_forward(session().queue(), &a, 0, nullptr, nullptr), FCL_INVALID_ARGUMENT) << size;
    EXPECT_NE(std::string(fcl_last_error()).find("struct_size"), std::string::npos) << fcl_last_error();
    EXPECT_EQ(fcl_device_bytes(session().device(), &a, &bytes), FCL_INVALID_ARGUMENT) << size;
    EXPECT_NE(std::string(fcl_last_error()).find("struct_size"), std::string::npos) << fcl_last_error();
  }
}

// The output event may be the wait list's own entry: the library reads the wait list before it
// writes *event (it used to clear *event first and then wait on a null event).
TEST(CApi, EventMayAliasTheWaitList) {
  bench::Shape s;
  s.batch = 1;
  s.heads = 2;
  s.seqlen_q = s.seqlen_k = 32;
  s.head_dim = 16;
  const auto q = bench::random_values(s.q_elems(), 31), k = bench::random_values(s.kv_elems(), 32),
             v = bench::random_values(s.kv_elems(), 33);
  const auto ref = bench::reference_attention(s, q, k, v);
  DeviceTensor dq(Layout::BSHD, s.batch, s.seqlen_q, s.heads, s.head_dim, &q);
  DeviceTensor dk(Layout::BSHD, s.batch, s.seqlen_k, s.heads, s.head_dim, &k);
  DeviceTensor dv(Layout::BSHD, s.batch, s.seqlen_k, s.heads, s.head_dim, &v);
  DeviceTensor dout(Layout::BSHD, s.batch, s.seqlen_q, s.heads, s.head_dim, nullptr);
  fcl_forward_args a;
  fcl_forward_args_init(&a);
  a.batch = s.batch;
  a.heads = s.heads;
  a.seqlen_q = s.seqlen_q;
  a.seqlen_k = s.seqlen_k;
  a.head_dim = s.head_dim;
  a.q.buffer = dq.view.buffer;
  a.k.buffer = dk.view.buffer;
  a.v.buffer = dv.view.buffer;
  a.o.buffer = dout.view.buffer;
  cl_event event = nullptr;
  ASSERT_EQ(fcl_forward(session().queue(), &a, 0, nullptr, &event), FCL_SUCCESS) << fcl_last_error();
  const cl_event first = event;
  ASSERT_EQ(fcl_forward(session().queue(), &a, 1, &event, &event), FCL_SUCCESS) << fcl_last_error();
  ASSERT_NE(event, nullptr);
  EXPECT_NE(event, first);
  clReleaseEvent(first);
  ASSERT_EQ(clWaitForEvents(1, &event), CL_SUCCESS);
  clReleaseEvent(event);
  EXPECT_LE(bench::compare(dout.logical(), ref.out).rel_norm, 1e-5);
}

// A varlen problem through the C API whose packed Q holds 4 rows more than cu_seqlens_q uses, so
// total_q (24) and cu_seqlens_q[B] (20) give different LSE layouts (H, total_q).
struct CVarlen {
  static constexpr int kB = 3, kH = 2, kD = 16, kRowsQ = 24;
  bench::Shape s;
  std::vector<float> q, k, v;
  bench::Reference ref;
  std::unique_ptr<DeviceTensor> dq, dk, dv;
  std::unique_ptr<DeviceBytes> cu_q, cu_k;
  CVarlen(std::vector<int> cq = {0, 4, 13, 20}) {
    s.batch = kB;
    s.heads = kH;
    s.head_dim = kD;
    s.seqlen_q = 9;
    s.seqlen_k = 12;
    s.cu_seqlens_q = {0, 4, 13, 20};
    s.cu_seqlens_k = {0, 12, 20, 31};
    q = bench::random_values(static_cast<std::size_t>(kRowsQ) * kH * kD, 41);
    k = bench::random_values(31 * kH * kD, 42);
    v = bench::random_values(31 * kH * kD, 43);
    ref = bench::reference_attention(s, q, k, v);  // reads the first 20 rows of q
    dq = std::make_unique<DeviceTensor>(Layout::BSHD, 1, kRowsQ, kH, kD, &q);
    dk = std::make_unique<DeviceTensor>(Layout::BSHD, 1, 31, kH, kD, &k);
    dv = std::make_unique<DeviceTensor>(Layout::BSHD, 1, 31, kH, kD, &v);
    cu_q = std::make_unique<DeviceBytes>(cq.data(), cq.size() * sizeof(int));
    cu_k = std::make_unique<DeviceBytes>(s.cu_seqlens_k.data(), s.cu_seqlens_k.size() * sizeof(int));
  }
  fcl_forward_args args(cl_mem o, cl_mem lse) const {
    fcl_forward_args a;
    fcl_forward_args_init(&a);
    a.batch = kB;
    a.heads = kH;
    a.seqlen_q = s.seqlen_q;
    a.seqlen_k = s.seqlen_k;
    a.head_dim = kD;
    a.algorithm = FCL_ALGO_FA2;
    a.q.buffer = dq->view.buffer;
    a.k.buffer = dk->view.buffer;
    a.v.buffer = dv->view.buffer;
    a.o.buffer = o;
    a.lse = lse;
    a.cu_seqlens_q = cu_q->mem;
    a.cu_seqlens_k = cu_k->mem;
    return a;
  }
  // O's 20 used rows against float64, and LSE read as (H, lse_rows).
  void expect_accurate_result(const DeviceTensor& o, const DeviceBuffer& lse, int lse_rows) const {
    const auto out = o.logical();
    EXPECT_LE(bench::compare(std::vector<float>(out.begin(), out.begin() + 20 * kH * kD), ref.out).rel_norm, 1e-5);
    for (std::size_t i = 20 * kH * kD; i < out.size(); ++i)
      ASSERT_TRUE(std::isnan(out[i])) << "unused row written, " << i;
    const auto l = lse.read();
    for (int h = 0; h < kH; ++h)
      for (int r = 0; r < 20; ++r)
        ASSERT_NEAR(l[h * lse_rows + r], ref.lse[h * 20 + r], 1e-5 * std::max(1.0, std::fabs(ref.lse[h * 20 + r])))
            << "head " << h << " row " << r << " of an (H, " << lse_rows << ") LSE";
  }
};

// total_q and check_device_data reach ForwardArgs: total_q sets the LSE layout, check_device_data
// reads cu_seqlens back and names offsets the kernels would otherwise clamp.
TEST(CApi, VarlenTotalQAndCheckDeviceData) {
  const CVarlen c;
  DeviceTensor o(Layout::BSHD, 1, CVarlen::kRowsQ, CVarlen::kH, CVarlen::kD, nullptr);
  DeviceBuffer lse(CVarlen::kH * CVarlen::kRowsQ, std::numeric_limits<float>::quiet_NaN());
  fcl_forward_args a = c.args(o.view.buffer, lse.mem);
  a.total_q = CVarlen::kRowsQ;
  a.check_device_data = 1;
  ASSERT_EQ(fcl_forward(session().queue(), &a, 0, nullptr, nullptr), FCL_SUCCESS) << fcl_last_error();
  ASSERT_EQ(clFinish(session().queue()), CL_SUCCESS);
  c.expect_accurate_result(o, lse, CVarlen::kRowsQ);

  a.total_q = -1;
  EXPECT_EQ(fcl_forward(session().queue(), &a, 0, nullptr, nullptr), FCL_INVALID_ARGUMENT);
  EXPECT_NE(std::string(fcl_last_error()).find("total_q"), std::string::npos) << fcl_last_error();

  const CVarlen bad({0, 13, 4, 20});  // decreasing: the kernels would clamp, the read-back refuses
  a = bad.args(o.view.buffer, lse.mem);
  a.check_device_data = 1;
  EXPECT_EQ(fcl_forward(session().queue(), &a, 0, nullptr, nullptr), FCL_INVALID_ARGUMENT);
  EXPECT_NE(std::string(fcl_last_error()).find("cu_seqlens_q"), std::string::npos) << fcl_last_error();
}

// A caller compiled against 0.1's header passes the smaller struct_size: the fields appended since
// (total_q, check_device_data) are not read from its memory but take their defaults, whatever the
// bytes after its struct hold.
TEST(CApi, OlderStructSizeTakesDefaults) {
  const CVarlen c;
  DeviceTensor o(Layout::BSHD, 1, CVarlen::kRowsQ, CVarlen::kH, CVarlen::kD, nullptr);
  DeviceBuffer lse(CVarlen::kH * CVarlen::kRowsQ, std::numeric_limits<float>::quiet_NaN());
  fcl_forward_args a = c.args(o.view.buffer, lse.mem);
  a.struct_size = offsetof(fcl_forward_args, total_q);
  a.total_q = -7;           // would be refused if read
  a.check_device_data = 1;  // would refuse the bad offsets below if read
  ASSERT_EQ(fcl_forward(session().queue(), &a, 0, nullptr, nullptr), FCL_SUCCESS) << fcl_last_error();
  ASSERT_EQ(clFinish(session().queue()), CL_SUCCESS);
  c.expect_accurate_result(o, lse, 20);  // total_q 0: the kernels take cu_seqlens_q[B] = 20

  const CVarlen bad({0, 13, 4, 20});
  a = bad.args(o.view.buffer, lse.mem);
  a.struct_size = offsetof(fcl_forward_args, total_q);
  a.check_device_data = 1;
  EXPECT_EQ(fcl_forward(session().queue(), &a, 0, nullptr, nullptr), FCL_SUCCESS) << fcl_last_error();
  ASSERT_EQ(clFinish(session().queue()), CL_SUCCESS);
}

// fcl_get_cache_stats: the C++ counters, memory_entries included; a struct_size below the first
// layout is refused, a larger one (a newer caller) keeps the fields this library does not know.
TEST(CApi, CacheStats) {
  fcl_cache_stats st;
  std::memset(&st, 0xab, sizeof st);
  st.struct_size = sizeof st;
  ASSERT_EQ(fcl_get_cache_stats(&st), FCL_SUCCESS) << fcl_last_error();
  const CacheStats cpp = cache_stats();
  EXPECT_EQ(st.struct_size, sizeof st);
  EXPECT_EQ(st.builds, cpp.builds);
  EXPECT_EQ(st.memory_hits, cpp.memory_hits);
  EXPECT_EQ(st.disk_hits, cpp.disk_hits);
  EXPECT_EQ(st.disk_writes, cpp.disk_writes);
  EXPECT_EQ(st.disk_rejects, cpp.disk_rejects);
  EXPECT_EQ(st.memory_entries, cpp.memory_entries);
  fcl_clear_memory_cache();
  ASSERT_EQ(fcl_get_cache_stats(&st), FCL_SUCCESS);
  EXPECT_EQ(st.memory_entries, 0u);

  struct Newer {
    fcl_cache_stats known;
    size_t later;
  } newer;
  newer.known.struct_size = sizeof newer;
  newer.later = 77;
  ASSERT_EQ(fcl_get_cache_stats(&newer.known), FCL_SUCCESS) << fcl_last_error();
  EXPECT_EQ(newer.later, 77u);
  EXPECT_EQ(newer.known.struct_size, sizeof newer);

  for (size_t size : {size_t{0}, sizeof(size_t), sizeof st - 1}) {
    st.struct_size = size;
    EXPECT_EQ(fcl_get_cache_stats(&st), FCL_INVALID_ARGUMENT) << size;
    EXPECT_NE(std::string(fcl_last_error()).find("struct_size"), std::string::npos) << fcl_last_error();
  }
  EXPECT_EQ(fcl_get_cache_stats(nullptr), FCL_INVALID_ARGUMENT);
  EXPECT_NE(std::string(fcl_last_error()).find("stats"), std::string::npos) << fcl_last_error();
}

// A caller compiled against 0.1 lays fcl_backward_args out around 0.1's shorter fcl_forward_args
// (it ended before total_q), so every field after `forward` sits 8 bytes earlier and struct_size
// is 8 smaller. fcl_backward reads that layout by its size: the same gradients, bit for bit, as
// the current layout, and both match float64.
TEST(CApi, BackwardOldLayout) {
  bench::Shape s;
  s.batch = 1;
  s.heads = 2;
  s.seqlen_q = 11;
  s.seqlen_k = 19;
  s.head_dim = 8;
  s.causal = true;
  const auto q = bench::random_values(s.q_elems(), 51), k = bench::random_values(s.kv_elems(), 52),
             v = bench::random_values(s.kv_elems(), 53), d_o = bench::random_values(s.q_elems(), 54);
  const auto fwd = bench::reference_attention(s, q, k, v);
  const auto ref = bench::reference_backward(s, q, k, v, d_o);
  const int B = s.batch, H = s.heads, Nq = s.seqlen_q, Nk = s.seqlen_k, D = s.head_dim;
  DeviceTensor tq(Layout::BSHD, B, Nq, H, D, &q), tk(Layout::BSHD, B, Nk, H, D, &k), tv(Layout::BSHD, B, Nk, H, D, &v);
  const std::vector<float> o(fwd.out.begin(), fwd.out.end()), lse_values(fwd.lse.begin(), fwd.lse.end());
  DeviceTensor to(Layout::BSHD, B, Nq, H, D, &o), tdo(Layout::BSHD, B, Nq, H, D, &d_o);
  DeviceBytes lse(lse_values.data(), lse_values.size() * sizeof(float));
  auto run = [&](bool old_layout) {
    DeviceTensor gq(Layout::BSHD, B, Nq, H, D, nullptr), gk(Layout::BSHD, B, Nk, H, D, nullptr),
        gv(Layout::BSHD, B, Nk, H, D, nullptr);
    fcl_backward_args a;
    fcl_backward_args_init(&a);
    a.forward.batch = B;
    a.forward.heads = H;
    a.forward.seqlen_q = Nq;
    a.forward.seqlen_k = Nk;
    a.forward.head_dim = D;
    a.forward.causal = 1;
    a.forward.algorithm = FCL_ALGO_FA2;
    a.forward.q.buffer = tq.view.buffer;
    a.forward.k.buffer = tk.view.buffer;
    a.forward.v.buffer = tv.view.buffer;
    a.forward.o.buffer = to.view.buffer;
    a.forward.lse = lse.mem;
    a.d_o.buffer = tdo.view.buffer;
    a.d_q.buffer = gq.view.buffer;
    a.d_k.buffer = gk.view.buffer;
    a.d_v.buffer = gv.view.buffer;
    a.deterministic = 1;
    alignas(fcl_backward_args) unsigned char bytes[sizeof(fcl_backward_args)];
    std::memcpy(bytes, &a, sizeof a);
    if (old_layout) {
      const size_t head = offsetof(fcl_backward_args, forward), first = offsetof(fcl_forward_args, total_q);
      const size_t tail = sizeof a - offsetof(fcl_backward_args, d_o), size = head + first + tail;
      a.forward.struct_size = first;
      std::memset(bytes, 0xee, sizeof bytes);  // the 8 bytes past the old struct: garbage
      std::memcpy(bytes, &size, sizeof size);
      std::memcpy(bytes + head, &a.forward, first);
      std::memcpy(bytes + head + first, &a.d_o, tail);
    }
    const auto* args = reinterpret_cast<const fcl_backward_args*>(bytes);
    size_t workspace = 0;
    EXPECT_EQ(fcl_backward_workspace_bytes(session().device(), args, &workspace), FCL_SUCCESS) << fcl_last_error();
    EXPECT_EQ(fcl_backward(session().queue(), args, 0, nullptr, nullptr), FCL_SUCCESS) << fcl_last_error();
    EXPECT_EQ(clFinish(session().queue()), CL_SUCCESS);
    return std::vector<std::vector<float>>{gq.logical(), gk.logical(), gv.logical()};
  };
  const auto now = run(false), old = run(true);
  const std::vector<double>* want[] = {&ref.d_q, &ref.d_k, &ref.d_v};
  for (int g = 0; g < 3; ++g) {
    EXPECT_EQ(std::memcmp(now[g].data(), old[g].data(), now[g].size() * sizeof(float)), 0) << "gradient " << g;
    const auto e = bench::compare(now[g], *want[g]);
    EXPECT_EQ(e.non_finite, 0u) << "gradient " << g;
    EXPECT_LE(e.rel_norm, 1e-5) << "gradient " << g;
  }
}

TEST(CApi, LastErrorIsPerThread) {
  fcl_forward_args a;
  fcl_forward_args_init(&a);
  ASSERT_NE(fcl_forward(session().queue(), &a, 0, nullptr, nullptr), FCL_SUCCESS);
  std::string other;
  std::thread([&] { other = fcl_last_error(); }).join();
  EXPECT_EQ(other, "");
  EXPECT_NE(std::string(fcl_last_error()), "");
  EXPECT_STREQ(fcl_version(), version());
}

}  // namespace
}  // namespace flashcl::test
