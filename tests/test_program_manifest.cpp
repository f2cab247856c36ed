// test_program_manifest.cpp: kernels/programs.txt as the library sees it. Every program of the
// generated table (program/programs.hpp) must assemble from the embedded kernel files, and each
// embedded file must be the file on disk, so neither a program naming a file the build did not
// embed nor a stale embedded copy goes unnoticed until a device builds that program; and the hash
// kept per file list (program_hash, the program cache's key) must be the hash of that text.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <unistd.h>

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

// The hash kept per file list (program_hash, which cached_program keys programs by) is the hash of
// the text as assembled now, for every program; with a kernel directory it follows the files there
// (a changed file must make a new program), and the embedded hash is back once the directory is unset.
TEST(ProgramManifest, KeptHashesAreTheTextsAndFollowAKernelDirectory) {
  namespace d = flashcl::detail;
  namespace fs = std::filesystem;
  d::set_kernel_dir("");
  for (const auto& program : d::programs::all) {
    SCOPED_TRACE(program.name);
    const std::uint64_t embedded = d::program_source(*program.files).hash;
    EXPECT_EQ(d::program_hash(*program.files), embedded);
    EXPECT_EQ(d::program_hash(*program.files), embedded);  // the kept one
  }
  const auto& files = *d::programs::all.front().files;
  const std::uint64_t embedded = d::program_hash(files);
  const fs::path dir = fs::temp_directory_path() / ("flashcl-hash-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  for (const auto& file : files) {
    fs::create_directories((dir / file).parent_path());
    std::ofstream(dir / file, std::ios::binary) << disk_file(file);
  }
  d::set_kernel_dir(dir.string());
  EXPECT_EQ(d::program_hash(files), embedded);  // the same text from disk
  std::ofstream(dir / files.back(), std::ios::app) << "\n/* edited */\n";
  const std::uint64_t edited = d::program_hash(files);
  EXPECT_NE(edited, embedded);
  EXPECT_EQ(edited, d::program_source(files).hash);
  d::set_kernel_dir("");
  EXPECT_EQ(d::program_hash(files), embedded);
  fs::remove_all(dir);
}

}  // namespace
