// algorithm.cpp: names of the algorithms and the library version.
#include <algorithm>
#include <cctype>

#include "flashcl/flashcl.hpp"

namespace flashcl {

const char* to_string(Algorithm algorithm) {
  switch (algorithm) {
    case Algorithm::Auto: return "auto";
    case Algorithm::Standard: return "standard";
    case Algorithm::FA1: return "fa1";
    case Algorithm::FA2: return "fa2";
  }
  return "unknown";
}

std::optional<Algorithm> parse_algorithm(const std::string& name) {
  std::string lower = name;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  for (Algorithm a : {Algorithm::Auto, Algorithm::Standard, Algorithm::FA1, Algorithm::FA2})
    if (lower == to_string(a)) return a;
  return std::nullopt;
}

const char* to_string(DType dtype) {
  switch (dtype) {
    case DType::F32: return "f32";
    case DType::F16: return "f16";
    case DType::BF16: return "bf16";
    case DType::E4M3: return "e4m3";
    case DType::E5M2: return "e5m2";
  }
  return "unknown";
}

std::optional<DType> parse_dtype(const std::string& name) {
  for (DType d : {DType::F32, DType::F16, DType::BF16, DType::E4M3, DType::E5M2})
    if (name == to_string(d)) return d;
  return std::nullopt;
}

std::size_t element_size(DType dtype) { return dtype == DType::F32 ? 4 : is_fp8(dtype) ? 1 : 2; }

bool is_fp8(DType dtype) { return dtype == DType::E4M3 || dtype == DType::E5M2; }

const char* version() { return FLASHCL_VERSION_STRING; }

}  // namespace flashcl
