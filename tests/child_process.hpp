// child_process.hpp: runs this test binary again as a child process (posix_spawn of
// /proc/self/exe) with extra environment variables, for checks that need a fresh process: the
// FLASHCL_FAULT_INJECT environment hook, and two processes filling one disk cache at once.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace flashcl::test {

struct Child {
  pid_t pid = -1;
  std::string output_path;  // stdout and stderr together
};

// Starts this binary with `args` (e.g. "--gtest_filter=...") and `env` ("NAME=value") added to
// the current environment (replacing variables of the same name).
Child spawn_self(const std::vector<std::string>& args, const std::vector<std::string>& env);

struct ChildResult {
  int exit_code = -1;  // -1: killed by a signal
  int signal = 0;
  std::string output;
};

ChildResult wait_child(const Child& child);

inline ChildResult run_self(const std::vector<std::string>& args, const std::vector<std::string>& env) {
  return wait_child(spawn_self(args, env));
}

}  // namespace flashcl::test
