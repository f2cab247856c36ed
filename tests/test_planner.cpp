// test_planner.cpp: the tile planner as a pure function, on simulated GPUs with 16, 32, 48 and
// 64 KiB of local memory and on a PoCL-like CPU: it never plans more local memory or work-items
// than the device has, keeps the shapes the kernels need, follows FA1's rule, errors clearly when
// nothing fits, and honours overrides; and the size of fa2's causal dispatch tail.
#include <gtest/gtest.h>

#include <cstdlib>
#include <map>
#include <string>

#include "plan/overrides.hpp"
#include "simulated_devices.hpp"
#include "plan/tile_planner.hpp"

namespace flashcl::detail {
namespace {

DeviceFacts gpu(std::size_t local_kib) { return simulated_nvidia_gpu(local_kib); }

DeviceFacts pocl_cpu() {
  DeviceFacts f;
  f.name = "simulated PoCL CPU";
  f.vendor = "AuthenticAMD";
  f.kind = DeviceKind::CPU;
  f.local_mem_bytes = 512 * 1024;
  f.max_work_group_size = 4096;
  f.work_group_multiple = 8;
  return f;
}

PlanRequest request(Algorithm a, int d) {
  PlanRequest r;
  r.algorithm = a;
  r.head_dim = d;
  return r;
}

void expect_runnable(const DeviceFacts& dev, const TilePlan& p, int d, Algorithm a) {
  SCOPED_TRACE(dev.name + " d=" + std::to_string(d) + " " + to_string(a));
  EXPECT_LE(p.local_bytes, dev.local_mem_bytes);
  EXPECT_LE(p.work_group_size, dev.max_work_group_size);
  EXPECT_GE(p.padded_head_dim, d);
  EXPECT_EQ(p.padded_head_dim % p.team_size, 0);
  EXPECT_EQ(p.block_cols % p.team_size, 0);
  EXPECT_EQ(p.block_rows % p.rows_per_team, 0);
  if (dev.kind == DeviceKind::GPU) EXPECT_LE(p.block_cols / p.team_size, 16);  // scores stay in registers
  EXPECT_EQ(p.work_group_size, static_cast<std::size_t>(p.block_rows / p.rows_per_team * p.team_size));
  EXPECT_EQ(p.local_bytes, flash_local_bytes(a, p.block_rows, p.block_cols, p.team_size, p.padded_head_dim));
  EXPECT_FALSE(p.reason.empty());
}

// A forced tile is rejected exactly when its footprint exceeds the device's local memory, on
// devices from 48 KiB (NVIDIA) to 4 MiB (PoCL reports 1 MiB or less, following the host CPU).
TEST(Planner, OverrideRejectedByLocalMemory) {
  for (std::size_t kib : {48, 256, 1024, 4096}) {
    DeviceFacts dev = pocl_cpu();
    dev.local_mem_bytes = kib * 1024;
    PlanRequest r = request(Algorithm::FA2, 256);
    r.tile = {256, 256, 1, 1};
    const std::size_t needs = flash_local_bytes(Algorithm::FA2, 256, 256, 1, 256);
    SCOPED_TRACE(std::to_string(kib) + " KiB");
    if (needs > dev.local_mem_bytes) {
      try {
        plan_tiles(dev, r);
        ADD_FAILURE() << "accepted a tile of " << needs << " bytes";
      } catch (const Error& e) {
        EXPECT_EQ(e.status(), Status::OutOfResources);
        EXPECT_NE(std::string(e.what()).find("local memory"), std::string::npos) << e.what();
      }
    } else {
      EXPECT_EQ(plan_tiles(dev, r).local_bytes, needs);
    }
  }
}

TEST(Planner, NeverExceedsSimulatedDevices) {
  for (std::size_t kib : {16, 32, 48, 64})
    for (Algorithm a : {Algorithm::FA1, Algorithm::FA2})
      for (int d = 1; d <= 256; ++d) {
        const DeviceFacts dev = gpu(kib);
        try {
          expect_runnable(dev, plan_tiles(dev, request(a, d)), d, a);
        } catch (const Error& e) {
          EXPECT_EQ(e.status(), Status::OutOfResources);
          EXPECT_NE(std::string(e.what()).find("local memory"), std::string::npos) << e.what();
          EXPECT_LE(kib, 32u) << "48 and 64 KiB devices must run every head dim: " << e.what();
        }
      }
}

TEST(Planner, CpuRunsEveryHeadDim) {
  const DeviceFacts dev = pocl_cpu();
  for (Algorithm a : {Algorithm::FA1, Algorithm::FA2})
    for (int d = 1; d <= 256; ++d) expect_runnable(dev, plan_tiles(dev, request(a, d)), d, a);
}

TEST(Planner, NothingFitsGivesClearError) {
  DeviceFacts tiny = gpu(4);
  try {
    plan_tiles(tiny, request(Algorithm::FA2, 256));
    FAIL() << "planned d=256 into 4 KiB";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), Status::OutOfResources);
    EXPECT_NE(std::string(e.what()).find("head_dim"), std::string::npos) << e.what();
  }
}

TEST(Planner, Fa1FollowsThePapersRule) {
  for (std::size_t kib : {32, 48, 64})
    for (int d : {32, 64, 128}) {
      const DeviceFacts dev = gpu(kib);
      const TilePlan p = plan_tiles(dev, request(Algorithm::FA1, d));
      const long m = static_cast<long>(dev.local_mem_bytes / 4);
      const long bc_rule = (m + 4 * d - 1) / (4 * d);
      EXPECT_LE(p.block_cols, bc_rule) << kib << " KiB, d=" << d;
      EXPECT_LE(p.block_rows, std::max<long>(4, std::min<long>(bc_rule, d))) << kib << " KiB, d=" << d;
      EXPECT_GE(p.block_cols, std::min<long>(bc_rule, 128) / 2) << "rounded, not collapsed";
    }
}

TEST(Planner, Fa2PrefersLargeTilesWhenTheyFit) {
  const TilePlan p = plan_tiles(gpu(64), request(Algorithm::FA2, 64));
  EXPECT_GE(p.block_rows * p.block_cols, 32 * 64);
  const TilePlan small = plan_tiles(gpu(16), request(Algorithm::FA2, 64));
  EXPECT_LT(small.local_bytes, 16u * 1024);
}

// standard: 64x64 output blocks of 4x4 per work-item (256 work-items, A panels transposed) on GPUs,
// smaller work-groups where the device caps them; float16 columns, A panels as rows and one
// work-item per vectorised softmax row on CPUs; every plan fits the device.
TEST(Planner, StandardBlocksPerDeviceClass) {
  const TilePlan g = plan_tiles(gpu(48), request(Algorithm::Standard, 64));
  EXPECT_EQ(g.block_rows, 64);
  EXPECT_EQ(g.block_cols, 64);
  EXPECT_EQ(g.gemm_wg_x * g.gemm_wg_y, 256);
  EXPECT_EQ(g.gemm_rm, 4);
  EXPECT_EQ(g.gemm_rn, 4);
  EXPECT_EQ(g.gemm_a_t, 1);
  EXPECT_EQ(g.softmax_wg, 128);
  EXPECT_LE(g.local_bytes, 48u * 1024);
  EXPECT_NE(g.reason.find("GPU"), std::string::npos);

  DeviceFacts small = gpu(16);
  small.max_work_group_size = 64;
  const TilePlan s = plan_tiles(small, request(Algorithm::Standard, 64));
  EXPECT_LE(static_cast<std::size_t>(s.gemm_wg_x * s.gemm_wg_y), small.max_work_group_size);
  EXPECT_LE(static_cast<std::size_t>(s.softmax_wg), small.max_work_group_size);
  EXPECT_LE(s.local_bytes, small.local_mem_bytes);
  EXPECT_EQ(s.block_rows, s.gemm_wg_y * s.gemm_rm);
  EXPECT_EQ(s.block_cols, s.gemm_wg_x * s.gemm_rn);

  const TilePlan c = plan_tiles(pocl_cpu(), request(Algorithm::Standard, 64));
  EXPECT_EQ(c.gemm_rn, 16);
  EXPECT_EQ(c.gemm_a_t, 0);
  EXPECT_EQ(c.softmax_wg, 1);
  EXPECT_EQ(c.softmax_vw, 16);
  EXPECT_NE(c.reason.find("CPU"), std::string::npos);
}

// A forced standard tile is the GPU form with those blocks, or a named error.
TEST(Planner, StandardOverrideIsHonouredOrRejected) {
  PlanRequest r = request(Algorithm::Standard, 40);
  r.tile = {32, 16, 8, 2};
  const TilePlan p = plan_tiles(pocl_cpu(), r);
  EXPECT_EQ(p.block_rows, 32);
  EXPECT_EQ(p.block_cols, 16);
  EXPECT_EQ(p.gemm_rn, 8);
  EXPECT_EQ(p.gemm_rm, 2);
  EXPECT_EQ(p.gemm_wg_x * p.gemm_wg_y, 2 * 16);
  EXPECT_EQ(p.gemm_a_t, 1);
  for (TileOverride bad : {TileOverride{30, 16, 4, 4}, TileOverride{32, 12, 8, 4}, TileOverride{32, 16, 3, 4},
                           TileOverride{512, 16, 4, 4}, TileOverride{32, 6, 2, 4}}) {
    r.tile = bad;
    try {
      plan_tiles(pocl_cpu(), r);
      ADD_FAILURE() << "accepted " << bad.block_rows << "x" << bad.block_cols << "x" << bad.team_size;
    } catch (const Error& e) {
      EXPECT_EQ(e.status(), Status::InvalidArgument);
      EXPECT_NE(std::string(e.what()).find("tile"), std::string::npos) << e.what();
    }
  }
  r.tile = {256, 256, 1, 1};  // 65536 work-items
  EXPECT_THROW(plan_tiles(gpu(48), r), Error);
}

TEST(Planner, OverrideIsHonouredOrRejected) {
  PlanRequest r = request(Algorithm::FA2, 64);
  r.tile = {32, 16};
  const TilePlan p = plan_tiles(gpu(48), r);
  EXPECT_EQ(p.block_rows, 32);
  EXPECT_EQ(p.block_cols, 16);
  r.tile = {30, 16};
  EXPECT_THROW(plan_tiles(gpu(48), r), Error);
  r.tile = {1 << 30, 1 << 30};  // rejected before any team shape is derived (no overflow)
  EXPECT_THROW(plan_tiles(gpu(48), r), Error);
  r.tile = {256, 256};
  try {
    plan_tiles(gpu(48), r);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), Status::OutOfResources);
    EXPECT_NE(std::string(e.what()).find("tile"), std::string::npos);
  }
}

TEST(Planner, EnvironmentOverride) {
  const TileOverride t = parse_tile_override("16x32");
  EXPECT_EQ(t.block_rows, 16);
  EXPECT_EQ(t.block_cols, 32);
  const TileOverride teams = parse_tile_override("64x32x8x4");
  EXPECT_EQ(teams.team_size, 8);
  EXPECT_EQ(teams.rows_per_team, 4);
  EXPECT_EQ(parse_tile_override("").block_rows, 0);
  for (const char* bad : {"16x", "64by32", "64x32x8", "0x32", "64x32junk"}) {
    try {
      parse_tile_override(bad);
      ADD_FAILURE() << bad << " was accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.status(), Status::InvalidArgument) << bad;
      EXPECT_NE(std::string(e.what()).find("FLASHCL_TILE"), std::string::npos) << e.what();
    }
  }
}

// Every variable is read by read_overrides (overrides.cpp, the one getenv of src/), from whatever
// lookup it is given.
TEST(Overrides, ReadFromTheEnvironment) {
  const std::map<std::string, std::string> vars = {
      {"FLASHCL_TILE", "64x32"},        {"FLASHCL_MMA_TILE", "4x64"},     {"FLASHCL_MMA", "0"},
      {"FLASHCL_WGMMA", "1"},           {"FLASHCL_BUILD_OPTIONS", "-w"},  {"FLASHCL_BUILD_LOG", "1"},
      {"FLASHCL_KERNEL_DIR", "/k"},     {"FLASHCL_DISK_CACHE", "0"},      {"FLASHCL_CACHE_DIR", "/c"},
      {"FLASHCL_PLATFORM", "pocl"},     {"FLASHCL_DEVICE", "1"},          {"FLASHCL_FAULT_INJECT", "clFinish:1"},
      {"XDG_CACHE_HOME", "/x"},         {"HOME", "/h"}};
  const auto lookup = [&](const std::map<std::string, std::string>& m) {
    return [&m](const char* name) -> const char* {
      const auto it = m.find(name);
      return it == m.end() ? nullptr : it->second.c_str();
    };
  };
  const Overrides o = read_overrides(lookup(vars));
  EXPECT_EQ(o.tile, "64x32");
  EXPECT_EQ(o.mma_tile, "4x64");
  EXPECT_TRUE(o.mma_off);
  EXPECT_EQ(o.wgmma, "1");
  EXPECT_EQ(o.build_options, "-w");
  EXPECT_TRUE(o.build_log);
  EXPECT_EQ(o.kernel_dir, "/k");
  EXPECT_TRUE(o.disk_cache_off);
  EXPECT_EQ(o.cache_dir, "/c");
  EXPECT_EQ(o.platform, "pocl");
  EXPECT_EQ(o.device, "1");
  EXPECT_EQ(o.fault_inject, "clFinish:1");
  // The cache directory's fallbacks, in order.
  std::map<std::string, std::string> fallback = {{"XDG_CACHE_HOME", "/x"}, {"HOME", "/h"}};
  EXPECT_EQ(read_overrides(lookup(fallback)).cache_dir, "/x/flashcl");
  fallback.erase("XDG_CACHE_HOME");
  EXPECT_EQ(read_overrides(lookup(fallback)).cache_dir, "/h/.cache/flashcl");
  // Unset, empty or other values: the defaults.
  const Overrides none = read_overrides(lookup({}));
  EXPECT_FALSE(none.mma_off || none.build_log || none.disk_cache_off);
  EXPECT_EQ(none.cache_dir, "");
  const std::map<std::string, std::string> other = {
      {"FLASHCL_MMA", "1"}, {"FLASHCL_DISK_CACHE", ""}, {"FLASHCL_BUILD_LOG", "yes"}};
  const Overrides o2 = read_overrides(lookup(other));
  EXPECT_FALSE(o2.mma_off || o2.build_log || o2.disk_cache_off);
}

// The backward's two kernel forms of 2026-12-07: the softcap's ex2 tanh is on unless
// FLASHCL_BWD_SOFTCAP_EX2=0; the fp32 split is unset (the planner's d > 64) unless
// FLASHCL_BWD_TF32_SPLIT is 0 or 1, other values leaving it unset.
TEST(Overrides, BackwardKernelForms) {
  const auto with = [](const char* name, const char* value) {
    return read_overrides([=](const char* asked) -> const char* { return std::string(asked) == name ? value : nullptr; });
  };
  const Overrides unset = read_overrides([](const char*) -> const char* { return nullptr; });
  EXPECT_TRUE(unset.bwd_softcap_ex2);
  EXPECT_FALSE(with("FLASHCL_BWD_SOFTCAP_EX2", "0").bwd_softcap_ex2);
  EXPECT_TRUE(with("FLASHCL_BWD_SOFTCAP_EX2", "1").bwd_softcap_ex2);
  EXPECT_EQ(std::nullopt, unset.bwd_tf32_split);
  EXPECT_EQ(std::optional<bool>(false), with("FLASHCL_BWD_TF32_SPLIT", "0").bwd_tf32_split);
  EXPECT_EQ(std::optional<bool>(true), with("FLASHCL_BWD_TF32_SPLIT", "1").bwd_tf32_split);
  EXPECT_EQ(std::nullopt, with("FLASHCL_BWD_TF32_SPLIT", "yes").bwd_tf32_split);
}

// The forward's score transforms on the tensor cores: on unless FLASHCL_TENSOR_CORE_TRANSFORMS=0;
// their 16-bit softcap's ex2 tanh on unless FLASHCL_FWD_SOFTCAP_EX2=0; FLASHCL_MMA=any (not "0")
// takes any device.
TEST(Overrides, ForwardScoreTransforms) {
  const auto with = [](const char* name, const char* value) {
    return read_overrides([=](const char* asked) -> const char* { return std::string(asked) == name ? value : nullptr; });
  };
  const Overrides unset = read_overrides([](const char*) -> const char* { return nullptr; });
  EXPECT_TRUE(unset.tensor_core_transforms && unset.fwd_softcap_ex2);
  EXPECT_FALSE(unset.mma_any || unset.mma_off);
  EXPECT_FALSE(with("FLASHCL_TENSOR_CORE_TRANSFORMS", "0").tensor_core_transforms);
  EXPECT_TRUE(with("FLASHCL_TENSOR_CORE_TRANSFORMS", "yes").tensor_core_transforms);
  EXPECT_FALSE(with("FLASHCL_FWD_SOFTCAP_EX2", "0").fwd_softcap_ex2);
  const Overrides any = with("FLASHCL_MMA", "any");
  EXPECT_TRUE(any.mma_any);
  EXPECT_FALSE(any.mma_off);
}

// The causal tail spans about two waves of resident work-groups (256 work-items a compute unit).
TEST(Planner, CausalOrderTailSpansTwoWaves) {
  EXPECT_EQ(causal_order_tail(132, 128, 32, 128), 17);   // H100, mma.sync d = 128: 264 resident, 528 / 32
  EXPECT_EQ(causal_order_tail(132, 512, 32, 128), 9);    // 16-warp wgmma: one a compute unit
  EXPECT_EQ(causal_order_tail(132, 128, 64, 64), 9);     // N = 8192
  EXPECT_EQ(causal_order_tail(132, 128, 8, 16), 16);     // no more than the pairs there are
  EXPECT_EQ(causal_order_tail(132, 128, 1, 128), 0);     // one block a pair: nothing to reorder
  EXPECT_EQ(causal_order_tail(0, 64, 4, 10), 2);         // an unknown count counts as one unit: 8 / 4
}

TEST(Planner, RejectsHeadDimOutOfRange) {
  EXPECT_THROW(plan_tiles(gpu(48), request(Algorithm::FA2, 0)), Error);
  EXPECT_THROW(plan_tiles(gpu(48), request(Algorithm::FA2, 257)), Error);
}

}  // namespace
}  // namespace flashcl::detail
