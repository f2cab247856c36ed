// fp8_experiment.hpp: FlashAttention-3's FP8 accuracy experiment, shared by tests/test_fp8.cpp and
// flashcl-bench --dtype e4m3, so the figure the bench prints is the one the test asserts: inputs
// drawn as N(0, 1) plus, on 0.1% of entries, a term of standard deviation 10; Q, K, V quantised on
// the device by flashcl::quantize_fp8 (per tensor, per head or per block, optionally with the
// Hadamard transform); the fp8 forward; RMSE of O against float64 attention on the unquantised inputs.
#pragma once

#include <CL/cl.h>

#include <cstdint>
#include <vector>

#include "flashcl/flashcl.hpp"
#include "problem.hpp"

namespace flashcl::bench {

// n values N(0, 1) + Bernoulli(0.001)·N(0, 10²), from a seeded generator.
std::vector<float> outlier_values(std::size_t n, std::uint64_t seed);

// How Q, K and V are quantised (V never takes the Hadamard transform: it would change O).
struct Fp8Quant {
  DType dtype = DType::E4M3;
  QuantGranularity granularity = QuantGranularity::Tensor;
  int block = 0;          // Block: rows per scale
  bool hadamard = false;  // Q and K, one seed
  bool v_transposed = false;
};

// One quantised problem held on the device: the fp32 inputs uploaded, Q, K, V quantised (once, in
// the constructor) and the forward call ready to enqueue as often as a timing loop wants.
class Fp8Problem {
 public:
  Fp8Problem(cl_command_queue queue, const Shape& shape, const std::vector<float>& q, const std::vector<float>& k,
             const std::vector<float>& v, const Fp8Quant& quant, DType out_dtype = DType::BF16,
             Algorithm algorithm = Algorithm::Auto);
  Fp8Problem(const Fp8Problem&) = delete;
  Fp8Problem& operator=(const Fp8Problem&) = delete;
  ~Fp8Problem();
  double quantize_ms() const { return quantize_ms_; }  // 0: queue without profiling
  const ForwardArgs& args() const { return args_; }
  Launch forward() const;         // enqueues one attention call
  std::vector<float> o() const;   // O read back as floats, dense (B, Nq, H, d)

 private:
  cl_command_queue queue_;
  std::vector<cl_mem> mems_;      // owned: inputs, fp8 tensors, descales, O
  ForwardArgs args_;
  DType out_dtype_;
  std::size_t o_elems_ = 0;
  double quantize_ms_ = 0.0;
};

struct Fp8Run {
  std::vector<float> o;            // dense (B, Nq, H, d), read back from out_dtype
  double quantize_ms = 0.0;        // device time of the three quantisations (0: queue without profiling)
  double attention_ms = 0.0;       // device time of the forward
};

// Uploads dense fp32 (B, S, H, d) q, k, v of a plain or causal, GQA or not, shape; quantises them
// with quantize_fp8 and runs flashcl::forward (`algorithm`) with O stored as out_dtype.
Fp8Run run_fp8(cl_command_queue queue, const Shape& shape, const std::vector<float>& q, const std::vector<float>& k,
               const std::vector<float>& v, const Fp8Quant& quant, DType out_dtype = DType::BF16,
               Algorithm algorithm = Algorithm::Auto);

// sqrt(mean((got − want)²)).
double rmse(const std::vector<float>& got, const std::vector<double>& want);

}  // namespace flashcl::bench
