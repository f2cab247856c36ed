// call_workspace.hpp: what the three entry points (forward, backward, forward_kvcache) share
// around their launches: the call's workspace, the caller's buffer or one the call allocates and
// releases on every way out, and the translation of the C++ bindings' cl::Error into flashcl's
// OpenCLError, so each entry point states only what it enqueues.
#pragma once

#include <cstddef>
#include <utility>

#include "base/cl_bindings.hpp"
#include "base/errors.hpp"
#include "base/fault_injection.hpp"

namespace flashcl::detail {

// The caller's workspace, or (caller == nullptr, bytes > 0) a buffer of `bytes` made here (a
// fault-injectable allocation, as every other one) and released when this object goes, by return
// or by throw; OpenCL frees it once the kernels enqueued with it have finished.
class CallWorkspace {
 public:
  CallWorkspace(cl_context context, cl_mem caller, std::size_t bytes) : buffer_(caller) {
    if (caller != nullptr || bytes == 0) return;
    cl_int err = injected_fault("clCreateBuffer");
    if (err == CL_SUCCESS) owned_ = clCreateBuffer(context, CL_MEM_READ_WRITE, bytes, nullptr, &err);
    check_cl_result(err, "clCreateBuffer(workspace)");
    buffer_ = owned_;
  }
  ~CallWorkspace() {
    if (owned_ != nullptr) clReleaseMemObject(owned_);
  }
  CallWorkspace(const CallWorkspace&) = delete;
  CallWorkspace& operator=(const CallWorkspace&) = delete;

  cl_mem get() const { return buffer_; }

 private:
  cl_mem buffer_ = nullptr;
  cl_mem owned_ = nullptr;
};

// Runs `enqueue`, reporting a cl::Error from the C++ bindings like flashcl's own checks.
template <class Enqueue>
void with_cl_errors(Enqueue&& enqueue) {
  try {
    std::forward<Enqueue>(enqueue)();
  } catch (const cl::Error& e) {
    fail(Status::OpenCLError, e.what(), " failed: ", cl_error_name(e.err()), " (", e.err(), ")");
  }
}

}  // namespace flashcl::detail
