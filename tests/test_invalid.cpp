// test_invalid.cpp: one test per invalid input. Each must throw flashcl::Error with the right
// status and a message naming the parameter, before anything is enqueued (the output buffer keeps
// its sentinel values).
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>

#include "program/kernel_source.hpp"
#include "support.hpp"

namespace flashcl::test {
namespace {

constexpr int kB = 1, kH = 2, kN = 16, kD = 8;

class Invalid : public testing::Test {
 protected:
  std::vector<float> values = bench::random_values(static_cast<std::size_t>(kB) * kN * kH * kD, 11);
  DeviceTensor q{Layout::BSHD, kB, kN, kH, kD, &values};
  DeviceTensor k{Layout::BSHD, kB, kN, kH, kD, &values};
  DeviceTensor v{Layout::BSHD, kB, kN, kH, kD, &values};
  DeviceTensor o{Layout::BSHD, kB, kN, kH, kD, nullptr};

  ForwardArgs valid_args(Algorithm algorithm = Algorithm::FA2) const {
    ForwardArgs a;
    a.batch = kB;
    a.heads = kH;
    a.seqlen_q = kN;
    a.seqlen_k = kN;
    a.head_dim = kD;
    a.algorithm = algorithm;
    a.q = q.view;
    a.k = k.view;
    a.v = v.view;
    a.o = o.view;
    return a;
  }

  // Expects `args` to be rejected with `status` and a message containing `parameter`.
  void expect_rejected(const ForwardArgs& args, Status status, const std::string& parameter,
                       cl_command_queue queue = nullptr) {
    try {
      forward(queue != nullptr ? queue : session().queue(), args).wait();
      ADD_FAILURE() << "accepted; expected an error naming '" << parameter << "'";
    } catch (const Error& e) {
      EXPECT_EQ(e.status(), status) << e.what();
      EXPECT_NE(std::string(e.what()).find(parameter), std::string::npos) << "message: " << e.what();
    }
    clFinish(session().queue());
    const auto out = o.raw();
    for (float x : out) ASSERT_TRUE(std::isnan(x)) << "the output was written although the call failed";
  }
};

TEST_F(Invalid, BatchZero) { auto a = valid_args(); a.batch = 0; expect_rejected(a, Status::InvalidArgument, "batch"); }
TEST_F(Invalid, HeadsNegative) { auto a = valid_args(); a.heads = -1; expect_rejected(a, Status::InvalidArgument, "heads"); }
TEST_F(Invalid, SeqlenQZero) { auto a = valid_args(); a.seqlen_q = 0; expect_rejected(a, Status::InvalidArgument, "seqlen_q"); }
TEST_F(Invalid, SeqlenKNegative) { auto a = valid_args(); a.seqlen_k = -5; expect_rejected(a, Status::InvalidArgument, "seqlen_k"); }
TEST_F(Invalid, HeadDimZero) { auto a = valid_args(); a.head_dim = 0; expect_rejected(a, Status::InvalidArgument, "head_dim"); }
TEST_F(Invalid, HeadDimTooLarge) { auto a = valid_args(); a.head_dim = 257; expect_rejected(a, Status::InvalidArgument, "head_dim"); }
TEST_F(Invalid, ScaleNaN) {
  auto a = valid_args();
  a.scale = std::numeric_limits<float>::quiet_NaN();
  expect_rejected(a, Status::InvalidArgument, "scale");
}
TEST_F(Invalid, ScaleInfinite) {
  auto a = valid_args();
  a.scale = std::numeric_limits<float>::infinity();
  expect_rejected(a, Status::InvalidArgument, "scale");
}
TEST_F(Invalid, NullQueue) {
  try {
    forward(nullptr, valid_args());
    ADD_FAILURE() << "accepted a null queue";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), Status::InvalidHandle);
    EXPECT_NE(std::string(e.what()).find("queue"), std::string::npos);
  }
}
TEST_F(Invalid, NullQ) { auto a = valid_args(); a.q.buffer = nullptr; expect_rejected(a, Status::InvalidHandle, "q"); }
TEST_F(Invalid, NullK) { auto a = valid_args(); a.k.buffer = nullptr; expect_rejected(a, Status::InvalidHandle, "k"); }
TEST_F(Invalid, NullV) { auto a = valid_args(); a.v.buffer = nullptr; expect_rejected(a, Status::InvalidHandle, "v"); }
TEST_F(Invalid, NullO) { auto a = valid_args(); a.o.buffer = nullptr; expect_rejected(a, Status::InvalidHandle, "o"); }

TEST_F(Invalid, BufferFromAnotherContext) {
  cl_device_id device = session().device();
  cl_int err = CL_SUCCESS;
  cl_context other = clCreateContext(nullptr, 1, &device, nullptr, nullptr, &err);
  ASSERT_EQ(err, CL_SUCCESS);
  cl_mem foreign = clCreateBuffer(other, CL_MEM_READ_WRITE, q.elems * sizeof(float), nullptr, &err);
  ASSERT_EQ(err, CL_SUCCESS);
  auto a = valid_args();
  a.k.buffer = foreign;
  expect_rejected(a, Status::InvalidHandle, "k: buffer belongs to another cl_context");
  clReleaseMemObject(foreign);
  clReleaseContext(other);
}

TEST_F(Invalid, QueueFromAnotherContext) {
  cl_device_id device = session().device();
  cl_int err = CL_SUCCESS;
  cl_context other = clCreateContext(nullptr, 1, &device, nullptr, nullptr, &err);
  cl_command_queue queue = clCreateCommandQueue(other, device, 0, &err);
  ASSERT_EQ(err, CL_SUCCESS);
  expect_rejected(valid_args(), Status::InvalidHandle, "q: buffer belongs to another cl_context", queue);
  clReleaseCommandQueue(queue);
  clReleaseContext(other);
}

TEST_F(Invalid, StridesOverrunBuffer) {
  auto a = valid_args();
  a.v.head_stride = kD;
  a.v.seq_stride = kH * kD + 1;  // one element more per row than the buffer holds
  a.v.batch_stride = a.v.seq_stride * kN;
  expect_rejected(a, Status::InvalidArgument, "v: shape and strides reach");
}
TEST_F(Invalid, OffsetOverrunsBuffer) { auto a = valid_args(); a.o.offset = 1; expect_rejected(a, Status::InvalidArgument, "o:"); }
TEST_F(Invalid, NegativeStride) {
  auto a = valid_args();
  a.q.seq_stride = -1;
  a.q.head_stride = kD;
  a.q.batch_stride = kN * kH * kD;
  expect_rejected(a, Status::InvalidArgument, "q: offset and strides must be >= 0");
}
TEST_F(Invalid, SeqlenLargerThanBuffer) { auto a = valid_args(); a.seqlen_k = kN + 1; expect_rejected(a, Status::InvalidArgument, "k:"); }
TEST_F(Invalid, LseTooSmall) {
  DeviceBuffer small(kB * kH * kN - 1, 0.0f);
  auto a = valid_args();
  a.lse = small.mem;
  expect_rejected(a, Status::InvalidArgument, "lse");
}
TEST_F(Invalid, WorkspaceTooSmall) {
  DeviceBuffer small(4, 0.0f);
  auto a = valid_args(Algorithm::Standard);
  a.workspace = small.mem;
  expect_rejected(a, Status::InvalidArgument, "workspace");
}
TEST_F(Invalid, TileNotRunnable) {
  auto a = valid_args();
  a.tile = {8, 6, 4, 1};  // 6 keys cannot be split over teams of 4 work-items
  expect_rejected(a, Status::InvalidArgument, "tile");
}
// The oversize tile is derived from the device's own limits, never assumed: a team of work-items
// per row so large that Br x team exceeds the work-group size the device reports (PoCL's CPU
// reports up to 1 MiB of local memory depending on the host, so a local-memory bound alone could
// be met; the local-memory rejection is checked against simulated devices in test_planner.cpp).
TEST_F(Invalid, TileTooLargeForDevice) {
  const int d = 256;
  std::size_t max_work_group = 0;
  check(clGetDeviceInfo(session().device(), CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof(max_work_group), &max_work_group,
                        nullptr),
        "clGetDeviceInfo(CL_DEVICE_MAX_WORK_GROUP_SIZE)");
  TileOverride tile{256, 256, 1, 1};
  while (static_cast<std::size_t>(tile.block_rows) * tile.team_size <= max_work_group && tile.team_size < 256)
    tile.team_size *= 2;
  if (static_cast<std::size_t>(tile.block_rows) * tile.team_size <= max_work_group)
    GTEST_SKIP() << "the device runs work-groups of " << max_work_group << " work-items: no tile override exceeds it";
  std::vector<float> big = bench::random_values(static_cast<std::size_t>(kN) * d, 5);
  DeviceTensor bq{Layout::BSHD, 1, kN, 1, d, &big};
  DeviceTensor bo{Layout::BSHD, 1, kN, 1, d, nullptr};
  auto a = valid_args();
  a.heads = 1;
  a.head_dim = d;
  a.q = a.k = a.v = bq.view;
  a.o = bo.view;
  a.tile = tile;
  try {
    forward(session().queue(), a).wait();
    ADD_FAILURE() << "accepted a 256x256 tile with teams of " << tile.team_size << " on a device of " << max_work_group
                  << " work-items";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), Status::OutOfResources) << e.what();
    EXPECT_NE(std::string(e.what()).find("tile"), std::string::npos) << e.what();
  }
  for (float x : bo.raw()) ASSERT_TRUE(std::isnan(x)) << "the output was written although the call failed";
}
// A malformed FLASHCL_TILE: Planner.EnvironmentOverride (test_planner.cpp) parses it; the variable
// is read once per process (src/plan/overrides.hpp), so no test here changes the environment.
TEST_F(Invalid, NullEventInWaitList) {
  try {
    forward(session().queue(), valid_args(), {nullptr});
    ADD_FAILURE() << "accepted a null event";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), Status::InvalidHandle);
    EXPECT_NE(std::string(e.what()).find("wait_list"), std::string::npos);
  }
}
TEST_F(Invalid, StandardTooLargeForDevice) {
  // S alone would be B·H·N² floats: far past any single buffer the device allows.
  auto a = valid_args(Algorithm::Standard);
  a.seqlen_q = a.seqlen_k = 1 << 20;
  a.q.buffer = a.k.buffer = a.v.buffer = a.o.buffer = q.view.buffer;
  try {
    forward(session().queue(), a);
    ADD_FAILURE() << "accepted";
  } catch (const Error& e) {
    // the buffer check (q too small) or the workspace check fires; both name their parameter
    EXPECT_NE(e.status(), Status::Success);
  }
  EXPECT_GT(workspace_bytes(session().device(), a), std::size_t{1} << 40);
}

// ---- variants: one test per parameter ----------------------------------------------------------
TEST_F(Invalid, HeadsKvDoesNotDivideHeads) { auto a = valid_args(); a.heads_kv = 3; expect_rejected(a, Status::InvalidArgument, "heads_kv"); }
TEST_F(Invalid, HeadsKvNegative) { auto a = valid_args(); a.heads_kv = -1; expect_rejected(a, Status::InvalidArgument, "heads_kv"); }
TEST_F(Invalid, WindowLeftBelowMinusOne) { auto a = valid_args(); a.window = {-2, 0}; expect_rejected(a, Status::InvalidArgument, "window.left"); }
TEST_F(Invalid, WindowRightBelowMinusOne) { auto a = valid_args(); a.window = {4, -3}; expect_rejected(a, Status::InvalidArgument, "window.right"); }
TEST_F(Invalid, SoftcapNegative) { auto a = valid_args(); a.softcap = -1.0f; expect_rejected(a, Status::InvalidArgument, "softcap"); }
TEST_F(Invalid, SoftcapNaN) {
  auto a = valid_args();
  a.softcap = std::numeric_limits<float>::quiet_NaN();
  expect_rejected(a, Status::InvalidArgument, "softcap");
}
TEST_F(Invalid, AlibiSlopesTooSmall) {
  DeviceBuffer slopes(kH - 1, 0.5f);
  auto a = valid_args();
  a.alibi_slopes = slopes.mem;
  expect_rejected(a, Status::InvalidArgument, "alibi_slopes");
}
TEST_F(Invalid, AlibiPerBatchTooSmall) {
  DeviceBuffer slopes(kH, 0.5f);  // (H) slopes, but (B, H) announced with B = 2
  auto a = valid_args();
  a.batch = 2;
  a.seqlen_q = a.seqlen_k = kN / 2;
  a.alibi_slopes = slopes.mem;
  a.alibi_per_batch = true;
  a.q.batch_stride = a.k.batch_stride = a.v.batch_stride = a.o.batch_stride = kN / 2 * kH * kD;
  a.q.seq_stride = a.k.seq_stride = a.v.seq_stride = a.o.seq_stride = kH * kD;
  a.q.head_stride = a.k.head_stride = a.v.head_stride = a.o.head_stride = kD;
  expect_rejected(a, Status::InvalidArgument, "alibi_slopes");
}
TEST_F(Invalid, MaskBatchDoesNotBroadcast) {
  DeviceBuffer m(4 * kH * kN * kN, 0.0f);
  auto a = valid_args();
  a.mask = {MaskKind::Bias, m.mem, 2, 0};  // 2 against batch 1
  expect_rejected(a, Status::InvalidArgument, "mask.batch");
}
TEST_F(Invalid, MaskHeadsDoesNotBroadcast) {
  DeviceBuffer m(4 * kH * kN * kN, 0.0f);
  auto a = valid_args();
  a.mask = {MaskKind::Bool, m.mem, 1, 3};  // 3 against heads 2
  expect_rejected(a, Status::InvalidArgument, "mask.heads");
}
TEST_F(Invalid, MaskOverrunsBuffer) {
  DeviceBuffer m(kH * kN * kN - 1, 0.0f);  // one float short of (1, H, N, N)
  auto a = valid_args();
  a.mask = {MaskKind::Bias, m.mem, 1, kH};
  expect_rejected(a, Status::InvalidArgument, "mask: shape and strides reach");
}
TEST_F(Invalid, MaskRowStrideOverrunsBuffer) {
  const std::vector<std::uint8_t> bytes(kN * kN, 1);
  DeviceBytes m(bytes.data(), bytes.size());
  auto a = valid_args();
  a.mask = {MaskKind::Bool, m.mem, 1, 1, 0, 0, 0, kN + 1};  // rows further apart than the buffer allows
  expect_rejected(a, Status::InvalidArgument, "mask: shape and strides reach");
}
// 2^62 + 15 * 2^62 + 16 wraps to 16 elements in int64, which the buffer holds; the kernel would
// then read head 1 at element 2^62.
TEST_F(Invalid, MaskStridesWrapAround) {
  DeviceBuffer m(kN * kN, 0.0f);
  auto a = valid_args();
  a.mask = {MaskKind::Bias, m.mem, 1, kH, 0, 0, std::int64_t{1} << 62, std::int64_t{1} << 62};
  expect_rejected(a, Status::InvalidArgument, "mask: shape and strides reach");
}
// The dense strides of a (2, 4, Nq, Nk) mask with Nq * Nk = 2^61 + 8: the batch stride 4 * (2^61 + 8)
// wraps to -2^63 + 32 in int64, and the mask's reach to 64 elements, which the buffer holds. The
// tensors alias one row (zero sequence strides), so only the mask can refuse the call.
TEST_F(Invalid, MaskDenseStridesWrapAround) {
  DeviceBuffer m(kN * kN, 0.0f);
  auto a = valid_args();
  a.batch = 4;  // B*H*Nq*Nk passes 2^63 within the length limit (Nq + Nk <= 2^31 - 2^24)
  a.heads = 4;
  a.seqlen_q = a.seqlen_k = 1065353216;
  for (Tensor* t : {&a.q, &a.k, &a.v, &a.o}) {
    t->batch_stride = t->seq_stride = 0;
    t->head_stride = 1;
  }
  a.mask = {MaskKind::Bias, m.mem};
  expect_rejected(a, Status::InvalidArgument, "mask: shape and strides reach");
}
// standard's workspace B*H*Nq*Nk*4 = 8 * 4 * (2^30 - 2^23)^2 > 2^64 bytes wrapped around in 64
// bits. The inputs alias one row (zero sequence strides); an O doing so is refused for its strides
// (its rows would race), so the workspace's size is checked through the query, which saturates.
TEST_F(Invalid, StandardWorkspaceWrapsAround) {
  auto a = valid_args(Algorithm::Standard);
  a.batch = 8;
  a.heads = 4;
  a.seqlen_q = a.seqlen_k = (1 << 30) - (1 << 23);
  for (Tensor* t : {&a.q, &a.k, &a.v, &a.o}) {
    t->batch_stride = t->seq_stride = 0;
    t->head_stride = 1;
  }
  expect_rejected(a, Status::InvalidArgument, "o: its strides send different elements to one address");
  EXPECT_EQ(workspace_bytes(session().device(), a), SIZE_MAX);
}
TEST_F(Invalid, MaskKindWithoutBuffer) {
  auto a = valid_args();
  a.mask.kind = MaskKind::Bool;
  expect_rejected(a, Status::InvalidHandle, "mask");
}
TEST_F(Invalid, CuSeqlensDecreasing) {
  const int cu_q[] = {0, 10, 5}, cu_k[] = {0, 8, 16};
  DeviceBytes dq(cu_q, sizeof cu_q), dk(cu_k, sizeof cu_k);
  auto a = valid_args();
  a.batch = 2;
  a.cu_seqlens_q = dq.mem;
  a.cu_seqlens_k = dk.mem;
  a.check_device_data = true;  // the opt-in read-back; without it the kernels clamp (test_hostile.cpp)
  expect_rejected(a, Status::InvalidArgument, "cu_seqlens_q: must be non-decreasing");
}
TEST_F(Invalid, CuSeqlensLongerThanMaximum) {
  const int cu_q[] = {0, 8, 16}, cu_k[] = {0, 12, 16};
  DeviceBytes dq(cu_q, sizeof cu_q), dk(cu_k, sizeof cu_k);
  auto a = valid_args();
  a.batch = 2;
  a.seqlen_k = 10;  // sequence 0 has 12 keys
  a.cu_seqlens_q = dq.mem;
  a.cu_seqlens_k = dk.mem;
  a.check_device_data = true;  // the opt-in read-back; without it the kernels clamp (test_hostile.cpp)
  expect_rejected(a, Status::InvalidArgument, "cu_seqlens_k: sequence 0 has 12 rows");
}
TEST_F(Invalid, CuSeqlensOverrunTensors) {
  const int cu_q[] = {0, 10, 20}, cu_k[] = {0, 8, 16};  // 20 packed query rows; Q and O hold 16
  DeviceBytes dq(cu_q, sizeof cu_q), dk(cu_k, sizeof cu_k);
  auto a = valid_args();
  a.batch = 2;
  a.cu_seqlens_q = dq.mem;
  a.cu_seqlens_k = dk.mem;
  a.check_device_data = true;  // the opt-in read-back; without it the kernels clamp (test_hostile.cpp)
  expect_rejected(a, Status::InvalidArgument, "q: shape and strides reach");
}
TEST_F(Invalid, CuSeqlensBufferTooSmall) {
  const int cu[] = {0, 16};
  DeviceBytes dq(cu, sizeof cu), dk(cu, sizeof cu);
  auto a = valid_args();
  a.batch = 2;  // needs 3 entries
  a.seqlen_q = a.seqlen_k = 8;
  a.cu_seqlens_q = dq.mem;
  a.cu_seqlens_k = dk.mem;
  expect_rejected(a, Status::InvalidArgument, "cu_seqlens_q: needs batch + 1");
}
TEST_F(Invalid, CuSeqlensWithoutItsPartner) {
  const int cu[] = {0, 16};
  DeviceBytes dq(cu, sizeof cu);
  auto a = valid_args();
  a.cu_seqlens_q = dq.mem;
  expect_rejected(a, Status::InvalidArgument, "cu_seqlens_k");
}
TEST_F(Invalid, DTypeLargerThanBuffers) {
  DeviceTensor half_q{Layout::BSHD, kB, kN, kH, kD, &values, DType::F16};
  auto a = valid_args();
  a.q = half_q.view;  // fp16-sized buffer, fp32 announced
  expect_rejected(a, Status::InvalidArgument, "q: shape and strides reach");
}

// A kernel that fails to compile reports the device, the options and the build log.
TEST(BuildFailure, ReportsDeviceOptionsAndLog) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / "flashcl-broken-kernels";
  fs::create_directories(dir);
  // kernels/ whole, with its folders (a program lists pieces from several; new pieces come along)
  fs::copy(fs::path(FLASHCL_SOURCE_DIR) / "kernels", dir, fs::copy_options::recursive | fs::copy_options::overwrite_existing);
  // fa1: one kernel file on every device (fa2 and standard have CPU forms and NVIDIA tensor-core
  // forms, whose probes fall back to the portable kernels instead of failing the call)
  std::ofstream(dir / "forward/fa1.cl") << "__kernel void fa1_forward(__global float* x) { this is not OpenCL C; }\n";
  detail::set_kernel_dir(dir.string());  // as FLASHCL_KERNEL_DIR would
  const std::vector<float> values = bench::random_values(64, 3);
  ForwardArgs a;
  a.batch = a.heads = 1;
  a.seqlen_q = a.seqlen_k = 8;
  a.head_dim = 8;
  a.algorithm = Algorithm::FA1;
  try {
    session().forward(a, values, values, values);
    ADD_FAILURE() << "a broken kernel built";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_EQ(e.status(), Status::BuildFailure);
    EXPECT_NE(msg.find(session().info().name), std::string::npos) << msg;
    EXPECT_NE(msg.find("-DHEAD_DIM=8"), std::string::npos) << msg;
    EXPECT_NE(msg.find("error"), std::string::npos) << msg;  // the compiler's log
  }
  detail::set_kernel_dir("");
  // The library stays usable.
  EXPECT_EQ(session().forward(a, values, values, values).size(), values.size());
}

}  // namespace
}  // namespace flashcl::test
