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

cl_mem create(cl_context context, std::size_t bytes, const void* data = nullptr) {
  cl_int err = CL_SUCCESS;
  cl_mem mem = clCreateBuffer(context, CL_MEM_READ_WRITE | (data != nullptr ? CL_MEM_COPY_HOST_PTR : 0), bytes,
                              const_cast<void*>(data), &err);
  check(err, "clCreateBuffer");
  return mem;
}

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

Fp8Problem::Fp8Problem(cl_command_queue queue, const Shape& s, const std::vector<float>& q, const std::vector<float>& k,
                       const std::vector<float>& v, const Fp8Quant& quant, DType out_dtype, Algorithm algorithm)
    : queue_(queue), out_dtype_(out_dtype), o_elems_(q.size()) {
  cl_context context = nullptr;
  check(clGetCommandQueueInfo(queue, CL_QUEUE_CONTEXT, sizeof context, &context, nullptr), "clGetCommandQueueInfo");
  auto mem = [&](std::size_t bytes, const void* data = nullptr) {
    mems_.push_back(create(context, bytes, data));
    return mems_.back();
  };
  try {
    const int hkv = s.kv_heads();
    const bool block = quant.granularity == QuantGranularity::Block;
    QuantizeArgs qa;
    qa.batch = s.batch;
    qa.head_dim = s.head_dim;
    qa.out_dtype = quant.dtype;
    qa.granularity = quant.granularity;
    qa.block = block ? quant.block : 0;
    qa.hadamard_seed = 0x5eed;
    // Q's descales as the attention takes them: (B, H_kv) (a group of H / H_kv heads shares one), or per block
    QuantizeArgs qq = qa, kq = qa, vq = qa;
    qq.seqlen = s.seqlen_q;
    qq.heads = s.heads;
    qq.head_group = block ? 1 : s.heads / hkv;
    qq.hadamard = quant.hadamard;
    kq.seqlen = vq.seqlen = s.seqlen_k;
    kq.heads = vq.heads = hkv;
    kq.hadamard = quant.hadamard;
    vq.transposed = quant.v_transposed;
    const std::vector<const std::vector<float>*> inputs = {&q, &k, &v};
    QuantizeArgs* calls[] = {&qq, &kq, &vq};
    for (int i = 0; i < 3; ++i) {
      calls[i]->in = {mem(inputs[i]->size() * 4, inputs[i]->data())};
      calls[i]->out = {mem(inputs[i]->size())};
      calls[i]->descale = mem(quantize_descale_count(*calls[i]) * 4);
    }
    // Twice, the second timed: a first call's events can hold the kernels' build (PoCL compiles at
    // the first launch), which is not the quantisation's cost. The second writes the same bytes.
    for (int pass = 0; pass < 2; ++pass) {
      std::vector<Launch> launches;
      std::vector<cl_event> done;
      for (QuantizeArgs* call : calls) {
        launches.push_back(quantize_fp8(queue, *call));
        done.push_back(launches.back().last());
      }
      check(clWaitForEvents(3, done.data()), "clWaitForEvents");
      if (pass == 1 && profiling(queue))
        for (const Launch& l : launches) quantize_ms_ += l.device_ms();
    }

    ForwardArgs& a = args_;
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
    a.q = qq.out;
    a.k = kq.out;
    a.v = vq.out;
    a.o = {mem(o_elems_ * element_size(out_dtype))};
    a.fp8 = {qq.descale, kq.descale, vq.descale, block ? quant.block : 0, quant.v_transposed};
  } catch (...) {
    for (cl_mem m : mems_) clReleaseMemObject(m);
    throw;
  }
}

Fp8Problem::~Fp8Problem() {
  for (cl_mem m : mems_) clReleaseMemObject(m);
}

Launch Fp8Problem::forward() const { return flashcl::forward(queue_, args_); }

std::vector<float> Fp8Problem::o() const {
  std::vector<float> out(o_elems_);
  if (out_dtype_ == DType::F32) {
    check(clEnqueueReadBuffer(queue_, args_.o.buffer, CL_TRUE, 0, o_elems_ * 4, out.data(), 0, nullptr, nullptr),
          "clEnqueueReadBuffer");
    return out;
  }
  std::vector<std::uint16_t> bits(o_elems_);
  check(clEnqueueReadBuffer(queue_, args_.o.buffer, CL_TRUE, 0, o_elems_ * 2, bits.data(), 0, nullptr, nullptr),
        "clEnqueueReadBuffer");
  return from_storage(out_dtype_, bits);
}

Fp8Run run_fp8(cl_command_queue queue, const Shape& s, const std::vector<float>& q, const std::vector<float>& k,
               const std::vector<float>& v, const Fp8Quant& quant, DType out_dtype, Algorithm algorithm) {
  const Fp8Problem problem(queue, s, q, k, v, quant, out_dtype, algorithm);
  const Launch launch = problem.forward();
  launch.wait();
  Fp8Run run;
  run.quantize_ms = problem.quantize_ms();
  if (profiling(queue)) run.attention_ms = launch.device_ms();
  run.o = problem.o();
  return run;
}

double rmse(const std::vector<float>& got, const std::vector<double>& want) {
  double sum = 0.0;
  for (std::size_t i = 0; i < got.size(); ++i) sum += (got[i] - want[i]) * (got[i] - want[i]);
  return got.empty() ? 0.0 : std::sqrt(sum / static_cast<double>(got.size()));
}

}  // namespace flashcl::bench
