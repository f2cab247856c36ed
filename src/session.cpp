// session.cpp: the convenience layer: lists devices, picks one by index or name substring
// (FLASHCL_PLATFORM / FLASHCL_DEVICE), owns a context and a profiling queue, and runs attention on
// host arrays.
#include <cctype>
#include <cstdlib>
#include <memory>

#include "device_facts.hpp"
#include "errors.hpp"
#include "fault_injection.hpp"

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

std::string env_or(const std::string& value, const char* variable) {
  if (!value.empty()) return value;
  const char* env = std::getenv(variable);
  return env != nullptr ? env : "";
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
  const Found found = select_device(env_or(platform, "FLASHCL_PLATFORM"), env_or(device, "FLASHCL_DEVICE"));
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
}

std::vector<float> Session::forward(const ForwardArgs& shape, const std::vector<float>& q, const std::vector<float>& k,
                                    const std::vector<float>& v, std::vector<float>* lse) {
  if (shape.batch < 1 || shape.heads < 1 || shape.seqlen_q < 1 || shape.seqlen_k < 1 || shape.head_dim < 1)
    fail(Status::InvalidArgument, "shape: batch, heads, seqlen_q, seqlen_k and head_dim must be >= 1");
  const std::size_t nq = static_cast<std::size_t>(shape.batch) * shape.seqlen_q * shape.heads * shape.head_dim;
  const int heads_kv = shape.heads_kv > 0 ? shape.heads_kv : shape.heads;  // GQA/MQA
  const std::size_t nk = static_cast<std::size_t>(shape.batch) * shape.seqlen_k * heads_kv * shape.head_dim;
  if (q.size() != nq) fail(Status::InvalidArgument, "q: expected ", nq, " floats (dense B,S,H,d), got ", q.size());
  if (k.size() != nk) fail(Status::InvalidArgument, "k: expected ", nk, " floats (dense B,S,H,d), got ", k.size());
  if (v.size() != nk) fail(Status::InvalidArgument, "v: expected ", nk, " floats (dense B,S,H,d), got ", v.size());
  const std::size_t nlse = static_cast<std::size_t>(shape.batch) * shape.heads * shape.seqlen_q;

  const DType dtype = shape.dtype;
  const std::size_t elem = element_size(dtype);
  // Creates a buffer of n elements of the storage type, filled from host floats when given.
  auto make = [&](std::size_t n, const std::vector<float>* host, std::size_t bytes_per_elem) {
    std::vector<std::uint16_t> bits;
    const void* data = nullptr;
    if (host != nullptr) {
      if (bytes_per_elem == 2) bits = to_storage(dtype, *host);
      data = bytes_per_elem == 2 ? static_cast<const void*>(bits.data()) : static_cast<const void*>(host->data());
    }
    cl_int err = CL_SUCCESS;
    const cl_mem_flags flags = CL_MEM_READ_WRITE | (data != nullptr ? CL_MEM_COPY_HOST_PTR : 0);
    cl_mem mem = clCreateBuffer(context_, flags, n * bytes_per_elem, const_cast<void*>(data), &err);
    check_cl(err, "clCreateBuffer");
    return mem;
  };
  MemObject dq{make(nq, &q, elem)}, dk{make(nk, &k, elem)}, dv{make(nk, &v, elem)}, dout{make(nq, nullptr, elem)};
  MemObject dlse{lse != nullptr ? make(nlse, nullptr, sizeof(float)) : nullptr};

  ForwardArgs args = shape;
  args.q = {dq.mem};
  args.k = {dk.mem};
  args.v = {dv.mem};
  args.o = {dout.mem};
  args.lse = dlse.mem;
  args.workspace = nullptr;
  Launch launch = flashcl::forward(queue_, args);
  std::vector<float> out(nq);
  if (elem == 2) {
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
    check_cl(clEnqueueReadBuffer(queue_, dlse.mem, CL_TRUE, 0, nlse * sizeof(float), lse->data(), 0, nullptr, nullptr),
             "clEnqueueReadBuffer(lse)");
  }
  return out;
}

}  // namespace flashcl
