// c_api_guard.hpp: the C API's single exception-to-status conversion (defined in c_api.cpp next
// to the thread-local last-error message), for the C entry points that live in other files.
#pragma once

#include <type_traits>
#include <vector>

#include "flashcl/flashcl.h"
#include "flashcl/flashcl.hpp"

namespace flashcl::detail {

// Runs body(data); a thrown flashcl::Error becomes its status and fcl_last_error() message.
fcl_status c_api_call(void (*body)(void*), void* data);

// The same for a lambda.
template <typename Body>
fcl_status c_api_guarded(Body&& body) {
  using Fn = std::remove_reference_t<Body>;
  return c_api_call([](void* b) { (*static_cast<Fn*>(b))(); }, &body);
}

// The shape of every enqueuing C entry point: the wait list checked and copied, `enqueue(wait)`
// returning the Launch, and its last event handed out (retained) when asked. *event is written
// last, after the wait list was read: a caller may pass one cl_event as both
// (fcl_forward(q, &a, 1, &ev, &ev): wait for the previous call, get this one's event).
template <typename Enqueue>
fcl_status c_api_enqueue(cl_uint num_wait, const cl_event* wait_list, cl_event* event, Enqueue&& enqueue) {
  cl_event result = nullptr;
  const fcl_status status = c_api_guarded([&] {
    if ((num_wait > 0) != (wait_list != nullptr))
      throw Error(Status::InvalidArgument, "wait_list: num_wait and wait_list disagree");
    const std::vector<cl_event> wait(wait_list, wait_list + num_wait);
    const Launch launch = enqueue(wait);
    if (event != nullptr && launch.last() != nullptr) {
      clRetainEvent(launch.last());
      result = launch.last();
    }
  });
  if (event != nullptr) *event = result;
  return status;
}

}  // namespace flashcl::detail
