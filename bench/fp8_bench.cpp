// fp8_bench.cpp: flashcl-bench's FP8 mode. Per (N, d, causal): FA3's outlier inputs (N(0, 1) plus,
// on 0.1% of entries, a term of standard deviation 10), quantised once on the device
// (fp8_experiment.hpp's Fp8Problem: per tensor, head or block, optionally with the Hadamard
// transform), then the fp8 forward and flashcl's fp16 forward on the same inputs, each timed with
// device events (median of --repeat runs after --warmup), and the RMSE of each O against float64
// attention on the unquantised inputs over sampled rows (the test suite asserts the figures at
// B 1, H 4, N 1024, d 128: tests/test_fp8.cpp). TFLOP/s as FlashAttention counts them.
#include "fp8_bench.hpp"

#include <CL/cl.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "flashcl/flashcl.hpp"
#include "fp8_experiment.hpp"
#include "options.hpp"
#include "result.hpp"  // row_status
#include "stats.hpp"

namespace flashcl::bench {
namespace {

struct Fp8Options {
  std::string platform, device;
  std::vector<int> seqlen = {1024}, head_dim = {128};
  std::vector<bool> causal = {false};
  int batch = 1, heads = 4, heads_kv = 0;
  Fp8Quant quant;
  DType out_dtype = DType::BF16;
  bool fp16 = true;
  double check_macs = 1e9;
  int repeat = 5, warmup = 1;
};

double time_ms(const std::function<Launch()>& call, int warmup, int repeat) {
  for (int i = 0; i < warmup; ++i) call().wait();
  std::vector<double> ms;
  for (int i = 0; i < repeat; ++i) ms.push_back(call().device_ms());
  return median(ms);
}

// The fp16 forward on the same inputs: its time and O.
struct F16Row {
  double ms = 0.0;
  std::vector<float> o;
};

F16Row run_f16(Session& session, const Shape& s, const std::vector<float>& q, const std::vector<float>& k,
               const std::vector<float>& v, int warmup, int repeat) {
  cl_int err = CL_SUCCESS;
  auto upload = [&](const std::vector<float>& x) {
    std::vector<std::uint16_t> bits = to_storage(DType::F16, x);
    cl_mem m = clCreateBuffer(session.context(), CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, bits.size() * 2, bits.data(), &err);
    if (err != CL_SUCCESS) throw Error(Status::OpenCLError, "clCreateBuffer failed: " + std::to_string(err));
    return m;
  };
  cl_mem mq = upload(q), mk = upload(k), mv = upload(v), mo = upload(q);
  F16Row row;
  try {
    ForwardArgs a;
    a.batch = s.batch;
    a.heads = s.heads;
    a.heads_kv = s.kv_heads();
    a.seqlen_q = s.seqlen_q;
    a.seqlen_k = s.seqlen_k;
    a.head_dim = s.head_dim;
    a.causal = s.causal;
    a.dtype = DType::F16;
    a.q = {mq};
    a.k = {mk};
    a.v = {mv};
    a.o = {mo};
    row.ms = time_ms([&] { return forward(session.queue(), a); }, warmup, repeat);
    std::vector<std::uint16_t> bits(q.size());
    err = clEnqueueReadBuffer(session.queue(), mo, CL_TRUE, 0, bits.size() * 2, bits.data(), 0, nullptr, nullptr);
    if (err != CL_SUCCESS) throw Error(Status::OpenCLError, "clEnqueueReadBuffer failed: " + std::to_string(err));
    row.o = from_storage(DType::F16, bits);
  } catch (...) {
    for (cl_mem m : {mq, mk, mv, mo}) clReleaseMemObject(m);
    throw;
  }
  for (cl_mem m : {mq, mk, mv, mo}) clReleaseMemObject(m);
  return row;
}

}  // namespace

bool wants_fp8_mode(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--quant" || arg.rfind("--quant=", 0) == 0 || arg == "--hadamard") return true;
    std::string value;
    if (arg == "--dtype" && i + 1 < argc) value = argv[i + 1];
    else if (arg.rfind("--dtype=", 0) == 0) value = arg.substr(8);
    for (auto& ch : value) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));  // E4M3 alike
    if (value.find("e4m3") != std::string::npos || value.find("e5m2") != std::string::npos) return true;
  }
  return false;
}

int run_fp8_bench(int argc, char** argv) {
  Fp8Options o;
  CLI::App app{"flashcl-bench --dtype e4m3: the fp8 forward (quantised by flashcl::quantize_fp8) beside fp16, "
               "with FlashAttention-3's RMSE experiment on every shape"};
  std::string seqlens = "1024", dims = "128", dtype = "e4m3", quant = "tensor", out = "bf16";
  app.add_option("-p,--platform", o.platform, "Platform: index or name substring (env FLASHCL_PLATFORM)");
  app.add_option("-d,--device", o.device, "Device: index or name substring (env FLASHCL_DEVICE)");
  app.add_option("--dtype", dtype, "e4m3 or e5m2")
      ->transform(CLI::IsMember({"e4m3", "e5m2"}, CLI::ignore_case))
      ->capture_default_str();
  app.add_option("--quant", quant, "Scales: tensor, head or block")
      ->check(CLI::IsMember({"tensor", "head", "block"}))
      ->capture_default_str();
  app.add_option("--block", o.quant.block, "--quant block: rows per scale")->check(CLI::Range(1, 1 << 20));
  app.add_flag("--hadamard", o.quant.hadamard, "Random-sign Hadamard transform of Q and K before quantising");
  app.add_flag("--v-transposed", o.quant.v_transposed, "V quantised into the (B, H_kv, d, N) layout");
  app.add_option("--out-dtype", out, "O's storage: bf16, f16 or f32")
      ->check(CLI::IsMember({"bf16", "f16", "f32"}))
      ->capture_default_str();
  app.add_option("-n,--seqlen", seqlens, "Sequence lengths Nq = Nk (list)")->capture_default_str();
  app.add_option("--head-dim", dims, "Head dimensions (list)")->capture_default_str();
  app.add_option("-b,--batch", o.batch, "Batch")->check(CLI::Range(1, 65535))->capture_default_str();
  app.add_option("--heads", o.heads, "Query heads")->check(CLI::Range(1, 65535))->capture_default_str();
  app.add_option("--heads-kv", o.heads_kv, "K/V heads (divides --heads; 0: --heads)")->check(CLI::Range(0, 65535));
  const CausalOption causal(app, "off");
  app.add_flag("!--no-fp16", o.fp16, "Skip the fp16 forward");
  app.add_option("--check-macs", o.check_macs, "float64 reference budget per shape (sampled rows beyond it)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("-r,--repeat", o.repeat, "Timed runs (median)")->check(CLI::Range(1, 100000))->capture_default_str();
  add_warmup_option(app, o.warmup);
  if (const int status = parse_command_line(app, argc, argv); status >= 0) return status;
  std::string error;
  o.seqlen = parse_list_option("--seqlen", seqlens, error);
  o.head_dim = parse_list_option("--head-dim", dims, error, 256);
  if (error.empty() && o.heads_kv > 0 && o.heads % o.heads_kv != 0)
    error = "--heads-kv " + std::to_string(o.heads_kv) + " does not divide --heads " + std::to_string(o.heads);
  if (!error.empty()) {
    std::fprintf(stderr, "flashcl-bench --dtype %s: %s\n", dtype.c_str(), error.c_str());
    return 2;
  }
  o.quant.dtype = *parse_dtype(dtype);
  o.out_dtype = *parse_dtype(out);
  o.quant.granularity = quant == "tensor" ? QuantGranularity::Tensor
                        : quant == "head" ? QuantGranularity::Head
                                          : QuantGranularity::Block;
  if (o.quant.granularity == QuantGranularity::Block && o.quant.block == 0) o.quant.block = 128;
  o.causal = causal.values();

  Session session(o.platform, o.device);
  const std::string scales = quant + (o.quant.granularity == QuantGranularity::Block ? " " + std::to_string(o.quant.block) : "") +
                             (o.quant.hadamard ? " + Hadamard" : "") + (o.quant.v_transposed ? ", V transposed" : "");
  std::printf("flashcl-bench --dtype %s on %s (B = %d, H = %d, H_kv = %d; scales: %s; O in %s; inputs N(0,1) + 0.1%% "
              "outliers of std 10)\n",
              dtype.c_str(), session.info().name.c_str(), o.batch, o.heads, o.heads_kv > 0 ? o.heads_kv : o.heads,
              scales.c_str(), out.c_str());
  std::printf("%6s %4s %6s | %9s %9s %9s | %9s %9s %7s | %9s %9s\n", "N", "d", "causal", "fp8 ms", "TFLOP/s",
              "quant ms", "fp16 ms", "TFLOP/s", "fp8/f16", "RMSE fp8", "RMSE f16");
  int failed = 0, rows = 0;
  for (int d : o.head_dim)
    for (int n : o.seqlen)
      for (bool c : o.causal) {
        ++rows;
        Shape s;
        s.batch = o.batch;
        s.heads = o.heads;
        s.heads_kv = o.heads_kv;
        s.seqlen_q = s.seqlen_k = n;
        s.head_dim = d;
        s.causal = c;
        try {
          const std::vector<float> q = outlier_values(s.q_elems(), 1), k = outlier_values(s.kv_elems(), 2),
                                   v = outlier_values(s.kv_elems(), 3);
          const Fp8Problem problem(session.queue(), s, q, k, v, o.quant, o.out_dtype);
          const double fp8_ms = time_ms([&] { return problem.forward(); }, o.warmup, o.repeat);
          const std::vector<int> rows = sample_rows(s, o.check_macs);
          const Reference ref = reference_attention_rows(s, q, k, v, rows);
          const double rmse_fp8 = rmse(gather_rows(s, problem.o(), rows), ref.out);
          F16Row f16;
          if (o.fp16) f16 = run_f16(session, s, q, k, v, o.warmup, o.repeat);
          const double tflop = s.flops() / 1e9;
          if (o.fp16)
            std::printf("%6d %4d %6s | %9.3f %9.3f %9.3f | %9.3f %9.3f %7.2f | %9.3g %9.3g\n", n, d, c ? "yes" : "no",
                        fp8_ms, tflop / fp8_ms, problem.quantize_ms(), f16.ms, tflop / f16.ms, f16.ms / fp8_ms, rmse_fp8,
                        rmse(gather_rows(s, f16.o, rows), ref.out));
          else
            std::printf("%6d %4d %6s | %9.3f %9.3f %9.3f | %9s %9s %7s | %9.3g %9s\n", n, d, c ? "yes" : "no", fp8_ms,
                        tflop / fp8_ms, problem.quantize_ms(), "-", "-", "-", rmse_fp8, "-");
        } catch (const Error& e) {
          const bool skipped = row_status(e) == RowStatus::Skipped;
          std::printf("%6d %4d %6s | %s: %s\n", n, d, c ? "yes" : "no", skipped ? "skipped" : "error", e.what());
          if (!skipped) ++failed;
        }
        std::fflush(stdout);
      }
  return rows_failed(("--dtype " + dtype).c_str(), failed, rows);
}

}  // namespace flashcl::bench
