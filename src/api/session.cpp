// session.cpp: the convenience layer: lists devices, picks one by index or name substring
// (FLASHCL_PLATFORM / FLASHCL_DEVICE), owns a context and a profiling queue, and runs attention on
// host arrays, the variants' data included (their buffers: host_buffers.hpp).
#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <memory>

#include "api/host_buffers.hpp"
#include "plan/device_facts.hpp"
#include "base/errors.hpp"
#include "base/fault_injection.hpp"
#include "plan/overrides.hpp"
#include "program/program_cache.hpp"

namespace flashcl {
namespace {

using detail::check_cl;
using detail::fail;

std::vector<cl_platform_id> platforms() {
  cl_uint n = 0;
  if (clGetPlatformIDs(0, nullptr, &n) != CL_SUCCESS || n == 0) return {};
  std::vector<cl_platform_id> ids(n);
  check_cl(clGetPlatformIDs(n, ids.data(), nullptr), "clGetPlatformIDs");
  return ids;
}

std::vector<cl_device_id> devices_of(cl_platform_id platform) {
  cl_uint n = 0;
  if (clGetDeviceIDs(platform, CL_DEVICE_TYPE_ALL, 0, nullptr, &n) != CL_SUCCESS || n == 0) return {};
  std::vector<cl_device_id> ids(n);
  check_cl(clGetDeviceIDs(platform, CL_DEVICE_TYPE_ALL, n, ids.data(), nullptr), "clGetDeviceIDs");
  return ids;
}

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// A selector is an index ("1") or a case-insensitive name substring ("nvidia").
bool matches(const std::string& selector, int index, const std::string& name) {
  if (selector.empty()) return true;
  const bool numeric = selector.find_first_not_of("0123456789") == std::string::npos;
  if (numeric) return std::atoi(selector.c_str()) == index;
  return lower(name).find(lower(selector)) != std::string::npos;
}

// The caller's choice, else FLASHCL_PLATFORM / FLASHCL_DEVICE's (overrides.hpp).
std::string env_or(const std::string& value, const std::string& from_environment) {
  if (!value.empty()) return value;
  return from_environment;
}

struct Found {
  cl_device_id device = nullptr;
  DeviceInfo info;
};

DeviceInfo describe(cl_device_id device, int platform_index, int device_index) {
  const detail::DeviceFacts f = detail::query_device_facts(device);
  DeviceInfo d;
  d.platform_index = platform_index;
  d.device_index = device_index;
  d.platform = f.platform;
  d.name = f.name;
  d.vendor = f.vendor;
  d.driver = f.driver;
  char version[256] = {0};
  clGetDeviceInfo(device, CL_DEVICE_VERSION, sizeof version - 1, version, nullptr);
  d.version = version;
  d.is_gpu = f.kind == detail::DeviceKind::GPU;
  d.is_cpu = f.kind == detail::DeviceKind::CPU;
  d.compute_units = f.compute_units;
  d.local_mem_bytes = f.local_mem_bytes;
  d.global_mem_bytes = f.global_mem_bytes;
  return d;
}

Found select_device(const std::string& platform_sel, const std::string& device_sel) {
  const auto plats = platforms();
  if (plats.empty()) fail(Status::DeviceNotFound, "platform: no OpenCL platform is installed (is an ICD registered?)");
  std::vector<Found> candidates;
  for (int pi = 0; pi < static_cast<int>(plats.size()); ++pi) {
    const auto devs = devices_of(plats[pi]);
    for (int di = 0; di < static_cast<int>(devs.size()); ++di) {
      DeviceInfo info = describe(devs[di], pi, di);
      if (matches(platform_sel, pi, info.platform) && matches(device_sel, di, info.name))
        candidates.push_back({devs[di], info});
    }
  }
  if (candidates.empty())
    fail(Status::DeviceNotFound, "device: nothing matches platform '", platform_sel, "' and device '", device_sel, "'");
  if (platform_sel.empty() && device_sel.empty())
    for (const auto& c : candidates)
      if (c.info.is_gpu) return c;  // default: the first GPU, else the first device
  return candidates.front();
}

}  // namespace

std::vector<DeviceInfo> list_devices() {
  std::vector<DeviceInfo> out;
  const auto plats = platforms();
  for (int pi = 0; pi < static_cast<int>(plats.size()); ++pi) {
    const auto devs = devices_of(plats[pi]);
    for (int di = 0; di < static_cast<int>(devs.size()); ++di) out.push_back(describe(devs[di], pi, di));
  }
  return out;
}

Session::Session(const std::string& platform, const std::string& device) {
  const Found found = select_device(env_or(platform, detail::process_overrides().platform),
                                     env_or(device, detail::process_overrides().device));
  device_ = found.device;
  info_ = found.info;
  cl_int err = CL_SUCCESS;
  context_ = clCreateContext(nullptr, 1, &device_, nullptr, nullptr, &err);
  detail::check_cl_result(err, "clCreateContext");
  queue_ = clCreateCommandQueue(context_, device_, CL_QUEUE_PROFILING_ENABLE, &err);
  if (err != CL_SUCCESS) {
    clReleaseContext(context_);
    detail::check_cl_result(err, "clCreateCommandQueue");
  }
  // Buffers over host memory need no copy where the device shares it (CPUs) and the pointer meets
  // the base address alignment; elsewhere an implementation would copy anyway.
  cl_bool unified = CL_FALSE;
  cl_uint align_bits = 0;
  if (clGetDeviceInfo(device_, CL_DEVICE_HOST_UNIFIED_MEMORY, sizeof unified, &unified, nullptr) == CL_SUCCESS &&
      clGetDeviceInfo(device_, CL_DEVICE_MEM_BASE_ADDR_ALIGN, sizeof align_bits, &align_bits, nullptr) == CL_SUCCESS) {
    host_unified_ = unified == CL_TRUE;
    host_ptr_align_ = std::max<std::size_t>(align_bits / 8, 1);
  }
}

Session::~Session() {
  if (queue_ != nullptr) clReleaseCommandQueue(queue_);
  if (context_ != nullptr) clReleaseContext(context_);
  detail::drop_released_contexts();  // the cache's programs would keep the context alive
}

std::vector<float> Session::forward(const ForwardArgs& shape, const std::vector<float>& q, const std::vector<float>& k,
                                    const std::vector<float>& v, std::vector<float>* lse) {
  return forward(shape, q, k, v, HostVariants{}, lse);
}

std::vector<float> Session::forward(const ForwardArgs& shape, const std::vector<float>& q, const std::vector<float>& k,
                                    const std::vector<float>& v, const HostVariants& variants,
                                    std::vector<float>* lse) {
  const detail::HostRows r = detail::host_rows(shape, variants);
  std::vector<float> out(r.nq);
  HostView<float> lse_view;
  if (lse != nullptr) {
    lse->resize(r.nlse);
    static float no_rows;  // LSE asked for with no rows: a pointer that says so, never written
    lse_view = {lse->empty() ? &no_rows : lse->data(), lse->size()};
  }
  forward(shape, HostView<const float>{q.data(), q.size()}, HostView<const float>{k.data(), k.size()},
          HostView<const float>{v.data(), v.size()}, HostView<float>{out.data(), out.size()}, variants, lse_view);
  return out;
}

void Session::forward(const ForwardArgs& shape, HostView<const float> q, HostView<const float> k,
                      HostView<const float> v, HostView<float> o, const HostVariants& variants, HostView<float> lse) {
  const detail::HostRows r = detail::host_rows(shape, variants);
  const bool varlen = r.varlen;
  const int heads_kv = r.heads_kv;
  const std::size_t nq = r.nq, nk = r.nk, nlse = r.nlse;
  const bool want_lse = lse.data != nullptr;
  const char* layout = varlen ? " floats (packed rows,H,d)" : " floats (dense B,S,H,d)";
  if (q.size != nq) fail(Status::InvalidArgument, "q: expected ", nq, layout, ", got ", q.size);
  if (k.size != nk) fail(Status::InvalidArgument, "k: expected ", nk, layout, ", got ", k.size);
  if (v.size != nk) fail(Status::InvalidArgument, "v: expected ", nk, layout, ", got ", v.size);
  if (o.size != nq) fail(Status::InvalidArgument, "o: expected ", nq, layout, ", got ", o.size);
  if (want_lse && lse.size != nlse)
    fail(Status::InvalidArgument, "lse: expected ", nlse, " floats (H rows of Q), got ", lse.size);
  const bool bool_mask = shape.mask.kind == MaskKind::Bool, bias_mask = shape.mask.kind == MaskKind::Bias;
  if (bool_mask != !variants.mask.empty() || bias_mask != !variants.bias.empty())
    fail(Status::InvalidArgument, "mask: shape.mask.kind and the host array must agree (Bool: variants.mask, ",
         "Bias: variants.bias, None: neither)");

  const DType dtype = shape.dtype;
  if (is_fp8(dtype))
    fail(Status::UnsupportedDType, "dtype: Session::forward takes host arrays as f32, f16 or bf16; fp8 (",
         to_string(dtype), ") runs on device buffers: quantize_fp8, then forward (docs/FP8.md)");
  // Q, K, V, O and LSE over the caller's memory where they can be (host_buffers.hpp), else copies.
  detail::HostBuffers buffers(context_, queue_, host_unified_, host_ptr_align_);
  const detail::HostInput dq = buffers.input("q", q.data, nq, dtype), dk = buffers.input("k", k.data, nk, dtype),
                          dv = buffers.input("v", v.data, nk, dtype);
  const cl_mem dout = buffers.output("o", o.data, nq, dtype);
  const cl_mem dlse = want_lse ? buffers.output("lse", lse.data, nlse, DType::F32) : nullptr;
  last_forward_host_buffers_ = buffers.over_host();
  const cl_mem dalibi = buffers.optional(variants.alibi_slopes.size() * sizeof(float), variants.alibi_slopes.data());
  const cl_mem dmask = bool_mask ? buffers.optional(variants.mask.size(), variants.mask.data())
                                 : buffers.optional(variants.bias.size() * sizeof(float), variants.bias.data());
  const cl_mem dcu_q = buffers.optional(variants.cu_seqlens_q.size() * sizeof(int), variants.cu_seqlens_q.data());
  const cl_mem dcu_k = buffers.optional(variants.cu_seqlens_k.size() * sizeof(int), variants.cu_seqlens_k.data());

  ForwardArgs args = shape;
  args.q = r.view(dq.mem, shape.heads, dq.offset);
  args.k = r.view(dk.mem, heads_kv, dk.offset);
  args.v = r.view(dv.mem, heads_kv, dv.offset);
  args.o = r.view(dout, shape.heads);
  args.lse = dlse;
  args.workspace = nullptr;
  args.alibi_slopes = dalibi;
  args.mask.buffer = dmask;
  args.cu_seqlens_q = dcu_q;
  args.cu_seqlens_k = dcu_k;
  if (varlen) {  // this call blocks anyway: offsets that do not fit are errors, not clamped rows
    args.total_q = static_cast<int>(r.rows_q);
    args.check_device_data = true;
  }
  flashcl::forward(queue_, args);
  buffers.finish();  // O and LSE in the caller's memory, nothing pending on its buffers
}

}  // namespace flashcl
