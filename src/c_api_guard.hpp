// c_api_guard.hpp: the C API's single exception-to-status conversion (defined in c_api.cpp next
// to the thread-local last-error message), for the C entry points that live in other files.
#pragma once

#include <type_traits>

#include "flashcl/flashcl.h"

namespace flashcl::detail {

// Runs body(data); a thrown flashcl::Error becomes its status and fcl_last_error() message.
fcl_status c_api_call(void (*body)(void*), void* data);

// The same for a lambda.
template <typename Body>
fcl_status c_api_guarded(Body&& body) {
  using Fn = std::remove_reference_t<Body>;
  return c_api_call([](void* b) { (*static_cast<Fn*>(b))(); }, &body);
}

}  // namespace flashcl::detail
