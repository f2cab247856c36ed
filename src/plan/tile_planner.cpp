// tile_planner.cpp: tile choice for each algorithm. What is measured per device is data: one
// table per device class (kNvidiaGpu, kOtherGpu, kCpu below: fa2's preferred tiles, standard's
// GEMM forms, the planning budget and the work-group shape rule, each row with its reason);
// what follows from the kernels is rules:
//  - Work-group shape: teams of TPR work-items own TM query rows each. GPUs: TM = 4 rows and
//    TPR grown with d so each work-item keeps at most 16 output columns and 16 scores per row in
//    registers (a table row may fix TPR for small heads). CPUs (PoCL): TPR = TM = 1, one row per
//    work-item, so the probabilities stay in registers and PoCL vectorises across work-items.
//  - fa1 follows the paper: M = local memory in floats, Bc = ceil(M / 4d), Br = min(Bc, d), then
//    rounded down to multiples the work-group shape needs and shrunk until the kernel's real
//    __local footprint fits.
//  - fa2 takes the first row of its class's list whose footprint fits; standard likewise.
//  - Causal fa2 grids end with their last few (batch, head) pairs interleaved, longest Q block
//    first (causal_order_tail sizes that tail to about two waves of work-groups).
#include "plan/tile_planner.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <utility>
#include <vector>

#include "base/errors.hpp"
#include "plan/head_dims.hpp"
#include "plan/plan_counts.hpp"

namespace flashcl::detail {
namespace {

struct Shape {
  int tpr = 1, tm = 1;
};

// A preferred fa2 tile: Br query rows x Bc keys. `small_head_team` > 0 fixes the team size (and
// 4 rows per team) for head dims up to `small_head_dim`; otherwise the class's shape rule.
struct Fa2Row {
  int block_rows, block_cols;
  int small_head_team = 0, small_head_dim = 0;
};

// The standard path's products (kernels/forward/gemm.cl), one row per try: work-group wg_x x wg_y, each
// work-item rm rows x one rn-wide vector of columns, contraction panels of kp; then the softmax's
// work-items per row and vector width. The first row whose work-group and __local footprint fit
// the device is taken.
struct StandardShape {
  int wg_x, wg_y, rm, rn, kp, a_t, softmax_wg, softmax_vw;
  const char* why;
};

// What a device class plans with.
struct ClassTiles {
  std::size_t planning_bytes;      // __local budget for fa1/fa2 tiles (0: the device's local memory)
  bool one_row_per_item;           // TPR = TM = 1 (else GPU teams)
  std::vector<Fa2Row> fa2;         // preference order
  std::vector<StandardShape> standard;
};

// GPUs' standard forms: 64x64 blocks of 4x4 per work-item (16 accumulators, float4 __local reads),
// 16.5 KiB of __local (two buffers), 256 work-items; smaller work-groups for devices that cap them.
// Not yet measured against the 16x16 kernels on a GPU (docs/perf/pocl-cpu.md, standard).
const std::vector<StandardShape> kStandardGpu = {
    {16, 16, 4, 4, 16, 1, 128, 1, "GPU: 64x64 blocks, 4x4 outputs per work-item"},
    {16, 8, 4, 4, 16, 1, 128, 1, "GPU: 32x64 blocks, 4x4 outputs per work-item (work-groups <= 128)"},
    {8, 8, 4, 4, 16, 1, 64, 1, "GPU: 32x32 blocks, 4x4 outputs per work-item (work-groups <= 64)"},
    {1, 1, 1, 4, 16, 1, 1, 1, "one work-item per work-group"}};

// GPUs' fa2 tiles, largest first, down to what any device fits.
const std::vector<Fa2Row> kGpuFa2 = {{64, 64}, {64, 32}, {32, 64}, {32, 32}, {16, 32}, {32, 16},
                                     {16, 16}, {8, 16},  {8, 8},   {4, 16},  {4, 8},   {4, 4}};

// NVIDIA GPUs. fa2 measured on the H100 (bench/gpu/tune.sh, B=8 H=16 N=4096, TFLOP/s fp32,
// docs/perf/nvidia-h100.md): d=64: 64x32 rows x keys with teams of 4 work-items 27.1, teams of 8
// 26.7, 64x16/4 26.1, 32x64/8 20.5; d=128: 32x32 with teams of 16 21.5, 32x16/8 19.4, 32x32/8
// 18.2, 48x16/16 17.6. Teams of 4 up to d = 64 keep 16 output columns per work-item; wider heads
// need 16 per team (the shape rule). 64x64 comes first but does not fit 48 KiB with teams.
const ClassTiles kNvidiaGpu = {0,
                               false,
                               {{64, 64}, {64, 32, 4, 64}, {32, 64}, {32, 32}, {16, 32}, {32, 16},
                                {16, 16}, {8, 16}, {8, 8}, {4, 16}, {4, 8}, {4, 4}},
                               kStandardGpu};

// Other GPUs and accelerators: the GPU list and shape rule, not yet measured on one.
const ClassTiles kOtherGpu = {0, false, kGpuFa2, kStandardGpu};

// CPUs (PoCL). __local memory is ordinary memory there: fa1/fa2 tiles are planned against 64 KiB
// so the working set stays in a core's L2 cache. fa2 on PoCL, 2-core EPYC, d = 64, N = 1024
// (GFLOP/s): 128x64 25.4, 128x128 25.0, 256x64 24.4, 64x64 19.8, 64x32 21.3 -- longer rows per
// work-group amortise each K/V tile better. Standard: explicit float16 vectors, as PoCL does not
// vectorise these loops across work-items.
const ClassTiles kCpu = {
    64 * 1024,
    true,
    {{128, 64}, {64, 64}, {64, 32}, {32, 32}, {32, 16}, {16, 16}, {8, 8}, {4, 4}},
    {{4, 8, 8, 16, 32, 0, 1, 16, "CPU: 64x64 blocks, 8 rows x float16 per work-item, one work-item per softmax row"},
     {1, 1, 1, 4, 16, 0, 1, 1, "one work-item per work-group"}}};

const ClassTiles& class_tiles(const DeviceFacts& device) {
  if (device.kind == DeviceKind::CPU) return kCpu;
  if (device.is_nvidia() && device.kind == DeviceKind::GPU) return kNvidiaGpu;
  return kOtherGpu;
}

// Work-items per team on GPUs: enough that each keeps <= 8 output columns (16 from d > 128) and
// <= 16 scores per row in registers.
int gpu_team_size(int head_dim, int block_cols) {
  int tpr = 1;
  while ((tpr < 16 && tpr * 8 < head_dim) || tpr * 16 < block_cols) tpr *= 2;
  return tpr;
}

Shape team_shape(const DeviceFacts& device, int head_dim, int block_cols, int block_rows) {
  if (class_tiles(device).one_row_per_item) return {1, 1};
  return {gpu_team_size(head_dim, block_cols), std::min(4, block_rows)};
}

int pad_head_dim(int head_dim, int tpr) { return (head_dim + tpr - 1) / tpr * tpr; }

std::size_t local_budget(const DeviceFacts& device) {
  const std::size_t planning = class_tiles(device).planning_bytes;
  return planning != 0 ? std::min(device.local_mem_bytes, planning) : device.local_mem_bytes;
}

TilePlan make_plan(Algorithm algorithm, int br, int bc, Shape shape, int head_dim) {
  TilePlan p;
  p.block_rows = br;
  p.block_cols = bc;
  p.rows_per_team = shape.tm;
  p.team_size = shape.tpr;
  p.padded_head_dim = pad_head_dim(head_dim, shape.tpr);
  p.work_group_size = static_cast<std::size_t>(br / shape.tm) * shape.tpr;
  p.local_bytes = flash_local_bytes(algorithm, br, bc, shape.tpr, p.padded_head_dim);
  return p;
}

bool runnable(const TilePlan& p) {
  return p.block_rows >= 1 && p.block_cols >= 1 && p.rows_per_team >= 1 && p.team_size >= 1 &&
         p.block_rows % p.rows_per_team == 0 && p.block_cols % p.team_size == 0 && p.block_rows <= 256 &&
         p.block_cols <= 256;
}

bool fits(const DeviceFacts& device, const TilePlan& p, std::size_t budget) {
  return p.local_bytes <= budget && p.local_bytes <= device.local_mem_bytes &&
         p.work_group_size <= device.max_work_group_size;
}

// Mirrors kernels/forward/gemm.cl: two buffers each of the A panel (kp x (rows + GEMM_PAD 4) transposed,
// rows x (kp + 4) as rows) and the B panel (kp x columns).
std::size_t standard_local_bytes(const StandardShape& s) {
  const std::size_t rows = static_cast<std::size_t>(s.wg_y) * s.rm, kp = s.kp;
  const std::size_t a_panel = s.a_t ? kp * (rows + 4) : rows * (kp + 4);
  return 2 * (a_panel + kp * s.wg_x * s.rn) * sizeof(float);
}

// A forced standard tile: block_rows x block_cols of the output, team_size columns (one vector,
// default 4) x rows_per_team rows (default 4) per work-item, in the GPU form (transposed A panels
// of 16) whatever the device, so the tests can run the GPU shapes on PoCL.
StandardShape standard_override(const TileOverride& t) {
  const int rn = t.team_size > 0 ? t.team_size : 4, rm = t.rows_per_team > 0 ? t.rows_per_team : 4;
  if (t.block_rows < 1 || t.block_cols < 1 || t.block_rows > 256 || t.block_cols > 256 || rm > 256 ||
      (rn != 1 && rn != 2 && rn != 4 && rn != 8 && rn != 16) || t.block_rows % rm != 0 || t.block_cols % rn != 0 ||
      t.block_cols % 4 != 0)
    fail(Status::InvalidArgument, "tile: standard takes block_rows x block_cols up to 256 each, block_cols a multiple "
         "of 4 and of team_size (columns per work-item: 1, 2, 4, 8 or 16), block_rows of rows_per_team; got ",
         t.block_rows, "x", t.block_cols, "x", t.team_size, "x", t.rows_per_team);
  return {t.block_cols / rn, t.block_rows / rm, rm, rn, 16, 1, 128, 1, "override"};
}

TilePlan plan_standard(const DeviceFacts& device, const TileOverride& tile) {
  const std::vector<StandardShape>& table = class_tiles(device).standard;
  const bool forced = tile.block_rows != 0 || tile.block_cols != 0;
  for (const StandardShape& s : forced ? std::vector<StandardShape>{standard_override(tile)} : table) {
    const std::size_t wg = static_cast<std::size_t>(s.wg_x) * s.wg_y;
    if (wg > device.max_work_group_size || static_cast<std::size_t>(s.softmax_wg) > device.max_work_group_size ||
        standard_local_bytes(s) > device.local_mem_bytes)
      continue;
    TilePlan p;
    p.block_rows = s.wg_y * s.rm;
    p.block_cols = s.wg_x * s.rn;
    p.gemm_wg_x = s.wg_x;
    p.gemm_wg_y = s.wg_y;
    p.gemm_rm = s.rm;
    p.gemm_rn = s.rn;
    p.gemm_kp = s.kp;
    p.gemm_a_t = s.a_t;
    p.softmax_wg = s.softmax_wg;
    p.softmax_vw = s.softmax_vw;
    p.work_group_size = wg;
    p.local_bytes = standard_local_bytes(s);
    p.reason = concat("standard: ", s.why, "; panels of ", s.kp, ", softmax ", s.softmax_wg, " work-items x ",
                      s.softmax_vw, " per row");
    return p;
  }
  if (forced)
    fail(Status::OutOfResources, "tile: standard ", tile.block_rows, "x", tile.block_cols, " needs ",
         standard_local_bytes(standard_override(tile)), " bytes of local memory and ",
         tile.block_rows / standard_override(tile).rm * (tile.block_cols / standard_override(tile).rn),
         " work-items; the device has ", device.local_mem_bytes, " bytes and ", device.max_work_group_size);
  fail(Status::OutOfResources, "device: standard attention needs ", standard_local_bytes(kStandardGpu.back()),
       " bytes of local memory, the device has ", device.local_mem_bytes);
}

TilePlan plan_override(const DeviceFacts& device, const PlanRequest& r) {
  const TileOverride& t = r.tile;
  if (t.block_rows < 1 || t.block_cols < 1)
    fail(Status::InvalidArgument, "tile: both block_rows and block_cols must be set (got ", t.block_rows, "x",
         t.block_cols, ")");
  // before the team shape is derived from them (its doubling loop would overflow on huge values)
  if (t.block_rows > 256 || t.block_cols > 256 || t.team_size > 256 || t.rows_per_team > 256)
    fail(Status::InvalidArgument, "tile: ", t.block_rows, "x", t.block_cols, " with teams of ", t.team_size, " x ",
         t.rows_per_team, " is out of range (each at most 256)");
  Shape shape = team_shape(device, r.head_dim, t.block_cols, t.block_rows);
  if (t.team_size > 0) shape.tpr = t.team_size;
  if (t.rows_per_team > 0) shape.tm = t.rows_per_team;
  TilePlan p = make_plan(r.algorithm, t.block_rows, t.block_cols, shape, r.head_dim);
  if (!runnable(p))
    fail(Status::InvalidArgument, "tile: ", t.block_rows, "x", t.block_cols, " with teams of ", shape.tpr,
         " work-items x ", shape.tm, " rows is not runnable (block_rows must be a multiple of the rows per team, "
         "block_cols of the team size, both <= 256)");
  if (!fits(device, p, device.local_mem_bytes))
    fail(Status::OutOfResources, "tile: ", t.block_rows, "x", t.block_cols, " needs ", p.local_bytes,
         " bytes of local memory and ", p.work_group_size, " work-items; the device has ", device.local_mem_bytes,
         " bytes and ", device.max_work_group_size);
  p.reason = "override";
  return p;
}

TilePlan plan_fa1(const DeviceFacts& device, const PlanRequest& r) {
  const std::size_t budget = local_budget(device);
  const long m = static_cast<long>(budget / sizeof(float));
  const long d = r.head_dim;
  // The paper's rule, then multiples the work-group shape needs (and at most 128 each).
  long bc = std::min<long>((m + 4 * d - 1) / (4 * d), 128);
  long br = std::min<long>(bc, d);
  const Shape shape = team_shape(device, r.head_dim, static_cast<int>(bc), 4);
  bc = std::max<long>(shape.tpr, bc / shape.tpr * shape.tpr);
  br = std::max<long>(shape.tm, br / shape.tm * shape.tm);
  for (;;) {
    TilePlan p = make_plan(Algorithm::FA1, static_cast<int>(br), static_cast<int>(bc), shape, r.head_dim);
    if (fits(device, p, device.local_mem_bytes)) {
      p.reason = concat("fa1: M=", m, " floats, Bc=ceil(M/4d), Br=min(Bc,d), rounded to fit: ", br, "x", bc);
      return p;
    }
    if (bc > shape.tpr) bc -= shape.tpr;
    else if (br > shape.tm) br -= shape.tm;
    else break;
  }
  fail(Status::OutOfResources, "head_dim: fa1 with d=", r.head_dim, " needs more than the device's ",
       device.local_mem_bytes, " bytes of local memory even with the smallest tiles");
}

TilePlan plan_fa2(const DeviceFacts& device, const PlanRequest& r) {
  const std::size_t budget = local_budget(device);
  for (const Fa2Row& row : class_tiles(device).fa2) {
    const int br = row.block_rows, bc = row.block_cols;
    const Shape shape = row.small_head_team > 0 && r.head_dim <= row.small_head_dim
                            ? Shape{row.small_head_team, std::min(4, br)}
                            : team_shape(device, r.head_dim, bc, br);
    TilePlan p = make_plan(Algorithm::FA2, br, bc, shape, r.head_dim);
    if (runnable(p) && fits(device, p, budget)) {
      p.reason = concat("fa2: largest preferred tile within ", budget, " bytes of local memory");
      return p;
    }
  }
  fail(Status::OutOfResources, "head_dim: fa2 with d=", r.head_dim, " needs more than the device's ", budget,
       " bytes of local memory even with the smallest tiles");
}

}  // namespace

// Mirrors the __local arrays of kernels/forward/team.cl, fa1.cl and fa2.cl (pitches padded by 4).
std::size_t flash_local_bytes(Algorithm algorithm, int br, int bc, int tpr, int d_pad) {
  const std::size_t q_tile = static_cast<std::size_t>(d_pad) * (br + 4);  // Q^T
  const std::size_t p_tile = static_cast<std::size_t>(bc) * (br + 4);     // P^T
  const std::size_t k_tile = static_cast<std::size_t>(d_pad) * (bc + 4);  // K^T
  const std::size_t v_tile = static_cast<std::size_t>(bc) * (d_pad + 4);  // V
  const std::size_t red = static_cast<std::size_t>(br) * tpr;
  // fa1 keeps K and V; fa2 loads them one after the other into one tile
  std::size_t floats = q_tile + (algorithm == Algorithm::FA1 ? k_tile + v_tile : std::max(k_tile, v_tile));
  if (tpr > 1) floats += p_tile + red;  // one row per work-item keeps P in registers
  return floats * sizeof(float);
}

TilePlan plan_tiles(const DeviceFacts& device, const PlanRequest& r) {
  count_plan(plan_counts().tiles);
  if (r.head_dim < 1 || r.head_dim > kMaxHeadDim)
    fail(Status::InvalidArgument, "head_dim: must be in 1..", kMaxHeadDim, ", got ", r.head_dim);
  if (r.algorithm == Algorithm::Standard) return plan_standard(device, r.tile);
  if (r.algorithm != Algorithm::FA1 && r.algorithm != Algorithm::FA2)
    fail(Status::InvalidArgument, "algorithm: the planner needs a concrete algorithm, got ", to_string(r.algorithm));
  if (r.tile.block_rows != 0 || r.tile.block_cols != 0) return plan_override(device, r);
  return r.algorithm == Algorithm::FA1 ? plan_fa1(device, r) : plan_fa2(device, r);
}

// A greedy-schedule model of the H100's causal grids (264 resident work-groups; B = 8, H = 16,
// 32 Q blocks a head) puts the plain order's tail at 7 % of the call and this order's at 1-2 %;
// with one batch of 16 heads, 60 % against 0-3 %.
int causal_order_tail(int compute_units, std::size_t work_group_size, std::size_t q_blocks, std::size_t pairs,
                      std::size_t items_per_unit) {
  if (q_blocks < 2 || pairs == 0 || work_group_size == 0) return 0;
  const std::size_t resident = static_cast<std::size_t>(std::max(compute_units, 1)) *
                               std::max<std::size_t>(items_per_unit / work_group_size, 1);
  return static_cast<int>(std::min((2 * resident + q_blocks - 1) / q_blocks, pairs));
}

TileOverride parse_tile_override(const std::string& text) {
  TileOverride t;
  if (text.empty()) return t;
  // Fields one at a time and the whole text consumed: one sscanf stopped quietly at "64x32junk".
  int n = 0;
  std::size_t used = 0;
  for (int* field : {&t.block_rows, &t.block_cols, &t.team_size, &t.rows_per_team}) {
    int len = 0;
    if (std::sscanf(text.c_str() + used, n == 0 ? "%d%n" : "x%d%n", field, &len) != 1) break;
    used += static_cast<std::size_t>(len);
    ++n;
  }
  if (used != text.size() || (n != 2 && n != 4) || t.block_rows < 1 || t.block_cols < 1 || (n == 4 && (t.team_size < 1 || t.rows_per_team < 1)))
    fail(Status::InvalidArgument, "FLASHCL_TILE: expected BRxBC or BRxBCxTPRxTM such as 64x32 or 64x32x8x4, got '",
         text, "'");
  return t;
}

}  // namespace flashcl::detail
