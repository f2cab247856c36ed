// fuzz_input.hpp: reads typed values from libFuzzer's bytes; past the end everything is zero.
// Integers are drawn mostly small (where the interesting boundaries are) and sometimes from the
// whole range, so a short run still reaches both.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

class FuzzInput {
 public:
  FuzzInput(const std::uint8_t* data, std::size_t size) : data_(data), size_(size) {}

  template <typename T>
  T raw() {
    T value{};
    const std::size_t n = pos_ < size_ ? (size_ - pos_ < sizeof(T) ? size_ - pos_ : sizeof(T)) : 0;
    if (n > 0) std::memcpy(&value, data_ + pos_, n);
    pos_ += sizeof(T);
    return value;
  }
  std::uint8_t byte() { return raw<std::uint8_t>(); }
  bool flag() { return byte() & 1; }
  // Small (0..limit) 3 times out of 4, else any int32.
  std::int32_t int_small(int limit) {
    const std::uint8_t how = byte();
    if (how % 4 != 0) return static_cast<std::int32_t>(raw<std::uint16_t>() % (limit + 1));
    return raw<std::int32_t>();
  }
  // Small (0..limit) mostly; sometimes negative or huge 64-bit.
  std::int64_t int64_small(int limit) {
    const std::uint8_t how = byte();
    if (how % 4 != 0) return raw<std::uint16_t>() % (limit + 1);
    return raw<std::int64_t>();
  }

 private:
  const std::uint8_t* data_;
  std::size_t size_, pos_ = 0;
};

// KNOWN BUG, found by fuzz_planner and reported (src/tile_planner.cpp is not ours to change): a
// forced tile with block_cols above 2^27 makes gpu_team_size() double its team size until the int
// overflows (UBSan: "signed integer overflow: 134217728 * 16"), and INT_MAX can spin forever,
// because plan_override() computes the team shape before it checks block_cols <= 256. Until that
// is fixed the harnesses keep forced tiles within +-65536 so the runs can look for other bugs;
// remove this clamp with the fix.
inline int clamp_known_overflow(int v) { return v > 65536 ? 65536 : v < -65536 ? -65536 : v; }
