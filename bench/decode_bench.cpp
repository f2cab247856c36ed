// decode_bench.cpp: flashcl-bench --decode. For each (cache length, batch) it builds a K/V cache
// in device memory (contiguous, or paged with pages shuffled over the pool), fills it with random
// values (a 1 Mi-element random block repeated, so large caches fill in seconds), and times
// forward_kvcache: the median device time from the first kernel's start to the merge's end over
// --repeat runs. The figure of merit is the K/V bytes the call must read (B·H_kv·(L + new)·d·2
// elements) per second, shown against the copy ceiling flashcl-bench measures for the device
// (ceilings.hpp; cached). --check compares O with the float64 reference on the cache the device
// holds after the runs (for small shapes: the reference costs B·H·Nq·L·d multiply-adds).
// --cache-dtype e4m3|e5m2 runs an fp8 KV cache (descales 0.01; its bytes count 1 an element, so
// GB/s is the bytes the fp8 call actually reads; with the option the CSV gains a last column,
// cache_dtype, and without it keeps the columns bench/gpu/decode_table.py reads).
#include "decode_bench.hpp"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "ceilings.hpp"
#include "device_buffers.hpp"
#include "flashcl/flashcl.hpp"
#include "options.hpp"
#include "problem.hpp"
#include "runner.hpp"
#include "stats.hpp"

namespace flashcl::bench {
namespace {

struct DecodeOptions {
  std::string platform, device;
  std::vector<int> cache = {4096}, batch = {8};
  int heads = 32, heads_kv = 8, head_dim = 128, seqlen_q = 1, new_tokens = 0, page_size = 0, splits = 0;
  bool causal = false;
  DType dtype = DType::F16;
  std::optional<DType> cache_dtype;  // --cache-dtype: e4m3/e5m2 caches (unset: dtype)
  int repeat = 20, warmup = 3;
  bool check = false, roofline = true, remeasure = false, csv = false, explain = false;
  std::uint64_t seed = 1;
};

struct Row {
  double median_ms = 0, min_ms = 0, gbs = 0, mbytes = 0, max_err = -1;
  int splits = 0;
};

// An fp8 cache's bytes: random values of magnitude up to 100 encoded (a 1 Mi-element block
// repeated, as fill_random does), standing for value x kFp8Descale, so the dequantised cache is
// about the other caches' U(-1, 1).
constexpr float kFp8Descale = 0.01f;
void fill_fp8(cl_command_queue queue, cl_mem buffer, std::size_t elems, DType dtype, std::uint64_t seed) {
  const std::size_t block = std::min<std::size_t>(elems, std::size_t{1} << 20);
  const std::vector<std::uint8_t> bytes = to_fp8(dtype, random_values(block, seed, 1.0f / kFp8Descale));
  for (std::size_t at = 0; at < elems; at += block)
    check_cl(clEnqueueWriteBuffer(queue, buffer, CL_TRUE, at, std::min(block, elems - at), bytes.data(), 0, nullptr, nullptr),
             "clEnqueueWriteBuffer");
}

std::vector<float> read_fp8(cl_command_queue queue, cl_mem buffer, std::size_t elems, DType dtype) {
  std::vector<std::uint8_t> bytes(elems);
  check_cl(clEnqueueReadBuffer(queue, buffer, CL_TRUE, 0, elems, bytes.data(), 0, nullptr, nullptr), "clEnqueueReadBuffer");
  std::vector<float> out = from_fp8(dtype, bytes);
  for (float& x : out) x *= kFp8Descale;
  return out;
}

// --explain: the median of each kernel's own time and of what the call's span adds between them
// (launch gaps), in microseconds, on stderr: where a short call's fixed cost sits.
void explain_kernels(const std::vector<std::vector<double>>& per_kernel, const std::vector<double>& spans) {
  std::vector<double> gaps;
  for (std::size_t i = 0; i < spans.size(); ++i)
    gaps.push_back(spans[i] - std::accumulate(per_kernel[i].begin(), per_kernel[i].end(), 0.0));
  std::fprintf(stderr, "  kernels (median us):");
  for (std::size_t k = 0; !per_kernel.empty() && k < per_kernel.front().size(); ++k) {
    std::vector<double> t;
    for (const auto& run : per_kernel) t.push_back(run[k]);
    std::fprintf(stderr, " %.1f", 1e3 * median(t));
  }
  std::fprintf(stderr, "; gaps %.1f; span %.1f\n", 1e3 * median(gaps), 1e3 * median(spans));
}

Row run_one(Session& session, const DecodeOptions& o, int cache_len, int batch) {
  const cl_context ctx = session.context();
  const cl_command_queue queue = session.queue();
  const int B = batch, H = o.heads, Hk = o.heads_kv, d = o.head_dim, Nq = o.seqlen_q, T = o.new_tokens;
  const int capacity = cache_len + T;
  const bool paged = o.page_size > 0;
  const int max_pages = paged ? (capacity + o.page_size - 1) / o.page_size : 0;
  const DType cache_dtype = o.cache_dtype.value_or(o.dtype);
  const bool fp8 = is_fp8(cache_dtype);
  const std::size_t elem = element_size(o.dtype), cache_elem = element_size(cache_dtype);
  const std::size_t row = static_cast<std::size_t>(Hk) * d;
  const std::size_t slots = paged ? static_cast<std::size_t>(B) * max_pages : B;
  const std::size_t slot_rows = paged ? o.page_size : capacity;
  const std::size_t cache_elems = slots * slot_rows * row;

  Buffer k_cache(ctx, cache_elems * cache_elem), v_cache(ctx, cache_elems * cache_elem);
  const std::vector<float> descales(static_cast<std::size_t>(B) * Hk, kFp8Descale);
  Buffer descale(ctx, descales.size() * sizeof(float));
  if (fp8) {
    fill_fp8(queue, k_cache.get(), cache_elems, cache_dtype, o.seed * 5 + 1);
    fill_fp8(queue, v_cache.get(), cache_elems, cache_dtype, o.seed * 5 + 2);
    upload(queue, descale.get(), descales);
  } else {
    fill_random(queue, k_cache.get(), cache_elems, o.dtype, o.seed * 5 + 1);
    fill_random(queue, v_cache.get(), cache_elems, o.dtype, o.seed * 5 + 2);
  }
  const std::size_t q_elems = static_cast<std::size_t>(B) * Nq * H * d, new_elems = static_cast<std::size_t>(B) * T * row;
  Buffer q(ctx, q_elems * elem), out(ctx, q_elems * elem), k_new(ctx, new_elems * elem), v_new(ctx, new_elems * elem);
  fill_random(queue, q.get(), q_elems, o.dtype, o.seed * 5 + 3);
  if (T > 0) {
    fill_random(queue, k_new.get(), new_elems, o.dtype, o.seed * 5 + 4);
    fill_random(queue, v_new.get(), new_elems, o.dtype, o.seed * 5 + 5);
  }
  std::vector<int> lens(B, cache_len), table(static_cast<std::size_t>(B) * max_pages);
  std::iota(table.begin(), table.end(), 0);
  std::shuffle(table.begin(), table.end(), std::mt19937_64(o.seed));  // pages in any order, as a pool ages
  Buffer seqlens(ctx, lens.size() * 4), block_table(ctx, table.size() * 4);
  upload(queue, seqlens.get(), lens);
  if (paged)
    upload(queue, block_table.get(), table);

  KvCacheArgs a;
  a.batch = B;
  a.heads = H;
  a.heads_kv = Hk;
  a.seqlen_q = Nq;
  a.head_dim = d;
  a.causal = o.causal;
  a.dtype = o.dtype;
  if (fp8) {
    a.cache_dtype = cache_dtype;
    a.k_descale = a.v_descale = descale.get();
  }
  a.q.buffer = q.get();
  a.o.buffer = out.get();
  a.k_cache.buffer = k_cache.get();
  a.v_cache.buffer = v_cache.get();
  a.cache_seqlens = seqlens.get();
  if (paged) {
    a.block_table = block_table.get();
    a.num_pages = static_cast<int>(slots);
    a.page_size = o.page_size;
    a.max_pages = max_pages;
  } else {
    a.cache_seqlen = capacity;
  }
  if (T > 0) {
    a.k_new.buffer = k_new.get();
    a.v_new.buffer = v_new.get();
    a.seqlen_new = T;
  }
  a.num_splits = o.splits;
  const std::size_t workspace = kvcache_workspace_bytes(session.device(), a);
  Buffer work(ctx, workspace);  // allocated once, as a serving loop would
  a.workspace = work.get();

  Row r;
  const KvCacheInfo info = kvcache_info(queue, a);
  r.splits = info.num_splits;  // (the workspace is sized for the most any residency asks)
  if (o.explain) std::fprintf(stderr, "B %d, %d keys: %s, %s\n", B, capacity, info.kernel.c_str(), info.reason.c_str());
  for (int i = 0; i < o.warmup; ++i) forward_kvcache(queue, a).wait();
  std::vector<double> ms;
  std::vector<std::vector<double>> per_kernel;  // --explain: each kernel's own device time
  for (int i = 0; i < o.repeat; ++i) {
    const Launch launch = forward_kvcache(queue, a);
    ms.push_back(launch.device_ms());
    if (o.explain) per_kernel.push_back(kernel_ms(launch));
  }
  if (o.explain) explain_kernels(per_kernel, ms);
  r.median_ms = median(ms);
  r.min_ms = *std::min_element(ms.begin(), ms.end());
  const double bytes = 2.0 * B * Hk * static_cast<double>(capacity) * d * cache_elem;  // 1 byte an element in fp8
  r.mbytes = bytes / 1e6;
  r.gbs = bytes / (r.median_ms * 1e6);

  if (o.check) {  // the reference on the cache as the device left it (appended rows included)
    const auto kc = fp8 ? read_fp8(queue, k_cache.get(), cache_elems, cache_dtype)
                        : read_floats(queue, k_cache.get(), cache_elems, o.dtype);
    const auto vc = fp8 ? read_fp8(queue, v_cache.get(), cache_elems, cache_dtype)
                        : read_floats(queue, v_cache.get(), cache_elems, o.dtype);
    const auto qh = read_floats(queue, q.get(), q_elems, o.dtype);
    const auto oh = read_floats(queue, out.get(), q_elems, o.dtype);
    Shape s;
    s.batch = B, s.heads = H, s.heads_kv = Hk, s.head_dim = d, s.seqlen_q = Nq, s.seqlen_k = capacity;
    s.causal = o.causal;
    s.cu_seqlens_q = {0};
    s.cu_seqlens_k = {0};
    std::vector<float> k, v;
    for (int b = 0; b < B; ++b) {
      s.cu_seqlens_q.push_back((b + 1) * Nq);
      s.cu_seqlens_k.push_back((b + 1) * capacity);
      for (int p = 0; p < capacity; ++p) {
        const std::size_t slot = paged ? table[static_cast<std::size_t>(b) * max_pages + p / o.page_size] : b;
        const std::size_t at = (slot * slot_rows + (paged ? p % o.page_size : p)) * row;
        k.insert(k.end(), kc.begin() + at, kc.begin() + at + row);
        v.insert(v.end(), vc.begin() + at, vc.begin() + at + row);
      }
    }
    const Reference ref = reference_attention(s, qh, k, v);
    r.max_err = compare(oh, ref.out).max_abs;
  }
  return r;
}

}  // namespace

bool wants_decode_mode(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--decode" || arg == "--mode=decode" || (arg == "--mode" && i + 1 < argc && std::strcmp(argv[i + 1], "decode") == 0))
      return true;
  }
  return false;
}

int run_decode_bench(int argc, char** argv) {
  DecodeOptions o;
  CLI::App app{"flashcl-bench --decode: forward_kvcache on a KV cache; K/V bytes read per second"};
  std::string cache_list = "4096", batch_list = "8", dtype = "f16", cache_dtype;
  bool decode_flag = false;
  std::string mode;
  app.add_flag("--decode", decode_flag, "Decode mode (this one)");
  app.add_option("--mode", mode, "decode (the same as --decode)")->check(CLI::IsMember({"decode"}));
  app.add_option("-p,--platform", o.platform, "Platform: index or name substring (env FLASHCL_PLATFORM)");
  app.add_option("-d,--device", o.device, "Device: index or name substring (env FLASHCL_DEVICE)");
  app.add_option("--cache", cache_list, "Cached keys per sequence L (list: 4096,32768 or 4096:131072)")->capture_default_str();
  app.add_option("-b,--batch", batch_list, "Batch sizes (list)")->capture_default_str();
  app.add_option("--heads", o.heads, "Query heads")->check(CLI::Range(1, 65535))->capture_default_str();
  app.add_option("--heads-kv", o.heads_kv, "K/V heads (divides --heads)")->check(CLI::Range(1, 65535))->capture_default_str();
  app.add_option("--head-dim", o.head_dim, "Head dimension")->check(CLI::Range(1, 256))->capture_default_str();
  app.add_option("--seqlen-q", o.seqlen_q, "Query rows per sequence (1: decode)")->check(CLI::Range(1, 1 << 20))->capture_default_str();
  app.add_option("--new-tokens", o.new_tokens, "Rows of k_new/v_new appended per call (0: none)")->check(CLI::Range(0, 1 << 20));
  app.add_option("--page-size", o.page_size, "Paged cache with this page size (0: contiguous)")->check(CLI::Range(0, 1 << 20));
  app.add_option("--splits", o.splits, "Force the split count (0: the planner's)")->check(CLI::Range(0, 1024));
  const CausalOption causal(app, "off", false);  // matters for --seqlen-q > 1
  app.add_option("--dtype", dtype, "f32, f16 or bf16")->check(CLI::IsMember({"f32", "f16", "bf16"}))->capture_default_str();
  app.add_option("--cache-dtype", cache_dtype, "The caches' storage: e4m3 or e5m2 (an fp8 KV cache, descales 0.01; "
                 "K/V bytes counted at 1 a element); unset: --dtype")
      ->check(CLI::IsMember({"e4m3", "e5m2"}));
  app.add_option("-r,--repeat", o.repeat, "Timed runs (median)")->check(CLI::Range(1, 100000))->capture_default_str();
  add_warmup_option(app, o.warmup);
  app.add_flag("--check", o.check, "Compare O with the float64 reference (small shapes)");
  app.add_flag("!--no-roofline", o.roofline, "Skip the copy ceiling");
  app.add_flag("--remeasure,--remeasure-ceilings", o.remeasure, "Measure the copy ceiling again");
  app.add_flag("--csv", o.csv, "Comma-separated output");
  app.add_flag("--explain", o.explain, "Print each call's kernel and the planner's reason on stderr");
  if (const int status = parse_command_line(app, argc, argv); status >= 0) return status;
  o.causal = causal.values().front();
  std::string error;
  o.cache = parse_int_list(cache_list, error);
  if (error.empty()) o.batch = parse_int_list(batch_list, error);
  if (!error.empty()) {
    std::fprintf(stderr, "flashcl-bench --decode: --cache/--batch: %s\n", error.c_str());
    return 2;
  }
  if (o.heads % o.heads_kv != 0) {
    std::fprintf(stderr, "flashcl-bench --decode: --heads-kv %d does not divide --heads %d\n", o.heads_kv, o.heads);
    return 2;
  }
  o.dtype = *parse_dtype(dtype);
  if (!cache_dtype.empty()) o.cache_dtype = *parse_dtype(cache_dtype);
  const char* kv = to_string(o.cache_dtype.value_or(o.dtype));

  Session session(o.platform, o.device);
  double copy_gbs = 0.0;
  if (o.roofline) {
    const Ceilings c = device_ceilings(session.context(), session.queue(), session.device(), o.remeasure,
                                       session.info().global_mem_bytes / 4, false);
    copy_gbs = c.copy_gbs;
  }
  const char* layout = o.page_size > 0 ? "paged" : "contiguous";
  if (o.csv) {
    std::printf("device,cache,batch,heads,heads_kv,head_dim,dtype,seqlen_q,new_tokens,layout,page_size,splits,median_ms,"
                "min_ms,kv_mb,gbs,copy_gbs,max_err%s\n", o.cache_dtype ? ",cache_dtype" : "");
  } else {
    if (copy_gbs > 0)
      std::printf("flashcl-bench --decode on %s; copy ceiling %.1f GB/s (read + write per second)\n",
                  session.info().name.c_str(), copy_gbs);
    else
      std::printf("flashcl-bench --decode on %s; copy ceiling not measured (--no-roofline)\n", session.info().name.c_str());
    std::printf("%8s %5s %7s %4s %5s %5s %4s %4s %-10s %5s %6s %10s %10s %9s %8s %7s %9s\n", "cache", "batch", "H/Hkv", "d",
                "dtype", "kv", "Nq", "new", "layout", "page", "splits", "median ms", "min ms", "K/V MB", "GB/s", "% copy",
                "max|err|");
  }
  for (int L : o.cache)
    for (int B : o.batch) {
      const Row r = run_one(session, o, L, B);
      char err[32] = "-", share[16] = "-";  // share: % of the copy ceiling, "-" without one
      if (r.max_err >= 0) std::snprintf(err, sizeof err, "%.2e", r.max_err);
      if (copy_gbs > 0) std::snprintf(share, sizeof share, "%.0f%%", 100.0 * r.gbs / copy_gbs);
      if (o.csv)
        std::printf("\"%s\",%d,%d,%d,%d,%d,%s,%d,%d,%s,%d,%d,%.5f,%.5f,%.2f,%.1f,%.1f,%s%s\n", session.info().name.c_str(), L,
                    B, o.heads, o.heads_kv, o.head_dim, to_string(o.dtype), o.seqlen_q, o.new_tokens, layout, o.page_size,
                    r.splits, r.median_ms, r.min_ms, r.mbytes, r.gbs, copy_gbs, err,
                    o.cache_dtype ? (std::string(",") + kv).c_str() : "");
      else
        std::printf("%8d %5d %3d/%-3d %4d %5s %5s %4d %4d %-10s %5d %6d %10.4f %10.4f %9.1f %8.1f %7s %9s\n", L, B, o.heads,
                    o.heads_kv, o.head_dim, to_string(o.dtype), kv, o.seqlen_q, o.new_tokens, layout, o.page_size, r.splits,
                    r.median_ms, r.min_ms, r.mbytes, r.gbs, share, err);
      std::fflush(stdout);
    }
  return 0;
}

}  // namespace flashcl::bench
