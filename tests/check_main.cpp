// check_main.cpp: main() of flashcl_check_tests. Like gtest_main, plus one switch for the oclgrind
// runs: with FLASHCL_TEST_QUICK_EXIT=1 the process ends right after the tests (std::_Exit) without
// running static destructors. oclgrind 21.10 destroys a thread-local stack of its own before the
// process's static objects; the tests' shared Session (a function-local static in support.cpp)
// then calls clReleaseCommandQueue from its destructor and oclgrind writes into the freed stack
// (valgrind: "Invalid write of size 8 ... clReleaseCommandQueue ... block free'd by
// std::stack<char const*>::~stack ... __call_tls_dtors"), which glibc reports as "corrupted
// double-linked list". Everything the tests check has happened by then.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <string>

int main(int argc, char** argv) {
  testing::InitGoogleTest(&argc, argv);
  const int rc = RUN_ALL_TESTS();
  const char* quick = std::getenv("FLASHCL_TEST_QUICK_EXIT");
  if (quick != nullptr && std::string(quick) == "1") {
    std::fflush(stdout);
    std::fflush(stderr);
    std::_Exit(rc);
  }
  return rc;
}
