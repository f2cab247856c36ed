// device_facts.cpp: reads DeviceFacts through clGetDeviceInfo and keeps one copy per device.
#include "plan/device_facts.hpp"

#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "base/errors.hpp"

namespace flashcl::detail {
namespace {

template <typename T>
T info(cl_device_id device, cl_device_info what, const char* name) {
  T value{};
  cl_int err = clGetDeviceInfo(device, what, sizeof(T), &value, nullptr);
  if (err == CL_INVALID_DEVICE) fail(Status::InvalidHandle, "device: not a valid cl_device_id");
  check_cl(err, name);
  return value;
}

std::string info_string(cl_device_id device, cl_device_info what, const char* name) {
  std::size_t size = 0;
  check_cl(clGetDeviceInfo(device, what, 0, nullptr, &size), name);
  std::string text(size, '\0');
  check_cl(clGetDeviceInfo(device, what, size, text.data(), nullptr), name);
  while (!text.empty() && (text.back() == '\0' || text.back() == ' ')) text.pop_back();
  return text;
}

bool contains(const std::string& text, const char* part) { return text.find(part) != std::string::npos; }

}  // namespace

DeviceFacts query_device_facts(cl_device_id device) {
  if (device == nullptr) fail(Status::InvalidHandle, "device: null cl_device_id");
  DeviceFacts f;
  f.name = info_string(device, CL_DEVICE_NAME, "clGetDeviceInfo(CL_DEVICE_NAME)");
  f.vendor = info_string(device, CL_DEVICE_VENDOR, "clGetDeviceInfo(CL_DEVICE_VENDOR)");
  f.driver = info_string(device, CL_DRIVER_VERSION, "clGetDeviceInfo(CL_DRIVER_VERSION)");
  const auto platform = info<cl_platform_id>(device, CL_DEVICE_PLATFORM, "clGetDeviceInfo(CL_DEVICE_PLATFORM)");
  std::size_t size = 0;
  if (clGetPlatformInfo(platform, CL_PLATFORM_NAME, 0, nullptr, &size) == CL_SUCCESS && size > 0) {
    std::vector<char> name(size);
    clGetPlatformInfo(platform, CL_PLATFORM_NAME, size, name.data(), nullptr);
    f.platform = name.data();
  }
  const auto type = info<cl_device_type>(device, CL_DEVICE_TYPE, "clGetDeviceInfo(CL_DEVICE_TYPE)");
  f.kind = (type & CL_DEVICE_TYPE_GPU) ? DeviceKind::GPU : (type & CL_DEVICE_TYPE_CPU) ? DeviceKind::CPU : DeviceKind::Other;
  f.local_mem_bytes = info<cl_ulong>(device, CL_DEVICE_LOCAL_MEM_SIZE, "clGetDeviceInfo(CL_DEVICE_LOCAL_MEM_SIZE)");
  f.max_work_group_size = info<std::size_t>(device, CL_DEVICE_MAX_WORK_GROUP_SIZE, "clGetDeviceInfo(MAX_WORK_GROUP_SIZE)");
  f.global_mem_bytes = info<cl_ulong>(device, CL_DEVICE_GLOBAL_MEM_SIZE, "clGetDeviceInfo(GLOBAL_MEM_SIZE)");
  f.max_alloc_bytes = info<cl_ulong>(device, CL_DEVICE_MAX_MEM_ALLOC_SIZE, "clGetDeviceInfo(MAX_MEM_ALLOC_SIZE)");
  f.compute_units = static_cast<int>(info<cl_uint>(device, CL_DEVICE_MAX_COMPUTE_UNITS, "clGetDeviceInfo(MAX_COMPUTE_UNITS)"));
  f.float_vector_width = static_cast<int>(
      info<cl_uint>(device, CL_DEVICE_PREFERRED_VECTOR_WIDTH_FLOAT, "clGetDeviceInfo(PREFERRED_VECTOR_WIDTH_FLOAT)"));
  f.cache_bytes = info<cl_ulong>(device, CL_DEVICE_GLOBAL_MEM_CACHE_SIZE, "clGetDeviceInfo(GLOBAL_MEM_CACHE_SIZE)");
  // OpenCL 1.2 reports the preferred multiple only per kernel; the vendor tells it well enough.
  if (f.kind == DeviceKind::CPU) f.work_group_multiple = 8;
  else if (f.is_nvidia()) f.work_group_multiple = 32;
  else if (contains(f.vendor, "AMD") || contains(f.vendor, "Advanced Micro")) f.work_group_multiple = 64;
  else f.work_group_multiple = 16;
  // CL_DEVICE_COMPUTE_CAPABILITY_MAJOR_NV / _MINOR_NV; other vendors reject the query
  cl_uint major = 0, minor = 0;
  if (f.is_nvidia() && clGetDeviceInfo(device, 0x4000, sizeof major, &major, nullptr) == CL_SUCCESS) {
    f.nv_compute_major = static_cast<int>(major);
    if (clGetDeviceInfo(device, 0x4001, sizeof minor, &minor, nullptr) == CL_SUCCESS)
      f.nv_compute_minor = static_cast<int>(minor);
    else
      f.nv_compute_minor = -1;  // unknown: no arch-specific (sm_NNa) path
  }
  return f;
}

const DeviceFacts& device_facts(cl_device_id device) {
  static std::mutex mutex;
  static std::map<cl_device_id, std::unique_ptr<DeviceFacts>> cache;
  {
    std::lock_guard<std::mutex> lock(mutex);
    auto it = cache.find(device);
    if (it != cache.end()) return *it->second;
  }
  auto facts = std::make_unique<DeviceFacts>(query_device_facts(device));
  std::lock_guard<std::mutex> lock(mutex);
  auto [it, inserted] = cache.emplace(device, std::move(facts));
  return *it->second;
}

}  // namespace flashcl::detail
