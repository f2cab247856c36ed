// plan_cpu_support.hpp: the refusals every CPU-shaped planner owes its caller (test_plan_fa2_cpu.cpp,
// test_plan_standard_cpu.cpp), checked once here for a planner given as a callable
// plan(DeviceFacts, head_dim): a head dim outside 1-256 is an Error, and a device whose local memory
// holds not even the smallest tiles at d = 256 gets OutOfResources naming head_dim, not a kernel that
// cannot build.
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "flashcl/flashcl.hpp"
#include "simulated_devices.hpp"

namespace flashcl::detail {

template <class Plan>
void expect_head_dim_out_of_range_rejected(Plan plan) {
  EXPECT_THROW(plan(simulated_pocl_cpu(16), 0), Error);
  EXPECT_THROW(plan(simulated_pocl_cpu(16), 257), Error);
}

template <class Plan>
void expect_nothing_fits_named(Plan plan) {
  DeviceFacts tiny = simulated_pocl_cpu(16);
  tiny.local_mem_bytes = 1024;
  try {
    plan(tiny, 256);
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), Status::OutOfResources);
    EXPECT_NE(std::string(e.what()).find("head_dim"), std::string::npos) << e.what();
  }
}

}  // namespace flashcl::detail
