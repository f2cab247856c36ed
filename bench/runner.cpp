// runner.cpp: the measurement loop. Choices and why:
//  - The first call of a row is timed on the wall clock: it includes any program build or cache
//    load, which device time cannot see; flashcl::cache_stats() says which it was.
//  - Timed runs use device time from profiling events (Launch::device_ms(): first kernel's start
//    to last kernel's end), so host-side validation and enqueue costs are not counted.
//  - Inputs are rotated over up to 8 sets while Q, K, V, O of one set are smaller than 3x the
//    device's global-memory cache, so a run does not find its inputs hot from the previous one.
//  - With ceilings, a 20 ms FMA probe runs before and after the timed runs: on a shared machine
//    it shows what share of the device the row actually had.
//  - O is filled with NaN before the first call, so the check catches unwritten elements.
//  - Workspaces (standard's N x N scores, fa1's scratch O, m, l) are allocated here, not inside
//    each call, so their size is checked (and counted against --max-memory) before anything runs.
#include "runner.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>
#include <optional>

#include "stats.hpp"

namespace flashcl::bench {
namespace {

constexpr int kMaxInputSets = 8;
constexpr double kCacheMultiple = 3.0;

// Owns one cl_mem.
class Buffer {
 public:
  Buffer() = default;
  Buffer(cl_context context, std::size_t bytes, const void* host) {
    cl_int err = CL_SUCCESS;
    const cl_mem_flags flags = CL_MEM_READ_WRITE | (host != nullptr ? CL_MEM_COPY_HOST_PTR : 0);
    mem_ = clCreateBuffer(context, flags, bytes, const_cast<void*>(host), &err);
    if (err != CL_SUCCESS)
      throw Error(Status::OutOfResources,
                  "clCreateBuffer of " + std::to_string(bytes) + " bytes failed (error " + std::to_string(err) + ")");
  }
  Buffer(Buffer&& other) noexcept : mem_(other.mem_) { other.mem_ = nullptr; }
  Buffer& operator=(Buffer&& other) noexcept {
    std::swap(mem_, other.mem_);
    return *this;
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer() {
    if (mem_ != nullptr) clReleaseMemObject(mem_);
  }
  cl_mem get() const { return mem_; }

 private:
  cl_mem mem_ = nullptr;
};

struct InputSet {
  Buffer q, k, v, o, lse;
};

struct HostInputs {
  std::vector<float> q, k, v;
};

// "2.06 GiB", or "143.1 MiB" below 1 GiB.
std::string gib(double bytes) {
  char text[32];
  if (bytes >= 1024.0 * 1024 * 1024)
    std::snprintf(text, sizeof text, "%.2f GiB", bytes / (1024.0 * 1024 * 1024));
  else
    std::snprintf(text, sizeof text, "%.1f MiB", bytes / (1024.0 * 1024));
  return text;
}

std::size_t q_bytes(const Shape& s, DType t) { return s.q_elems() * element_size(t); }
std::size_t kv_bytes(const Shape& s, DType t) { return s.kv_elems() * element_size(t); }
std::size_t lse_bytes(const Shape& s) { return s.rows() * sizeof(float); }
std::size_t set_bytes(const Shape& s, DType t) { return 2 * q_bytes(s, t) + 2 * kv_bytes(s, t) + lse_bytes(s); }

ForwardArgs make_args(const Shape& s, DType dtype, Algorithm algorithm, const TileOverride& tile) {
  ForwardArgs a;
  a.dtype = dtype;
  a.batch = s.batch;
  a.heads = s.heads;
  a.seqlen_q = s.seqlen_q;
  a.seqlen_k = s.seqlen_k;
  a.head_dim = s.head_dim;
  a.causal = s.causal;
  a.heads_kv = s.heads_kv;
  a.window = {s.window_left, s.window_right};
  a.softcap = static_cast<float>(s.softcap);
  a.algorithm = algorithm;
  if (algorithm != Algorithm::Standard) a.tile = tile;
  return a;
}

// The variants' device buffers of one shape (shared by its input sets): cu_seqlens, ALiBi slopes,
// the mask. `shape` gets the mask's values, drawn here so cases() holds no B·H·Nq·Nk arrays.
struct VariantInputs {
  Buffer cu_q, cu_k, slopes, mask;
  VariantInputs(cl_context ctx, Shape& shape, std::uint64_t seed) {
    if (shape.varlen()) {
      cu_q = Buffer(ctx, shape.cu_seqlens_q.size() * sizeof(int), shape.cu_seqlens_q.data());
      cu_k = Buffer(ctx, shape.cu_seqlens_k.size() * sizeof(int), shape.cu_seqlens_k.data());
    }
    if (!shape.alibi_slopes.empty())
      slopes = Buffer(ctx, shape.alibi_slopes.size() * sizeof(float), shape.alibi_slopes.data());
    if (shape.mask == MaskMode::None) return;
    const std::size_t n =
        static_cast<std::size_t>(shape.mask_batch) * shape.mask_heads * shape.seqlen_q * shape.seqlen_k;
    shape.mask_values = bench_mask_values(shape.mask, n, seed);
    if (shape.mask == MaskMode::Bool) {
      const std::vector<std::uint8_t> bytes(shape.mask_values.begin(), shape.mask_values.end());
      mask = Buffer(ctx, n, bytes.data());
    } else {
      mask = Buffer(ctx, n * sizeof(float), shape.mask_values.data());
    }
  }
  void bind(ForwardArgs& a, const Shape& shape) const {
    a.cu_seqlens_q = cu_q.get();
    a.cu_seqlens_k = cu_k.get();
    a.alibi_slopes = slopes.get();
    if (shape.mask != MaskMode::None)
      a.mask = {shape.mask == MaskMode::Bool ? MaskKind::Bool : MaskKind::Bias, mask.get(), shape.mask_batch,
                shape.mask_heads};
  }
};

void bind(ForwardArgs& a, const InputSet& set, cl_mem workspace) {
  a.q = {set.q.get()};
  a.k = {set.k.get()};
  a.v = {set.v.get()};
  a.o = {set.o.get()};
  a.lse = set.lse.get();
  a.workspace = workspace;
}

// Why the row cannot run within the limits ("" when it can).
std::string over_limits(const Result& r, const Context& c) {
  const std::size_t largest = std::max({q_bytes(r.shape, r.dtype), kv_bytes(r.shape, r.dtype), r.workspace_bytes});
  if (largest > c.max_alloc_bytes)
    return "needs " + gib(r.device_bytes) + " with one " + gib(largest) + " buffer; the device's largest buffer is " +
           gib(c.max_alloc_bytes);
  if (r.device_bytes > c.max_memory) return "needs " + gib(r.device_bytes) + "; --max-memory is " + gib(c.max_memory);
  return "";
}

int input_sets(const Shape& s, DType t, std::size_t workspace, const Context& c) {
  const double one = static_cast<double>(set_bytes(s, t));
  int n = static_cast<int>(std::ceil(kCacheMultiple * c.cache_bytes / one));
  n = std::clamp(n, 1, kMaxInputSets);
  while (n > 1 && n * one + workspace > c.max_memory) --n;
  return n;
}

// `values` on the device in storage type `t`; `rounded` gets them as the device sees them.
Buffer upload(cl_context context, DType t, const std::vector<float>& values, std::vector<float>& rounded) {
  if (t == DType::F32) {
    rounded = values;
    return Buffer(context, values.size() * sizeof(float), values.data());
  }
  const std::vector<std::uint16_t> bits = to_storage(t, values);
  rounded = from_storage(t, bits);
  return Buffer(context, bits.size() * sizeof(std::uint16_t), bits.data());
}

void fill_nan(cl_command_queue queue, const Buffer& b, DType t, std::size_t bytes) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const std::uint16_t nan16 = t == DType::F32 ? 0 : to_storage(t, {nan})[0];
  const void* pattern = t == DType::F32 ? static_cast<const void*>(&nan) : &nan16;
  const cl_int err = clEnqueueFillBuffer(queue, b.get(), pattern, element_size(t), 0, bytes, 0, nullptr, nullptr);
  if (err != CL_SUCCESS)
    throw Error(Status::OpenCLError, "clEnqueueFillBuffer failed (error " + std::to_string(err) + ")");
  clFinish(queue);
}

// `n` elements of storage type `t`, as floats.
std::vector<float> read(cl_command_queue queue, const Buffer& b, DType t, std::size_t n) {
  std::vector<float> values(t == DType::F32 ? n : 0);
  std::vector<std::uint16_t> bits(t == DType::F32 ? 0 : n);
  void* host = t == DType::F32 ? static_cast<void*>(values.data()) : bits.data();
  const cl_int err = clEnqueueReadBuffer(queue, b.get(), CL_TRUE, 0, n * element_size(t), host, 0, nullptr, nullptr);
  if (err != CL_SUCCESS)
    throw Error(Status::OpenCLError, "clEnqueueReadBuffer failed (error " + std::to_string(err) + ")");
  return t == DType::F32 ? values : from_storage(t, bits);
}

// Throughput, traffic and roofline figures from the median time.
void derive(Result& r, const Context& c) {
  const double seconds = r.median_ms * 1e-3, flops = flops_of(r.shape);
  r.tflops = flops / seconds / 1e12;
  r.gbs = r.io.bytes / seconds / 1e9;
  if (!c.roofline || !c.ceilings.valid()) return;
  const double peak = c.ceilings.fma_gflops * 1e9, bw = c.ceilings.copy_gbs * 1e9;
  r.pct_fma = 100.0 * flops / seconds / peak;
  r.pct_bw = 100.0 * r.gbs * 1e9 / bw;
  const double attainable = std::min(peak, flops / r.io.bytes * bw);  // roofline at this intensity
  r.pct_roofline = 100.0 * flops / seconds / attainable;
}

struct Check {
  std::vector<int> rows;
  Reference ref;
};

void check_output(Result& r, const Check& chk, cl_command_queue queue, const InputSet& set) {
  const Shape& s = r.shape;
  const auto out = read(queue, set.o, r.dtype, s.q_elems());
  r.error = compare(gather_rows(s, out, chk.rows), chk.ref.out);
  r.checked = true;
  r.rows_checked = static_cast<int>(chk.rows.size());
  r.rows_total = s.seqlen_q;
}

}  // namespace

std::vector<double> kernel_ms(const Launch& launch) {
  std::vector<double> ms;
  for (cl_event e : launch.events()) {
    cl_ulong start = 0, end = 0;
    cl_int err = clGetEventProfilingInfo(e, CL_PROFILING_COMMAND_START, sizeof start, &start, nullptr);
    if (err == CL_SUCCESS) err = clGetEventProfilingInfo(e, CL_PROFILING_COMMAND_END, sizeof end, &end, nullptr);
    if (err != CL_SUCCESS)
      throw Error(Status::OpenCLError, "clGetEventProfilingInfo failed (error " + std::to_string(err) + ")");
    ms.push_back(static_cast<double>(end - start) * 1e-6);
  }
  return ms;
}

Runner::Runner(Session& session, const Options& options, const Context& context)
    : session_(session), options_(options), context_(context) {
  if (context.roofline && context.ceilings.valid())
    probe_ = std::make_unique<FmaProbe>(session.context(), session.queue(), session.device(), context.ceilings);
}

void Runner::run_shape(const Shape& shape, DType dtype, int shape_index, const RowHooks& hooks) {
  const cl_device_id device = session_.device();
  const cl_command_queue queue = session_.queue();

  // Sizes and limits of every row first: the input sets are shared by the rows that fit.
  std::vector<Result> rows;
  std::size_t largest_workspace = 0;
  for (Algorithm algo : options_.algos) {
    Result r;
    r.shape = shape;
    r.dtype = dtype;
    r.algo = to_string(algo);
    try {
      const ForwardArgs args = make_args(shape, dtype, algo, options_.tile);
      r.resolved = to_string(resolve_algorithm(device, args));
      r.device_bytes = device_bytes(device, args);
      r.workspace_bytes = workspace_bytes(device, args);
      r.tiles = tiles_for(device, make_args(shape, dtype, *parse_algorithm(r.resolved), options_.tile));
      r.io = io_model(shape, *parse_algorithm(r.resolved), r.tiles, true, static_cast<int>(element_size(dtype)));
      r.note = over_limits(r, context_);
      if (!r.note.empty())
        r.status = RowStatus::Skipped;
      else
        largest_workspace = std::max(largest_workspace, r.workspace_bytes);
    } catch (const Error& e) {
      r.status = row_status(e);
      r.note = e.what();
    }
    rows.push_back(r);
  }

  const bool any = std::any_of(rows.begin(), rows.end(), [](const Result& r) { return r.status == RowStatus::Ok; });
  std::vector<InputSet> sets;
  HostInputs host;
  std::optional<Check> check;
  Shape full = shape;  // with the mask's values once drawn
  std::optional<VariantInputs> variants;
  if (any) {
    try {
      variants.emplace(session_.context(), full, options_.seed + 1000ull * shape_index + 7);
      const int n_sets = input_sets(shape, dtype, largest_workspace, context_);
      const cl_context ctx = session_.context();
      for (int i = 0; i < n_sets; ++i) {
        const std::uint64_t seed = options_.seed + 1000ull * shape_index + 10ull * i;
        HostInputs h;  // the inputs as the device sees them (rounded to the storage type)
        InputSet set;
        set.q = upload(ctx, dtype, random_values(shape.q_elems(), seed), h.q);
        set.k = upload(ctx, dtype, random_values(shape.kv_elems(), seed + 1), h.k);
        set.v = upload(ctx, dtype, random_values(shape.kv_elems(), seed + 2), h.v);
        set.o = Buffer(session_.context(), q_bytes(shape, dtype), nullptr);
        set.lse = Buffer(session_.context(), lse_bytes(shape), nullptr);
        sets.push_back(std::move(set));
        if (i == 0) host = std::move(h);
      }
      if (options_.check) {
        check.emplace();
        check->rows = sample_rows(shape, options_.check_macs);
        check->ref = reference_attention_rows(full, host.q, host.k, host.v, check->rows);
      }
    } catch (const std::exception& e) {  // the device or host could not hold the inputs
      for (Result& r : rows)
        if (r.status == RowStatus::Ok) {
          r.status = RowStatus::Skipped;
          r.note = std::string("inputs: ") + e.what();
        }
    }
  }

  double standard_ms = 0.0;
  for (Result& r : rows) {
    if (r.status == RowStatus::Ok) {
      if (hooks.starting) hooks.starting(r);
      try {
        Buffer workspace;
        if (r.workspace_bytes > 0) workspace = Buffer(session_.context(), r.workspace_bytes, nullptr);
        ForwardArgs args = make_args(shape, dtype, *parse_algorithm(r.algo), options_.tile);
        variants->bind(args, full);
        r.input_sets = static_cast<int>(sets.size());

        fill_nan(queue, sets[0].o, dtype, q_bytes(shape, dtype));
        const CacheStats before = cache_stats();
        const auto t0 = std::chrono::steady_clock::now();
        bind(args, sets[0], workspace.get());
        std::vector<double> first_kernels;
        {
          const Launch first = forward(queue, args);
          first.wait();
          r.first_wall_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
          r.first_device_ms = first.device_ms();
          first_kernels = kernel_ms(first);
        }
        const CacheStats after = cache_stats();
        r.builds = after.builds - before.builds;
        r.disk_hits = after.disk_hits - before.disk_hits;
        r.memory_hits = after.memory_hits - before.memory_hits;
        r.build_kind = r.builds > 0 ? "cold build" : r.disk_hits > 0 ? "disk cache" : "in memory";
        if (check) check_output(r, *check, queue, sets[0]);

        // Timed runs, fewer when --row-budget says the first call's pace would overrun it. A first
        // call that alone overran the budget and built nothing is the row's one measurement.
        int runs = options_.repeat;
        if (options_.row_budget_s > 0.0 && r.first_device_ms > 0.0) {
          const double fit = options_.row_budget_s * 1e3 / r.first_device_ms - (options_.warmup - 1);
          runs = std::clamp(static_cast<int>(fit), 1, options_.repeat);
          if (r.first_device_ms > options_.row_budget_s * 1e3 && r.builds == 0 && r.disk_hits == 0) {
            runs = 0;
            r.runs_ms.push_back(r.first_device_ms);
            r.kernel_ms = first_kernels;
            r.first_call_timed = true;
          }
        }
        const double probe_before = probe_ ? probe_->gflops() : 0.0;
        int turn = 0;
        for (int i = 1; i < options_.warmup && runs > 0; ++i) {
          bind(args, sets[++turn % sets.size()], workspace.get());
          forward(queue, args).wait();
        }
        std::vector<std::vector<double>> per_kernel;
        for (int i = 0; i < runs; ++i) {
          bind(args, sets[++turn % sets.size()], workspace.get());
          const Launch launch = forward(queue, args);
          r.runs_ms.push_back(launch.device_ms());
          per_kernel.push_back(kernel_ms(launch));
        }
        if (probe_) {
          const double probe_after = probe_->gflops();
          r.probe_gflops = 0.5 * (probe_before + probe_after);
          best_probe_ = std::max({best_probe_, probe_before, probe_after});
        }
        r.median_ms = median(r.runs_ms);
        // The kernels of the run closest to the median (standard: scores, softmax, P*V).
        const auto closest = std::min_element(r.runs_ms.begin(), r.runs_ms.end(), [&](double a, double b) {
          return std::fabs(a - r.median_ms) < std::fabs(b - r.median_ms);
        });
        if (!per_kernel.empty()) r.kernel_ms = per_kernel[closest - r.runs_ms.begin()];
        r.min_ms = *std::min_element(r.runs_ms.begin(), r.runs_ms.end());
        r.max_ms = *std::max_element(r.runs_ms.begin(), r.runs_ms.end());
        derive(r, context_);
        if (r.resolved == "standard") standard_ms = r.median_ms;
        if (standard_ms > 0.0) r.speedup = standard_ms / r.median_ms;
      } catch (const Error& e) {
        r.status = row_status(e);
        r.note = e.what();
        r.runs_ms.clear();
      } catch (const std::exception& e) {  // host memory for the check, say: this row only
        r.status = RowStatus::Error;
        r.note = e.what();
        r.runs_ms.clear();
      }
    }
    if (hooks.done) hooks.done(r);
  }
}

}  // namespace flashcl::bench
