// fuzz_planner.cpp: libFuzzer target over the tile planner (src/plan/tile_planner.cpp), a pure
// function, on random simulated devices (kind, local memory, work-group limits, vendor) and
// requests (algorithm, head dim, dtype, causal, forced tiles), plus the FLASHCL_TILE parser.
// Requires: no crash or sanitizer report; every refusal is a flashcl::Error with a message;
// every plan fits the device (local memory, work-group size), has positive tiles, the team shape
// the kernels need (Br a multiple of TM, Bc a multiple of TPR, D_PAD >= d) and, for fa1/fa2, the
// local-memory size flash_local_bytes() gives.
#include <cstdio>
#include <cstdlib>
#include <string>

#include "base/errors.hpp"
#include "fuzz_input.hpp"
#include "plan/tile_planner.hpp"

using flashcl::Algorithm;
using flashcl::detail::DeviceFacts;
using flashcl::detail::DeviceKind;
using flashcl::detail::PlanRequest;
using flashcl::detail::TilePlan;

namespace {

[[noreturn]] void fail(const char* what, const DeviceFacts& d, const PlanRequest& r, const TilePlan& p) {
  std::fprintf(stderr,
               "planner invariant broken: %s\n device: local %zu, max wg %zu, kind %d\n request: algorithm %d d=%d "
               "causal %d tile %dx%d\n plan: %dx%d TM %d TPR %d D_PAD %d wg %zu local %zu\n",
               what, d.local_mem_bytes, d.max_work_group_size, static_cast<int>(d.kind), static_cast<int>(r.algorithm),
               r.head_dim, r.causal, r.tile.block_rows, r.tile.block_cols, p.block_rows, p.block_cols, p.rows_per_team,
               p.team_size, p.padded_head_dim, p.work_group_size, p.local_bytes);
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzInput in(data, size);
  DeviceFacts d;
  const std::uint8_t kind = in.byte() % 3;
  d.kind = kind == 0 ? DeviceKind::GPU : kind == 1 ? DeviceKind::CPU : DeviceKind::Other;
  d.vendor = in.flag() ? "NVIDIA Corporation" : "Some Vendor";
  d.local_mem_bytes = in.flag() ? static_cast<std::size_t>(in.raw<std::uint32_t>() % (2u << 20))
                                : std::size_t{1024} * (in.byte() % 129);
  // OpenCL guarantees at least 1 work-item per work-group
  d.max_work_group_size = in.flag() ? 1 + in.raw<std::uint16_t>() % 8192 : std::size_t{1} << (in.byte() % 13);
  d.work_group_multiple = std::size_t{1} << (in.byte() % 7);
  d.global_mem_bytes = std::size_t{1} << 32;
  d.max_alloc_bytes = std::size_t{1} << 30;
  d.compute_units = 1 + in.byte() % 128;

  PlanRequest r;
  r.algorithm = static_cast<Algorithm>(in.byte() % 4);
  r.head_dim = in.int_small(300);
  r.dtype = static_cast<flashcl::DType>(in.byte() % 3);
  r.causal = in.flag();
  if (in.flag()) {
    r.tile.block_rows = in.int_small(300);
    r.tile.block_cols = in.int_small(300);
  }

  TilePlan p;
  try {
    p = flashcl::detail::plan_tiles(d, r);
  } catch (const flashcl::Error& e) {
    if (std::string(e.what()).empty()) fail("a refusal without a message", d, r, p);
    return 0;
  }
  if (p.block_rows < 1 || p.block_cols < 1 || p.work_group_size < 1) fail("non-positive tile or work-group", d, r, p);
  if (p.work_group_size > d.max_work_group_size) fail("work-group larger than the device allows", d, r, p);
  if (p.local_bytes > d.local_mem_bytes) fail("more local memory than the device has", d, r, p);
  if (r.algorithm == Algorithm::FA1 || r.algorithm == Algorithm::FA2) {
    if (p.rows_per_team < 1 || p.team_size < 1 || p.block_rows % p.rows_per_team != 0 ||
        p.block_cols % p.team_size != 0)
      fail("a team shape the kernels cannot run", d, r, p);
    if (p.padded_head_dim < r.head_dim || p.padded_head_dim % p.team_size != 0) fail("bad padded head dim", d, r, p);
    if (r.tile.block_rows != 0 && (p.block_rows != r.tile.block_rows || p.block_cols != r.tile.block_cols))
      fail("the override was not honoured", d, r, p);
  }

  // The FLASHCL_TILE parser on arbitrary text.
  std::string text;
  for (int i = 0, n = in.byte() % 16; i < n; ++i) text.push_back(static_cast<char>(in.byte()));
  if (text.find('\0') == std::string::npos) {
    try {
      const flashcl::TileOverride t = flashcl::detail::parse_tile_override(text);
      if (!text.empty() && (t.block_rows < 1 || t.block_cols < 1)) fail("FLASHCL_TILE accepted a bad tile", d, r, p);
    } catch (const flashcl::Error& e) {
      if (std::string(e.what()).find("FLASHCL_TILE") == std::string::npos) fail("FLASHCL_TILE error", d, r, p);
    }
  }
  return 0;
}
