// fp8_experiment.cpp: the FP8 accuracy experiment's inputs, device run and error measure
// (fp8_experiment.hpp).
#include "fp8_experiment.hpp"

#include <cmath>
#include <random>
#include <string>

namespace flashcl::bench {
namespace {

void check(cl_int err, const char* what) {
  if (err != CL_SUCCESS) throw Error(Status::OpenCLError, std::string(what) + " failed: " + std::to_string(err));
}

// An owned cl_mem.
struct Mem {
  cl_mem mem = nullptr;
  Mem(cl_context context, std::size_t bytes, const void* data = nullptr) {
    cl_int err = CL_SUCCESS;
    mem = clCreateBuffer(context, CL_MEM_READ_WRITE | (data != nullptr ? CL_MEM_COPY_HOST_PTR : 0), bytes,
                         const_cast<void*>(data), &err);
    check(err, "clCreateBuffer");
  }
  Mem(const Mem&) = delete;
  Mem& operator=(const Mem&) = delete;
  ~Mem() { clReleaseMemObject(mem); }
};

bool profiling(cl_command_queue queue) {
  cl_command_queue_properties props = 0;
  clGetCommandQueueInfo(queue, CL_QUEUE_PROPERTIES, sizeof props, &props, nullptr);
  return (props & CL_QUEUE_PROFILING_ENABLE) != 0;
}

}  // namespace

std::vector<float> outlier_values(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::bernoulli_distribution outlier(0.001);
  std::vector<float> x(n);
  for (float& e : x) {
    double value = normal(gen);
    if (outlier(gen)) value += 10.0 * normal(gen);
    e = static_cast<float>(value);
  }
  return x;
}

Fp8Run run_fp8(cl_command_queue queue, const Shape& s, const std::vector<float>& q, const std::vector<float>& k,
               const std::vector<float>& v, const Fp8Quant& quant, DType out_dtype, Algorithm algorithm) {
  cl_context context = nullptr;
  check(clGetCommandQueueInfo(queue, CL_QUEUE_CONTEXT, sizeof context, &context, nullptr), "clGetCommandQueueInfo");
  const int hkv = s.kv_heads();
  Mem q32(context, q.size() * 4, q.data()), k32(context, k.size() * 4, k.data()), v32(context, v.size() * 4, v.data());
  Mem q8(context, q.size()), k8(context, k.size()), v8(context, v.size());

  QuantizeArgs qa;
  qa.batch = s.batch;
  qa.head_dim = s.head_dim;
  qa.out_dtype = quant.dtype;
  qa.granularity = quant.granularity;
  qa.block = quant.granularity == QuantGranularity::Block ? quant.block : 0;
  qa.hadamard_seed = 0x5eed;
  const bool block = quant.granularity == QuantGranularity::Block;
  // Q's descales: (B, H_kv) as the attention takes them (a group of H / H_kv heads shares one), or per block
  QuantizeArgs qq = qa, kq = qa, vq = qa;
  qq.seqlen = s.seqlen_q;
  qq.heads = s.heads;
  qq.head_group = block ? 1 : s.heads / hkv;
  qq.hadamard = quant.hadamard;
  kq.seqlen = vq.seqlen = s.seqlen_k;
  kq.heads = vq.heads = hkv;
  kq.hadamard = quant.hadamard;
  vq.transposed = quant.v_transposed;
  Mem qd(context, quantize_descale_count(qq) * 4), kd(context, quantize_descale_count(kq) * 4),
      vd(context, quantize_descale_count(vq) * 4);
  qq.in = {q32.mem};
  qq.out = {q8.mem};
  qq.descale = qd.mem;
  kq.in = {k32.mem};
  kq.out = {k8.mem};
  kq.descale = kd.mem;
  vq.in = {v32.mem};
  vq.out = {v8.mem};
  vq.descale = vd.mem;
  Launch lq = quantize_fp8(queue, qq), lk = quantize_fp8(queue, kq), lv = quantize_fp8(queue, vq);

  const std::size_t o_elems = q.size();
  Mem o(context, o_elems * element_size(out_dtype));
  ForwardArgs a;
  a.batch = s.batch;
  a.heads = s.heads;
  a.heads_kv = hkv;
  a.seqlen_q = s.seqlen_q;
  a.seqlen_k = s.seqlen_k;
  a.head_dim = s.head_dim;
  a.causal = s.causal;
  if (s.scale != 0.0) a.scale = static_cast<float>(s.scale);
  a.dtype = quant.dtype;
  a.out_dtype = out_dtype;
  a.algorithm = algorithm;
  a.q = {q8.mem};
  a.k = {k8.mem};
  a.v = {v8.mem};
  a.o = {o.mem};
  a.fp8 = {qd.mem, kd.mem, vd.mem, block ? quant.block : 0, quant.v_transposed};
  Launch lo = forward(queue, a, {lq.last(), lk.last(), lv.last()});
  lo.wait();

  Fp8Run run;
  if (profiling(queue)) {
    run.quantize_ms = lq.device_ms() + lk.device_ms() + lv.device_ms();
    run.attention_ms = lo.device_ms();
  }
  run.o.resize(o_elems);
  if (out_dtype == DType::F32) {
    check(clEnqueueReadBuffer(queue, o.mem, CL_TRUE, 0, o_elems * 4, run.o.data(), 0, nullptr, nullptr), "clEnqueueReadBuffer");
  } else {
    std::vector<std::uint16_t> bits(o_elems);
    check(clEnqueueReadBuffer(queue, o.mem, CL_TRUE, 0, o_elems * 2, bits.data(), 0, nullptr, nullptr), "clEnqueueReadBuffer");
    run.o = from_storage(out_dtype, bits);
  }
  return run;
}

double rmse(const std::vector<float>& got, const std::vector<double>& want) {
  double sum = 0.0;
  for (std::size_t i = 0; i < got.size(); ++i) sum += (got[i] - want[i]) * (got[i] - want[i]);
  return got.empty() ? 0.0 : std::sqrt(sum / static_cast<double>(got.size()));
}

}  // namespace flashcl::bench
