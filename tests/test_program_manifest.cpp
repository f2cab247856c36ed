// test_program_manifest.cpp: kernels/programs.txt as the library sees it. Every program of the
// generated table (program/programs.hpp) must assemble from the embedded kernel files, and each
// embedded file must be the file on disk, so neither a program naming a file the build did not
// embed nor a stale embedded copy goes unnoticed until a device builds that program.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>

#include "program/kernel_source.hpp"
#include "program/programs.hpp"

namespace {

std::string disk_file(const std::string& name) {
  std::ifstream in(std::string(FLASHCL_SOURCE_DIR) + "/kernels/" + name, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

TEST(ProgramManifest, EveryProgramAssemblesFromTheFilesOnDisk) {
  namespace d = flashcl::detail;
  d::set_kernel_dir("");  // no test override: the embedded copies (unless FLASHCL_KERNEL_DIR is set)
  ASSERT_FALSE(d::programs::all.empty());
  for (const auto& program : d::programs::all) {
    SCOPED_TRACE(program.name);
    const d::ProgramSource source = d::program_source(*program.files);
    std::size_t at = 0;
    for (const auto& file : *program.files) {  // each file whole, in the manifest's order
      const std::string text = disk_file(file);
      ASSERT_FALSE(text.empty()) << file << " is not in kernels/";
      const std::size_t found = source.text.find(text, at);
      ASSERT_NE(found, std::string::npos) << file << ": the embedded copy differs from the file or is out of order";
      at = found + text.size();
    }
  }
}

}  // namespace
