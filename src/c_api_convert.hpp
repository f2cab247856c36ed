// c_api_convert.hpp: the C API's conversion of fcl_forward_args to flashcl::ForwardArgs (defined
// in c_api.cpp with the forward's entry points), for C entry points in other files that embed a
// forward call description (fcl_backward_args).
#pragma once

#include "flashcl/flashcl.h"
#include "flashcl/flashcl.hpp"

namespace flashcl::detail {

// Converts and range-checks the enum fields; throws Error naming a bad field. Null: InvalidArgument.
ForwardArgs c_forward_args(const fcl_forward_args* args);

}  // namespace flashcl::detail
