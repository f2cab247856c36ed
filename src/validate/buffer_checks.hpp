// buffer_checks.hpp: the checks every entry point makes on the cl_mem arguments it is given,
// beyond handle, context and size: that each is a buffer (not an image or pipe) whose flags allow
// what the kernels do with it, and that no output shares bytes with another argument (whole byte
// extents, sub-buffers mapped into their parent). The forward (validate.cpp) and the KV-cache path
// (decode.cpp) use them; header-only, as they are a few lines each.
#pragma once

#include <CL/cl.h>

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include "base/errors.hpp"

namespace flashcl::detail {

// A cl_mem must be a buffer (not an image or pipe) whose flags allow what the kernels do with it.
inline void check_use(cl_mem buffer, const char* name, bool read, bool write) {
  cl_mem_object_type type = 0;
  cl_mem_flags flags = 0;
  if (clGetMemObjectInfo(buffer, CL_MEM_TYPE, sizeof type, &type, nullptr) != CL_SUCCESS ||
      clGetMemObjectInfo(buffer, CL_MEM_FLAGS, sizeof flags, &flags, nullptr) != CL_SUCCESS)
    fail(Status::InvalidHandle, name, ": not a valid cl_mem");
  if (type != CL_MEM_OBJECT_BUFFER) fail(Status::InvalidHandle, name, ": an image or pipe, not a buffer");
  if (write && (flags & CL_MEM_READ_ONLY) != 0)
    fail(Status::InvalidArgument, name, ": a CL_MEM_READ_ONLY buffer, but the kernels write it");
  if (read && (flags & CL_MEM_WRITE_ONLY) != 0)
    fail(Status::InvalidArgument, name, ": a CL_MEM_WRITE_ONLY buffer, but the kernels read it");
}

// An output whose strides send two of its elements to one address: its stores would race and leave
// elements unwritten, so it is refused (inputs may repeat elements: a broadcast K is a zero
// stride). Axes are (count, stride) in elements; those of one element are ignored, and the others,
// smallest stride first, must each step past all that the smaller ones reach. (An interleaving
// that passes no such order, which no caller's layout needs, is refused too.)
inline void check_no_self_overlap(const char* name, std::vector<std::pair<std::int64_t, std::int64_t>> axes) {
  std::sort(axes.begin(), axes.end(), [](const auto& x, const auto& y) { return x.second < y.second; });
  unsigned __int128 reach = 0;  // the furthest element the smaller axes reach (strides are >= 0, checked)
  for (const auto& [count, stride] : axes) {
    if (count <= 1) continue;
    if (static_cast<unsigned __int128>(stride) <= reach)
      fail(Status::InvalidArgument, name, ": its strides send different elements to one address (a stride of ",
           stride, " over ", count, " entries within what the smaller strides reach); an output needs memory of "
           "its own for each element");
    reach += static_cast<unsigned __int128>(count - 1) * static_cast<std::uint64_t>(stride);
  }
}

// Bytes [lo, hi) one argument covers, in the allocation it lives in: a sub-buffer's range is moved
// into its parent's (CL_MEM_ASSOCIATED_MEMOBJECT, CL_MEM_OFFSET; sub-buffers do not nest), so any
// two views of one allocation compare.
struct Span {
  cl_mem root;
  std::uint64_t lo, hi;
  const char* name;
  bool output;
};

inline Span span_of(cl_mem buffer, std::uint64_t lo, std::uint64_t hi, const char* name, bool output) {
  cl_mem parent = nullptr;
  std::size_t origin = 0, size = 0;
  clGetMemObjectInfo(buffer, CL_MEM_ASSOCIATED_MEMOBJECT, sizeof parent, &parent, nullptr);
  if (parent != nullptr) clGetMemObjectInfo(buffer, CL_MEM_OFFSET, sizeof origin, &origin, nullptr);
  clGetMemObjectInfo(buffer, CL_MEM_SIZE, sizeof size, &size, nullptr);
  hi = std::min<std::uint64_t>(hi, size);  // a reach is capped by the checked size anyway
  return {parent != nullptr ? parent : buffer, lo + origin, std::max(lo, hi) + origin, name, output};
}

// An output sharing bytes with an input or another output: the kernels would read what they have
// already overwritten (or race on it), so such calls are refused. Ranges are whole extents, so
// outputs interleaved with inputs in one allocation are refused too.
inline void check_aliasing(const std::vector<Span>& spans) {
  for (std::size_t i = 0; i < spans.size(); ++i)
    for (std::size_t j = i + 1; j < spans.size(); ++j) {
      const Span &x = spans[i], &y = spans[j];
      if (!(x.output || y.output) || x.root != y.root || x.lo >= x.hi || y.lo >= y.hi) continue;
      if (x.lo < y.hi && y.lo < x.hi) {
        const Span& out = x.output ? x : y;
        const Span& other = x.output ? y : x;
        fail(Status::InvalidArgument, out.name, ": overlaps ", other.name, " (bytes ", std::max(x.lo, y.lo), "..",
             std::min(x.hi, y.hi), " of one allocation); an output may not share memory with an input or ",
             "another output");
      }
    }
}

}  // namespace flashcl::detail
