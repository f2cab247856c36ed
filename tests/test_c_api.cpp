// test_c_api.cpp: the C API computes the same as the reference, returns the last kernel's event,
// and turns every invalid argument into a status code plus a thread-local message.
#include "flashcl/flashcl.h"

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
