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

namespace {

// The row counts a host forward's arrays imply, after the shape and varlen offsets are checked.
struct HostRows {
  bool varlen = false;
  std::size_t rows_q = 0, rows_k = 0;
  int heads_kv = 0;
  std::size_t nq = 0, nk = 0, nlse = 0;
};

HostRows host_rows(const ForwardArgs& shape, const HostVariants& variants) {
  if (shape.batch < 1 || shape.heads < 1 || shape.seqlen_q < 1 || shape.seqlen_k < 1 || shape.head_dim < 1)
    fail(Status::InvalidArgument, "shape: batch, heads, seqlen_q, seqlen_k and head_dim must be >= 1");
  HostRows r;
  r.varlen = !variants.cu_seqlens_q.empty() || !variants.cu_seqlens_k.empty();
  const std::size_t offsets = static_cast<std::size_t>(shape.batch) + 1;
  if (r.varlen && (variants.cu_seqlens_q.size() != offsets || variants.cu_seqlens_k.size() != offsets))
    fail(Status::InvalidArgument, "cu_seqlens_q, cu_seqlens_k: expected batch + 1 = ", offsets, " offsets each, got ",
         variants.cu_seqlens_q.size(), " and ", variants.cu_seqlens_k.size());
  // rows of Q/O and of K/V: B·S dense, the packed totals with varlen (the device checks the offsets)
  r.rows_q = r.varlen ? static_cast<std::size_t>(std::max(variants.cu_seqlens_q.back(), 0))
                      : static_cast<std::size_t>(shape.batch) * shape.seqlen_q;
  r.rows_k = r.varlen ? static_cast<std::size_t>(std::max(variants.cu_seqlens_k.back(), 0))
                      : static_cast<std::size_t>(shape.batch) * shape.seqlen_k;
  r.heads_kv = shape.heads_kv > 0 ? shape.heads_kv : shape.heads;  // GQA/MQA
  r.nq = r.rows_q * shape.heads * shape.head_dim;
  r.nk = r.rows_k * r.heads_kv * shape.head_dim;
  r.nlse = r.rows_q * shape.heads;
  return r;
}

}  // namespace

std::vector<float> Session::forward(const ForwardArgs& shape, const std::vector<float>& q, const std::vector<float>& k,
                                    const std::vector<float>& v, const HostVariants& variants,
                                    std::vector<float>* lse) {
  const HostRows r = host_rows(shape, variants);
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
  const HostRows r = host_rows(shape, variants);
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
  const std::size_t elem = element_size(dtype);
  auto buffer = [&](std::size_t bytes, const void* data) {
    cl_int err = CL_SUCCESS;
    const cl_mem_flags flags = CL_MEM_READ_WRITE | (data != nullptr ? CL_MEM_COPY_HOST_PTR : 0);
    cl_mem mem = clCreateBuffer(context_, flags, bytes, const_cast<void*>(data), &err);
    check_cl(err, "clCreateBuffer");
    return mem;
  };
  // f32 arrays on a host-unified device at the base address alignment: a buffer over their memory.
  const bool host_path = host_unified_ && elem == 4;
  int host_buffers = 0;
  auto over_host = [&](std::size_t n, const float* data, cl_mem_flags access) -> cl_mem {
    if (!host_path || n == 0 || data == nullptr || reinterpret_cast<std::uintptr_t>(data) % host_ptr_align_ != 0)
      return nullptr;
    cl_int err = CL_SUCCESS;
    cl_mem mem = clCreateBuffer(context_, access | CL_MEM_USE_HOST_PTR, n * elem, const_cast<float*>(data), &err);
    check_cl(err, "clCreateBuffer(CL_MEM_USE_HOST_PTR)");
    ++host_buffers;
    return mem;
  };
  // A buffer of n elements of the storage type, filled from host floats when given; at least one
  // element, since OpenCL has no empty buffers (varlen batches may hold no rows at all).
  auto tensor = [&](std::size_t n, const float* host) {
    if (n == 0) return buffer(elem, nullptr);
    if (host == nullptr || elem == 4) return buffer(n * elem, host);
    const std::vector<std::uint16_t> bits = to_storage(dtype, std::vector<float>(host, host + n));
    return buffer(n * elem, bits.data());
  };
  auto input = [&](std::size_t n, const float* host) {
    cl_mem mem = over_host(n, host, CL_MEM_READ_ONLY);
    return mem != nullptr ? mem : tensor(n, host);
  };
  // Host data of a variant, or no buffer (a zero-size buffer is not allowed).
  auto optional = [&](std::size_t bytes, const void* data) { return bytes == 0 ? nullptr : buffer(bytes, data); };
  MemObject dq{input(nq, q.data)}, dk{input(nk, k.data)}, dv{input(nk, v.data)};
  MemObject dout{over_host(nq, o.data, CL_MEM_READ_WRITE)};
  const bool o_host = dout.mem != nullptr;
  if (!o_host) dout.mem = tensor(nq, nullptr);
  MemObject dlse{want_lse ? over_host(nlse, lse.data, CL_MEM_READ_WRITE) : nullptr};
  const bool lse_host = dlse.mem != nullptr;
  if (want_lse && !lse_host) dlse.mem = buffer(std::max<std::size_t>(nlse, 1) * sizeof(float), nullptr);
  last_forward_host_buffers_ = host_buffers;
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
    args.total_q = static_cast<int>(r.rows_q);
    args.check_device_data = true;
  }
  Launch launch = flashcl::forward(queue_, args);
  // A buffer over the caller's memory shows the kernel's writes there once mapped (the OpenCL rule
  // for CL_MEM_USE_HOST_PTR); the others are read back.
  auto sync_host = [&](cl_mem mem, std::size_t bytes, const char* what) {
    cl_int err = CL_SUCCESS;
    void* mapped = clEnqueueMapBuffer(queue_, mem, CL_TRUE, CL_MAP_READ, 0, bytes, 0, nullptr, nullptr, &err);
    check_cl(err, what);
    check_cl(clEnqueueUnmapMemObject(queue_, mem, mapped, 0, nullptr, nullptr), "clEnqueueUnmapMemObject");
  };
  if (o_host) {
    sync_host(dout.mem, nq * elem, "clEnqueueMapBuffer(o)");
  } else if (nq == 0) {  // nothing to read back
  } else if (elem == 2) {
    std::vector<std::uint16_t> bits(nq);
    check_cl(clEnqueueReadBuffer(queue_, dout.mem, CL_TRUE, 0, nq * elem, bits.data(), 0, nullptr, nullptr),
             "clEnqueueReadBuffer(o)");
    const std::vector<float> values = from_storage(dtype, bits);
    std::copy(values.begin(), values.end(), o.data);
  } else {
    check_cl(clEnqueueReadBuffer(queue_, dout.mem, CL_TRUE, 0, nq * elem, o.data, 0, nullptr, nullptr),
             "clEnqueueReadBuffer(o)");
  }
  if (lse_host) {
    sync_host(dlse.mem, nlse * sizeof(float), "clEnqueueMapBuffer(lse)");
  } else if (want_lse && nlse > 0) {
    check_cl(clEnqueueReadBuffer(queue_, dlse.mem, CL_TRUE, 0, nlse * sizeof(float), lse.data, 0, nullptr, nullptr),
             "clEnqueueReadBuffer(lse)");
  }
  // Done before returning: the buffers over the caller's memory are released with nothing pending.
  check_cl(clFinish(queue_), "clFinish");
}

}  // namespace flashcl
