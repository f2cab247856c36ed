// device_facts.hpp: what flashcl needs to know about a device (sizes, vendor, driver), read once
// per device and cached. Plain data, so the tile planner stays a pure function and tests can
// simulate devices that are not present.
#pragma once

#include <CL/cl.h>

#include <cstddef>
#include <string>

namespace flashcl::detail {

enum class DeviceKind { GPU, CPU, Other };

struct DeviceFacts {
  std::string name, vendor, driver, platform;
  DeviceKind kind = DeviceKind::Other;
  std::size_t local_mem_bytes = 0;
  std::size_t max_work_group_size = 0;
  std::size_t work_group_multiple = 1;  // SIMD width / warp size the device runs best in
  std::size_t global_mem_bytes = 0;
  std::size_t max_alloc_bytes = 0;
  int compute_units = 0;
  int float_vector_width = 1;      // CL_DEVICE_PREFERRED_VECTOR_WIDTH_FLOAT (16 on AVX-512 under PoCL)
  std::size_t cache_bytes = 0;     // CL_DEVICE_GLOBAL_MEM_CACHE_SIZE (a CPU's last-level cache)
  int nv_compute_major = 0;  // NVIDIA's compute capability (cl_nv_device_attribute_query), else 0
  int nv_compute_minor = 0;
  bool is_nvidia() const { return vendor.find("NVIDIA") != std::string::npos; }
};

// Reads (and caches per device handle) the facts of `device`.
const DeviceFacts& device_facts(cl_device_id device);

// Uncached query, for listing devices.
DeviceFacts query_device_facts(cl_device_id device);

}  // namespace flashcl::detail
