// errors.hpp: how the library raises errors. Everything inside throws flashcl::Error; the C API
// turns it into a status code and a thread-local message in one place (c_api.cpp).
#pragma once

#include <CL/cl.h>

#include <sstream>
#include <string>
#include <utility>

#include "flashcl/flashcl.hpp"

namespace flashcl::detail {

template <typename... Parts>
std::string concat(Parts&&... parts) {
  std::ostringstream out;
  (out << ... << std::forward<Parts>(parts));
  return out.str();
}

template <typename... Parts>
[[noreturn]] void fail(Status status, Parts&&... parts) {
  throw Error(status, concat(std::forward<Parts>(parts)...));
}

// Names an OpenCL status code (CL_OUT_OF_RESOURCES, ...).
const char* cl_error_name(cl_int code);

// Throws OpenCLError (or OutOfResources for the allocation codes) naming the call.
void check_cl(cl_int code, const char* call);

}  // namespace flashcl::detail
