# Sanitizers.cmake: host-side checks, included by the top-level CMakeLists.txt before any target.
#
#   FLASHCL_SANITIZE=ON  builds everything (library, tests, bench, fuzz targets) with
#                        AddressSanitizer (+ LeakSanitizer) and UndefinedBehaviorSanitizer; any
#                        UB report aborts. The tests get ASAN/LSAN/UBSAN_OPTIONS from
#                        tests/CMakeLists.txt, with tests/lsan.supp suppressing leaks inside
#                        PoCL/LLVM only (never flashcl's own).
#   FLASHCL_FUZZ=ON      (clang only) adds coverage instrumentation for libFuzzer
#                        (-fsanitize=fuzzer-no-link) and builds fuzz/.
# GCC and clang both work for FLASHCL_SANITIZE; the fuzz targets need clang (Debian: clang-14 and
# libclang-rt-14-dev).
option(FLASHCL_SANITIZE "Build with AddressSanitizer and UndefinedBehaviorSanitizer" OFF)
option(FLASHCL_FUZZ "Build the libFuzzer targets in fuzz/ (needs clang)" OFF)

if(FLASHCL_SANITIZE)
  set(flashcl_sanitize_flags -fsanitize=address,undefined -fno-sanitize-recover=undefined
                             -fno-omit-frame-pointer -g)
  add_compile_options(${flashcl_sanitize_flags})
  add_link_options(-fsanitize=address,undefined)
  message(STATUS "flashcl: building with AddressSanitizer and UndefinedBehaviorSanitizer")
endif()

if(FLASHCL_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "FLASHCL_FUZZ needs clang (e.g. -DCMAKE_CXX_COMPILER=clang++-14 -DCMAKE_C_COMPILER=clang-14)")
  endif()
  add_compile_options(-fsanitize=fuzzer-no-link)
endif()
