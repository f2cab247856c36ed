// flashcl-bench: runs standard, fa1 and fa2 on one device and shape, and prints per algorithm the
// median device time (OpenCL profiling events, after warm-up), TFLOP/s by the FlashAttention
// convention, the device bytes allocated, the speedup over standard and the error against a
// float64 reference.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "flashcl/flashcl.hpp"
#include "problem.hpp"

namespace {

struct Options {
  std::string platform, device;
  bool list = false, check = true;
  int batch = 1, heads = 4, seqlen = 1024, seqlen_k = 0, head_dim = 64, repeat = 5, warmup = 1;
  bool causal = false;
  std::vector<std::string> algos = {"standard", "fa1", "fa2"};
};

struct DeviceBuffer {
  cl_mem mem = nullptr;
  DeviceBuffer(cl_context ctx, const std::vector<float>& host) {
    cl_int err = CL_SUCCESS;
    mem = clCreateBuffer(ctx, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, host.size() * sizeof(float),
                         const_cast<float*>(host.data()), &err);
    if (err != CL_SUCCESS) throw flashcl::Error(flashcl::Status::OutOfResources, "clCreateBuffer failed");
  }
  ~DeviceBuffer() { clReleaseMemObject(mem); }
};

int list_devices() {
  for (const auto& d : flashcl::list_devices())
    std::printf("platform %d device %d: %s | %s | %s | %d CUs | local %zu KiB | global %.1f GiB | driver %s\n",
                d.platform_index, d.device_index, d.platform.c_str(), d.name.c_str(),
                d.is_gpu ? "GPU" : d.is_cpu ? "CPU" : "other", d.compute_units, d.local_mem_bytes / 1024,
                d.global_mem_bytes / double(1 << 30), d.driver.c_str());
  return 0;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

int run(const Options& opt) {
  flashcl::Session session(opt.platform, opt.device);
  flashcl::bench::Shape shape;
  shape.batch = opt.batch;
  shape.heads = opt.heads;
  shape.seqlen_q = opt.seqlen;
  shape.seqlen_k = opt.seqlen_k > 0 ? opt.seqlen_k : opt.seqlen;
  shape.head_dim = opt.head_dim;
  shape.causal = opt.causal;

  const auto& info = session.info();
  std::printf("flashcl %s | device: %s (%s, driver %s)\n", flashcl::version(), info.name.c_str(),
              info.platform.c_str(), info.driver.c_str());
  std::printf("shape: B=%d H=%d Nq=%d Nk=%d d=%d causal=%s fp32 | median of %d runs after %d warm-up\n\n",
              shape.batch, shape.heads, shape.seqlen_q, shape.seqlen_k, shape.head_dim, shape.causal ? "yes" : "no",
              opt.repeat, opt.warmup);

  const auto q = flashcl::bench::random_values(shape.q_elems(), 1);
  const auto k = flashcl::bench::random_values(shape.kv_elems(), 2);
  const auto v = flashcl::bench::random_values(shape.kv_elems(), 3);
  flashcl::bench::Reference ref;
  if (opt.check) ref = flashcl::bench::reference_attention(shape, q, k, v);

  DeviceBuffer dq(session.context(), q), dk(session.context(), k), dv(session.context(), v);
  std::vector<float> poison(shape.q_elems(), std::numeric_limits<float>::quiet_NaN());
  DeviceBuffer dout(session.context(), poison);

  std::printf("%-9s %10s %9s %10s %9s %11s %11s\n", "algo", "median ms", "TFLOP/s", "mem MiB", "speedup",
              "max |err|", "rel err");
  double standard_ms = 0.0;
  for (const auto& name : opt.algos) {
    const auto algo = flashcl::parse_algorithm(name);
    if (!algo) {
      std::fprintf(stderr, "--algo: unknown algorithm '%s'\n", name.c_str());
      return 2;
    }
    flashcl::ForwardArgs args;
    args.batch = shape.batch;
    args.heads = shape.heads;
    args.seqlen_q = shape.seqlen_q;
    args.seqlen_k = shape.seqlen_k;
    args.head_dim = shape.head_dim;
    args.causal = shape.causal;
    args.algorithm = *algo;
    args.q = {dq.mem};
    args.k = {dk.mem};
    args.v = {dv.mem};
    args.o = {dout.mem};
    const double mib = flashcl::device_bytes(session.device(), args) / double(1 << 20);
    try {
      clEnqueueWriteBuffer(session.queue(), dout.mem, CL_TRUE, 0, poison.size() * sizeof(float), poison.data(), 0,
                           nullptr, nullptr);
      for (int i = 0; i < opt.warmup; ++i) flashcl::forward(session.queue(), args).wait();
      std::vector<double> times;
      for (int i = 0; i < opt.repeat; ++i) times.push_back(flashcl::forward(session.queue(), args).device_ms());
      const double ms = median(times);
      if (*algo == flashcl::Algorithm::Standard) standard_ms = ms;
      char err_abs[32] = "-", err_rel[32] = "-", speedup[32] = "-";
      if (opt.check) {
        std::vector<float> out(shape.q_elems());
        clEnqueueReadBuffer(session.queue(), dout.mem, CL_TRUE, 0, out.size() * sizeof(float), out.data(), 0, nullptr,
                            nullptr);
        const auto e = flashcl::bench::compare(out, ref.out);
        std::snprintf(err_abs, sizeof err_abs, e.non_finite ? "NaN" : "%.2e", e.max_abs);
        std::snprintf(err_rel, sizeof err_rel, "%.2e", e.rel_norm);
      }
      if (standard_ms > 0) std::snprintf(speedup, sizeof speedup, "%.2fx", standard_ms / ms);
      std::printf("%-9s %10.3f %9.4f %10.1f %9s %11s %11s\n", name.c_str(), ms, shape.flops() / (ms * 1e-3) / 1e12,
                  mib, speedup, err_abs, err_rel);
    } catch (const flashcl::Error& e) {
      std::printf("%-9s skipped: %s\n", name.c_str(), e.what());
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"flashcl-bench: standard vs FlashAttention-1 vs FlashAttention-2 on an OpenCL device"};
  Options opt;
  app.add_flag("--list-devices", opt.list, "List OpenCL platforms and devices");
  app.add_option("-p,--platform", opt.platform, "Platform index or name substring (env FLASHCL_PLATFORM)");
  app.add_option("-d,--device", opt.device, "Device index or name substring (env FLASHCL_DEVICE)");
  app.add_option("-b,--batch", opt.batch, "Batch size")->check(CLI::PositiveNumber);
  app.add_option("--heads", opt.heads, "Number of heads")->check(CLI::PositiveNumber);
  app.add_option("-n,--seqlen", opt.seqlen, "Query sequence length")->check(CLI::PositiveNumber);
  app.add_option("--seqlen-k", opt.seqlen_k, "Key sequence length (default: --seqlen)");
  app.add_option("--head-dim", opt.head_dim, "Head dimension (1..256)")->check(CLI::Range(1, 256));
  app.add_flag("--causal", opt.causal, "Causal mask (bottom-right aligned)");
  app.add_option("--algo", opt.algos, "Algorithms: standard, fa1, fa2, auto")->delimiter(',');
  app.add_option("--repeat", opt.repeat, "Timed runs per algorithm")->check(CLI::PositiveNumber);
  app.add_option("--warmup", opt.warmup, "Untimed runs first");
  app.add_flag("!--no-check", opt.check, "Skip the float64 reference check");
  CLI11_PARSE(app, argc, argv);
  try {
    return opt.list ? list_devices() : run(opt);
  } catch (const flashcl::Error& e) {
    std::fprintf(stderr, "flashcl-bench: %s\n", e.what());
    return 1;
  }
}
