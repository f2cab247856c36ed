// kernel_source.hpp: the OpenCL C text of each program: the embedded copies of kernels/*.cl
// (generated at build time), or the files of $FLASHCL_KERNEL_DIR / set_kernel_dir() when
// working on kernels without rebuilding.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "flashcl/export.h"

namespace flashcl::detail {

struct EmbeddedFile {
  const char* name;
  const char* data;
  std::size_t size;
};

// Defined in the generated embedded_kernels.cpp.
const std::vector<EmbeddedFile>& embedded_kernel_files();

struct ProgramSource {
  std::string text;
  std::uint64_t hash = 0;  // XXH64 of text: part of every cache key
};

// Concatenates the named files (in order) into one program source.
ProgramSource program_source(const std::vector<std::string>& files);

// program_source(files).hash without assembling the text again for embedded kernels: their text
// never changes, so each file list's hash is kept after its first use. cached_program looks every
// kernel up by it (three times a KV-cache call) after the CUDA bridge's host wait, so assembling
// and hashing ~65 KB of text each time was on the GPU's idle path: a KV-cache call's host time
// on PoCL went from 124 to 90-95 µs (median, tiny shape). With a kernel directory the files are
// read and hashed every time, as before, so an edited file still makes a new program.
std::uint64_t program_hash(const std::vector<std::string>& files);

// Overrides $FLASHCL_KERNEL_DIR; empty restores the embedded kernels (or the variable). Exported
// for the tests, which link the shared library and must not change the environment (it is read
// once per process: overrides.hpp).
FLASHCL_API void set_kernel_dir(const std::string& dir);

}  // namespace flashcl::detail
