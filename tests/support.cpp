// support.cpp: cases, buffers with layouts, the poisoned run and the accuracy check.
#include "support.hpp"

#include <cmath>
#include <cstdio>
#include <limits>
#include <new>
#include <sstream>

#include <unistd.h>

namespace flashcl::test {
void check(cl_int err, const char* what) {
  if (err != CL_SUCCESS) throw Error(Status::OpenCLError, std::string(what) + " failed: " + std::to_string(err));
}

namespace {

const float kNaN = std::numeric_limits<float>::quiet_NaN();

// Strides and total size of a layout.
Tensor layout_view(Layout layout, int B, int S, int H, int d, std::size_t& elems) {
  Tensor t;
  switch (layout) {
    case Layout::BSHD:
      t.head_stride = d;
      t.seq_stride = static_cast<std::int64_t>(H) * d;
      t.batch_stride = t.seq_stride * S;
      break;
    case Layout::BHSD:
      t.seq_stride = d;
      t.head_stride = static_cast<std::int64_t>(S) * d;
      t.batch_stride = t.head_stride * H;
      break;
    case Layout::PaddedRows:
      t.offset = 5;
      t.head_stride = d + 3;
      t.seq_stride = t.head_stride * H + 2;
      t.batch_stride = t.seq_stride * S + 7;
      break;
  }
  elems = static_cast<std::size_t>(t.offset + t.batch_stride * B);
  return t;
}

std::size_t index_of(const Tensor& t, int b, int s, int h, int i) {
  return static_cast<std::size_t>(t.offset + b * t.batch_stride + s * t.seq_stride + h * t.head_stride + i);
}

}  // namespace

Session& session() {
  static Session s;
  return s;
}

bool tensor_core_device() {
  constexpr cl_device_info kComputeCapabilityMajorNv = 0x4000;  // cl_nv_device_attribute_query
  const cl_device_id device = session().device();
  char vendor[256] = {};
  if (clGetDeviceInfo(device, CL_DEVICE_VENDOR, sizeof vendor - 1, vendor, nullptr) != CL_SUCCESS) return false;
  if (std::string(vendor).find("NVIDIA") == std::string::npos) return false;
  cl_uint major = 0;
  if (clGetDeviceInfo(device, kComputeCapabilityMajorNv, sizeof major, &major, nullptr) != CL_SUCCESS) return false;
  return major >= 8;
}

bool hopper_device() {
  constexpr cl_device_info kMajor = 0x4000, kMinor = 0x4001;  // cl_nv_device_attribute_query
  cl_uint major = 0, minor = 0;
  const cl_device_id device = session().device();
  return tensor_core_device() && clGetDeviceInfo(device, kMajor, sizeof major, &major, nullptr) == CL_SUCCESS &&
         clGetDeviceInfo(device, kMinor, sizeof minor, &minor, nullptr) == CL_SUCCESS && major == 9 && minor == 0;
}

HostMemoryFacts host_memory_facts() {
  HostMemoryFacts f;
  cl_bool unified = CL_FALSE;
  cl_uint align_bits = 0;
  check(clGetDeviceInfo(session().device(), CL_DEVICE_HOST_UNIFIED_MEMORY, sizeof unified, &unified, nullptr),
        "clGetDeviceInfo(CL_DEVICE_HOST_UNIFIED_MEMORY)");
  check(clGetDeviceInfo(session().device(), CL_DEVICE_MEM_BASE_ADDR_ALIGN, sizeof align_bits, &align_bits, nullptr),
        "clGetDeviceInfo(CL_DEVICE_MEM_BASE_ADDR_ALIGN)");
  f.unified = unified == CL_TRUE;
  f.align = std::max<std::size_t>(align_bits / 8, 1);
  const long page = sysconf(_SC_PAGESIZE);
  f.widen = f.unified && page > 0 && static_cast<std::size_t>(page) % f.align == 0;
  return f;
}

AlignedRoom::AlignedRoom(std::size_t align, std::size_t bytes)
    : align_(align), p_(static_cast<char*>(::operator new (bytes, std::align_val_t{align}))) {}

AlignedRoom::~AlignedRoom() { ::operator delete (p_, std::align_val_t{align_}); }

std::string Case::name() const {
  std::ostringstream o;
  o << "B" << shape.batch << "_H" << shape.heads << "_Nq" << shape.seqlen_q << "_Nk" << shape.seqlen_k << "_d"
    << shape.head_dim << (shape.causal ? "_causal" : "") << (shape.scale != 0.0 ? "_scaled" : "")
    << (layout == Layout::BHSD ? "_bhsd" : layout == Layout::PaddedRows ? "_padded" : "");
  if (shape.heads_kv > 0 && shape.heads_kv != shape.heads) o << "_hkv" << shape.heads_kv;
  auto side = [](int w) { return w < 0 ? std::string("inf") : std::to_string(w); };
  if (shape.window_left >= 0 || shape.window_right >= 0)
    o << "_win" << side(shape.window_left) << "x" << side(shape.window_right);
  if (shape.softcap > 0.0) o << "_softcap" << static_cast<int>(shape.softcap);
  if (!shape.alibi_slopes.empty()) o << (shape.alibi_slopes.size() > static_cast<std::size_t>(shape.heads) ? "_alibiBH" : "_alibi");
  if (shape.mask != bench::MaskMode::None)
    o << (shape.mask == bench::MaskMode::Bool ? "_bool" : "_bias") << shape.mask_batch << "x" << shape.mask_heads;
  if (shape.varlen()) o << "_varlen";
  if (dtype != DType::F32) o << "_" << to_string(dtype);
  return o.str();
}

Case make_case(int nq, int nk, int d, bool causal, int b, int h, Layout layout, double scale) {
  Case c;
  c.shape = dense_shape(b, h, nq, nk, d, causal);
  c.shape.scale = scale;
  c.layout = layout;
  c.seed = static_cast<std::uint64_t>(nq * 131 + nk * 7 + d * 3 + causal);
  return c;
}

Case varlen(Case c, const std::vector<int>& len_q, const std::vector<int>& len_k) {
  auto& s = c.shape;
  s.batch = static_cast<int>(len_q.size());
  s.cu_seqlens_q = {0};
  s.cu_seqlens_k = {0};
  s.seqlen_q = s.seqlen_k = 1;
  for (std::size_t b = 0; b < len_q.size(); ++b) {
    s.cu_seqlens_q.push_back(s.cu_seqlens_q.back() + len_q[b]);
    s.cu_seqlens_k.push_back(s.cu_seqlens_k.back() + len_k[b]);
    s.seqlen_q = std::max(s.seqlen_q, len_q[b]);
    s.seqlen_k = std::max(s.seqlen_k, len_k[b]);
  }
  return c;
}

DeviceTensor::DeviceTensor(Layout layout, int B, int S, int H, int d, const std::vector<float>* values, DType type)
    : batch(B), seqlen(S), heads(H), dim(d), dtype(type) {
  view = layout_view(layout, B, S, H, d, elems);
  std::vector<float> host(elems, kNaN);
  if (values != nullptr)
    for (int b = 0; b < B; ++b)
      for (int s = 0; s < S; ++s)
        for (int h = 0; h < H; ++h)
          for (int i = 0; i < d; ++i)
            host[index_of(view, b, s, h, i)] = (*values)[((static_cast<std::size_t>(b) * S + s) * H + h) * d + i];
  cl_int err = CL_SUCCESS;
  std::vector<std::uint16_t> bits;
  if (dtype != DType::F32) bits = to_storage(dtype, host);
  void* data = dtype == DType::F32 ? static_cast<void*>(host.data()) : static_cast<void*>(bits.data());
  view.buffer = clCreateBuffer(session().context(), CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR,
                               elems * element_size(dtype), data, &err);
  check(err, "clCreateBuffer");
}

DeviceTensor::~DeviceTensor() { clReleaseMemObject(view.buffer); }

std::vector<float> DeviceTensor::raw() const {
  if (dtype != DType::F32) {
    std::vector<std::uint16_t> bits(elems);
    check(clEnqueueReadBuffer(session().queue(), view.buffer, CL_TRUE, 0, elems * 2, bits.data(), 0, nullptr, nullptr),
          "clEnqueueReadBuffer");
    return from_storage(dtype, bits);
  }
  std::vector<float> host(elems);
  check(clEnqueueReadBuffer(session().queue(), view.buffer, CL_TRUE, 0, elems * sizeof(float), host.data(), 0, nullptr,
                            nullptr),
        "clEnqueueReadBuffer");
  return host;
}

std::vector<float> round_to(DType dtype, const std::vector<float>& values) {
  return dtype == DType::F32 ? values : from_storage(dtype, to_storage(dtype, values));
}

std::vector<float> DeviceTensor::logical() const {
  const auto host = raw();
  std::vector<float> out(static_cast<std::size_t>(batch) * seqlen * heads * dim);
  for (int b = 0; b < batch; ++b)
    for (int s = 0; s < seqlen; ++s)
      for (int h = 0; h < heads; ++h)
        for (int i = 0; i < dim; ++i)
          out[((static_cast<std::size_t>(b) * seqlen + s) * heads + h) * dim + i] = host[index_of(view, b, s, h, i)];
  return out;
}

std::size_t DeviceTensor::gap_elements_changed() const {
  auto host = raw();
  for (int b = 0; b < batch; ++b)
    for (int s = 0; s < seqlen; ++s)
      for (int h = 0; h < heads; ++h)
        for (int i = 0; i < dim; ++i) host[index_of(view, b, s, h, i)] = kNaN;
  std::size_t changed = 0;
  for (float x : host) changed += std::isnan(x) ? 0 : 1;
  return changed;
}

DeviceBuffer::DeviceBuffer(std::size_t n, float fill) : floats(n) {
  std::vector<float> host(n, fill);
  cl_int err = CL_SUCCESS;
  mem = clCreateBuffer(session().context(), CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, n * sizeof(float), host.data(),
                       &err);
  check(err, "clCreateBuffer");
}

DeviceBuffer::~DeviceBuffer() { clReleaseMemObject(mem); }

std::vector<float> DeviceBuffer::read() const {
  std::vector<float> host(floats);
  check(clEnqueueReadBuffer(session().queue(), mem, CL_TRUE, 0, floats * sizeof(float), host.data(), 0, nullptr,
                            nullptr),
        "clEnqueueReadBuffer");
  return host;
}

DeviceBytes::DeviceBytes(const void* data, std::size_t bytes) {
  cl_int err = CL_SUCCESS;
  mem = clCreateBuffer(session().context(), CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, bytes, const_cast<void*>(data),
                       &err);
  check(err, "clCreateBuffer");
}

DeviceBytes::~DeviceBytes() { clReleaseMemObject(mem); }

void VariantBuffers::apply(const bench::Shape& s, ForwardArgs& args) {
  auto hold = [&](const void* data, std::size_t bytes) {
    held.push_back(std::make_unique<DeviceBytes>(data, bytes));
    return held.back()->mem;
  };
  args.heads_kv = s.heads_kv;
  args.window = {s.window_left, s.window_right};
  args.softcap = static_cast<float>(s.softcap);
  if (!s.alibi_slopes.empty()) {
    args.alibi_slopes = hold(s.alibi_slopes.data(), s.alibi_slopes.size() * sizeof(float));
    args.alibi_per_batch = s.alibi_slopes.size() > static_cast<std::size_t>(s.heads);
  }
  if (s.mask != bench::MaskMode::None) {
    args.mask.kind = s.mask == bench::MaskMode::Bool ? MaskKind::Bool : MaskKind::Bias;
    args.mask.batch = s.mask_batch;
    args.mask.heads = s.mask_heads;
    if (s.mask == bench::MaskMode::Bool) {
      std::vector<std::uint8_t> bytes(s.mask_values.size());
      for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = s.mask_values[i] != 0.0f ? 1 : 0;
      args.mask.buffer = hold(bytes.data(), bytes.size());
    } else {
      args.mask.buffer = hold(s.mask_values.data(), s.mask_values.size() * sizeof(float));
    }
  }
  if (s.varlen()) {
    args.cu_seqlens_q = hold(s.cu_seqlens_q.data(), s.cu_seqlens_q.size() * sizeof(int));
    args.cu_seqlens_k = hold(s.cu_seqlens_k.data(), s.cu_seqlens_k.size() * sizeof(int));
  }
}

ForwardArgs shape_args(const bench::Shape& s) {
  ForwardArgs args;
  args.batch = s.batch;
  args.heads = s.heads;
  args.seqlen_q = s.seqlen_q;
  args.seqlen_k = s.seqlen_k;
  args.head_dim = s.head_dim;
  if (s.scale != 0.0) args.scale = static_cast<float>(s.scale);
  args.causal = s.causal;
  return args;
}

CaseResult run_case(const Case& c, Algorithm algorithm, TileOverride tile) {
  const auto& s = c.shape;
  // inputs already in storage precision, so the reference sees exactly what the kernels read
  const auto q = round_to(c.dtype, bench::random_values(s.q_elems(), c.seed * 3 + 0, c.amplitude));
  const auto k = round_to(c.dtype, bench::random_values(s.kv_elems(), c.seed * 3 + 1, c.amplitude));
  const auto v = round_to(c.dtype, bench::random_values(s.kv_elems(), c.seed * 3 + 2));
  // varlen: Q/O are one packed (total_q, H, d) tensor, K/V (total_k, H_kv, d)
  const int tb = s.varlen() ? 1 : s.batch;
  const int rows_q = s.varlen() ? static_cast<int>(s.total_q()) : s.seqlen_q;
  const int rows_k = s.varlen() ? static_cast<int>(s.total_k()) : s.seqlen_k;
  DeviceTensor dq(c.layout, tb, rows_q, s.heads, s.head_dim, &q, c.dtype);
  DeviceTensor dk(c.layout, tb, rows_k, s.kv_heads(), s.head_dim, &k, c.dtype);
  DeviceTensor dv(c.layout, tb, rows_k, s.kv_heads(), s.head_dim, &v, c.dtype);
  DeviceTensor dout(c.layout, tb, rows_q, s.heads, s.head_dim, nullptr, c.dtype);  // all NaN
  DeviceBuffer dlse(s.rows(), kNaN);

  ForwardArgs args = shape_args(s);
  args.dtype = c.dtype;
  args.algorithm = algorithm;
  args.q = dq.view;
  args.k = dk.view;
  args.v = dv.view;
  args.o = dout.view;
  args.lse = dlse.mem;
  args.tile = tile;
  VariantBuffers variants;
  variants.apply(s, args);
  forward(session().queue(), args).wait();

  CaseResult r;
  r.ref = bench::reference_attention(s, q, k, v);
  r.o = dout.logical();
  r.lse_values = dlse.read();
  r.out = bench::compare(r.o, r.ref.out);
  r.lse = bench::compare(r.lse_values, r.ref.lse);
  r.gaps_written = dout.gap_elements_changed();
  return r;
}

void expect_accurate(const CaseResult& r, const std::string& what, DType dtype) {
  EXPECT_EQ(r.out.non_finite, 0u) << what << ": NaN/Inf in O (unwritten or broken elements)";
  EXPECT_EQ(r.lse.non_finite, 0u) << what << ": NaN/Inf in LSE";
  EXPECT_EQ(r.gaps_written, 0u) << what << ": wrote outside O's layout";
  EXPECT_LE(r.lse.rel_norm, 1e-5) << what;  // LSE is fp32 whatever the storage
  // Bounds on O: fp32 1e-5 + 1e-5|ref| per element and 1e-5 in norm. 16-bit storage: twice the
  // error of the reference itself rounded to that storage, plus a floor of 1e-4.
  double abs_bound = 1e-5, rel_bound = 1e-5, per_ref = 1e-5;
  if (dtype != DType::F32) {
    std::vector<float> ref_f(r.ref.out.begin(), r.ref.out.end());
    const auto ref_err = bench::compare(round_to(dtype, ref_f), r.ref.out);
    abs_bound = 2 * ref_err.max_abs + 1e-4;
    rel_bound = 2 * ref_err.rel_norm + 1e-4;
    per_ref = 0.0;
    std::printf("[ accuracy ] %s %s: max |err| %.3g (reference in %s: %.3g), rel %.3g (%.3g)\n", what.c_str(),
                to_string(dtype), r.out.max_abs, to_string(dtype), ref_err.max_abs, r.out.rel_norm, ref_err.rel_norm);
  }
  EXPECT_LE(r.out.rel_norm, rel_bound) << what;
  std::size_t bad = 0;
  for (std::size_t i = 0; i < r.o.size(); ++i)
    if (!(std::fabs(r.o[i] - r.ref.out[i]) <= abs_bound + per_ref * std::fabs(r.ref.out[i]))) ++bad;
  EXPECT_EQ(bad, 0u) << what << ": elements outside " << abs_bound << " + " << per_ref << "|ref| (max |err| "
                     << r.out.max_abs << ")";
  for (std::size_t i = 0; i < r.lse_values.size(); ++i) {
    const double want = r.ref.lse[i];
    if (std::isinf(want)) {
      EXPECT_EQ(r.lse_values[i], static_cast<float>(want)) << what << ": LSE of a row with no visible key";
    } else {
      EXPECT_NEAR(r.lse_values[i], want, 1e-5 * std::max(1.0, std::fabs(want))) << what << ": LSE row " << i;
    }
  }
}

}  // namespace flashcl::test
