// test_concurrency.cpp: many host threads sharing one context and the program cache. 8 threads x
// 50 calls of mixed shapes, algorithms and storage dtypes, first all on one in-order queue, then
// each thread on a queue of its own, while another thread keeps dropping the in-memory program
// cache and every fifth call is an invalid one through the C API (its thread-local message must be
// its own). Every result must be bit-identical to the same call made alone beforehand (and that one
// matches the float64 reference). Then two processes fill one empty disk cache at once and the
// cache they leave must be complete and valid.
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <limits>
#include <mutex>
#include <random>
#include <thread>

#include "child_process.hpp"
#include "flashcl/flashcl.h"
#include "support.hpp"

namespace flashcl::test {
namespace {

namespace fs = std::filesystem;
constexpr int kThreads = 8, kCallsPerThread = 50;

struct Call {
  bench::Shape shape;
  Algorithm algorithm = Algorithm::FA2;
  DType dtype = DType::F32;
  std::uint64_t seed = 0;
};

// A fixed pseudo-random mix: lengths 1..48 (equal and unequal), head dims that share programs
// across calls (so threads race on the same cache entries), causal on and off, every algorithm,
// fp32, and some fp16/bf16 on fa2.
std::vector<Call> make_calls() {
  std::mt19937 rng(20240611);
  std::vector<Call> calls;
  const int dims[] = {8, 20};
  const Algorithm algorithms[] = {Algorithm::Standard, Algorithm::FA1, Algorithm::FA2, Algorithm::FA2};
  for (int i = 0; i < kThreads * kCallsPerThread; ++i) {
    Call c;
    c.shape.batch = 1 + static_cast<int>(rng() % 2);
    c.shape.heads = 1 + static_cast<int>(rng() % 3);
    c.shape.seqlen_q = 1 + static_cast<int>(rng() % 48);
    c.shape.seqlen_k = rng() % 3 == 0 ? c.shape.seqlen_q : 1 + static_cast<int>(rng() % 48);
    c.shape.head_dim = dims[rng() % 2];
    c.shape.causal = rng() % 2 == 0;
    c.algorithm = algorithms[rng() % 4];
    const unsigned pick = rng() % 8;  // 16-bit storage on fa2 only: fewer programs to build
    if (c.algorithm == Algorithm::FA2) c.dtype = pick == 0 ? DType::F16 : pick == 1 ? DType::BF16 : DType::F32;
    c.seed = 1000 + static_cast<std::uint64_t>(i);
    calls.push_back(c);
  }
  return calls;
}

struct Outcome {
  std::vector<float> o, lse;
};

// Runs one call on `queue` (buffers in the session's context) and returns O and LSE.
Outcome run_on(cl_command_queue queue, const Call& c) {
  const auto& s = c.shape;
  const auto q = bench::random_values(s.q_elems(), c.seed * 3 + 0);
  const auto k = bench::random_values(s.kv_elems(), c.seed * 3 + 1);
  const auto v = bench::random_values(s.kv_elems(), c.seed * 3 + 2);
  DeviceTensor dq(Layout::BSHD, s.batch, s.seqlen_q, s.heads, s.head_dim, &q, c.dtype);
  DeviceTensor dk(Layout::BSHD, s.batch, s.seqlen_k, s.heads, s.head_dim, &k, c.dtype);
  DeviceTensor dv(Layout::BSHD, s.batch, s.seqlen_k, s.heads, s.head_dim, &v, c.dtype);
  DeviceTensor dout(Layout::BSHD, s.batch, s.seqlen_q, s.heads, s.head_dim, nullptr, c.dtype);
  DeviceBuffer dlse(s.rows(), std::numeric_limits<float>::quiet_NaN());
  ForwardArgs a = shape_args(s);
  a.algorithm = c.algorithm;
  a.dtype = c.dtype;
  a.q = dq.view;
  a.k = dk.view;
  a.v = dv.view;
  a.o = dout.view;
  a.lse = dlse.mem;
  forward(queue, a).wait();
  Outcome out;
  out.o = dout.logical();
  out.lse = dlse.read();
  return out;
}

bool bit_identical(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// One invalid call through the C API; its thread's message must name the parameter.
void invalid_c_call(cl_command_queue queue, int head_dim) {
  fcl_forward_args a;
  fcl_forward_args_init(&a);
  a.batch = a.heads = a.seqlen_q = a.seqlen_k = 4;
  a.head_dim = head_dim;  // 0 or > 256
  EXPECT_EQ(fcl_forward(queue, &a, 0, nullptr, nullptr), FCL_INVALID_ARGUMENT);
  const std::string message = fcl_last_error();
  EXPECT_NE(message.find("head_dim"), std::string::npos) << message;
  EXPECT_NE(message.find(std::to_string(head_dim)), std::string::npos) << "another thread's message: " << message;
}

// Runs every call from kThreads threads (thread t makes calls t, t + kThreads, ...), on the
// session queue or on one queue per thread, with a thread dropping the memory cache meanwhile;
// each result must be bit-identical to `alone`.
void run_threads(const std::vector<Call>& calls, const std::vector<Outcome>& alone, bool own_queues) {
  std::atomic<bool> done{false};
  std::thread dropper([&] {
    while (!done) {
      clear_memory_cache();
      std::this_thread::sleep_for(std::chrono::milliseconds(40));
    }
  });
  std::atomic<int> mismatches{0}, finished{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      cl_command_queue queue = session().queue();
      if (own_queues) {
        cl_int err = CL_SUCCESS;
        queue = clCreateCommandQueue(session().context(), session().device(), 0, &err);
        ASSERT_EQ(err, CL_SUCCESS);
      }
      for (int i = t, n = 0; i < static_cast<int>(calls.size()); i += kThreads, ++n) {
        if (n % 5 == 4) invalid_c_call(queue, n % 2 == 0 ? 0 : 257 + t);
        const Outcome got = run_on(queue, calls[i]);
        if (!bit_identical(got.o, alone[i].o) || !bit_identical(got.lse, alone[i].lse)) {
          ++mismatches;
          ADD_FAILURE() << "call " << i << " (" << to_string(calls[i].algorithm) << ") differs from the same call alone";
        }
        ++finished;
      }
      if (own_queues) clReleaseCommandQueue(queue);
    });
  for (auto& th : threads) th.join();
  done = true;
  dropper.join();
  EXPECT_EQ(finished.load(), kThreads * kCallsPerThread);
  EXPECT_EQ(mismatches.load(), 0);
}

// One process, so the programs are built once: every call alone (a sample checked against the
// float64 reference, so "bit-identical to alone" means "right"), then all of them from 8 threads
// on one queue, then on 8 queues.
TEST(Concurrency, EightThreadsShareContextAndProgramCache) {
  const std::vector<Call> calls = make_calls();
  std::vector<Outcome> alone;
  for (const Call& c : calls) alone.push_back(run_on(session().queue(), c));
  for (std::size_t i = 0; i < calls.size(); i += 7) {
    const auto& s = calls[i].shape;
    const auto q = round_to(calls[i].dtype, bench::random_values(s.q_elems(), calls[i].seed * 3 + 0));
    const auto k = round_to(calls[i].dtype, bench::random_values(s.kv_elems(), calls[i].seed * 3 + 1));
    const auto v = round_to(calls[i].dtype, bench::random_values(s.kv_elems(), calls[i].seed * 3 + 2));
    const auto ref = bench::reference_attention(s, q, k, v);
    const auto e = bench::compare(alone[i].o, ref.out);
    EXPECT_EQ(e.non_finite, 0u) << i;
    EXPECT_LE(e.rel_norm, calls[i].dtype == DType::F32 ? 1e-5 : 1e-2) << i << " " << to_string(calls[i].algorithm);
  }
  {
    SCOPED_TRACE("8 threads, one in-order queue");
    run_threads(calls, alone, false);
  }
  {
    SCOPED_TRACE("8 threads, a queue each");
    run_threads(calls, alone, true);
  }
}

// The six fa2 programs (d = 8 … 40, causal where d is a multiple of 16) the disk-cache test fills
// its cache with and then expects to find there.
void run_six_programs(const std::string& who) {
  for (int d : {8, 12, 16, 24, 32, 40})
    expect_accurate(run_case(make_case(17, 29, d, d % 16 == 0, 1, 1), Algorithm::FA2), who + " d=" + std::to_string(d));
}

// Run in a child process by ConcurrencyDiskCache below; skipped when run on its own.
TEST(ConcurrencyChild, FillDiskCache) {
  if (std::getenv("FLASHCL_TEST_FILL_CACHE") == nullptr) GTEST_SKIP() << "run by ConcurrencyDiskCache";
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t)
    threads.emplace_back([] {
      run_six_programs("child");
    });
  for (auto& th : threads) th.join();
}

TEST(ConcurrencyDiskCache, TwoProcessesFillOneCache) {
  const fs::path dir = fs::temp_directory_path() / ("flashcl-two-procs-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  const std::vector<std::string> env = {"FLASHCL_TEST_FILL_CACHE=1", "FLASHCL_CACHE_DIR=" + dir.string(),
                                        "FLASHCL_DISK_CACHE=1"};
  const Child a = spawn_self({"--gtest_filter=ConcurrencyChild.FillDiskCache"}, env);
  const Child b = spawn_self({"--gtest_filter=ConcurrencyChild.FillDiskCache"}, env);
  const ChildResult ra = wait_child(a), rb = wait_child(b);
  for (const auto* r : {&ra, &rb}) {
    EXPECT_EQ(r->exit_code, 0) << r->output;
    EXPECT_NE(r->output.find("[  PASSED  ] 1 test"), std::string::npos) << r->output;
  }
  // Exactly one complete file per program, no temporary left over.
  std::size_t bins = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    EXPECT_EQ(e.path().extension(), ".bin") << "left behind: " << e.path();
    bins += e.path().extension() == ".bin";
  }
  EXPECT_EQ(bins, 6u);
  // Every file loads: this process finds all six programs on disk and builds none.
  set_disk_cache_dir(dir.string());
  set_disk_cache_enabled(true);
  clear_memory_cache();
  const CacheStats before = cache_stats();
  run_six_programs("parent");
  const CacheStats after = cache_stats();
  EXPECT_EQ(after.disk_hits, before.disk_hits + 6);
  EXPECT_EQ(after.builds, before.builds);
  EXPECT_EQ(after.disk_rejects, before.disk_rejects);
  set_disk_cache_dir("");
  clear_memory_cache();
  fs::remove_all(dir);
}

}  // namespace
}  // namespace flashcl::test
