// test_cache.cpp: the program cache: memory hit, disk hit after the memory cache is dropped, miss
// on changed options, corrupt / truncated / foreign files rejected and rebuilt, and the switch
// that turns the disk cache off. Each test uses a fresh cache directory.
#include <filesystem>
#include <fstream>

#include "support.hpp"

namespace flashcl::test {
namespace {

namespace fs = std::filesystem;

class Cache : public testing::Test {
 protected:
  fs::path dir;
  void SetUp() override {
    dir = fs::temp_directory_path() / ("flashcl-cache-test-" + std::to_string(::getpid()) + "-" +
                                       testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir);
    set_disk_cache_dir(dir.string());
    set_disk_cache_enabled(true);
    clear_memory_cache();
  }
  void TearDown() override {
    set_disk_cache_dir("");
    set_disk_cache_enabled(true);
    fs::remove_all(dir);
  }
  // Runs fa2 on a small case with head dim `d`, checking the result.
  void run(int d) {
    Case c;
    c.shape.seqlen_q = 33;
    c.shape.seqlen_k = 47;
    c.shape.head_dim = d;
    c.shape.causal = true;
    expect_accurate(run_case(c, Algorithm::FA2), "cache run d=" + std::to_string(d));
  }
  std::vector<fs::path> files() const {
    std::vector<fs::path> out;
    if (fs::exists(dir))
      for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path());
    return out;
  }
};

TEST_F(Cache, BuildThenMemoryHitThenDiskHit) {
  const CacheStats s0 = cache_stats();
  run(24);
  const CacheStats s1 = cache_stats();
  EXPECT_EQ(s1.builds, s0.builds + 1);
  EXPECT_EQ(s1.disk_writes, s0.disk_writes + 1);
  ASSERT_EQ(files().size(), 1u);
  EXPECT_EQ(files()[0].extension(), ".bin");

  run(24);
  const CacheStats s2 = cache_stats();
  EXPECT_EQ(s2.memory_hits, s1.memory_hits + 1);
  EXPECT_EQ(s2.builds, s1.builds);

  clear_memory_cache();
  run(24);
  const CacheStats s3 = cache_stats();
  EXPECT_EQ(s3.disk_hits, s2.disk_hits + 1);
  EXPECT_EQ(s3.builds, s2.builds);
}

TEST_F(Cache, ChangedOptionsMiss) {
  run(24);
  const CacheStats s1 = cache_stats();
  run(25);  // another head dim: other -D options, another program
  const CacheStats s2 = cache_stats();
  EXPECT_EQ(s2.builds, s1.builds + 1);
  EXPECT_EQ(files().size(), 2u);
}

// Damages the single cache file with `damage`, then expects a reject, a rebuild and a valid file.
template <typename Damage>
void expect_recovery(const std::vector<fs::path>& before, Damage damage, const std::function<void()>& rerun,
                     const std::function<std::vector<fs::path>()>& list) {
  ASSERT_EQ(before.size(), 1u);
  damage(before[0]);
  clear_memory_cache();
  const CacheStats s1 = cache_stats();
  rerun();
  const CacheStats s2 = cache_stats();
  EXPECT_EQ(s2.disk_rejects, s1.disk_rejects + 1);
  EXPECT_EQ(s2.builds, s1.builds + 1);
  EXPECT_EQ(list().size(), 1u);  // rewritten
  clear_memory_cache();
  rerun();
  EXPECT_EQ(cache_stats().disk_hits, s2.disk_hits + 1);  // and good again
}

TEST_F(Cache, CorruptFileIsRebuilt) {
  run(24);
  expect_recovery(
      files(),
      [](const fs::path& p) {
        std::fstream f(p, std::ios::in | std::ios::out | std::ios::binary);
        f.seekp(static_cast<std::streamoff>(fs::file_size(p) / 2));
        f.put('\x5a').put('\xa5').put('\x00');
      },
      [&] { run(24); }, [&] { return files(); });
}

TEST_F(Cache, TruncatedFileIsRebuilt) {
  run(24);
  expect_recovery(
      files(), [](const fs::path& p) { fs::resize_file(p, fs::file_size(p) / 3); }, [&] { run(24); },
      [&] { return files(); });
}

TEST_F(Cache, ForeignFileIsRebuilt) {
  run(24);
  const fs::path mine = files()[0];
  fs::rename(mine, dir / "keep.other");
  run(25);  // writes the d=25 program's file
  std::vector<fs::path> others;
  for (const auto& p : files())
    if (p.extension() == ".bin") others.push_back(p);
  ASSERT_EQ(others.size(), 1u);
  // Put the d=25 binary where the d=24 program looks: a valid file written for another key.
  fs::copy_file(others[0], mine, fs::copy_options::overwrite_existing);
  fs::remove(dir / "keep.other");
  clear_memory_cache();
  const CacheStats s1 = cache_stats();
  run(24);
  const CacheStats s2 = cache_stats();
  EXPECT_EQ(s2.disk_rejects, s1.disk_rejects + 1);
  EXPECT_EQ(s2.builds, s1.builds + 1);
}

TEST_F(Cache, DisabledWritesNothing) {
  set_disk_cache_enabled(false);
  const CacheStats s0 = cache_stats();
  run(24);
  EXPECT_EQ(cache_stats().builds, s0.builds + 1);
  EXPECT_EQ(cache_stats().disk_writes, s0.disk_writes);
  EXPECT_TRUE(files().empty());
  clear_memory_cache();
  run(24);
  EXPECT_EQ(cache_stats().builds, s0.builds + 2);  // nothing on disk to hit
}

TEST(CacheDir, FollowsEnvironmentOrder) {
  set_disk_cache_dir("/tmp/flashcl-explicit");
  EXPECT_EQ(disk_cache_dir(), "/tmp/flashcl-explicit");
  set_disk_cache_dir("");
  const char* env = std::getenv("FLASHCL_CACHE_DIR");
  if (env != nullptr) EXPECT_EQ(disk_cache_dir(), env);
}

}  // namespace
}  // namespace flashcl::test
