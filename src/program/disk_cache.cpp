// disk_cache.cpp: file format "FLASHCL-BIN 1\n", key length (u64), key, binary length (u64),
// binary, XXH64(key + binary) (u64). Location: set_disk_cache_dir(), else $FLASHCL_CACHE_DIR,
// else $XDG_CACHE_HOME/flashcl, else ~/.cache/flashcl. Off with set_disk_cache_enabled(false) or
// FLASHCL_DISK_CACHE=0. Reads and writes never block on, or go through, a special file or symlink
// at a cache path: loads take regular files only, stores create a new temporary file (O_EXCL),
// fsync it and rename it into place.
#include "program/disk_cache.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#define XXH_INLINE_ALL  // header-only: no run-time library to ship
#include <xxhash.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <sstream>
#include <thread>

#include "flashcl/flashcl.hpp"
#include "plan/overrides.hpp"

namespace flashcl::detail {
namespace {

namespace fs = std::filesystem;
const char kMagic[] = "FLASHCL-BIN 1\n";

std::atomic<bool> g_enabled{true};
std::mutex g_dir_mutex;
std::string g_dir;

std::uint64_t checksum(const std::string& key, const std::vector<unsigned char>& binary) {
  XXH64_state_t* state = XXH64_createState();
  XXH64_reset(state, 0);
  XXH64_update(state, key.data(), key.size());
  XXH64_update(state, binary.data(), binary.size());
  const std::uint64_t sum = XXH64_digest(state);
  XXH64_freeState(state);
  return sum;
}

void append_u64(std::string& out, std::uint64_t v) { out.append(reinterpret_cast<const char*>(&v), sizeof v); }
bool read_u64(std::istream& in, std::uint64_t& v) {
  return static_cast<bool>(in.read(reinterpret_cast<char*>(&v), sizeof v));
}

enum class FileRead { Absent, TooLarge, Read };

// Reads the file at `path` whole, if it is a regular file of at most `max_bytes`. Opened with
// O_NONBLOCK, since open() on a FIFO blocks until a writer comes (a FIFO at a cache path hung
// forward() for good), and checked with fstat on the open descriptor: a FIFO, directory, socket
// or device (also through a symlink) is not a cache file and counts as absent.
FileRead read_regular_file(const std::string& path, std::uint64_t max_bytes, std::string& bytes) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return FileRead::Absent;
  struct stat st {};
  FileRead result = FileRead::Read;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    result = FileRead::Absent;
  } else if (static_cast<std::uint64_t>(st.st_size) > max_bytes) {
    result = FileRead::TooLarge;
  } else {
    bytes.resize(static_cast<std::size_t>(st.st_size));
    std::size_t done = 0;
    while (done < bytes.size()) {
      const ssize_t n = ::read(fd, bytes.data() + done, bytes.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      done += static_cast<std::size_t>(n);
    }
    bytes.resize(done);  // a file cut short while read: the format checks reject it
  }
  ::close(fd);
  return result;
}

// The temporary name a store writes first: unique per process and thread at any moment.
std::string temp_path(const std::string& path) {
#if defined(__linux__)
  const long thread = static_cast<long>(::syscall(SYS_gettid));
#else
  const std::size_t thread = std::hash<std::thread::id>{}(std::this_thread::get_id());
#endif
  std::ostringstream name;
  name << path << ".tmp." << ::getpid() << "." << thread;
  return name.str();
}

// Creates `tmp` as a new regular file for writing. O_EXCL never opens what is already there (a FIFO
// there blocked the old std::ofstream's open for good, a symlink was followed and its target
// truncated); O_NOFOLLOW and O_NONBLOCK guard the rest. A leftover at the name (a crashed writer
// with this pid and thread id, or something planted) is unlinked once, which removes a FIFO or a
// link itself, never a link's target, and the create is retried; a directory stays and fails it.
int create_temp(const std::string& tmp) {
  const int flags = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK;
  int fd = ::open(tmp.c_str(), flags, 0666);
  if (fd < 0 && errno == EEXIST && ::unlink(tmp.c_str()) == 0) fd = ::open(tmp.c_str(), flags, 0666);
  return fd;
}

bool write_all(int fd, const std::string& bytes) {
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<std::size_t>(n);
  }
  return true;
}

}  // namespace

bool disk_cache_enabled() {
  if (process_overrides().disk_cache_off) return false;
  return g_enabled.load();
}

std::string disk_cache_directory() {
  {
    std::lock_guard<std::mutex> lock(g_dir_mutex);
    if (!g_dir.empty()) return g_dir;
  }
  return process_overrides().cache_dir;
}

std::string disk_cache_path(const std::string& key) {
  char name[32];
  std::snprintf(name, sizeof name, "%016llx.bin", static_cast<unsigned long long>(XXH64(key.data(), key.size(), 0)));
  return disk_cache_directory() + "/" + name;
}

DiskLookup disk_cache_load(const std::string& key, std::vector<unsigned char>& binary) {
  if (!disk_cache_enabled() || disk_cache_directory().empty()) return DiskLookup::Missing;
  // the largest valid file: magic, key, a 4 GiB binary and three u64s
  const std::uint64_t max_bytes = sizeof kMagic + key.size() + (std::uint64_t{1} << 32) + 3 * sizeof(std::uint64_t);
  std::string bytes;
  switch (read_regular_file(disk_cache_path(key), max_bytes, bytes)) {
    case FileRead::Absent: return DiskLookup::Missing;
    case FileRead::TooLarge: return DiskLookup::Invalid;
    case FileRead::Read: break;
  }
  std::istringstream in(std::move(bytes));
  char magic[sizeof kMagic - 1];
  std::uint64_t key_size = 0, bin_size = 0, sum = 0;
  if (!in.read(magic, sizeof magic) || std::string(magic, sizeof magic) != kMagic) return DiskLookup::Invalid;
  if (!read_u64(in, key_size) || key_size != key.size()) return DiskLookup::Invalid;
  std::string stored_key(key_size, '\0');
  if (!in.read(stored_key.data(), static_cast<std::streamsize>(key_size)) || stored_key != key) return DiskLookup::Invalid;
  if (!read_u64(in, bin_size) || bin_size == 0 || bin_size > (std::uint64_t{1} << 32)) return DiskLookup::Invalid;
  // The binary and its checksum must be what is left of the file: a damaged length field must not
  // make us allocate (up to 4 GiB) before the read fails.
  const std::streamoff here = in.tellg();
  in.seekg(0, std::ios::end);
  const std::streamoff end = in.tellg();
  if (here < 0 || end < here || static_cast<std::uint64_t>(end - here) != bin_size + sizeof sum) return DiskLookup::Invalid;
  in.seekg(here);
  binary.assign(bin_size, 0);
  if (!in.read(reinterpret_cast<char*>(binary.data()), static_cast<std::streamsize>(bin_size))) return DiskLookup::Invalid;
  if (!read_u64(in, sum) || sum != checksum(key, binary)) return DiskLookup::Invalid;
  return DiskLookup::Found;
}

bool disk_cache_store(const std::string& key, const std::vector<unsigned char>& binary) {
  if (!disk_cache_enabled() || binary.empty()) return false;
  const std::string dir = disk_cache_directory();
  if (dir.empty()) return false;
  std::error_code ec;
  fs::create_directories(dir, ec);
  const std::string path = disk_cache_path(key);
  std::string bytes(kMagic, sizeof kMagic - 1);
  append_u64(bytes, key.size());
  bytes += key;
  append_u64(bytes, binary.size());
  bytes.append(reinterpret_cast<const char*>(binary.data()), binary.size());
  append_u64(bytes, checksum(key, binary));
  const std::string tmp = temp_path(path);
  const int fd = create_temp(tmp);
  if (fd < 0) return false;
  // fsync before the rename: after a crash the name holds the old file or the whole new one
  const bool written = write_all(fd, bytes) && ::fsync(fd) == 0;
  if (::close(fd) != 0 || !written) {
    ::unlink(tmp.c_str());
    return false;
  }
  fs::rename(tmp, path, ec);  // atomic on POSIX: readers see the old file or the whole new one
  if (ec) {  // (e.g. a directory at the path); remove's own error code must not hide the failure
    std::error_code ignored;
    fs::remove(tmp, ignored);
    return false;
  }
  return true;
}

void disk_cache_remove(const std::string& key) {
  std::error_code ec;
  fs::remove(disk_cache_path(key), ec);
}

}  // namespace flashcl::detail

namespace flashcl {

void set_disk_cache_enabled(bool enabled) { detail::g_enabled = enabled; }

void set_disk_cache_dir(const std::string& dir) {
  std::lock_guard<std::mutex> lock(detail::g_dir_mutex);
  detail::g_dir = dir;
}

std::string disk_cache_dir() { return detail::disk_cache_directory(); }

}  // namespace flashcl
