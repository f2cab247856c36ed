// report.hpp: the output formats. A Reporter receives the run's Context, then each Result as it
// completes (table and CSV rows stream out, so a long sweep shows progress), then end(). The
// table is for people; CSV and JSON carry the same fields for scripts and bench/plot.py.
#pragma once

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "options.hpp"
#include "result.hpp"

namespace flashcl::bench {

class Reporter {
 public:
  virtual ~Reporter() = default;
  virtual void begin(const Context& context) = 0;
  virtual void row(const Result& result) = 0;
  virtual void end() = 0;
};

// Writes to `out` (not owned). `quiet` leaves out the table's header block and notes.
std::unique_ptr<Reporter> make_table_reporter(std::FILE* out, bool quiet);
std::unique_ptr<Reporter> make_csv_reporter(std::FILE* out);
// JSON goes to `out` at the end, or, when `path` is set, to that file after every row.
std::unique_ptr<Reporter> make_json_reporter(std::FILE* out, const std::string& path = "");

// Passes everything to each of `reporters` in turn (a JSON file and a live table, say).
std::unique_ptr<Reporter> make_tee_reporter(std::vector<std::unique_ptr<Reporter>> reporters);

}  // namespace flashcl::bench
