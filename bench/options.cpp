// options.cpp: the CLI11 definition of flashcl-bench's options, the list and size syntaxes, and
// the checks that turn an unsupported request (a dtype or mode flashcl lacks) into a clear error
// instead of a silent fallback; also the pieces the other modes share with it (--causal,
// --softcap, --window, dtype and algorithm names, exit codes), so a command line means the same
// in every mode.
#include "options.hpp"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cctype>
#include <cfloat>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <tuple>

namespace flashcl::bench {
namespace {

constexpr int kMaxListLength = 256;

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::vector<std::string> split(const std::string& text, char sep) {
  std::vector<std::string> parts;
  std::size_t start = 0;
  for (;;) {
    const std::size_t end = text.find(sep, start);
    parts.push_back(text.substr(start, end - start));
    if (end == std::string::npos) return parts;
    start = end + 1;
  }
}

bool to_int(const std::string& text, long& value) {
  if (text.empty() || text.find_first_not_of("0123456789") != std::string::npos || text.size() > 9) return false;
  value = std::strtol(text.c_str(), nullptr, 10);
  return true;
}

// A CLI11 validator from a function that returns "" or what is wrong.
template <typename F>
CLI::Validator checker(F check, const std::string& description) {
  return CLI::Validator([check](std::string& text) { return check(text); }, description);
}

// A validator for a list option whose values must not exceed `max`.
CLI::Validator list_checker(long max) {
  return checker(
      [max](const std::string& text) {
        std::string error;
        parse_int_list(text, error, max);
        return error;
      },
      "LIST");
}

bool ends_with(const std::string& text, const std::string& suffix) {
  return text.size() > suffix.size() && text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string dtype_error(std::string& text) {
  if (dtype_named(text)) return "";
  const std::string t = lower(text);
  if (t == "f8" || t == "fp8") return "'" + text + "': name the format, --dtype e4m3 or e5m2 (the FP8 mode, alone)";
  if (t == "f64" || t == "fp64" || t == "double" || t == "int8")
    return "'" + text + "' is not supported: flashcl stores f32, f16, bf16, or fp8 inputs (and computes in f32)";
  return "unknown dtype '" + text + "' (choose from f32, f16, bf16; e4m3, e5m2 alone: the FP8 mode)";
}

std::string mode_error(std::string& text) {
  const std::string t = lower(text);
  if (t == "fwd") return "";
  if (t == "bwd" || t == "fwdbwd" || t == "fwd_bwd")
    return "'" + text + "': the backward has its own mode, flashcl-bench --backward (see --backward --help)";
  if (t == "decode") return "'" + text + "': the decode has its own mode, flashcl-bench --decode (see --decode --help)";
  return "unknown mode '" + text + "' (fwd here; bwd and decode are their own modes: --backward, --decode)";
}

std::string window_error(std::string& text) {
  const auto parts = split(text, ',');
  const auto side = [](const std::string& t) {
    long v = 0;
    return t == "-1" || to_int(t, v);
  };
  if (parts.size() != 2 || !side(parts[0]) || !side(parts[1]))
    return "expected LEFT,RIGHT with each -1 (unbounded) or a key count, such as 256,0; got '" + text + "'";
  return "";
}

// "BRxBC" or "BRxBCxTPRxTM", as FLASHCL_TILE; the library checks the combination.
std::string tile_error(std::string& text) {
  const auto parts = split(lower(text), 'x');
  long v = 0;
  bool ok = parts.size() == 2 || parts.size() == 4;
  for (const auto& p : parts) ok = ok && to_int(p, v) && v >= 1 && v <= 256;
  if (!ok) return "expected BRxBC or BRxBCxTPRxTM with each in 1..256, such as 64x32, got '" + text + "'";
  return "";
}

std::string softcap_error(std::string& text) {
  char* end = nullptr;
  const double c = std::strtod(text.c_str(), &end);
  // the library takes a float: a double past FLT_MAX would reach it as inf
  if (text.empty() || *end != '\0' || !std::isfinite(c) || c < 0 || c > FLT_MAX)
    return "expected a finite number >= 0 (0: off) within float's range, got '" + text + "'";
  return "";
}

std::string causal_error(const std::string& text, bool allow_both) {
  static const char* kAccepted[] = {"", "on", "off", "yes", "no", "true", "false", "1", "0"};
  for (const char* word : kAccepted)
    if (lower(text) == word) return "";
  if (lower(text) == "both")
    return allow_both ? "" : "this mode times one setting a run: on or off, got 'both'";
  return std::string("expected on, off") + (allow_both ? " or both" : "") + ", got '" + text + "'";
}

}  // namespace

std::string algo_error(const std::string& text) {
  if (lower(text) == "all" || parse_algorithm(text)) return "";
  return "unknown algorithm '" + text + "' (choose from standard, fa1, fa2, auto, all)";
}

std::vector<Algorithm> parse_algos(const std::vector<std::string>& names) {
  std::vector<Algorithm> wanted;
  for (const auto& name : names) {
    if (lower(name) == "all")
      wanted.insert(wanted.end(), {Algorithm::Standard, Algorithm::FA1, Algorithm::FA2});
    else
      wanted.push_back(*parse_algorithm(name));
  }
  std::vector<Algorithm> ordered;  // canonical order, each once
  for (Algorithm a : {Algorithm::Standard, Algorithm::FA1, Algorithm::FA2, Algorithm::Auto})
    if (std::find(wanted.begin(), wanted.end(), a) != wanted.end()) ordered.push_back(a);
  return ordered;
}

std::optional<DType> dtype_named(const std::string& text) {
  const std::string t = lower(text);
  if (t == "fp32" || t == "float32" || t == "float") return DType::F32;
  if (t == "fp16" || t == "float16" || t == "half") return DType::F16;
  if (t == "bfloat16") return DType::BF16;
  return parse_dtype(t);
}

std::string float_dtypes_error(const std::vector<std::string>& names, std::vector<DType>& dtypes) {
  dtypes.clear();
  for (const std::string& name : names) {
    const auto t = dtype_named(name);
    if (t && is_fp8(*t)) return "--dtype: '" + name + "': FP8 has no backward (docs/FP8.md); f32, f16 or bf16";
    if (!t) return "--dtype: unknown dtype '" + name + "' (choose from f32, f16, bf16)";
    if (std::find(dtypes.begin(), dtypes.end(), *t) == dtypes.end()) dtypes.push_back(*t);
  }
  return "";
}

CausalOption::CausalOption(CLI::App& app, const std::string& default_text, bool allow_both) : text_(default_text) {
  const std::string words = allow_both ? "on, off or both" : "on or off";
  option_ = app.add_option("--causal", text_, "Causal mask (bottom-right): " + words + " (default " + default_text +
                                                  "; bare --causal: on)")
                ->expected(0, 1)
                ->check(checker([allow_both](const std::string& t) { return causal_error(t, allow_both); },
                                allow_both ? "on|off|both" : "on|off"));
}

std::vector<bool> CausalOption::values() const {
  // A bare --causal leaves an empty value: it means on.
  const std::string t = option_->count() > 0 && text_.empty() ? "on" : lower(text_);
  if (t == "both") return {false, true};
  return {t == "on" || t == "yes" || t == "true" || t == "1"};
}

void add_warmup_option(CLI::App& app, int& warmup) {
  app.add_option("-w,--warmup", warmup, "Untimed runs first (at least one: it builds, and PoCL compiles in it)")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
}

void add_softcap_option(CLI::App& app, double& softcap) {
  // Not CLI::NonNegativeNumber: its message spells out the range's upper end, DBL_MAX, in 300 digits.
  app.add_option("--softcap", softcap, "Softcap c: scores become c*tanh(s/c) (0: off)")->check(checker(softcap_error, "C"));
}

void add_window_option(CLI::App& app, std::string& text) {
  app.add_option("--window", text, "Sliding window LEFT,RIGHT as flash-attn's window_size (-1: unbounded side)")
      ->check(checker(window_error, "LEFT,RIGHT"));
}

std::pair<int, int> read_window(const std::string& text) {
  std::pair<int, int> window{-1, -1};
  if (!text.empty()) std::sscanf(text.c_str(), "%d,%d", &window.first, &window.second);
  return window;
}

int rows_failed(const char* mode, int failed, int rows) {
  if (failed == 0) return 0;
  std::fprintf(stderr, "flashcl-bench%s%s: %d of %d rows failed (their error is in the row)\n", *mode ? " " : "", mode,
               failed, rows);
  return 1;
}

int parse_command_line(CLI::App& app, int argc, char** argv) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  return -1;
}

std::vector<int> parse_int_list(const std::string& text, std::string& error, long max) {
  std::vector<int> values;
  error.clear();
  for (const auto& item : split(text, ',')) {
    const auto bounds = split(item, ':');
    long lo = 0, hi = 0, step = 0;
    const bool ok = (bounds.size() == 1 && to_int(bounds[0], lo) && (hi = lo, true)) ||
                    (bounds.size() == 2 && to_int(bounds[0], lo) && to_int(bounds[1], hi)) ||
                    (bounds.size() == 3 && to_int(bounds[0], lo) && to_int(bounds[1], hi) && to_int(bounds[2], step));
    if (!ok) {
      error = "'" + item + "' is not N, A:B (doubling) or A:B:STEP with positive integers";
      return {};
    }
    if (lo < 1 || hi < lo || (bounds.size() == 3 && step < 1)) {
      error = "'" + item + "' must have 1 <= A <= B (and STEP >= 1)";
      return {};
    }
    for (long v = lo; v <= hi; v = bounds.size() == 3 ? v + step : v * 2) {
      if (v > max) {
        error = std::to_string(v) + " is out of range 1.." + std::to_string(max);
        return {};
      }
      if (values.size() >= kMaxListLength) {
        error = "more than " + std::to_string(kMaxListLength) + " values";
        return {};
      }
      values.push_back(static_cast<int>(v));
    }
  }
  return values;
}

std::vector<int> parse_list_option(const char* option, const std::string& text, std::string& error, long max) {
  if (!error.empty()) return {};
  std::vector<int> values = parse_int_list(text, error, max);
  if (!error.empty()) error = std::string(option) + ": " + error;
  return values;
}

std::size_t parse_bytes(const std::string& text, std::string& error) {
  error.clear();
  char* end = nullptr;
  const double number = std::strtod(text.c_str(), &end);
  std::string unit = lower(std::string(end));
  if (unit.size() > 1 && (unit.back() == 'b')) unit.pop_back();  // "GB", "MiB"
  if (unit.size() == 2 && unit.back() == 'i') unit.pop_back();   // "Gi"
  double scale = 0.0;
  if (unit.empty())
    scale = 1.0;
  else if (unit == "k")
    scale = 1024.0;
  else if (unit == "m")
    scale = 1024.0 * 1024;
  else if (unit == "g")
    scale = 1024.0 * 1024 * 1024;
  else if (unit == "t")
    scale = 1024.0 * 1024 * 1024 * 1024;
  if (end == text.c_str() || scale == 0.0 || !(number > 0) || !std::isfinite(number) || number * scale < 1) {
    error = "expected a size such as 2G, 512M or 1048576, got '" + text + "'";
    return 0;
  }
  return static_cast<std::size_t>(number * scale);
}

int parse_options(int argc, char** argv, Options& opt) {
  CLI::App app{
      "flashcl-bench: standard attention vs FlashAttention-1 vs FlashAttention-2 on an OpenCL device.\n"
      "Device time from profiling events, TFLOP/s (4*B*H*Nq*Nk*d, halved when causal with Nq = Nk), modelled\n"
      "global-memory traffic (FlashAttention paper's IO analysis), % of the device's measured FMA and\n"
      "copy ceilings. Lists: 512,1024,4096 or 512:8192 (doubling) or 512:4096:512 (adding).\n"
      "No arguments: the default sweep below (about two minutes on a 2-core CPU under PoCL).\n"
      "Other modes, each with its own options and --help: --backward (or --mode bwd),\n"
      "--decode (or --mode decode: a KV cache), --dtype e4m3|e5m2 (FP8, with --quant, --hadamard)."};
  app.get_formatter()->column_width(34);
  std::string batch = "1", heads = "8", seqlen = "512:2048", seqlen_k, head_dim = "64";
  std::string heads_kv, window;
  std::vector<std::string> algos = {"all"};
  std::vector<std::string> dtypes = {"f32"};
  std::string mode = "fwd", max_memory, tile, format;

  app.add_flag("--list-devices", opt.list_devices, "List OpenCL platforms and devices, then exit");
  app.add_option("-p,--platform", opt.platform, "Platform: index or name substring (env FLASHCL_PLATFORM)");
  app.add_option("-d,--device", opt.device, "Device: index or name substring (env FLASHCL_DEVICE)");
  const auto list = list_checker(1 << 30);
  app.add_option("-b,--batch", batch, "Batch sizes (list)")->check(list)->capture_default_str();
  app.add_option("--heads", heads, "Head counts (list)")->check(list)->capture_default_str();
  app.add_option("-n,--seqlen", seqlen, "Query sequence lengths (list)")->check(list)->capture_default_str();
  app.add_option("--seqlen-k", seqlen_k, "Key sequence lengths (list; default: equal to --seqlen)")->check(list);
  app.add_option("--head-dim", head_dim, "Head dimensions, 1..256 (list)")
      ->check(list_checker(256))
      ->capture_default_str();
  const CausalOption causal(app, "off");
  app.add_option("--heads-kv", heads_kv, "K/V heads for GQA/MQA, dividing --heads (list; default: = heads)")
      ->check(list);
  add_window_option(app, window);
  add_softcap_option(app, opt.softcap);
  app.add_flag("--alibi", opt.alibi, "ALiBi: per-head slopes 2^(-8(h+1)/H), bias -slope*|i + Nk - Nq - j|");
  std::string mask = "none";
  app.add_option("--mask", mask, "Attention mask: none, bool (uint8, 1 key in 8 hidden) or bias (fp32), (B, H, Nq, Nk)")
      ->check(CLI::IsMember({"none", "bool", "bias"}))
      ->capture_default_str();
  app.add_flag("--varlen", opt.varlen,
               "Variable-length batch: B packed sequences, lengths drawn from [N/2, N] (N: the maximum)");
  app.add_option("--algo", algos, "Algorithms: standard, fa1, fa2, auto, all (comma list)")
      ->delimiter(',')
      ->check(checker(algo_error, "ALGO"))
      ->capture_default_str();
  app.add_option("--dtype", dtypes, "Storage types: f32, f16, bf16 (comma list; arithmetic is f32; e4m3, e5m2: the FP8 mode)")
      ->delimiter(',')
      ->check(checker(dtype_error, "DTYPE"))
      ->capture_default_str();
  app.add_option("--mode", mode, "Pass to time: fwd here; bwd and decode start those modes")
      ->check(checker(mode_error, "MODE"))
      ->capture_default_str();
  app.add_option("-r,--repeat", opt.repeat, "Timed runs per row (median, min, max)")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  app.add_option("-w,--warmup", opt.warmup, "Untimed runs per row; the first also measures build time")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  app.add_option("--row-budget", opt.row_budget_s,
                 "Seconds per row: slow rows get fewer timed runs (at least 1; runs_ms says how many)")
      ->check(CLI::NonNegativeNumber);
  app.add_flag("--check,!--no-check", opt.check,
               "Check each row against the float64 reference (max |error|; default on, --no-check skips it)");
  app.add_option("--check-macs", opt.check_macs,
                 "Reference budget per shape in multiply-adds; beyond it, evenly spaced query rows are checked")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--max-memory", max_memory,
                 "Cap on device memory the bench allocates (e.g. 2G; default: the device's)")
      ->check(checker(
          [](std::string& t) {
            std::string e;
            parse_bytes(t, e);
            return e;
          },
          "SIZE"));
  app.add_option("--tile", tile, "Force fa1/fa2 tiles BRxBC[xTPRxTM] (as FLASHCL_TILE), e.g. 64x32")
      ->check(checker(tile_error, "TILE"));
  app.add_option("--seed", opt.seed, "First seed of the random inputs")->capture_default_str();
  app.add_option("-f,--format", format, "Output: table, csv or json (default: table, or from -o's extension)")
      ->check(CLI::IsMember({"table", "csv", "json"}, CLI::ignore_case));
  app.add_option("-o,--output", opt.output,
                 "Write the results to FILE (CSV/JSON there: the table still shows on stdout unless -q)");
  app.add_flag("-q,--quiet", opt.quiet, "Results only: no header, notes or progress line");
  app.add_flag("--remeasure-ceilings", opt.remeasure,
               "Measure the FMA and copy ceilings again (the cache keeps the higher values)");
  app.add_flag("!--no-roofline", opt.roofline, "Skip the ceilings and the % of peak columns");
  app.add_flag("!--no-disk-cache", opt.disk_cache, "Do not use flashcl's on-disk program cache (every build cold)");

  if (const int status = parse_command_line(app, argc, argv); status >= 0) return status;

  std::string ignored;
  opt.batch = parse_int_list(batch, ignored);
  opt.heads = parse_int_list(heads, ignored);
  opt.seqlen = parse_int_list(seqlen, ignored);
  if (!seqlen_k.empty()) opt.seqlen_k = parse_int_list(seqlen_k, ignored);
  if (!heads_kv.empty()) opt.heads_kv = parse_int_list(heads_kv, ignored);
  // Checked here, across the two lists, so it is a usage error (exit 2) like every other bad
  // option rather than an error row from the library.
  for (int h : opt.heads)
    for (int hk : opt.heads_kv)
      if (h % hk != 0) {
        std::fprintf(stderr, "--heads-kv: %d does not divide --heads %d (GQA: heads %% heads_kv == 0)\n", hk, h);
        return 2;
      }
  std::tie(opt.window_left, opt.window_right) = read_window(window);
  opt.mask = mask == "bool" ? MaskMode::Bool : mask == "bias" ? MaskMode::Bias : MaskMode::None;
  opt.head_dim = parse_int_list(head_dim, ignored);
  opt.causal = causal.values();
  opt.algos = parse_algos(algos);
  for (const auto& name : dtypes)
    if (std::find(opt.dtypes.begin(), opt.dtypes.end(), *dtype_named(name)) == opt.dtypes.end())
      opt.dtypes.push_back(*dtype_named(name));
  if (!max_memory.empty()) opt.max_memory = parse_bytes(max_memory, ignored);
  if (!tile.empty())
    std::sscanf(lower(tile).c_str(), "%dx%dx%dx%d", &opt.tile.block_rows, &opt.tile.block_cols, &opt.tile.team_size,
                &opt.tile.rows_per_team);
  if (format.empty())
    format = ends_with(lower(opt.output), ".csv") ? "csv" : ends_with(lower(opt.output), ".json") ? "json" : "table";
  format = lower(format);
  opt.format = format == "csv" ? Format::Csv : format == "json" ? Format::Json : Format::Table;
  for (int i = 0; i < argc; ++i) opt.command += (i ? " " : "") + std::string(argv[i]);
  return -1;
}

}  // namespace flashcl::bench
