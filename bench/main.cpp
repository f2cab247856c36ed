// flashcl-bench: measures standard attention, FlashAttention-1 and FlashAttention-2 on one
// OpenCL device over a sweep of shapes, the way a kernel engineer reads them: device time,
// TFLOP/s, modelled global-memory traffic, % of the device's own FMA and copy ceilings, device
// memory, speedup over standard, build cost and the error against float64. This file
// only wires the pieces: options -> context -> sweep of shapes -> runner -> reporter.
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cmath>
#include <cstdio>
#include <memory>
#include <random>

#include "context.hpp"
#include "backward_bench.hpp"
#include "decode_bench.hpp"
#include "fp8_bench.hpp"
#include "options.hpp"
#include "report.hpp"
#include "runner.hpp"

using namespace flashcl;
using namespace flashcl::bench;

namespace {

int print_devices() {
  const auto devices = flashcl::list_devices();
  if (devices.empty()) std::printf("no OpenCL devices found (is an ICD installed?)\n");
  for (const auto& d : devices)
    std::printf("-p %d -d %d  %s | %s | %s | driver %s | %d CUs | local %zu KiB | global %.1f GiB\n", d.platform_index,
                d.device_index, d.platform.c_str(), d.name.c_str(),
                d.is_gpu   ? "GPU"
                : d.is_cpu ? "CPU"
                           : "other",
                d.driver.c_str(), d.compute_units, d.local_mem_bytes / 1024, d.global_mem_bytes / 1073741824.0);
  return 0;
}

struct Case {
  Shape shape;
  DType dtype;
};

// The variants whose data are small enough to hold per case: ALiBi slopes (flash-attn's geometric
// ones), the mask's kind and dims (the runner draws its values), varlen lengths drawn from
// [N/2, N] per sequence, seeded by (seed, B, Nq, Nk) so a sweep is reproducible and its rows of
// other dtypes, head dims, causal settings and algorithms time the same lengths.
void add_variants(Shape& s, const Options& o) {
  s.alibi_slopes.clear();
  if (o.alibi) s.alibi_slopes = geometric_alibi_slopes(s.heads);
  s.mask = o.mask;
  s.mask_batch = s.batch;
  s.mask_heads = s.heads;
  s.mask_values.clear();
  s.cu_seqlens_q.clear();
  s.cu_seqlens_k.clear();
  if (o.varlen) {
    std::seed_seq seeds{static_cast<std::uint32_t>(o.seed), static_cast<std::uint32_t>(o.seed >> 32),
                        static_cast<std::uint32_t>(s.batch), static_cast<std::uint32_t>(s.seqlen_q),
                        static_cast<std::uint32_t>(s.seqlen_k)};
    std::mt19937_64 rng(seeds);
    auto draw = [&](int n) { return std::uniform_int_distribution<int>(std::max(1, n / 2), n)(rng); };
    s.cu_seqlens_q = {0};
    s.cu_seqlens_k = {0};
    for (int b = 0; b < s.batch; ++b) {
      const int lq = draw(s.seqlen_q), lk = s.seqlen_k == s.seqlen_q ? lq : draw(s.seqlen_k);
      s.cu_seqlens_q.push_back(s.cu_seqlens_q.back() + lq);
      s.cu_seqlens_k.push_back(s.cu_seqlens_k.back() + lk);
    }
  }
}

// Cases in sweep order: dtype, head dim and causal outermost (one plot panel each), sequence
// innermost.
std::vector<Case> cases(const Options& o) {
  std::vector<Case> all;
  Shape s;
  for (DType t : o.dtypes)
    for (int d : o.head_dim)
      for (bool causal : o.causal)
        for (int b : o.batch)
          for (int h : o.heads)
            for (int hk : o.heads_kv.empty() ? std::vector<int>{0} : o.heads_kv)
              for (int n : o.seqlen)
                for (int nk : o.seqlen_k.empty() ? std::vector<int>{n} : o.seqlen_k) {
                  s.batch = b, s.heads = h, s.heads_kv = hk, s.seqlen_q = n, s.seqlen_k = nk, s.head_dim = d;
                  s.causal = causal, s.window_left = o.window_left, s.window_right = o.window_right;
                  s.softcap = o.softcap;
                  add_variants(s, o);
                  all.push_back({s, t});
                }
  return all;
}

// A one-line progress indicator on stderr, only when stderr is a terminal.
class Progress {
 public:
  Progress(bool enabled, int total) : enabled_(enabled), total_(total), start_(std::chrono::steady_clock::now()) {}
  void show(const Result& r) {
    if (!enabled_) return;
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    const Shape& s = r.shape;
    std::fprintf(stderr, "\r\033[K[%d/%d %.0fs] %s B=%d H=%d Nq=%d Nk=%d d=%d causal=%s %s ...", ++done_, total_,
                 elapsed, r.algo.c_str(), s.batch, s.heads, s.seqlen_q, s.seqlen_k, s.head_dim, s.causal ? "on" : "off",
                 to_string(r.dtype));
    std::fflush(stderr);
  }
  void clear() {
    if (enabled_) std::fprintf(stderr, "\r\033[K");
  }

 private:
  bool enabled_;
  int total_, done_ = 0;
  std::chrono::steady_clock::time_point start_;
};

int run(const Options& opt) {
  std::FILE* out = stdout;
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> file(nullptr, &std::fclose);
  if (!opt.output.empty()) {
    file.reset(std::fopen(opt.output.c_str(), "w"));
    if (!file) {
      std::fprintf(stderr, "flashcl-bench: -o: cannot write '%s'\n", opt.output.c_str());
      return 2;
    }
    if (opt.format == Format::Json)
      file.reset();  // the JSON reporter rewrites the file itself
    else
      out = file.get();
  }
  if (!opt.disk_cache) set_disk_cache_enabled(false);
  Session session(opt.platform, opt.device);
  const Context context = make_context(session, opt);
  std::vector<std::unique_ptr<Reporter>> reporters;
  reporters.push_back(opt.format == Format::Csv    ? make_csv_reporter(out)
                      : opt.format == Format::Json ? make_json_reporter(out, opt.output)
                                                   : make_table_reporter(out, opt.quiet));
  // CSV or JSON going to a file: the table still shows on stdout while the sweep runs.
  if (!opt.output.empty() && opt.format != Format::Table && !opt.quiet)
    reporters.push_back(make_table_reporter(stdout, false));
  const std::unique_ptr<Reporter> reporter = make_tee_reporter(std::move(reporters));
  const std::vector<Case> sweep = cases(opt);
  Progress progress(!opt.quiet && isatty(fileno(stderr)), static_cast<int>(sweep.size() * opt.algos.size()));
  Runner runner(session, opt, context);
  RowHooks hooks;
  hooks.starting = [&](const Result& r) { progress.show(r); };
  int failed = 0, rows = 0;
  hooks.done = [&](const Result& r) {
    progress.clear();
    reporter->row(r);
    ++rows;
    if (r.status == RowStatus::Error) ++failed;
  };
  reporter->begin(context);
  for (std::size_t i = 0; i < sweep.size(); ++i)
    runner.run_shape(sweep[i].shape, sweep[i].dtype, static_cast<int>(i), hooks);
  reporter->end();
  // A probe that beat the cached FMA ceiling shows the ceiling was measured on a busy machine.
  const double best = runner.best_probe_gflops();
  if (best > context.ceilings.fma_gflops && raise_fma_ceiling(session.device(), best) && !opt.quiet)
    std::fprintf(stderr,
                 "flashcl-bench: the FMA probe reached %.1f GFLOP/s, above the cached ceiling of %.1f (measured on a "
                 "busy machine);\n  the cache now holds %.1f; this run's %% of peak used %.1f.\n",
                 best, context.ceilings.fma_gflops, best, context.ceilings.fma_gflops);
  if (!opt.output.empty() && !opt.quiet) std::fprintf(stderr, "flashcl-bench: wrote %s\n", opt.output.c_str());
  return rows_failed("", failed, rows);
}

}  // namespace

int main(int argc, char** argv) {
  if (wants_decode_mode(argc, argv)) {  // its own options: decode_bench.cpp
    try {
      return run_decode_bench(argc, argv);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "flashcl-bench --decode: %s\n", e.what());
      return 1;
    }
  }
  if (wants_backward_mode(argc, argv)) {  // its own options: backward_bench.cpp
    try {
      return run_backward_bench(argc, argv);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "flashcl-bench --backward: %s\n", e.what());
      return 1;
    }
  }
  if (wants_fp8_mode(argc, argv)) {  // its own options: fp8_bench.cpp
    try {
      return run_fp8_bench(argc, argv);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "flashcl-bench --dtype e4m3|e5m2: %s\n", e.what());
      return 1;
    }
  }
  Options options;
  if (const int rc = parse_options(argc, argv, options); rc >= 0) return rc;
  try {
    return options.list_devices ? print_devices() : run(options);
  } catch (const Error& e) {
    std::fprintf(stderr, "flashcl-bench: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "flashcl-bench: unexpected error: %s\n", e.what());
    return 1;
  }
}
