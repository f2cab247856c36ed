// backward_bench.cpp: flashcl-bench --backward. For each (N, d, causal, dtype, algorithm) it fills
// Q, K, V and dO with random values, runs the forward once for O and LSE, then times the backward
// (and forward + backward) with device events: the median over --repeat runs from the first
// kernel's start to the last one's end. FLOPs as FlashAttention-2 counts them: the backward is
// 2.5x the forward's 4·B·H·Nq·Nk·d, halved when causal; forward + backward 3.5x (a window's
// hidden keys still counted, so its rows compare as time). The variants: --window, --softcap,
// --alibi, --varlen (the batch as B packed sequences of N rows each, through cu_seqlens) and --mask
// (one boolean mask or bias broadcast over batch and heads; --dbias: the bias's gradient too).
// "work MB" is backward_workspace_bytes, the memory the backward needs beyond its tensors: O(N) for
// fa1 and fa2 (D and the fp32 dQ accumulator or partials), O(N^2) for standard (P and dS). "IO MB"
// is the modelled global-memory traffic of the backward at the blocks it runs with
// (backward_io_model, io_model.cpp; backward_tile_info), "GB/s" that over the backward's time.
// Correctness is the test suite's job (tests/test_backward.cpp against float64); this mode only times.
#include "backward_bench.hpp"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include "device_buffers.hpp"
#include "flashcl/flashcl.hpp"
#include "options.hpp"
#include "io_model.hpp"
#include "result.hpp"  // row_status
#include "problem.hpp"  // geometric_alibi_slopes, bench_mask_values
#include "stats.hpp"

namespace flashcl::bench {
namespace {

struct BackwardOptions {
  std::string platform, device;
  std::vector<int> seqlen = {1024}, head_dim = {64};
  std::vector<DType> dtypes = {DType::F32};
  std::vector<Algorithm> algorithms = {Algorithm::FA2};
  std::vector<bool> causal = {false};
  int batch = 1, heads = 8, heads_kv = 0;
  bool deterministic = false;
  int repeat = 10, warmup = 2;
  std::pair<int, int> window{-1, -1};  // LEFT, RIGHT as flash-attn's window_size
  double softcap = 0.0;                // the library takes a float
  bool alibi = false, varlen = false;
  MaskKind mask = MaskKind::None;  // --mask: one (Nq, Nk) mask broadcast over batch and heads
  bool d_bias = false;             // --dbias: the bias's gradient too
};

std::vector<std::string> comma_list(const std::string& text) {
  std::vector<std::string> items;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, ',');) items.push_back(item);
  return items;
}

struct Row {
  double bwd_ms = 0, fwd_bwd_ms = 0;
  std::size_t work_bytes = 0;  // backward_workspace_bytes: the backward's memory beyond its tensors
  IoModel io;                  // modelled global-memory traffic of the backward (io_model.hpp)
};

Row run_one(Session& session, const BackwardOptions& o, int n, int d, bool causal, DType dtype, Algorithm algo) {
  const cl_context ctx = session.context();
  const cl_command_queue queue = session.queue();
  const int hk = o.heads_kv > 0 ? o.heads_kv : o.heads;
  const std::size_t elem = element_size(dtype);
  const std::size_t q_elems = static_cast<std::size_t>(o.batch) * n * o.heads * d;
  const std::size_t kv_elems = static_cast<std::size_t>(o.batch) * n * hk * d;
  Buffer q(ctx, q_elems * elem), k(ctx, kv_elems * elem), v(ctx, kv_elems * elem), out(ctx, q_elems * elem),
      d_o(ctx, q_elems * elem), d_q(ctx, q_elems * elem), d_k(ctx, kv_elems * elem), d_v(ctx, kv_elems * elem),
      lse(ctx, static_cast<std::size_t>(o.batch) * o.heads * n * sizeof(float));
  fill_random(queue, q.get(), q_elems, dtype, 11);
  fill_random(queue, k.get(), kv_elems, dtype, 12);
  fill_random(queue, v.get(), kv_elems, dtype, 13);
  fill_random(queue, d_o.get(), q_elems, dtype, 14);

  BackwardArgs b;
  ForwardArgs& f = b.forward;
  f.batch = o.batch;
  f.heads = o.heads;
  f.heads_kv = hk;
  f.seqlen_q = f.seqlen_k = n;
  f.head_dim = d;
  f.causal = causal;
  f.dtype = dtype;
  f.algorithm = algo;
  f.q.buffer = q.get();
  f.k.buffer = k.get();
  f.v.buffer = v.get();
  f.o.buffer = out.get();
  f.lse = lse.get();
  b.d_o.buffer = d_o.get();
  b.d_q.buffer = d_q.get();
  b.d_k.buffer = d_k.get();
  b.d_v.buffer = d_v.get();
  b.deterministic = o.deterministic;
  f.window = {o.window.first, o.window.second};
  f.softcap = static_cast<float>(o.softcap);
  Buffer slopes(ctx, sizeof(float) * o.heads), cu(ctx, sizeof(int) * (o.batch + 1));
  if (o.alibi) {  // the forward bench's slopes
    upload(queue, slopes.get(), geometric_alibi_slopes(o.heads));
    f.alibi_slopes = slopes.get();
  }
  if (o.varlen) {  // B sequences of n rows packed one after another: the same bytes and FLOPs
    std::vector<int> offsets(o.batch + 1);
    for (int i = 0; i <= o.batch; ++i) offsets[i] = i * n;
    upload(queue, cu.get(), offsets);
    f.cu_seqlens_q = f.cu_seqlens_k = cu.get();
  }
  // the forward bench's masks (bench_mask_values), one (Nq, Nk) slice for all
  const std::size_t mask_elems = static_cast<std::size_t>(n) * n;
  Buffer mask(ctx, o.mask == MaskKind::None ? 1 : mask_elems * (o.mask == MaskKind::Bool ? 1 : sizeof(float)));
  Buffer d_bias(ctx, o.d_bias ? mask_elems * sizeof(float) : 1);
  if (o.mask != MaskKind::None) {
    const bool is_bool = o.mask == MaskKind::Bool;
    const std::vector<float> values = bench_mask_values(is_bool ? MaskMode::Bool : MaskMode::Bias, mask_elems, 15);
    if (is_bool)
      upload(queue, mask.get(), std::vector<std::uint8_t>(values.begin(), values.end()));
    else
      upload(queue, mask.get(), values);
    f.mask = {o.mask, mask.get(), 1, 1};
    if (o.d_bias) b.d_bias = {MaskKind::Bias, d_bias.get(), 1, 1};
  }
  // workspaces allocated once, as a training loop would
  const std::size_t bwd_work_bytes = backward_workspace_bytes(session.device(), b);
  Buffer fwd_work(ctx, workspace_bytes(session.device(), f)), bwd_work(ctx, bwd_work_bytes);
  f.workspace = fwd_work.get();
  b.workspace = bwd_work.get();
  ForwardArgs plain_forward = f;  // the forward of the timed pair

  forward(queue, plain_forward).wait();
  for (int i = 0; i < o.warmup; ++i) backward(queue, b).wait();
  std::vector<double> bwd, both;
  for (int i = 0; i < o.repeat; ++i) bwd.push_back(backward(queue, b).device_ms());
  for (int i = 0; i < o.repeat; ++i) {
    const Launch fl = forward(queue, plain_forward);
    const Launch bl = backward(queue, b);
    both.push_back(fl.device_ms() + bl.device_ms());
  }
  Shape shape = dense_shape(o.batch, o.heads, n, n, d, causal);
  shape.heads_kv = hk;
  shape.window_left = o.window.first;
  shape.window_right = o.window.second;
  if (o.varlen)
    for (int i = 0; i <= o.batch; ++i) shape.cu_seqlens_q.push_back(i * n);
  shape.cu_seqlens_k = shape.cu_seqlens_q;
  const IoModel io = backward_io_model(shape, backward_tile_info(session.device(), b), static_cast<int>(elem));
  return {median(bwd), median(both), bwd_work_bytes, io};
}

}  // namespace

bool wants_backward_mode(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--backward" || arg == "--mode=bwd" || (arg == "--mode" && i + 1 < argc && std::strcmp(argv[i + 1], "bwd") == 0))
      return true;
  }
  return false;
}

int run_backward_bench(int argc, char** argv) {
  BackwardOptions o;
  CLI::App app{"flashcl-bench --backward: flashcl::backward after a forward; TFLOP/s of the backward and of both"};
  std::string seqlens = "1024", dims = "64", dtypes = "f32", algos = "fa2", mode;
  bool backward_flag = false;
  app.add_flag("--backward", backward_flag, "Backward mode (this one)");
  app.add_option("--mode", mode, "bwd (the same as --backward)")->check(CLI::IsMember({"bwd"}));
  app.add_option("-p,--platform", o.platform, "Platform: index or name substring (env FLASHCL_PLATFORM)");
  app.add_option("-d,--device", o.device, "Device: index or name substring (env FLASHCL_DEVICE)");
  app.add_option("-n,--seqlen", seqlens, "Sequence lengths Nq = Nk (list)")->capture_default_str();
  app.add_option("--head-dim", dims, "Head dimensions (list)")->capture_default_str();
  app.add_option("-b,--batch", o.batch, "Batch")->check(CLI::Range(1, 65535))->capture_default_str();
  app.add_option("--heads", o.heads, "Query heads")->check(CLI::Range(1, 65535))->capture_default_str();
  app.add_option("--heads-kv", o.heads_kv, "K/V heads (divides --heads; 0: --heads)")->check(CLI::Range(0, 65535));
  app.add_option("--dtype", dtypes, "f32, f16, bf16 (list)")->capture_default_str();
  app.add_option("--algo", algos, "standard, fa1, fa2, all (list)")->capture_default_str();
  const CausalOption causal(app, "off");
  app.add_flag("--deterministic", o.deterministic, "fa2: dQ without atomics (bit-identical runs)");
  app.add_option("-r,--repeat", o.repeat, "Timed runs (median)")->check(CLI::Range(1, 100000))->capture_default_str();
  add_warmup_option(app, o.warmup);
  std::string window;
  add_window_option(app, window);
  add_softcap_option(app, o.softcap);
  app.add_flag("--alibi", o.alibi, "ALiBi: per-head slopes 2^(-8(h+1)/H)");
  app.add_flag("--varlen", o.varlen, "The batch as B packed sequences of N rows (cu_seqlens)");
  std::string mask = "none";
  app.add_option("--mask", mask, "Attention mask broadcast over B and H: none, bool (uint8, 1 key in 8 hidden) or bias")
      ->check(CLI::IsMember({"none", "bool", "bias"}))
      ->capture_default_str();
  app.add_flag("--dbias", o.d_bias, "With --mask bias: its gradient too (summed over B and H)");
  if (const int status = parse_command_line(app, argc, argv); status >= 0) return status;
  std::string error;
  o.seqlen = parse_list_option("--seqlen", seqlens, error);
  o.head_dim = parse_list_option("--head-dim", dims, error, 256);
  if (error.empty()) error = float_dtypes_error(comma_list(dtypes), o.dtypes);
  for (const std::string& name : comma_list(algos))
    if (const std::string wrong = algo_error(name); !wrong.empty() && error.empty()) error = "--algo: " + wrong;
  if (error.empty()) o.algorithms = parse_algos(comma_list(algos));
  if (!error.empty()) {
    std::fprintf(stderr, "flashcl-bench --backward: %s\n", error.c_str());
    return 2;
  }
  if (o.heads_kv > 0 && o.heads % o.heads_kv != 0) {
    std::fprintf(stderr, "flashcl-bench --backward: --heads-kv %d does not divide --heads %d\n", o.heads_kv, o.heads);
    return 2;
  }
  o.causal = causal.values();
  o.window = read_window(window);
  o.mask = mask == "bool" ? MaskKind::Bool : mask == "bias" ? MaskKind::Bias : MaskKind::None;
  if (o.d_bias && o.mask != MaskKind::Bias) {
    std::fprintf(stderr, "flashcl-bench --backward: --dbias needs --mask bias\n");
    return 2;
  }

  Session session(o.platform, o.device);
  const char* mask_note = o.mask == MaskKind::Bool   ? ", boolean mask"
                          : o.mask == MaskKind::None ? ""
                          : o.d_bias                 ? ", bias and its gradient"
                                                     : ", bias";
  std::printf("flashcl-bench --backward on %s (B = %d, H = %d, H_kv = %d%s; window %d,%d, softcap %g%s%s%s)\n",
              session.info().name.c_str(), o.batch, o.heads, o.heads_kv > 0 ? o.heads_kv : o.heads,
              o.deterministic ? ", deterministic" : "", o.window.first, o.window.second, o.softcap,
              o.alibi ? ", ALiBi" : "", o.varlen ? ", packed sequences" : "", mask_note);
  std::printf("%6s %4s %6s %5s %-8s | %10s %9s | %12s %9s | %9s | %9s %8s\n", "N", "d", "causal", "dtype", "algo",
              "bwd ms", "TFLOP/s", "fwd+bwd ms", "TFLOP/s", "work MB", "IO MB", "GB/s");
  int failed = 0, rows = 0;
  for (DType dtype : o.dtypes)
    for (int d : o.head_dim)
      for (int n : o.seqlen)
        for (bool c : o.causal)
          for (Algorithm algo : o.algorithms) {
            const double fwd_flops = 4.0 * o.batch * o.heads * static_cast<double>(n) * n * d / (c ? 2 : 1);
            ++rows;
            try {
              const Row r = run_one(session, o, n, d, c, dtype, algo);
              std::printf("%6d %4d %6s %5s %-8s | %10.3f %9.3f | %12.3f %9.3f | %9.3f | %9.1f %8.1f\n", n, d,
                          c ? "yes" : "no", to_string(dtype), to_string(algo), r.bwd_ms, 2.5 * fwd_flops / r.bwd_ms / 1e9,
                          r.fwd_bwd_ms, 3.5 * fwd_flops / r.fwd_bwd_ms / 1e9, r.work_bytes / 1e6, r.io.bytes / 1e6,
                          r.io.bytes / r.bwd_ms / 1e6);
            } catch (const Error& e) {
              const bool skipped = row_status(e) == RowStatus::Skipped;
              std::printf("%6d %4d %6s %5s %-8s | %s: %s\n", n, d, c ? "yes" : "no", to_string(dtype),
                          to_string(algo), skipped ? "skipped" : "error", e.what());
              if (!skipped) ++failed;
            }
            std::fflush(stdout);
          }
  return rows_failed("--backward", failed, rows);
}

}  // namespace flashcl::bench
