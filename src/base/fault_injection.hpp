// fault_injection.hpp: a test-only hook that makes the Nth call of a named OpenCL entry point fail,
// so the tests can prove that a failure anywhere in a forward call gives a clear error, leaks
// nothing and leaves the library usable. Disarmed (one relaxed atomic load per call) unless
// FLASHCL_FAULT_INJECT is set or a test arms it through flashcl::testing. Never fatal: a malformed
// FLASHCL_FAULT_INJECT is reported on stderr and ignored (inject_faults() throws instead).
//
//   FLASHCL_FAULT_INJECT="clEnqueueNDRangeKernel:2"            2nd enqueue fails (CL_OUT_OF_RESOURCES)
//   FLASHCL_FAULT_INJECT="clBuildProgram:1:-11,clCreateBuffer:1"  several rules; optional code
//
// Counting starts when a rule is armed; each rule fires once. Names are the OpenCL function names
// the library reports in its messages (clCreateBuffer, clCreateKernel, clSetKernelArg,
// clEnqueueNDRangeKernel, clBuildProgram, clCreateProgramWithSource, clCreateProgramWithBinary,
// clWaitForEvents).
#pragma once

#include <CL/cl.h>

#include <string>

#include "flashcl/flashcl.hpp"

namespace flashcl::detail {

// The code to fake for this call of `call`, or CL_SUCCESS to make the real call. Call sites that
// create an object (buffer, kernel, program, event) ask before the call, so a faked failure never
// leaves a half-made object behind; check_cl() asks after calls that create nothing.
cl_int injected_fault(const char* call) noexcept;

}  // namespace flashcl::detail

namespace flashcl::testing {

// Makes the `nth` (1-based) call of `call` from now on fail with `code`. Rules add up.
FLASHCL_API void inject_fault(const std::string& call, int nth, cl_int code = CL_OUT_OF_RESOURCES);

// Parses FLASHCL_FAULT_INJECT syntax ("name:N[:code],..."); throws Error(InvalidArgument) on bad text.
FLASHCL_API void inject_faults(const std::string& spec);

// Disarms every rule and resets the call counters.
FLASHCL_API void clear_faults();

// How many rules have fired since the last clear_faults().
FLASHCL_API int faults_fired();

}  // namespace flashcl::testing
