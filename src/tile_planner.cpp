// tile_planner.cpp: tile choice for each algorithm.
//  - Team shape: TPR work-items share TM = 4 rows; TPR grows with d (d/8 up to 16) so each
//    work-item keeps at most 16 output columns per row in registers.
//  - fa1 follows the paper: M = local memory in floats, Bc = ceil(M / 4d), Br = min(Bc, d), then
//    rounded down to multiples the team shape needs and shrunk until the kernel's real __local
//    footprint fits.
//  - fa2 takes the first power-of-two (Br, Bc) from a preference list whose footprint fits.
//  - CPU devices (PoCL) emulate __local memory in ordinary memory; tiles are planned against
//    64 KiB there so the working set stays in the core's L2 cache.
#include "tile_planner.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstdio>

#include "errors.hpp"

namespace flashcl::detail {
namespace {

constexpr int kRowsPerTeam = 4;
constexpr std::size_t kCpuPlanningBytes = 64 * 1024;

// Work-items per team: enough that each keeps <= 8 output columns (16 from d > 128) and <= 16
// scores per row in registers.
int team_size_for(int head_dim, int block_cols) {
  int tpr = 1;
  while ((tpr < 16 && tpr * 8 < head_dim) || tpr * 16 < block_cols) tpr *= 2;
  return tpr;
}

int pad_head_dim(int head_dim, int tpr) { return (head_dim + tpr - 1) / tpr * tpr; }

std::size_t local_budget(const DeviceFacts& device) {
  if (device.kind == DeviceKind::CPU) return std::min(device.local_mem_bytes, kCpuPlanningBytes);
  return device.local_mem_bytes;
}

const char* name_of(Algorithm a) { return to_string(a); }

TilePlan flash_plan(int br, int bc, int tpr, int d_pad, Algorithm algorithm, std::string reason) {
  TilePlan p;
  p.block_rows = br;
  p.block_cols = bc;
  p.rows_per_team = std::min(kRowsPerTeam, br);
  p.team_size = tpr;
  p.padded_head_dim = d_pad;
  p.work_group_size = static_cast<std::size_t>(br / p.rows_per_team) * tpr;
  p.local_bytes = flash_local_bytes(algorithm, br, bc, tpr, d_pad);
  p.reason = std::move(reason);
  return p;
}

bool fits(const DeviceFacts& device, const TilePlan& p, std::size_t budget) {
  return p.local_bytes <= budget && p.local_bytes <= device.local_mem_bytes &&
         p.work_group_size <= device.max_work_group_size;
}

TilePlan plan_standard(const DeviceFacts& device) {
  TilePlan p;
  int tile = 16;
  while (tile > 1 && static_cast<std::size_t>(tile * tile) > device.max_work_group_size) tile /= 2;
  int softmax = 128;
  while (softmax > 1 && static_cast<std::size_t>(softmax) > device.max_work_group_size) softmax /= 2;
  p.block_rows = p.block_cols = tile;
  p.softmax_wg = softmax;
  p.work_group_size = static_cast<std::size_t>(tile) * tile;
  p.local_bytes = 2 * static_cast<std::size_t>(tile) * (tile + 1) * sizeof(float);
  p.reason = "standard: 16x16 GEMM tiles, 128 work-items per softmax row";
  if (p.local_bytes > device.local_mem_bytes)
    fail(Status::OutOfResources, "device: standard attention needs ", p.local_bytes, " bytes of local memory, the device has ",
         device.local_mem_bytes);
  return p;
}

TilePlan plan_override(const DeviceFacts& device, const PlanRequest& r) {
  const int br = r.tile.block_rows, bc = r.tile.block_cols;
  const int tpr = team_size_for(r.head_dim, bc), d_pad = pad_head_dim(r.head_dim, tpr);
  if (br < 1 || bc < 1)
    fail(Status::InvalidArgument, "tile: both block_rows and block_cols must be set (got ", br, "x", bc, ")");
  const int tm = std::min(kRowsPerTeam, br);
  if (br % tm != 0 || bc % tpr != 0 || br > 256 || bc > 256)
    fail(Status::InvalidArgument, "tile: ", br, "x", bc, " is not runnable for head_dim ", r.head_dim,
         " (block_rows must be a multiple of ", tm, ", block_cols a multiple of ", tpr, ", both <= 256)");
  TilePlan p = flash_plan(br, bc, tpr, d_pad, r.algorithm, "override");
  if (!fits(device, p, device.local_mem_bytes))
    fail(Status::OutOfResources, "tile: ", br, "x", bc, " needs ", p.local_bytes, " bytes of local memory and ",
         p.work_group_size, " work-items; the device has ", device.local_mem_bytes, " bytes and ",
         device.max_work_group_size);
  return p;
}

TilePlan plan_fa1(const DeviceFacts& device, const PlanRequest& r) {
  const std::size_t budget = local_budget(device);
  const long m = static_cast<long>(budget / sizeof(float));
  const long d = r.head_dim;
  // The paper's rule, then multiples the kernel's team shape needs (and at most 128 each).
  long bc = std::min<long>((m + 4 * d - 1) / (4 * d), 128);
  long br = std::min<long>(bc, d);
  const int tpr = team_size_for(r.head_dim, static_cast<int>(bc)), d_pad = pad_head_dim(r.head_dim, tpr);
  bc = std::max<long>(tpr, bc / tpr * tpr);
  br = std::max<long>(kRowsPerTeam, br / kRowsPerTeam * kRowsPerTeam);
  for (;;) {
    char why[160];
    std::snprintf(why, sizeof why, "fa1: M=%ld floats, Bc=ceil(M/4d), Br=min(Bc,d), rounded to fit: %ldx%ld", m, br, bc);
    TilePlan p = flash_plan(static_cast<int>(br), static_cast<int>(bc), tpr, d_pad, Algorithm::FA1, why);
    if (fits(device, p, device.local_mem_bytes)) return p;
    if (bc > tpr) bc -= tpr;
    else if (br > kRowsPerTeam) br -= kRowsPerTeam;
    else break;
  }
  fail(Status::OutOfResources, "head_dim: fa1 with d=", r.head_dim, " needs more than the device's ",
       device.local_mem_bytes, " bytes of local memory even with the smallest tiles");
}

TilePlan plan_fa2(const DeviceFacts& device, const PlanRequest& r) {
  static const int kPreferred[][2] = {{64, 64}, {64, 32}, {32, 64}, {32, 32}, {16, 32},
                                      {32, 16}, {16, 16}, {8, 16},  {8, 8},   {4, 16}, {4, 8}, {4, 4}};
  const std::size_t budget = local_budget(device);
  for (const auto& choice : kPreferred) {
    const int br = choice[0], bc = choice[1];
    const int tpr = team_size_for(r.head_dim, bc), d_pad = pad_head_dim(r.head_dim, tpr);
    if (bc % tpr != 0) continue;
    TilePlan p = flash_plan(br, bc, tpr, d_pad, Algorithm::FA2, "");
    if (fits(device, p, budget)) {
      p.reason = concat("fa2: largest preferred tile within ", budget, " bytes of local memory");
      return p;
    }
  }
  fail(Status::OutOfResources, "head_dim: fa2 with d=", r.head_dim, " needs more than the device's ",
       budget, " bytes of local memory even with the smallest tiles");
}

}  // namespace

std::size_t flash_local_bytes(Algorithm algorithm, int br, int bc, int tpr, int d_pad) {
  const std::size_t row = static_cast<std::size_t>(d_pad) + 1;
  const std::size_t k_tile = static_cast<std::size_t>(d_pad) * (bc + 1);  // transposed K block
  const std::size_t v_tile = static_cast<std::size_t>(bc) * row;
  // fa1 keeps K and V; fa2 loads them one after the other into one tile
  const std::size_t kv = algorithm == Algorithm::FA1
                             ? k_tile + v_tile
                             : static_cast<std::size_t>(d_pad) * bc + std::max<std::size_t>(d_pad, bc);
  const std::size_t floats = kv + static_cast<std::size_t>(br) * row + static_cast<std::size_t>(br) * bc +
                             static_cast<std::size_t>(br) * tpr;
  return floats * sizeof(float);
}

TilePlan plan_tiles(const DeviceFacts& device, const PlanRequest& r) {
  if (r.head_dim < 1 || r.head_dim > 256)
    fail(Status::InvalidArgument, "head_dim: must be in 1..256, got ", r.head_dim);
  if (r.algorithm == Algorithm::Standard) return plan_standard(device);
  if (r.algorithm != Algorithm::FA1 && r.algorithm != Algorithm::FA2)
    fail(Status::InvalidArgument, "algorithm: the planner needs a concrete algorithm, got ", name_of(r.algorithm));
  if (r.tile.block_rows != 0 || r.tile.block_cols != 0) return plan_override(device, r);
  return r.algorithm == Algorithm::FA1 ? plan_fa1(device, r) : plan_fa2(device, r);
}

TileOverride tile_override_from_env() {
  TileOverride t;
  const char* text = std::getenv("FLASHCL_TILE");
  if (text == nullptr || *text == '\0') return t;
  char tail = 0;
  if (std::sscanf(text, "%dx%d%c", &t.block_rows, &t.block_cols, &tail) != 2 || t.block_rows < 1 || t.block_cols < 1)
    fail(Status::InvalidArgument, "FLASHCL_TILE: expected BRxBC such as 64x32, got '", text, "'");
  return t;
}

}  // namespace flashcl::detail
