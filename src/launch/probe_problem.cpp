// probe_problem.cpp: the forward tensor-core probes' shared problem (probe_problem.hpp): inputs,
// buffers, read-back of O and the float64 check.
#include "launch/probe_problem.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace flashcl::detail {

ForwardProbe::ForwardProbe(cl_context context, cl_device_id device, DType dtype_, DType out_, bool vec_load,
                           bool v_transposed)
    : d(vec_load ? 32 : 30), dtype(dtype_), out(out_), ctx(context, true), queue(ctx, cl::Device(device, true)) {
  const bool fp8 = is_fp8(dtype);
  const int steps = fp8 ? 8 : 64;
  q.resize(static_cast<std::size_t>(nq) * d);
  k.resize(static_cast<std::size_t>(nk) * d);
  v.resize(k.size());
  // fp8's values repeat every 16 elements, so at d = 32 every row would be the same and a kernel
  // that put keys in the wrong order would pass: each row shifts its values by 5 (rows 16 apart
  // repeat; the key orders the kernels permute are within 16)
  const std::size_t skew = fp8 ? 5 : 0;
  auto value = [&](std::size_t i, int salt) { return probe_value(i + i / d * skew, salt, 11, steps); };
  for (std::size_t i = 0; i < q.size(); ++i) q[i] = value(i, 1);
  for (std::size_t i = 0; i < k.size(); ++i) k[i] = value(i, 2), v[i] = value(i, 3);
  if (dtype == DType::F32)  // low bits that TF32 alone drops
    for (auto* t : {&q, &k, &v})
      for (std::size_t i = 0; i < t->size(); ++i) (*t)[i] += static_cast<float>(i % 7) * 0x1p-17f;
  // exact in each storage: multiples of 1/8 in [-1, 1) for fp8, of 1/64 with short mantissas for 16 bits
  qb = probe_upload(ctx, dtype, q);
  kb = probe_upload(ctx, dtype, k);
  if (v_transposed) {  // (d, Nk) rows of `pitch` keys, NaN (0x7f in both fp8 formats) past Nk
    const int pitch = 192;  // a multiple of 16 and past the last key block's end (64-key blocks)
    std::vector<std::uint8_t> bits = to_fp8(dtype, v), vt(static_cast<std::size_t>(d) * pitch, 0x7f);
    for (int j = 0; j < nk; ++j)
      for (int c = 0; c < d; ++c)
        vt[static_cast<std::size_t>(c) * pitch + j] = bits[static_cast<std::size_t>(j) * d + c];
    vb = cl::Buffer(ctx, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, vt.size(), vt.data());
    args.fp8.v_transposed = true;
    args.v.seq_stride = pitch;
    args.v.head_stride = args.v.batch_stride = std::int64_t{d} * pitch;
  } else {
    vb = probe_upload(ctx, dtype, v);
  }
  ob = cl::Buffer(ctx, CL_MEM_READ_WRITE, q.size() * element_size(out));
  args.batch = args.heads = 1;
  args.seqlen_q = nq;
  args.seqlen_k = nk;
  args.head_dim = d;
  args.dtype = dtype;
  args.q.buffer = qb();
  args.k.buffer = kb();
  args.v.buffer = vb();
  args.o.buffer = ob();
}

std::vector<float> ForwardProbe::read_o() {
  std::vector<float> result(q.size());
  if (out == DType::F32) {
    queue.enqueueReadBuffer(ob, CL_TRUE, 0, result.size() * 4, result.data());
  } else {
    std::vector<std::uint16_t> bits(result.size());
    queue.enqueueReadBuffer(ob, CL_TRUE, 0, bits.size() * 2, bits.data());
    result = from_storage(out, bits);
  }
  return result;
}

ProbeResult ForwardProbe::check(const std::string& what, const std::vector<float>& o, double bound,
                                const float* descales) const {
  auto value = [&](const std::vector<float>& x, std::size_t i, int which) {  // dequantised for fp8
    return double(x[i]) * (descales != nullptr ? double(descales[which]) : 1.0);
  };
  const double scale = 1.0 / std::sqrt(static_cast<double>(d));
  for (int i = 0; i < nq; ++i) {
    std::vector<double> w(nk);
    double mx = -INFINITY, sum = 0.0;
    for (int j = 0; j < nk; ++j) {
      double dot = 0.0;
      for (int c = 0; c < d; ++c) dot += value(q, i * d + c, 0) * value(k, j * d + c, 1);
      mx = std::max(mx, w[j] = dot * scale);
    }
    for (int j = 0; j < nk; ++j) sum += (w[j] = std::exp(w[j] - mx));
    for (int c = 0; c < d; ++c) {
      double want = 0.0;
      for (int j = 0; j < nk; ++j) want += w[j] * value(v, j * d + c, 2);
      want /= sum;
      const float got = o[static_cast<std::size_t>(i) * d + c];
      if (!(std::fabs(got - want) <= bound))
        return probe_failed(what, concat("O[", i, "][", c, "] = ", got, ", float64 says ", want));
    }
  }
  return ProbeResult::Pass;
}

}  // namespace flashcl::detail
