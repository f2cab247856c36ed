// session.cpp: the convenience layer: lists devices, picks one by index or name substring
// (FLASHCL_PLATFORM / FLASHCL_DEVICE), owns a context and a profiling queue, and runs attention on
// host arrays, the variants' data included.
#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <memory>

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

struct MemObject {
  cl_mem mem = nullptr;
  ~MemObject() {
    if (mem != nullptr) clReleaseMemObject(mem);
  }
};

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
  if (shape.batch < 1 || shape.heads < 1 || shape.seqlen_q < 1 || shape.seqlen_k < 1 || shape.head_dim < 1)
    fail(Status::InvalidArgument, "shape: batch, heads, seqlen_q, seqlen_k and head_dim must be >= 1");
  const bool varlen = !variants.cu_seqlens_q.empty() || !variants.cu_seqlens_k.empty();
  const std::size_t offsets = static_cast<std::size_t>(shape.batch) + 1;
  if (varlen && (variants.cu_seqlens_q.size() != offsets || variants.cu_seqlens_k.size() != offsets))
    fail(Status::InvalidArgument, "cu_seqlens_q, cu_seqlens_k: expected batch + 1 = ", offsets, " offsets each, got ",
         variants.cu_seqlens_q.size(), " and ", variants.cu_seqlens_k.size());
  // rows of Q/O and of K/V: B·S dense, the packed totals with varlen (the device checks the offsets)
  const std::size_t rows_q = varlen ? static_cast<std::size_t>(std::max(variants.cu_seqlens_q.back(), 0))
                                    : static_cast<std::size_t>(shape.batch) * shape.seqlen_q;
  const std::size_t rows_k = varlen ? static_cast<std::size_t>(std::max(variants.cu_seqlens_k.back(), 0))
                                    : static_cast<std::size_t>(shape.batch) * shape.seqlen_k;
  const int heads_kv = shape.heads_kv > 0 ? shape.heads_kv : shape.heads;  // GQA/MQA
  const std::size_t nq = rows_q * shape.heads * shape.head_dim, nk = rows_k * heads_kv * shape.head_dim;
  const char* layout = varlen ? " floats (packed rows,H,d)" : " floats (dense B,S,H,d)";
  if (q.size() != nq) fail(Status::InvalidArgument, "q: expected ", nq, layout, ", got ", q.size());
  if (k.size() != nk) fail(Status::InvalidArgument, "k: expected ", nk, layout, ", got ", k.size());
  if (v.size() != nk) fail(Status::InvalidArgument, "v: expected ", nk, layout, ", got ", v.size());
  const std::size_t nlse = rows_q * shape.heads;
  const bool bool_mask = shape.mask.kind == MaskKind::Bool, bias_mask = shape.mask.kind == MaskKind::Bias;
  if (bool_mask != !variants.mask.empty() || bias_mask != !variants.bias.empty())
    fail(Status::InvalidArgument, "mask: shape.mask.kind and the host array must agree (Bool: variants.mask, ",
         "Bias: variants.bias, None: neither)");

  const DType dtype = shape.dtype;
  if (is_fp8(dtype))
    fail(Status::UnsupportedDType, "dtype: Session::forward takes host arrays as f32, f16 or bf16; fp8 (",
         to_string(dtype), ") runs on device buffers: quantize_fp8, then forward (docs/FP8.md)");
  const std::size_t elem = element_size(dtype);
  auto buffer = [&](std::size_t bytes, const void* data) {
    cl_int err = CL_SUCCESS;
    const cl_mem_flags flags = CL_MEM_READ_WRITE | (data != nullptr ? CL_MEM_COPY_HOST_PTR : 0);
    cl_mem mem = clCreateBuffer(context_, flags, bytes, const_cast<void*>(data), &err);
    check_cl(err, "clCreateBuffer");
    return mem;
  };
  // A buffer of n elements of the storage type, filled from host floats when given; at least one
  // element, since OpenCL has no empty buffers (varlen batches may hold no rows at all).
  auto tensor = [&](std::size_t n, const std::vector<float>* host) {
    if (n == 0) return buffer(elem, nullptr);
    if (host == nullptr || elem == 4) return buffer(n * elem, host != nullptr ? host->data() : nullptr);
    const std::vector<std::uint16_t> bits = to_storage(dtype, *host);
    return buffer(n * elem, bits.data());
  };
  // Host data of a variant, or no buffer (a zero-size buffer is not allowed).
  auto optional = [&](std::size_t bytes, const void* data) { return bytes == 0 ? nullptr : buffer(bytes, data); };
  MemObject dq{tensor(nq, &q)}, dk{tensor(nk, &k)}, dv{tensor(nk, &v)}, dout{tensor(nq, nullptr)};
  MemObject dlse{lse != nullptr ? buffer(std::max<std::size_t>(nlse, 1) * sizeof(float), nullptr) : nullptr};
  MemObject dalibi{optional(variants.alibi_slopes.size() * sizeof(float), variants.alibi_slopes.data())};
  MemObject dmask{bool_mask ? optional(variants.mask.size(), variants.mask.data())
                            : optional(variants.bias.size() * sizeof(float), variants.bias.data())};
  MemObject dcu_q{optional(variants.cu_seqlens_q.size() * sizeof(int), variants.cu_seqlens_q.data())};
  MemObject dcu_k{optional(variants.cu_seqlens_k.size() * sizeof(int), variants.cu_seqlens_k.data())};

  ForwardArgs args = shape;
  auto view = [&](cl_mem mem, int heads) {  // packed rows with varlen (batch stride ignored), else dense
    return varlen ? Tensor{mem, 0, 0, std::int64_t{heads} * shape.head_dim, shape.head_dim} : Tensor{mem};
  };
  args.q = view(dq.mem, shape.heads);
  args.k = view(dk.mem, heads_kv);
  args.v = view(dv.mem, heads_kv);
  args.o = view(dout.mem, shape.heads);
  args.lse = dlse.mem;
  args.workspace = nullptr;
  args.alibi_slopes = dalibi.mem;
  args.mask.buffer = dmask.mem;
  args.cu_seqlens_q = dcu_q.mem;
  args.cu_seqlens_k = dcu_k.mem;
  if (varlen) {  // this call blocks anyway: offsets that do not fit are errors, not clamped rows
    args.total_q = static_cast<int>(rows_q);
    args.check_device_data = true;
  }
  Launch launch = flashcl::forward(queue_, args);
  std::vector<float> out(nq);
  if (nq == 0) {  // nothing to read back
    check_cl(clFinish(queue_), "clFinish");
  } else if (elem == 2) {
    std::vector<std::uint16_t> bits(nq);
    check_cl(clEnqueueReadBuffer(queue_, dout.mem, CL_TRUE, 0, nq * elem, bits.data(), 0, nullptr, nullptr),
             "clEnqueueReadBuffer(o)");
    out = from_storage(dtype, bits);
  } else {
    check_cl(clEnqueueReadBuffer(queue_, dout.mem, CL_TRUE, 0, nq * elem, out.data(), 0, nullptr, nullptr),
             "clEnqueueReadBuffer(o)");
  }
  if (lse != nullptr) {
    lse->resize(nlse);
    if (nlse > 0)
      check_cl(clEnqueueReadBuffer(queue_, dlse.mem, CL_TRUE, 0, nlse * sizeof(float), lse->data(), 0, nullptr, nullptr),
             "clEnqueueReadBuffer(lse)");
  }
  return out;
}

}  // namespace flashcl
