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

// Throws OpenCLError (or OutOfResources for the allocation codes) naming the call. Also the
// fault-injection point (fault_injection.hpp) for calls that create nothing: a successful `code`
// may be turned into the failure a test asked for.
void check_cl(cl_int code, const char* call);

// check_cl without the fault-injection hook: for calls that create an object, where the hook runs
// before the call instead (injected_fault), so a faked failure never strands a created object.
void check_cl_result(cl_int code, const char* call);

}  // namespace flashcl::detail
