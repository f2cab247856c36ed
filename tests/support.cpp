// support.cpp: buffers with layouts, the poisoned run and the accuracy check.
#include "support.hpp"

#include <cmath>
#include <limits>
#include <sstream>

namespace flashcl::test {
namespace {

const float kNaN = std::numeric_limits<float>::quiet_NaN();

void check(cl_int err, const char* what) {
  if (err != CL_SUCCESS) throw Error(Status::OpenCLError, std::string(what) + " failed: " + std::to_string(err));
}

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

std::string Case::name() const {
  std::ostringstream o;
  o << "B" << shape.batch << "_H" << shape.heads << "_Nq" << shape.seqlen_q << "_Nk" << shape.seqlen_k << "_d"
    << shape.head_dim << (shape.causal ? "_causal" : "") << (shape.scale != 0.0 ? "_scaled" : "")
    << (layout == Layout::BHSD ? "_bhsd" : layout == Layout::PaddedRows ? "_padded" : "");
  return o.str();
}

DeviceTensor::DeviceTensor(Layout layout, int B, int S, int H, int d, const std::vector<float>* values)
    : batch(B), seqlen(S), heads(H), dim(d) {
  view = layout_view(layout, B, S, H, d, elems);
  std::vector<float> host(elems, kNaN);
  if (values != nullptr)
    for (int b = 0; b < B; ++b)
      for (int s = 0; s < S; ++s)
        for (int h = 0; h < H; ++h)
          for (int i = 0; i < d; ++i)
            host[index_of(view, b, s, h, i)] = (*values)[((static_cast<std::size_t>(b) * S + s) * H + h) * d + i];
  cl_int err = CL_SUCCESS;
  view.buffer = clCreateBuffer(session().context(), CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, elems * sizeof(float),
                               host.data(), &err);
  check(err, "clCreateBuffer");
}

DeviceTensor::~DeviceTensor() { clReleaseMemObject(view.buffer); }

std::vector<float> DeviceTensor::raw() const {
  std::vector<float> host(elems);
  check(clEnqueueReadBuffer(session().queue(), view.buffer, CL_TRUE, 0, elems * sizeof(float), host.data(), 0, nullptr,
                            nullptr),
        "clEnqueueReadBuffer");
  return host;
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

CaseResult run_case(const Case& c, Algorithm algorithm, TileOverride tile) {
  const auto& s = c.shape;
  const auto q = bench::random_values(s.q_elems(), c.seed * 3 + 0);
  const auto k = bench::random_values(s.kv_elems(), c.seed * 3 + 1);
  const auto v = bench::random_values(s.kv_elems(), c.seed * 3 + 2);
  DeviceTensor dq(c.layout, s.batch, s.seqlen_q, s.heads, s.head_dim, &q);
  DeviceTensor dk(c.layout, s.batch, s.seqlen_k, s.heads, s.head_dim, &k);
  DeviceTensor dv(c.layout, s.batch, s.seqlen_k, s.heads, s.head_dim, &v);
  DeviceTensor dout(c.layout, s.batch, s.seqlen_q, s.heads, s.head_dim, nullptr);  // all NaN
  DeviceBuffer dlse(s.rows(), kNaN);

  ForwardArgs args;
  args.batch = s.batch;
  args.heads = s.heads;
  args.seqlen_q = s.seqlen_q;
  args.seqlen_k = s.seqlen_k;
  args.head_dim = s.head_dim;
  if (s.scale != 0.0) args.scale = static_cast<float>(s.scale);
  args.causal = s.causal;
  args.algorithm = algorithm;
  args.q = dq.view;
  args.k = dk.view;
  args.v = dv.view;
  args.o = dout.view;
  args.lse = dlse.mem;
  args.tile = tile;
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

void expect_accurate(const CaseResult& r, const std::string& what) {
  EXPECT_EQ(r.out.non_finite, 0u) << what << ": NaN/Inf in O (unwritten or broken elements)";
  EXPECT_EQ(r.lse.non_finite, 0u) << what << ": NaN/Inf in LSE";
  EXPECT_EQ(r.gaps_written, 0u) << what << ": wrote outside O's layout";
  EXPECT_LE(r.out.rel_norm, 1e-5) << what;
  EXPECT_LE(r.lse.rel_norm, 1e-5) << what;
  // elementwise: |o - ref| <= 1e-5 + 1e-5·|ref| (O averages values in [-1, 1])
  std::size_t bad = 0;
  for (std::size_t i = 0; i < r.o.size(); ++i)
    if (!(std::fabs(r.o[i] - r.ref.out[i]) <= 1e-5 + 1e-5 * std::fabs(r.ref.out[i]))) ++bad;
  EXPECT_EQ(bad, 0u) << what << ": elements outside 1e-5 + 1e-5|ref| (max |err| " << r.out.max_abs << ")";
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
