// c_api_convert.hpp: the C API's conversion of fcl_forward_args to flashcl::ForwardArgs (defined
// in c_api.cpp with the forward's entry points), for C entry points in other files that embed a
// forward call description (fcl_backward_args).
#pragma once

#include <cstddef>

#include "flashcl/flashcl.h"
#include "flashcl/flashcl.hpp"

namespace flashcl::detail {

// The first fcl_forward_args layout with struct_size (flashcl 0.1) ended where total_q begins;
// fcl_backward_args of 0.1 embeds that smaller struct.
constexpr std::size_t kForwardArgsFirstSize = offsetof(fcl_forward_args, total_q);
static_assert(kForwardArgsFirstSize % alignof(fcl_forward_args) == 0, "0.1's layout ends on a pointer");

// Converts and range-checks the enum fields; throws Error naming a bad field. Null: InvalidArgument.
ForwardArgs c_forward_args(const fcl_forward_args* args);

}  // namespace flashcl::detail
