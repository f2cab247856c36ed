// errors.cpp: OpenCL status names and the check that turns a failed call into flashcl::Error.
#include "base/errors.hpp"

#include "base/fault_injection.hpp"

namespace flashcl::detail {

const char* cl_error_name(cl_int code) {
  switch (code) {
#define FLASHCL_CL_CODE(name) \
  case name:                  \
    return #name;
    FLASHCL_CL_CODE(CL_SUCCESS)
    FLASHCL_CL_CODE(CL_DEVICE_NOT_FOUND)
    FLASHCL_CL_CODE(CL_DEVICE_NOT_AVAILABLE)
    FLASHCL_CL_CODE(CL_COMPILER_NOT_AVAILABLE)
    FLASHCL_CL_CODE(CL_MEM_OBJECT_ALLOCATION_FAILURE)
    FLASHCL_CL_CODE(CL_OUT_OF_RESOURCES)
    FLASHCL_CL_CODE(CL_OUT_OF_HOST_MEMORY)
    FLASHCL_CL_CODE(CL_PROFILING_INFO_NOT_AVAILABLE)
    FLASHCL_CL_CODE(CL_BUILD_PROGRAM_FAILURE)
    FLASHCL_CL_CODE(CL_INVALID_VALUE)
    FLASHCL_CL_CODE(CL_INVALID_DEVICE)
    FLASHCL_CL_CODE(CL_INVALID_CONTEXT)
    FLASHCL_CL_CODE(CL_INVALID_COMMAND_QUEUE)
    FLASHCL_CL_CODE(CL_INVALID_MEM_OBJECT)
    FLASHCL_CL_CODE(CL_INVALID_BINARY)
    FLASHCL_CL_CODE(CL_INVALID_BUILD_OPTIONS)
    FLASHCL_CL_CODE(CL_INVALID_PROGRAM)
    FLASHCL_CL_CODE(CL_INVALID_PROGRAM_EXECUTABLE)
    FLASHCL_CL_CODE(CL_INVALID_KERNEL_NAME)
    FLASHCL_CL_CODE(CL_INVALID_KERNEL)
    FLASHCL_CL_CODE(CL_INVALID_ARG_INDEX)
    FLASHCL_CL_CODE(CL_INVALID_ARG_VALUE)
    FLASHCL_CL_CODE(CL_INVALID_ARG_SIZE)
    FLASHCL_CL_CODE(CL_INVALID_KERNEL_ARGS)
    FLASHCL_CL_CODE(CL_INVALID_WORK_DIMENSION)
    FLASHCL_CL_CODE(CL_INVALID_WORK_GROUP_SIZE)
    FLASHCL_CL_CODE(CL_INVALID_WORK_ITEM_SIZE)
    FLASHCL_CL_CODE(CL_INVALID_GLOBAL_OFFSET)
    FLASHCL_CL_CODE(CL_INVALID_EVENT_WAIT_LIST)
    FLASHCL_CL_CODE(CL_INVALID_EVENT)
    FLASHCL_CL_CODE(CL_INVALID_OPERATION)
    FLASHCL_CL_CODE(CL_INVALID_BUFFER_SIZE)
    FLASHCL_CL_CODE(CL_INVALID_GLOBAL_WORK_SIZE)
    FLASHCL_CL_CODE(CL_INVALID_PLATFORM)
#undef FLASHCL_CL_CODE
    default:
      return "unknown OpenCL error";
  }
}

void check_cl(cl_int code, const char* call) {
  if (code == CL_SUCCESS) code = injected_fault(call);
  check_cl_result(code, call);
}

void check_cl_result(cl_int code, const char* call) {
  if (code == CL_SUCCESS) return;
  const bool memory = code == CL_MEM_OBJECT_ALLOCATION_FAILURE || code == CL_OUT_OF_RESOURCES ||
                      code == CL_OUT_OF_HOST_MEMORY || code == CL_INVALID_BUFFER_SIZE;
  fail(memory ? Status::OutOfResources : Status::OpenCLError, call, " failed: ", cl_error_name(code), " (",
       code, ")");
}

}  // namespace flashcl::detail
