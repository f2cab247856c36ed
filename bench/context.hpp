// context.hpp: what a run records about itself before the first row: the device and its limits,
// the library version and git commit the bench was built from, the date, the command line and
// the device's roofline ceilings.
#pragma once

#include "options.hpp"
#include "result.hpp"

namespace flashcl::bench {

Context make_context(const Session& session, const Options& options);

}  // namespace flashcl::bench
