// report_data.cpp: CSV and JSON output from one field list (row_fields()), so both formats carry
// exactly the same numbers (and the tee that sends a run to several reporters). Fields that do not apply (no standard
// row for a speedup, no check, no ceilings) are null in JSON and empty in CSV, never a made-up zero.
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

#include "report.hpp"

namespace flashcl::bench {
namespace {

using Json = nlohmann::ordered_json;

const char* status_name(RowStatus s) {
  return s == RowStatus::Ok ? "ok" : s == RowStatus::Skipped ? "skipped" : "error";
}

template <typename T>
Json or_null(bool present, T value) {
  return present ? Json(value) : Json(nullptr);
}

Json row_fields(const Result& r) {
  const bool ok = r.status == RowStatus::Ok, roof = ok && r.pct_fma > 0.0;
  Json j;
  j["algo"] = r.algo;
  j["resolved"] = r.resolved;
  j["status"] = status_name(r.status);
  j["note"] = r.note;
  j["batch"] = r.shape.batch;
  j["heads"] = r.shape.heads;
  j["seqlen_q"] = r.shape.seqlen_q;
  j["seqlen_k"] = r.shape.seqlen_k;
  j["head_dim"] = r.shape.head_dim;
  j["causal"] = r.shape.causal;
  j["dtype"] = to_string(r.dtype);
  j["block_rows"] = r.tiles.block_rows;
  j["block_cols"] = r.tiles.block_cols;
  j["local_bytes"] = r.tiles.local_bytes;
  j["tiles_source"] = r.tiles.source;
  j["median_ms"] = or_null(ok, r.median_ms);
  j["min_ms"] = or_null(ok, r.min_ms);
  j["max_ms"] = or_null(ok, r.max_ms);
  j["runs_ms"] = r.runs_ms;
  j["flops"] = flops_of(r.shape);
  j["tflops"] = or_null(ok, r.tflops);
  j["gbs"] = or_null(ok, r.gbs);
  j["io_bytes"] = r.io.bytes;
  j["io_min_bytes"] = r.io.min_bytes;
  j["io_model"] = r.io.formula;
  j["pct_fma_peak"] = or_null(roof, r.pct_fma);
  j["pct_bw_peak"] = or_null(roof, r.pct_bw);
  j["pct_roofline"] = or_null(roof, r.pct_roofline);
  j["device_bytes"] = r.device_bytes;
  j["workspace_bytes"] = r.workspace_bytes;
  j["input_sets"] = r.input_sets;
  j["speedup_vs_standard"] = or_null(ok && r.speedup > 0.0, r.speedup);
  j["first_call_wall_ms"] = or_null(ok, r.first_wall_ms);
  j["first_call_device_ms"] = or_null(ok, r.first_device_ms);
  j["build_ms"] = or_null(ok, r.first_wall_ms - r.first_device_ms);
  j["build_kind"] = r.build_kind;
  j["programs_built"] = r.builds;
  j["programs_from_disk"] = r.disk_hits;
  j["max_abs_error"] = or_null(r.checked, r.error.max_abs);
  j["rel_error"] = or_null(r.checked, r.error.rel_norm);
  j["non_finite"] = or_null(r.checked, r.error.non_finite);
  j["rows_checked"] = or_null(r.checked, r.rows_checked);
  j["rows_total"] = or_null(r.checked, r.rows_total);
  // Fields added later go last, so CSV column positions stay put for scripts.
  j["runs"] = r.runs_ms.size();
  j["probe_gflops"] = or_null(ok && r.probe_gflops > 0.0, r.probe_gflops);
  j["kernel_ms"] = r.kernel_ms;
  j["first_call_timed"] = r.first_call_timed;
  j["heads_kv"] = r.shape.kv_heads();
  j["window_left"] = r.shape.window_left;
  j["window_right"] = r.shape.window_right;
  j["softcap"] = r.shape.softcap;
  j["pct_fma_probe"] = or_null(ok && r.probe_gflops > 0.0, 100.0 * r.tflops * 1e3 / r.probe_gflops);
  return j;
}

Json context_fields(const Context& c) {
  const DeviceInfo& d = c.device;
  Json j;
  j["tool"] = "flashcl-bench";
  j["library_version"] = c.library_version;
  j["git_commit"] = c.git_commit;
  j["date"] = c.date;
  j["command"] = c.command;
  j["device"] = {{"platform", d.platform},
                 {"name", d.name},
                 {"vendor", d.vendor},
                 {"driver", d.driver},
                 {"version", c.device_version},
                 {"type", d.is_gpu   ? "GPU"
                          : d.is_cpu ? "CPU"
                                     : "other"},
                 {"platform_index", d.platform_index},
                 {"device_index", d.device_index},
                 {"compute_units", d.compute_units},
                 {"local_mem_bytes", d.local_mem_bytes},
                 {"global_mem_bytes", d.global_mem_bytes},
                 {"max_alloc_bytes", c.max_alloc_bytes},
                 {"global_mem_cache_bytes", c.cache_bytes}};
  if (c.roofline && c.ceilings.valid())
    j["ceilings"] = {{"fma_gflops", c.ceilings.fma_gflops},   {"fma_variant", c.ceilings.fma_variant},
                     {"copy_gbs", c.ceilings.copy_gbs},       {"copy_variant", c.ceilings.copy_variant},
                     {"measured_at", c.ceilings.measured_at}, {"from_cache", c.ceilings.from_cache},
                     {"cache_file", c.ceilings.cache_file}};
  if (c.roofline && c.ceilings.valid())
    for (const auto& [name, value] : c.ceilings.samples) j["ceilings"]["samples"][name] = value;
  else
    j["ceilings"] = nullptr;
  j["timing"] = {{"clock", "device time, OpenCL profiling events"},
                 {"statistic", "median"},
                 {"repeat", c.repeat},
                 {"warmup", c.warmup},
                 {"row_budget_s", c.row_budget_s}};
  j["check"] = {{"enabled", c.check}, {"max_macs_per_shape", c.check_macs}};
  j["max_memory_bytes"] = c.max_memory;
  j["variants"] = c.variants;
  j["flops_convention"] = "4*B*H*Nq*Nk*d, halved when causal with Nq = Nk; else 4*B*H*d per visible pair";
  return j;
}

std::string csv_cell(const Json& v) {
  if (v.is_null()) return "";
  if (v.is_array()) {
    std::string joined;
    for (const auto& x : v) joined += (joined.empty() ? "" : ";") + x.dump();
    return joined;
  }
  if (v.is_string()) {
    std::string s = v.get<std::string>(), quoted = "\"";
    for (char ch : s) quoted += ch == '"' ? std::string("\"\"") : std::string(1, ch);
    return quoted + "\"";
  }
  return v.dump();
}

class CsvReporter : public Reporter {
 public:
  explicit CsvReporter(std::FILE* out) : out_(out) {}
  void begin(const Context&) override {}
  void row(const Result& r) override {
    const Json j = row_fields(r);
    std::string line;
    if (!header_done_) {
      for (const auto& [key, value] : j.items()) line += (line.empty() ? "" : ",") + key;
      std::fprintf(out_, "%s\n", line.c_str());
      header_done_ = true;
      line.clear();
    }
    bool first = true;
    for (const auto& [key, value] : j.items()) {
      line += (first ? "" : ",") + csv_cell(value);
      first = false;
    }
    std::fprintf(out_, "%s\n", line.c_str());
    std::fflush(out_);
  }
  void end() override {}

 private:
  std::FILE* out_;
  bool header_done_ = false;
};

// Holds the document in memory. Written to a file, it is rewritten after every row (temp file +
// rename), so an interrupted sweep still leaves valid JSON with the rows it finished.
class JsonReporter : public Reporter {
 public:
  JsonReporter(std::FILE* out, std::string path) : out_(out), path_(std::move(path)) {}
  void begin(const Context& c) override {
    doc_["context"] = context_fields(c);
    doc_["results"] = Json::array();
  }
  void row(const Result& r) override {
    doc_["results"].push_back(row_fields(r));
    if (!path_.empty()) save();
  }
  void end() override {
    if (path_.empty())
      std::fprintf(out_, "%s\n", doc_.dump(2).c_str());
    else
      save();
  }

 private:
  void save() {
    const std::string tmp = path_ + ".tmp";
    std::FILE* f = std::fopen(tmp.c_str(), "w");
    if (f == nullptr) return;  // main() checked the path is writable; keep the last good copy
    const bool ok = std::fprintf(f, "%s\n", doc_.dump(2).c_str()) > 0;
    if (std::fclose(f) == 0 && ok) std::rename(tmp.c_str(), path_.c_str());
  }

  std::FILE* out_;
  std::string path_;
  Json doc_;
};

class TeeReporter : public Reporter {
 public:
  explicit TeeReporter(std::vector<std::unique_ptr<Reporter>> all) : all_(std::move(all)) {}
  void begin(const Context& c) override {
    for (auto& r : all_) r->begin(c);
  }
  void row(const Result& result) override {
    for (auto& r : all_) r->row(result);
  }
  void end() override {
    for (auto& r : all_) r->end();
  }

 private:
  std::vector<std::unique_ptr<Reporter>> all_;
};

}  // namespace

std::unique_ptr<Reporter> make_tee_reporter(std::vector<std::unique_ptr<Reporter>> reporters) {
  return std::make_unique<TeeReporter>(std::move(reporters));
}

std::unique_ptr<Reporter> make_csv_reporter(std::FILE* out) { return std::make_unique<CsvReporter>(out); }
std::unique_ptr<Reporter> make_json_reporter(std::FILE* out, const std::string& path) {
  return std::make_unique<JsonReporter>(out, path);
}

}  // namespace flashcl::bench
