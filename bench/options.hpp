// options.hpp: flashcl-bench's command line, parsed and checked with CLI11 into plain values, and
// the option pieces its four modes share. Every bad value is rejected with a message that names
// the option, and a usage error exits 2 in every mode. Running with no arguments
// is the default sweep (the defaults below), sized to finish in about two minutes on a 2-core CPU
// under PoCL.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "flashcl/flashcl.hpp"
#include "problem.hpp"

namespace CLI {
class App;
class Option;
}  // namespace CLI

namespace flashcl::bench {

enum class Format { Table, Csv, Json };

struct Options {
  bool list_devices = false;
  std::string platform, device;
  std::vector<int> batch, heads, seqlen, seqlen_k, head_dim;  // seqlen_k empty: = seqlen
  std::vector<int> heads_kv;                                  // GQA/MQA K/V heads; empty: = heads
  int window_left = -1, window_right = -1;                    // sliding window; -1: unbounded side
  double softcap = 0.0;
  bool alibi = false;                                         // ALiBi, flash-attn's slopes 2^(-8(h+1)/H)
  MaskMode mask = MaskMode::None;                             // dense (B, H, Nq, Nk) bool or bias mask
  bool varlen = false;                                        // packed sequences of random lengths
  std::vector<bool> causal;
  std::vector<DType> dtypes;
  std::vector<Algorithm> algos;  // standard first, so later rows can show a speedup over it
  int repeat = 3, warmup = 1;
  double row_budget_s = 0.0;   // > 0: fewer timed runs for rows whose first call says they would overrun
  bool check = true;           // sampled beyond check_macs, so cheap enough to be the default
  double check_macs = 1e9;     // reference budget per shape; larger shapes check sampled rows
  std::size_t max_memory = 0;  // 0: the device's global memory
  TileOverride tile;
  std::uint64_t seed = 1;
  Format format = Format::Table;
  std::string output;  // empty: stdout
  bool quiet = false, remeasure = false, roofline = true, disk_cache = true;
  std::string command;  // the command line, for the JSON context
};

// --causal as every mode spells it: on, off or both (yes/no, true/false and 1/0 alike), and a bare
// --causal means on, so a command line moves between modes unchanged. A mode that times one
// setting per row (decode) passes allow_both = false and gets "both" refused by name.
class CausalOption {
 public:
  CausalOption(CLI::App& app, const std::string& default_text, bool allow_both = true);
  CausalOption(const CausalOption&) = delete;  // CLI11 holds the address of text_
  CausalOption& operator=(const CausalOption&) = delete;
  std::vector<bool> values() const;  // after parsing: {false}, {true} or {false, true}

 private:
  std::string text_;
  CLI::Option* option_ = nullptr;
};

// -w/--warmup for the modes that time one call a row: untimed runs first, at least one, since a first
// call's events can hold its kernels' build (PoCL compiles at the first launch).
void add_warmup_option(CLI::App& app, int& warmup);

// --softcap C and --window LEFT,RIGHT as every mode defines and checks them (a bad value gets a
// message naming the form wanted). read_window: the two sides of a checked text ({-1, -1} if empty).
void add_softcap_option(CLI::App& app, double& softcap);
void add_window_option(CLI::App& app, std::string& text);
std::pair<int, int> read_window(const std::string& text);

// A mode's exit status after its rows: 0, or 1 with "flashcl-bench MODE: F of N rows failed" on
// stderr when a row ended in an error (a skipped row is not one), so scripts see failures.
int rows_failed(const char* mode, int failed, int rows);

// app.parse with every mode's exit codes: -1 to go on, 0 after --help, 2 on a usage error
// (CLI11 printed which).
int parse_command_line(CLI::App& app, int argc, char** argv);

// Parses argv into `options`. Returns -1 to go on, else the exit code (0 after --help).
int parse_options(int argc, char** argv, Options& options);

// "512,1024,4096", "512:8192" (doubling) or "512:8192:512" (adding), mixed with commas, each
// value in 1..max. Empty result and a message on error.
std::vector<int> parse_int_list(const std::string& text, std::string& error, long max = 1L << 30);

// --algo's names (standard, fa1, fa2, auto, all; any case): "" or what is wrong; and the list in
// canonical order, each once ("all" is standard, fa1, fa2).
std::string algo_error(const std::string& text);
std::vector<Algorithm> parse_algos(const std::vector<std::string>& names);

// parse_int_list for the option named `option`: "" left alone, else error set to "OPTION: what is
// wrong". Nothing is parsed while error already holds one, so a mode chains its lists and reports
// the first bad one.
std::vector<int> parse_list_option(const char* option, const std::string& text, std::string& error,
                                   long max = 1L << 30);

// flashcl's name for a storage type from the spellings people use (fp16, float32, bfloat16, E4M3...).
std::optional<DType> dtype_named(const std::string& text);

// 16- and 32-bit storage types, for the modes without FP8 (--backward): "" or what is wrong.
std::string float_dtypes_error(const std::vector<std::string>& names, std::vector<DType>& dtypes);

// "3G", "512M", "1.5GiB", "4096" (bytes; K, M, G, T are powers of 1024). 0 on error.
std::size_t parse_bytes(const std::string& text, std::string& error);

}  // namespace flashcl::bench
