// report_table.cpp: the human-readable output: a header block (tool, device, ceilings, how time
// was taken), one aligned row per result as it completes, and notes that define the columns.
#include <algorithm>
#include <cstdarg>
#include <string>
#include <vector>

#include "report.hpp"

namespace flashcl::bench {
namespace {

struct Column {
  const char* header;
  int width;  // negative: left-aligned
};

const Column kColumns[] = {{"algo", -9},      {"B", 3},       {"H", 4},         {"Hkv", 4},       {"Nq", 6},
                           {"Nk", 6},         {"d", 4},       {"causal", 7},    {"dtype", 5},     {"tiles", 7},
                           {"median ms", 11}, {"min ms", 10}, {"max ms", 10},   {"TFLOP/s", 9},   {"%fma", 6},
                           {"GB/s", 7},       {"%bw", 6},     {"%roof", 6},     {"IO MB", 10},    {"min MB", 8},
                           {"mem MiB", 9},    {"vs std", 7},  {"build ms", 15}, {"max|err|", 10}, {"%avail", 7}};

std::string format(const char* fmt, ...) {
  char text[256];
  va_list args;
  va_start(args, fmt);
  std::vsnprintf(text, sizeof text, fmt, args);
  va_end(args);
  return text;
}

std::string mib(double bytes) { return format("%.1f", bytes / (1024.0 * 1024)); }

class TableReporter : public Reporter {
 public:
  TableReporter(std::FILE* out, bool quiet) : out_(out), quiet_(quiet) {}

  void begin(const Context& c) override {
    roofline_ = c.roofline && c.ceilings.valid();
    repeat_ = c.repeat;
    fma_peak_ = c.ceilings.fma_gflops;
    if (!quiet_) header(c);
    std::vector<std::string> cells;
    for (const Column& col : kColumns) cells.push_back(col.header);
    print(cells);
  }

  void row(const Result& r) override {
    const Shape& s = r.shape;
    std::vector<std::string> cells = {
        r.algo == "auto" ? "auto:" + r.resolved : r.algo,
        format("%d", s.batch),
        format("%d", s.heads),
        format("%d", s.kv_heads()),
        format("%d", s.seqlen_q),
        format("%d", s.seqlen_k),
        format("%d", s.head_dim),
        s.causal ? "on" : "off",
        to_string(r.dtype),
        r.tiles.block_rows > 0 ? format("%dx%d", r.tiles.block_rows, r.tiles.block_cols) : "-"};
    if (r.status != RowStatus::Ok) {
      print(cells, (r.status == RowStatus::Skipped ? "skipped: " : "error: ") + r.note);
      return;
    }
    const bool shortened = static_cast<int>(r.runs_ms.size()) < repeat_;
    const bool sampled = r.checked && r.rows_checked < r.rows_total;
    const auto pct = [&](double v) { return roofline_ ? format("%.1f", v) : std::string("-"); };
    const char* build = r.builds > 0 ? "cold" : r.disk_hits > 0 ? "disk" : "mem";
    std::string error = "-";
    if (r.checked && r.error.non_finite > 0)
      error = format("%zu NaN", r.error.non_finite);
    else if (r.checked)
      error = format("%.1e%s", r.error.max_abs, sampled ? "*" : "");

    cells.push_back(format("%.3f%s", r.median_ms, shortened ? "~" : ""));
    cells.push_back(format("%.3f", r.min_ms));
    cells.push_back(format("%.3f", r.max_ms));
    cells.push_back(format("%.4f", r.tflops));
    cells.push_back(pct(r.pct_fma));
    cells.push_back(format("%.1f", r.gbs));
    cells.push_back(pct(r.pct_bw));
    cells.push_back(pct(r.pct_roofline));
    cells.push_back(format("%.1f", r.io.bytes / 1e6));
    cells.push_back(format("%.1f", r.io.min_bytes / 1e6));
    cells.push_back(mib(r.device_bytes));
    cells.push_back(r.speedup > 0.0 ? format("%.2fx", r.speedup) : "-");
    cells.push_back(format("%.0f %s", r.first_wall_ms - r.first_device_ms, build));
    cells.push_back(error);
    cells.push_back(r.probe_gflops > 0.0 ? format("%.0f", 100.0 * r.probe_gflops / fma_peak_) : "-");
    sampled_ |= sampled;
    shortened_ |= shortened;
    print(cells);
  }

  void end() override {
    if (quiet_) return;
    static const char* const kNotes[] = {
        "TFLOP/s: 4*B*H*Nq*Nk*d (halved when causal with Nq = Nk; else 4*B*H*d per visible query-key pair)",
        "  over the median device time. %fma, %bw: of the ceilings above. %roof: of min(FMA peak,",
        "  FLOPs / IO bytes x copy peak), the roofline at the row's arithmetic intensity.",
        "IO MB: modelled global-memory traffic (the FlashAttention paper's IO analysis at the kernels'",
        "  block sizes); min MB: Q, K, V read and O, LSE written once (1 MB = 1e6 B).",
        "tiles: Br x Bc from flashcl::tile_info(). mem MiB: flashcl::device_bytes().",
        "build ms: first call's wall time minus its device time (cold: flashcl compiled the program,",
        "  though PoCL's own cache can make that quick; disk: flashcl's cache; mem: built earlier in this run).",
        "%avail: a 20 ms FMA probe around the timed runs, as % of the FMA ceiling: under 100, the row",
        "  shared the device with other work.",
    };
    std::fprintf(out_, "\n");
    for (const char* line : kNotes) std::fprintf(out_, "%s\n", line);
    if (shortened_)
      std::fprintf(out_,
                   "median ms with ~: fewer timed runs than --repeat, to stay within --row-budget (JSON: runs, "
                   "first_call_timed).\n");
    if (sampled_)
      std::fprintf(out_,
                   "max|err| with *: checked on evenly spaced query rows only (reference budget --check-macs).\n");
  }

 private:
  void header(const Context& c) {
    const DeviceInfo& d = c.device;
    std::fprintf(out_, "flashcl-bench | flashcl %s (git %s) | %s\n", c.library_version.c_str(), c.git_commit.c_str(),
                 c.date.c_str());
    std::fprintf(out_, "device   : %s | %s | driver %s | %s\n", d.name.c_str(), d.platform.c_str(), d.driver.c_str(),
                 c.device_version.c_str());
    std::fprintf(out_,
                 "           %s, %d compute units, local %zu KiB, global %.1f GiB, largest buffer %.1f GiB, "
                 "cache %zu MiB\n",
                 d.is_gpu   ? "GPU"
                 : d.is_cpu ? "CPU"
                            : "other",
                 d.compute_units, d.local_mem_bytes / 1024, d.global_mem_bytes / 1073741824.0,
                 c.max_alloc_bytes / 1073741824.0, c.cache_bytes >> 20);
    if (roofline_)
      std::fprintf(out_, "ceilings : FMA %.1f GFLOP/s (%s), copy %.1f GB/s (%s); %s %s\n", c.ceilings.fma_gflops,
                   c.ceilings.fma_variant.c_str(), c.ceilings.copy_gbs, c.ceilings.copy_variant.c_str(),
                   c.ceilings.from_cache ? "cached, measured" : "measured", c.ceilings.measured_at.c_str());
    else
      std::fprintf(out_, "ceilings : not measured (--no-roofline)\n");
    std::fprintf(out_,
                 "timing   : device time (OpenCL profiling), median/min/max of %d runs after %d warm-up%s; "
                 "fwd%s\n",
                 c.repeat, c.warmup,
                 c.row_budget_s > 0 ? format(" (fewer past %g s per row)", c.row_budget_s).c_str() : "",
                 c.check ? "; checked against float64" : "");
    if (!c.variants.empty()) std::fprintf(out_, "variants : %s\n", c.variants.c_str());
    std::fprintf(out_, "\n");
  }

  void print(const std::vector<std::string>& cells, const std::string& tail = "") {
    std::string line;
    for (std::size_t i = 0; i < cells.size(); ++i) {
      const int w = kColumns[i].width;
      line += format(w < 0 ? "%-*s" : "%*s", w < 0 ? -w : w, cells[i].c_str());
      if (i + 1 < cells.size()) line += ' ';
    }
    if (!tail.empty()) line += "  " + tail;
    std::fprintf(out_, "%s\n", line.c_str());
    std::fflush(out_);
  }

  std::FILE* out_;
  bool quiet_;
  bool roofline_ = false, sampled_ = false, shortened_ = false;
  int repeat_ = 0;
  double fma_peak_ = 0.0;
};

}  // namespace

std::unique_ptr<Reporter> make_table_reporter(std::FILE* out, bool quiet) {
  return std::make_unique<TableReporter>(out, quiet);
}

}  // namespace flashcl::bench
