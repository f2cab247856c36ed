// disk_cache.hpp: program binaries on disk, one file per key, so a program is compiled once per
// device and driver. Files are written atomically (temp file + rename) and carry their key and a
// checksum, so a truncated, corrupt or foreign file is rejected (and removed), never loaded.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace flashcl::detail {

bool disk_cache_enabled();
std::string disk_cache_directory();

enum class DiskLookup { Missing, Invalid, Found };

// Reads the binary stored under `key` into `binary`. Invalid: a file exists but is truncated,
// corrupt or written for another key.
DiskLookup disk_cache_load(const std::string& key, std::vector<unsigned char>& binary);

// Stores `binary` under `key`; failures are silent (the cache is an optimisation).
bool disk_cache_store(const std::string& key, const std::vector<unsigned char>& binary);

// Removes the file for `key` (after a binary that failed to load).
void disk_cache_remove(const std::string& key);

// Path of the file holding `key` (for tests and tools).
std::string disk_cache_path(const std::string& key);

}  // namespace flashcl::detail
