// saturating.hpp: byte counts of shapes that validation has not bounded yet (tensors may alias
// rows through zero strides, so nothing else bounds them), computed so that a huge shape fails
// the size checks instead of wrapping to a small size. Shared by the forward, backward and decode.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>

namespace flashcl::detail {

// The product of non-negative factors in 128 bits, saturated at SIZE_MAX.
inline std::size_t saturating_bytes(std::initializer_list<std::uint64_t> factors) {
  unsigned __int128 product = 1;
  for (std::uint64_t f : factors) {
    product *= f;
    if (product > SIZE_MAX) return SIZE_MAX;
  }
  return static_cast<std::size_t>(product);
}

}  // namespace flashcl::detail
