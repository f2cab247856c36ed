// recorded_table.hpp: the planner recordings' check (PlanChoices, PlanOptions): a table of one
// line per planned case, compared line by line with tests/data/<name>.txt, which was recorded from
// the code before a refactor, so an identical table means the refactor changed no choice. The
// whole new table is written to <name>.actual.txt in the working directory (the test binary's
// build folder under ctest), so an intended change is reviewed as a diff and copied over.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <string>
#include <vector>

namespace flashcl::test {

inline void expect_same_as_recorded(const std::vector<std::string>& actual, const std::string& name) {
  {
    std::ofstream out(name + ".actual.txt");
    for (const std::string& line : actual) out << line << "\n";
  }
  std::ifstream in(std::string(FLASHCL_SOURCE_DIR) + "/tests/data/" + name + ".txt");
  ASSERT_TRUE(in) << "tests/data/" << name << ".txt is missing";
  std::vector<std::string> recorded;
  for (std::string line; std::getline(in, line);) recorded.push_back(line);
  ASSERT_GT(recorded.size(), 1000u);
  for (std::size_t i = 0; i < std::min(actual.size(), recorded.size()); ++i)
    ASSERT_EQ(actual[i], recorded[i]) << "line " << i + 1 << " (the whole table: " << name << ".actual.txt)";
  EXPECT_EQ(actual.size(), recorded.size());
}

}  // namespace flashcl::test
