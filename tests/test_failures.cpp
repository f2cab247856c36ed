// test_failures.cpp: what happens when things go wrong underneath a forward call. Every OpenCL
// call the library makes on the way to the kernels is made to fail in turn (through the test-only
// hook in src/base/fault_injection.hpp): allocation failures (the device out of memory), kernel build
// failures, failed kernel creation, argument setting and enqueues, including the second and third
// kernel of the standard path (a failure mid-run). Each must give a flashcl::Error with a clear
// status and a message naming the call, leave the output untouched, leak no OpenCL object (the
// context's reference count returns to its baseline once the program cache is dropped; host
// memory is LeakSanitizer's job in the FLASHCL_SANITIZE build), and leave the library usable: the
// next call is exact. Also: the environment form of the hook in a child process, a real build
// failure, and damaged or unusable disk caches (a corrupt header that claims a 4 GiB binary, a
// binary the driver refuses, a cache directory that cannot be written).
#include <sys/resource.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include <cmath>
#include <cstring>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>

#include "base/fault_injection.hpp"
#include "program/kernel_source.hpp"
#include "child_process.hpp"
#include "flashcl/flashcl.h"
#include "support.hpp"

namespace flashcl::test {
namespace {

namespace fs = std::filesystem;
namespace fault = flashcl::testing;  // the hook (not GoogleTest's ::testing)
const float kNaN = std::numeric_limits<float>::quiet_NaN();

void ok(cl_int err, const char* what) {
  if (err != CL_SUCCESS) throw std::runtime_error(std::string(what) + " failed: " + std::to_string(err));
}

// A context and queue of the test's own on the default device, so its reference count tells
// whether the library left a buffer, program or kernel behind; with dense Q, K, V, O and LSE.
struct Rig {
  static constexpr int B = 1, H = 2, Nq = 19, Nk = 23, D = 12;
  cl_context context = nullptr;
  cl_command_queue queue = nullptr;
  cl_mem q = nullptr, k = nullptr, v = nullptr, o = nullptr, lse = nullptr;
  std::vector<float> hq, hk, hv;

  Rig() {
    cl_int err = CL_SUCCESS;
    cl_device_id device = session().device();
    context = clCreateContext(nullptr, 1, &device, nullptr, nullptr, &err);
    ok(err, "clCreateContext");
    queue = clCreateCommandQueue(context, device, 0, &err);
    ok(err, "clCreateCommandQueue");
    hq = bench::random_values(std::size_t{B} * Nq * H * D, 71);
    hk = bench::random_values(std::size_t{B} * Nk * H * D, 72);
    hv = bench::random_values(std::size_t{B} * Nk * H * D, 73);
    q = make(hq);
    k = make(hk);
    v = make(hv);
    o = make(std::vector<float>(hq.size(), kNaN));
    lse = make(std::vector<float>(std::size_t{B} * H * Nq, kNaN));
  }
  ~Rig() {
    for (cl_mem m : {q, k, v, o, lse}) clReleaseMemObject(m);
    clReleaseCommandQueue(queue);
    clReleaseContext(context);
  }
  cl_mem make(const std::vector<float>& host) {
    cl_int err = CL_SUCCESS;
    cl_mem m = clCreateBuffer(context, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, host.size() * sizeof(float),
                              const_cast<float*>(host.data()), &err);
    ok(err, "clCreateBuffer");
    return m;
  }
  std::vector<float> read(cl_mem m, std::size_t floats) const {
    std::vector<float> host(floats);
    ok(clEnqueueReadBuffer(queue, m, CL_TRUE, 0, floats * sizeof(float), host.data(), 0, nullptr, nullptr),
       "clEnqueueReadBuffer");
    return host;
  }
  void poison_output() {
    const std::vector<float> nan(hq.size(), kNaN);
    ok(clEnqueueWriteBuffer(queue, o, CL_TRUE, 0, nan.size() * sizeof(float), nan.data(), 0, nullptr, nullptr),
       "clEnqueueWriteBuffer");
  }
  ForwardArgs args(Algorithm algorithm) const {
    ForwardArgs a;
    a.batch = B;
    a.heads = H;
    a.seqlen_q = Nq;
    a.seqlen_k = Nk;
    a.head_dim = D;
    a.causal = true;
    a.algorithm = algorithm;
    a.q = {q};
    a.k = {k};
    a.v = {v};
    a.o = {o};
    a.lse = lse;
    return a;
  }
  cl_uint context_refs() const {
    cl_uint refs = 0;
    ok(clGetContextInfo(context, CL_CONTEXT_REFERENCE_COUNT, sizeof refs, &refs, nullptr), "clGetContextInfo");
    return refs;
  }
  // The output is still all NaN: nothing was written by a failed call.
  bool output_untouched() const {
    for (float x : read(o, hq.size()))
      if (!std::isnan(x)) return false;
    return true;
  }
  // Runs `algorithm` and checks O against the float64 reference.
  void expect_exact(Algorithm algorithm) {
    poison_output();
    forward(queue, args(algorithm)).wait();
    const auto ref = bench::reference_attention(dense_shape(B, H, Nq, Nk, D, true), hq, hk, hv);
    const auto e = bench::compare(read(o, hq.size()), ref.out);
    EXPECT_EQ(e.non_finite, 0u) << to_string(algorithm);
    EXPECT_LE(e.rel_norm, 1e-5) << to_string(algorithm);
  }
};

// The names the library prints for the codes injected here (its own table is internal).
const char* code_name(cl_int code) {
  switch (code) {
    case CL_MEM_OBJECT_ALLOCATION_FAILURE: return "CL_MEM_OBJECT_ALLOCATION_FAILURE";
    case CL_OUT_OF_RESOURCES: return "CL_OUT_OF_RESOURCES";
    case CL_OUT_OF_HOST_MEMORY: return "CL_OUT_OF_HOST_MEMORY";
    case CL_BUILD_PROGRAM_FAILURE: return "CL_BUILD_PROGRAM_FAILURE";
    case CL_INVALID_COMMAND_QUEUE: return "CL_INVALID_COMMAND_QUEUE";
    case CL_INVALID_KERNEL_NAME: return "CL_INVALID_KERNEL_NAME";
    case CL_INVALID_ARG_SIZE: return "CL_INVALID_ARG_SIZE";
    case CL_INVALID_ARG_VALUE: return "CL_INVALID_ARG_VALUE";
    case CL_INVALID_MEM_OBJECT: return "CL_INVALID_MEM_OBJECT";
    default: return "?";
  }
}

struct Fault {
  Algorithm algorithm;
  const char* call;
  int nth;
  cl_int code;
  Status status;  // what the caller must see
};

std::string fault_name(const ::testing::TestParamInfo<Fault>& info) {
  const Fault& f = info.param;
  return std::string(to_string(f.algorithm)) + "_" + f.call + "_" + std::to_string(f.nth) + "_code" +
         std::to_string(-f.code);
}

class FaultInjection : public ::testing::TestWithParam<Fault> {
 protected:
  void SetUp() override {
    fault::clear_faults();
    set_disk_cache_enabled(false);  // every call builds: the build path is always exercised
  }
  void TearDown() override {
    fault::clear_faults();
    set_disk_cache_enabled(true);
  }
};

TEST_P(FaultInjection, ClearErrorNoLeakStillUsable) {
  const Fault& f = GetParam();
  Rig rig;
  clear_memory_cache();
  const cl_uint baseline = rig.context_refs();

  fault::inject_fault(f.call, f.nth, f.code);
  try {
    forward(rig.queue, rig.args(f.algorithm)).wait();
    ADD_FAILURE() << "the call succeeded although " << f.call << " #" << f.nth << " failed";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_EQ(e.status(), f.status) << message;
    // names the call (a build failure says so and carries device, options and log instead)
    const char* names = f.status == Status::BuildFailure ? "kernel build failed" : f.call;
    EXPECT_NE(message.find(names), std::string::npos) << message;
    EXPECT_NE(message.find(code_name(f.code)), std::string::npos) << message;
  }
  EXPECT_EQ(fault::faults_fired(), 1) << "the fault point was never reached";
  fault::clear_faults();
  ASSERT_EQ(clFinish(rig.queue), CL_SUCCESS);
  EXPECT_TRUE(rig.output_untouched()) << "a failed call wrote the output";

  clear_memory_cache();
  EXPECT_EQ(rig.context_refs(), baseline) << "an OpenCL buffer, program or kernel was left behind";

  // The library is still usable: the same call now succeeds and is exact.
  rig.expect_exact(f.algorithm);
  clear_memory_cache();
  EXPECT_EQ(rig.context_refs(), baseline);
}

const cl_int kOOM = CL_MEM_OBJECT_ALLOCATION_FAILURE, kOOR = CL_OUT_OF_RESOURCES, kHost = CL_OUT_OF_HOST_MEMORY;
INSTANTIATE_TEST_SUITE_P(
    Failures, FaultInjection,
    ::testing::Values(
        // the device out of memory: the workspace allocation, or a lazy allocation at launch
        Fault{Algorithm::Standard, "clCreateBuffer", 1, kOOM, Status::OutOfResources},
        Fault{Algorithm::FA1, "clCreateBuffer", 1, kOOM, Status::OutOfResources},
        Fault{Algorithm::FA2, "clEnqueueNDRangeKernel", 1, kOOM, Status::OutOfResources},
        Fault{Algorithm::FA1, "clEnqueueNDRangeKernel", 1, kOOR, Status::OutOfResources},
        // standard enqueues three kernels: fail the first, the second and the third (mid-run)
        Fault{Algorithm::Standard, "clEnqueueNDRangeKernel", 1, kOOR, Status::OutOfResources},
        Fault{Algorithm::Standard, "clEnqueueNDRangeKernel", 2, CL_INVALID_COMMAND_QUEUE, Status::OpenCLError},
        Fault{Algorithm::Standard, "clEnqueueNDRangeKernel", 3, kHost, Status::OutOfResources},
        // building: the program object, the compiler, the kernel objects
        Fault{Algorithm::FA2, "clCreateProgramWithSource", 1, kHost, Status::OutOfResources},
        Fault{Algorithm::FA2, "clBuildProgram", 1, CL_BUILD_PROGRAM_FAILURE, Status::BuildFailure},
        Fault{Algorithm::FA1, "clBuildProgram", 1, kHost, Status::BuildFailure},
        Fault{Algorithm::FA2, "clCreateKernel", 1, kHost, Status::OutOfResources},
        Fault{Algorithm::Standard, "clCreateKernel", 2, CL_INVALID_KERNEL_NAME, Status::OpenCLError},
        // arguments: the last argument of a flash kernel, one of standard's second kernel
        Fault{Algorithm::FA2, "clSetKernelArg", 6, CL_INVALID_ARG_SIZE, Status::OpenCLError},
        Fault{Algorithm::FA1, "clSetKernelArg", 3, CL_INVALID_MEM_OBJECT, Status::OpenCLError},
        Fault{Algorithm::Standard, "clSetKernelArg", 6, CL_INVALID_ARG_VALUE, Status::OpenCLError}),
    fault_name);

// A failure on the disk-cache path is not an error: the binary is rejected and rebuilt.
TEST(FailuresDiskCache, RefusedBinaryIsRebuiltAndRewritten) {
  fault::clear_faults();
  const fs::path dir = fs::temp_directory_path() / ("flashcl-failures-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  set_disk_cache_dir(dir.string());
  set_disk_cache_enabled(true);
  Rig rig;
  clear_memory_cache();
  rig.expect_exact(Algorithm::FA2);  // builds and writes the binary
  for (const char* call : {"clCreateProgramWithBinary", "clBuildProgram"}) {
    clear_memory_cache();
    const CacheStats before = cache_stats();
    fault::inject_fault(call, 1, CL_INVALID_BINARY);
    rig.expect_exact(Algorithm::FA2);
    EXPECT_EQ(fault::faults_fired(), 1) << call;
    fault::clear_faults();
    const CacheStats after = cache_stats();
    EXPECT_EQ(after.disk_rejects, before.disk_rejects + 1) << call;
    EXPECT_EQ(after.builds, before.builds + 1) << call;
    EXPECT_EQ(after.disk_writes, before.disk_writes + 1) << call << ": the rebuilt binary is stored again";
  }
  clear_memory_cache();
  const CacheStats before = cache_stats();
  rig.expect_exact(Algorithm::FA2);
  EXPECT_EQ(cache_stats().disk_hits, before.disk_hits + 1) << "the rewritten file loads";
  set_disk_cache_dir("");
  fs::remove_all(dir);
}

// The C API turns an injected failure into a status and a message, and recovers.
TEST(FailuresCApi, StatusMessageAndRecovery) {
  fault::clear_faults();
  Rig rig;
  fcl_forward_args a;
  fcl_forward_args_init(&a);
  a.batch = Rig::B;
  a.heads = Rig::H;
  a.seqlen_q = Rig::Nq;
  a.seqlen_k = Rig::Nk;
  a.head_dim = Rig::D;
  a.causal = 1;
  a.algorithm = FCL_ALGO_STANDARD;
  a.q.buffer = rig.q;
  a.k.buffer = rig.k;
  a.v.buffer = rig.v;
  a.o.buffer = rig.o;
  fault::inject_fault("clEnqueueNDRangeKernel", 2, CL_OUT_OF_RESOURCES);
  cl_event event = reinterpret_cast<cl_event>(0x1);
  EXPECT_EQ(fcl_forward(rig.queue, &a, 0, nullptr, &event), FCL_OUT_OF_RESOURCES);
  EXPECT_EQ(event, nullptr) << "no event is handed out for a failed call";
  EXPECT_NE(std::string(fcl_last_error()).find("clEnqueueNDRangeKernel"), std::string::npos) << fcl_last_error();
  EXPECT_NE(std::string(fcl_last_error()).find("CL_OUT_OF_RESOURCES"), std::string::npos) << fcl_last_error();
  fault::clear_faults();
  ASSERT_EQ(fcl_forward(rig.queue, &a, 0, nullptr, &event), FCL_SUCCESS) << fcl_last_error();
  EXPECT_STREQ(fcl_last_error(), "");
  ASSERT_NE(event, nullptr);
  EXPECT_EQ(clWaitForEvents(1, &event), CL_SUCCESS);
  clReleaseEvent(event);
}

// A Session call on the caller's memory that fails after some of its kernels were enqueued returns
// its error only once they are done: the arrays its buffers lay over are the caller's again when
// the error arrives (a caller that frees them then must not have them written afterwards).
TEST(FailuresSession, FailedHostCallHasStoppedTouchingTheArrays) {
  fault::clear_faults();
  const HostMemoryFacts facts = host_memory_facts();
  if (!facts.aligned(0)) GTEST_SKIP() << "this device copies host arrays: no buffer lies over them";
  constexpr int B = 1, H = 8, N = 512, D = 64;
  const std::size_t n = std::size_t{B} * N * H * D, nl = std::size_t{B} * H * N;
  const std::size_t slot = (n * sizeof(float) + facts.room_align() - 1) / facts.room_align() * facts.room_align();
  const AlignedRoom room(facts.room_align(), 9 * slot);
  float* at[9];
  for (int i = 0; i < 9; ++i) at[i] = reinterpret_cast<float*>(room.bytes() + i * slot);
  float *q = at[0], *k = at[1], *v = at[2], *o = at[3], *d_o = at[4], *lse = at[5];
  for (int i : {0, 1, 2, 4}) {
    const std::vector<float> values = bench::random_values(n, 90 + i);
    std::copy(values.begin(), values.end(), at[i]);
  }
  ForwardArgs f;
  f.batch = B;
  f.heads = H;
  f.seqlen_q = f.seqlen_k = N;
  f.head_dim = D;
  f.algorithm = Algorithm::FA2;
  session().forward(f, {q, n}, {k, n}, {v, n}, {o, n}, {}, {lse, nl});
  for (int i = 6; i < 9; ++i) std::fill_n(at[i], n, kNaN);
  BackwardArgs a;
  a.forward = f;
  fault::inject_fault("clEnqueueNDRangeKernel", 3, CL_OUT_OF_RESOURCES);  // after the first kernels
  EXPECT_THROW(session().backward(a, {q, n}, {k, n}, {v, n}, {o, n}, {d_o, n}, {lse, nl},
                                  {{at[6], n}, {at[7], n}, {at[8], n}, {}}),
               Error);
  fault::clear_faults();
  EXPECT_GT(session().last_backward_host_buffers(), 0) << "the gradients lay over the caller's memory";
  std::vector<float> when_thrown(room.floats() + 6 * slot / sizeof(float), room.floats() + 9 * slot / sizeof(float));
  ASSERT_EQ(clFinish(session().queue()), CL_SUCCESS);
  EXPECT_EQ(std::memcmp(when_thrown.data(), at[6], when_thrown.size() * sizeof(float)), 0)
      << "the gradients changed after the error reached the caller";
}

// The hook's own argument checks.
TEST(FailuresHook, RejectsBadRules) {
  EXPECT_THROW(fault::inject_fault("", 1), Error);
  EXPECT_THROW(fault::inject_fault("clBuildProgram", 0), Error);
  EXPECT_THROW(fault::inject_fault("clBuildProgram", 1, CL_SUCCESS), Error);
  EXPECT_THROW(fault::inject_faults("clBuildProgram"), Error);
  EXPECT_THROW(fault::inject_faults("clBuildProgram:x"), Error);
  EXPECT_THROW(fault::inject_faults("clBuildProgram:1:5"), Error);
  EXPECT_NO_THROW(fault::inject_faults("clBuildProgram:1:-11,clCreateKernel:2"));
  fault::clear_faults();
  EXPECT_EQ(fault::faults_fired(), 0);
}

// Run in a child process by FailuresEnvironment below; skipped when run on its own.
TEST(FailuresChild, EnvironmentRuleFires) {
  const char* spec = std::getenv("FLASHCL_FAULT_INJECT");
  if (spec == nullptr) GTEST_SKIP() << "only meaningful with FLASHCL_FAULT_INJECT set (see FailuresEnvironment)";
  Rig rig;
  try {
    forward(rig.queue, rig.args(Algorithm::Standard)).wait();
    ADD_FAILURE() << "FLASHCL_FAULT_INJECT=" << spec << " did not fire";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), Status::OutOfResources) << e.what();
    EXPECT_NE(std::string(e.what()).find("clEnqueueNDRangeKernel"), std::string::npos) << e.what();
  }
  EXPECT_EQ(fault::faults_fired(), 1);
  rig.expect_exact(Algorithm::Standard);  // fires once, then the library works again
}

TEST(FailuresEnvironment, HookFromEnvironment) {
  const ChildResult good = run_self({"--gtest_filter=FailuresChild.EnvironmentRuleFires"},
                                    {"FLASHCL_FAULT_INJECT=clEnqueueNDRangeKernel:2"});
  EXPECT_EQ(good.exit_code, 0) << good.output;
  EXPECT_NE(good.output.find("[  PASSED  ] 1 test"), std::string::npos) << good.output;
  EXPECT_EQ(good.output.find("SKIPPED"), std::string::npos) << good.output;
  // A malformed rule is said on stderr and ignored (never fatal), so the child's test finds that
  // nothing fired and fails: loudly, rather than testing nothing.
  const ChildResult bad = run_self({"--gtest_filter=FailuresChild.EnvironmentRuleFires"},
                                   {"FLASHCL_FAULT_INJECT=clEnqueueNDRangeKernel"});
  EXPECT_NE(bad.exit_code, 0) << bad.output;
  EXPECT_NE(bad.output.find("FLASHCL_FAULT_INJECT: expected name:N"), std::string::npos) << bad.output;
}

// A kernel that does not compile: BuildFailure with the log, nothing leaked, usable afterwards.
TEST(FailuresBuild, BrokenKernelSourceLeaksNothing) {
  const fs::path dir = fs::temp_directory_path() / ("flashcl-broken-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  // kernels/ with its folders (shared/, forward/, nvidia/, cpu/, ...)
  fs::copy(fs::path(FLASHCL_SOURCE_DIR) / "kernels", dir, fs::copy_options::recursive | fs::copy_options::overwrite_existing);
  for (const char* file : {"forward/fa2.cl", "nvidia/fa2_mma.cl", "cpu/fa2_cpu.cl"})  // every form of fa2 a device may build
    std::ofstream(dir / file, std::ios::app) << "\nthis line is not OpenCL C;\n";
  set_disk_cache_enabled(false);
  Rig rig;
  clear_memory_cache();
  const cl_uint baseline = rig.context_refs();
  detail::set_kernel_dir(dir.string());  // as FLASHCL_KERNEL_DIR would
  try {
    forward(rig.queue, rig.args(Algorithm::FA2)).wait();
    ADD_FAILURE() << "a broken kernel built";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), Status::BuildFailure);
    EXPECT_NE(std::string(e.what()).find("error"), std::string::npos) << e.what();
  }
  detail::set_kernel_dir("");
  clear_memory_cache();
  EXPECT_EQ(rig.context_refs(), baseline);
  EXPECT_TRUE(rig.output_untouched());
  rig.expect_exact(Algorithm::FA2);
  set_disk_cache_enabled(true);
  fs::remove_all(dir);
}

class FailuresCacheFile : public ::testing::Test {
 protected:
  fs::path dir;
  void SetUp() override {
    fault::clear_faults();
    dir = fs::temp_directory_path() / ("flashcl-cachefile-" + std::to_string(::getpid()) + "-" +
                                       ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir);
    set_disk_cache_dir(dir.string());
    set_disk_cache_enabled(true);
    clear_memory_cache();
  }
  void TearDown() override {
    set_disk_cache_dir("");
    clear_memory_cache();
    fs::remove_all(dir);
  }
  fs::path only_file() const {
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(dir)) files.push_back(e.path());
    EXPECT_EQ(files.size(), 1u);
    return files.empty() ? fs::path() : files[0];
  }
};

long max_rss_kib() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss;
}

// A header whose binary length claims 4 GiB (the largest the format accepts) on a short file must
// be rejected without allocating the claimed size.
TEST_F(FailuresCacheFile, HugeLengthClaimIsRejectedCheaply) {
  Rig rig;
  rig.expect_exact(Algorithm::FA2);
  const fs::path file = only_file();
  std::string bytes;
  {
    std::ifstream in(file, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  const std::size_t magic = 14;  // "FLASHCL-BIN 1\n"
  std::uint64_t key_size = 0;
  std::memcpy(&key_size, bytes.data() + magic, 8);
  const std::size_t bin_at = magic + 8 + key_size;
  const std::uint64_t claim = std::uint64_t{1} << 32;
  std::string damaged = bytes.substr(0, bin_at);
  damaged.append(reinterpret_cast<const char*>(&claim), 8);
  damaged.append(64, '\x7f');
  std::ofstream(file, std::ios::binary | std::ios::trunc) << damaged;

  clear_memory_cache();
  const long rss_before = max_rss_kib();
  const CacheStats before = cache_stats();
  rig.expect_exact(Algorithm::FA2);
  EXPECT_EQ(cache_stats().disk_rejects, before.disk_rejects + 1);
  EXPECT_LT(max_rss_kib() - rss_before, 512L * 1024) << "peak memory grew by the claimed binary size";
}

// A file in the right format, for the right key, with a correct checksum, whose binary is junk:
// the driver refuses it, the library rebuilds from source.
TEST_F(FailuresCacheFile, JunkBinaryWithValidChecksumIsRebuilt) {
  Rig rig;
  rig.expect_exact(Algorithm::FA2);
  const fs::path file = only_file();
  std::string bytes;
  {
    std::ifstream in(file, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  const std::size_t magic = 14;
  std::uint64_t key_size = 0, bin_size = 0;
  std::memcpy(&key_size, bytes.data() + magic, 8);
  const std::string key = bytes.substr(magic + 8, key_size);
  std::memcpy(&bin_size, bytes.data() + magic + 8 + key_size, 8);
  std::string junk(bin_size, '\0');
  for (std::size_t i = 0; i < junk.size(); ++i) junk[i] = static_cast<char>((i * 2654435761u) >> 13);
  XXH64_state_t* state = XXH64_createState();
  XXH64_reset(state, 0);
  XXH64_update(state, key.data(), key.size());
  XXH64_update(state, junk.data(), junk.size());
  const std::uint64_t sum = XXH64_digest(state);
  XXH64_freeState(state);
  std::string forged = bytes.substr(0, magic + 8 + key_size + 8) + junk;
  forged.append(reinterpret_cast<const char*>(&sum), 8);
  std::ofstream(file, std::ios::binary | std::ios::trunc) << forged;

  clear_memory_cache();
  const CacheStats before = cache_stats();
  rig.expect_exact(Algorithm::FA2);
  const CacheStats after = cache_stats();
  EXPECT_EQ(after.disk_rejects, before.disk_rejects + 1);
  EXPECT_EQ(after.builds, before.builds + 1);
}

// An empty file, and a directory where the file should be: rejected or skipped, never fatal.
TEST_F(FailuresCacheFile, EmptyFileAndDirectoryInTheWay) {
  Rig rig;
  rig.expect_exact(Algorithm::FA2);
  const fs::path file = only_file();
  std::ofstream(file, std::ios::binary | std::ios::trunc);  // empty
  clear_memory_cache();
  CacheStats before = cache_stats();
  rig.expect_exact(Algorithm::FA2);
  EXPECT_EQ(cache_stats().disk_rejects, before.disk_rejects + 1);

  fs::remove(file);
  fs::create_directories(file / "occupied");  // cannot be read, removed or replaced
  clear_memory_cache();
  before = cache_stats();
  rig.expect_exact(Algorithm::FA2);
  EXPECT_EQ(cache_stats().builds, before.builds + 1);
  EXPECT_TRUE(fs::is_directory(file));
  for (const auto& e : fs::directory_iterator(dir))
    EXPECT_EQ(e.path().string().find(".tmp."), std::string::npos) << "temporary file left behind: " << e.path();
}

// A cache directory that cannot be created: calls work, nothing is written.
TEST_F(FailuresCacheFile, UnwritableDirectoryIsIgnored) {
  fs::create_directories(dir);
  std::ofstream(dir / "plain-file") << "x";
  set_disk_cache_dir((dir / "plain-file" / "cache").string());
  Rig rig;
  const CacheStats before = cache_stats();
  rig.expect_exact(Algorithm::FA2);
  EXPECT_EQ(cache_stats().builds, before.builds + 1);
  EXPECT_EQ(cache_stats().disk_writes, before.disk_writes);
}

}  // namespace
}  // namespace flashcl::test
