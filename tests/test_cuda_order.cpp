// test_cuda_order.cpp: the driver-free rules of the Python package's CUDA ordering
// (python/src/cuda_order.hpp), checked where no CUDA driver exists: the names a caller may give
// (and the named error for others), which mode each request takes given what the driver offers
// (auto prefers semaphores, then the flag, then host waits; a forced mode never silently becomes
// another GPU-side one), the flag's cyclic comparison across the 32-bit wrap, and the sequence's
// drain points (every 2^30 values, so no pending wait falls 2^31 behind the flag).
#include <gtest/gtest.h>

#include <cstdint>
#include <string>

#include "cuda_order.hpp"

namespace {

using flashcl_py::cuda::choose;
using flashcl_py::cuda::flag_reached;
using flashcl_py::cuda::FlagSequence;
using flashcl_py::cuda::Mode;
using flashcl_py::cuda::mode_name;
using flashcl_py::cuda::Order;
using flashcl_py::cuda::parse_order;

TEST(CudaOrder, NamesParseAndOthersAreNamedErrors) {
  EXPECT_EQ(parse_order(""), Order::Auto);
  EXPECT_EQ(parse_order("auto"), Order::Auto);
  EXPECT_EQ(parse_order("semaphore"), Order::Semaphore);
  EXPECT_EQ(parse_order("flag"), Order::Flag);
  EXPECT_EQ(parse_order("host"), Order::Host);
  try {
    parse_order("fast");
    FAIL() << "an unknown ordering was accepted";
  } catch (const flashcl::Error& e) {
    EXPECT_EQ(e.status(), flashcl::Status::InvalidArgument);
    EXPECT_NE(std::string(e.what()).find("auto, semaphore, flag or host"), std::string::npos) << e.what();
  }
  EXPECT_STREQ(mode_name(Mode::Semaphore), "semaphore");
  EXPECT_STREQ(mode_name(Mode::Flag), "flag");
  EXPECT_STREQ(mode_name(Mode::Host), "host");
}

TEST(CudaOrder, ModeChosenFromWhatWorks) {
  for (bool sem : {false, true})
    for (bool flag : {false, true}) {
      SCOPED_TRACE("semaphores " + std::to_string(sem) + ", flag " + std::to_string(flag));
      EXPECT_EQ(choose(Order::Auto, sem, flag), sem ? Mode::Semaphore : flag ? Mode::Flag : Mode::Host);
      EXPECT_EQ(choose(Order::Semaphore, sem, flag), sem ? Mode::Semaphore : Mode::Host);
      EXPECT_EQ(choose(Order::Flag, sem, flag), flag ? Mode::Flag : Mode::Host);
      EXPECT_EQ(choose(Order::Host, sem, flag), Mode::Host);
    }
}

TEST(CudaOrder, FlagComparisonIsCyclic) {
  EXPECT_TRUE(flag_reached(5, 5));
  EXPECT_TRUE(flag_reached(6, 5));
  EXPECT_FALSE(flag_reached(4, 5));
  // Across the wrap: 2 was written after 0xFFFFFFFE, so it satisfies a wait for 0xFFFFFFFE; a wait
  // for 2 is not satisfied by 0xFFFFFFFE.
  EXPECT_TRUE(flag_reached(2u, 0xFFFFFFFEu));
  EXPECT_FALSE(flag_reached(0xFFFFFFFEu, 2u));
  EXPECT_TRUE(flag_reached(0u, 0xFFFFFFFFu));
  // Anything up to 2^31 - 1 ahead counts as reached, 2^31 or more behind as not.
  EXPECT_TRUE(flag_reached(100u + 0x7FFFFFFFu, 100u));
  EXPECT_FALSE(flag_reached(100u + 0x80000000u, 100u));
}

TEST(CudaOrder, SequenceGrowsWrapsAndDrains) {
  FlagSequence s(1);  // the flag holds 1 after the bridge's probe
  EXPECT_EQ(s.next(), 2u);
  EXPECT_FALSE(s.drain());
  FlagSequence near(FlagSequence::kDrainPeriod - 1);
  EXPECT_EQ(near.next(), FlagSequence::kDrainPeriod);
  EXPECT_TRUE(near.drain());
  EXPECT_EQ(near.next(), FlagSequence::kDrainPeriod + 1);
  EXPECT_FALSE(near.drain());
  FlagSequence wrap(0xFFFFFFFFu);
  const std::uint32_t before = wrap.last();
  EXPECT_EQ(wrap.next(), 0u);  // wraps; 0 is a multiple of 2^30, so the wrap itself is drained
  EXPECT_TRUE(wrap.drain());
  EXPECT_TRUE(flag_reached(wrap.last(), before));
  // Between two drains no more than 2^30 values are issued, well inside the cyclic window.
  static_assert(FlagSequence::kDrainPeriod <= 0x80000000u / 2, "drains keep waits within half the window");
}

}  // namespace
