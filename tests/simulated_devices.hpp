// simulated_devices.hpp: DeviceFacts of devices that need not be present, for the tests of the
// pure planners (test_planner.cpp, test_mma_plan.cpp).
#pragma once

#include <cstddef>

#include "plan/device_facts.hpp"

namespace flashcl::detail {

// An NVIDIA GPU with `local_kib` KiB of local memory and, when given, a compute capability.
inline DeviceFacts simulated_nvidia_gpu(std::size_t local_kib, int cc_major = 0, int cc_minor = 0) {
  DeviceFacts f;
  f.name = "simulated GPU";
  f.vendor = "NVIDIA Corporation";
  f.kind = DeviceKind::GPU;
  f.local_mem_bytes = local_kib * 1024;
  f.max_work_group_size = 1024;
  f.work_group_multiple = 32;
  f.nv_compute_major = cc_major;
  f.nv_compute_minor = cc_minor;
  return f;
}

}  // namespace flashcl::detail
