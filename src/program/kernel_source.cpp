// kernel_source.cpp: assembles program text from embedded or on-disk kernel files.
#include "program/kernel_source.hpp"

#define XXH_INLINE_ALL  // header-only: no run-time library to ship
#include <xxhash.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>

#include "base/errors.hpp"
#include "plan/overrides.hpp"

namespace flashcl::detail {
namespace {

std::mutex g_dir_mutex;
std::string g_dir_override;

std::mutex g_hash_mutex;
std::map<std::vector<std::string>, std::uint64_t> g_embedded_hashes;  // file list -> hash of its text

std::string kernel_dir() {
  std::lock_guard<std::mutex> lock(g_dir_mutex);
  if (!g_dir_override.empty()) return g_dir_override;
  return process_overrides().kernel_dir;
}

std::string read_file(const std::string& dir, const std::string& name) {
  std::ifstream in(dir + "/" + name, std::ios::binary);
  if (!in) fail(Status::InvalidArgument, "FLASHCL_KERNEL_DIR: cannot read ", dir, "/", name);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

std::string embedded_file(const std::string& name) {
  for (const auto& f : embedded_kernel_files())
    if (name == f.name) return std::string(f.data, f.size);
  fail(Status::InternalError, "kernel file ", name, " is not embedded in the library");
}

}  // namespace

void set_kernel_dir(const std::string& dir) {
  std::lock_guard<std::mutex> lock(g_dir_mutex);
  g_dir_override = dir;
}

ProgramSource program_source(const std::vector<std::string>& files) {
  const std::string dir = kernel_dir();
  ProgramSource source;
  for (const auto& name : files) {
    source.text += "/* ---- " + name + " ---- */\n";
    source.text += dir.empty() ? embedded_file(name) : read_file(dir, name);
    source.text += "\n";
  }
  source.hash = XXH64(source.text.data(), source.text.size(), 0);
  return source;
}

std::uint64_t program_hash(const std::vector<std::string>& files) {
  if (!kernel_dir().empty()) return program_source(files).hash;
  {
    std::lock_guard<std::mutex> lock(g_hash_mutex);
    auto it = g_embedded_hashes.find(files);
    if (it != g_embedded_hashes.end()) return it->second;
  }
  const std::uint64_t hash = program_source(files).hash;
  std::lock_guard<std::mutex> lock(g_hash_mutex);
  return g_embedded_hashes.emplace(files, hash).first->second;
}

}  // namespace flashcl::detail
