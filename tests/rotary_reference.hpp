// rotary_reference.hpp: the decode tests' host model of the rotary embedding (flash-attn's
// positions and tables): the cos/sin tables (capacity rows of rotary_dim / 2, base 10000) the
// tests hand to forward_kvcache, and one row rotated as the kernels rotate it (interleaved pairs
// (2j, 2j+1) or half-split pairs (j, j + rotary_dim/2)). Shared by test_decode.cpp and
// test_decode_fp8.cpp.
#pragma once

#include <cmath>
#include <cstddef>
#include <vector>

namespace flashcl::test {

// cos and sin of p * 10000^(-2j / rotary_dim), row p < rows, column j < rotary_dim / 2.
inline void rotary_tables(int rows, int rotary_dim, std::vector<float>& cos_t, std::vector<float>& sin_t) {
  for (int p = 0; p < rows; ++p)
    for (int j = 0; j < rotary_dim / 2; ++j) {
      const double angle = p * std::pow(10000.0, -2.0 * j / rotary_dim);
      cos_t.push_back(static_cast<float>(std::cos(angle)));
      sin_t.push_back(static_cast<float>(std::sin(angle)));
    }
}

// x rotated as the kernels do (pairs, position row of the tables).
inline void rotate_row(float* x, int rotary_dim, bool interleaved, const std::vector<float>& cos_t,
                       const std::vector<float>& sin_t, int pos) {
  const int half = rotary_dim / 2;
  for (int j = 0; j < half; ++j) {
    const int a = interleaved ? 2 * j : j, b = interleaved ? 2 * j + 1 : j + half;
    const float cs = cos_t[static_cast<std::size_t>(pos) * half + j], sn = sin_t[static_cast<std::size_t>(pos) * half + j];
    const float x1 = x[a], x2 = x[b];
    x[a] = x1 * cs - x2 * sn;
    x[b] = x1 * sn + x2 * cs;
  }
}

}  // namespace flashcl::test
