// test_c_api.cpp: the C API computes the same as the reference, returns the last kernel's event,
// and turns every invalid argument into a status code plus a thread-local message.
#include "flashcl/flashcl.h"

#include <cstring>
#include <thread>

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
    if (algorithm == FCL_ALGO_STANDARD) EXPECT_EQ(bytes, s.rows() * s.seqlen_k * sizeof(float));
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
  for (int value : {7, -1, 3}) {  // 3: one past the last kind and dtype
    fcl_forward_args b = a;
    store_raw(b.mask.kind, value);
    EXPECT_EQ(fcl_forward(session().queue(), &b, 0, nullptr, nullptr), FCL_INVALID_ARGUMENT) << value;
    EXPECT_NE(std::string(fcl_last_error()).find("mask.kind"), std::string::npos) << fcl_last_error();
    b = a;
    store_raw(b.dtype, value);
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
  for (size_t size : {size_t{0}, sizeof(fcl_forward_args) - 4, sizeof(fcl_forward_args) + 8}) {
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
