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

