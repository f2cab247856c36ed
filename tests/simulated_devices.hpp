// simulated_devices.hpp: DeviceFacts of devices that need not be present, and a plain call to plan
// on them, for the tests of the pure planners (test_planner.cpp, test_mma_plan.cpp, the CPU forms'
// planner tests, ...).
#pragma once

#include <cstddef>
#include <string>

#include "flashcl/flashcl.hpp"
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

// A CPU as PoCL reports one: 1 MiB of local memory, 4096 work-items, `float_width` floats in the
// preferred vector (16 with AVX-512) and `units` cores.
inline DeviceFacts simulated_pocl_cpu(int float_width, int units = 2) {
  DeviceFacts f;
  f.name = "simulated PoCL CPU, float" + std::to_string(float_width);
  f.kind = DeviceKind::CPU;
  f.local_mem_bytes = 1024 * 1024;
  f.max_work_group_size = 4096;
  f.float_vector_width = float_width;
  f.compute_units = units;
  return f;
}

// A call of the given algorithm and storage dtype at d = 64, all else default: what the CPU forms'
// planner tests ask whether a form takes.
inline ForwardArgs simulated_call(Algorithm algorithm, DType dtype = DType::F32) {
  ForwardArgs a;
  a.algorithm = algorithm;
  a.dtype = dtype;
  a.head_dim = 64;
  return a;
}

}  // namespace flashcl::detail
