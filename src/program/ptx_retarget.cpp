// ptx_retarget.cpp: removes the arch-only markers from PTX text and retargets the module to the
// arch-specific variant of its target (see ptx_retarget.hpp).
#include "program/ptx_retarget.hpp"

#include <cctype>
#include <cstring>

#include "base/errors.hpp"

namespace flashcl::detail {

std::string retarget_ptx(const std::string& ptx) {
  std::string out = ptx;
  const std::size_t marker_len = std::strlen(kArchOnlyMarker);
  std::size_t markers = 0;
  for (std::size_t at = out.find(kArchOnlyMarker); at != std::string::npos; at = out.find(kArchOnlyMarker, at)) {
    out.erase(at, marker_len);
    ++markers;
  }
  const std::string target = ".target sm_";
  const std::size_t t = out.find(target);
  std::size_t end = t == std::string::npos ? t : t + target.size();
  while (end != std::string::npos && end < out.size() && std::isdigit(static_cast<unsigned char>(out[end]))) ++end;
  if (t == std::string::npos || end == t + target.size())
    fail(Status::BuildFailure, "PTX retarget: the compiler's output has no '.target sm_NN' line");
  if (markers == 0)
    fail(Status::BuildFailure, "PTX retarget: no arch-only instructions (marker '", kArchOnlyMarker,
         "') in the compiler's output");
  if (end == out.size() || out[end] != 'a') out.insert(end, "a");  // a compiler that targets sm_NNa already: kept
  return out;
}

}  // namespace flashcl::detail
