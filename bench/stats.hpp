// stats.hpp: the one median every mode of flashcl-bench reports (forward, backward, decode, fp8,
// and --explain's per-kernel figures): the middle element of the sorted runs, the mean of the two
// middle ones for an even count (the upper one alone, used before, reported the 11th of 20 runs).
#pragma once

#include <algorithm>
#include <cstddef>
#include <vector>

namespace flashcl::bench {

// 0 for no runs.
inline double median(std::vector<double> v) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

}  // namespace flashcl::bench
