// tiles.cpp: the library's plan through flashcl::tile_info() when the header declares it
// (FLASHCL_BENCH_LIBRARY_TILES, set by bench/CMakeLists.txt), else a model of flashcl's tile
// planner (src/tile_planner.cpp at 5bc8914): the same team shape, fa1's paper rule
// (Bc = ceil(M/4d), Br = min(Bc, d)) and fa2's preference list, against the same 64 KiB budget on
// CPU devices. The model can drift when the planner changes; rows name their source.
#include "tiles.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>

namespace flashcl::bench {
namespace {

constexpr int kRowsPerTeam = 4;                    // TM
constexpr std::size_t kCpuBudget = 64 * 1024;      // planner's __local budget on CPU devices

struct Device {
  bool cpu = false;
  std::size_t local_bytes = 0, max_work_group = 0;
};

Device query(cl_device_id device) {
  Device d;
  cl_device_type type = 0;
  cl_ulong local = 0;
  clGetDeviceInfo(device, CL_DEVICE_TYPE, sizeof type, &type, nullptr);
  clGetDeviceInfo(device, CL_DEVICE_LOCAL_MEM_SIZE, sizeof local, &local, nullptr);
  clGetDeviceInfo(device, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof d.max_work_group, &d.max_work_group, nullptr);
  d.cpu = (type & CL_DEVICE_TYPE_CPU) != 0;
  d.local_bytes = local;
  return d;
}

int team_size_for(int head_dim, int block_cols) {
  int tpr = 1;
  while ((tpr < 16 && tpr * 8 < head_dim) || tpr * 16 < block_cols) tpr *= 2;
  return tpr;
}

std::size_t local_bytes(Algorithm algo, int br, int bc, int tpr, int d_pad) {
  const std::size_t row = d_pad + 1;
  const std::size_t kv = algo == Algorithm::FA1 ? static_cast<std::size_t>(d_pad) * (bc + 1) + bc * row
                                                : static_cast<std::size_t>(d_pad) * bc + std::max(d_pad, bc);
  return (kv + br * row + static_cast<std::size_t>(br) * bc + static_cast<std::size_t>(br) * tpr) * sizeof(float);
}

Tiles flash(Algorithm algo, int br, int bc, int head_dim, const char* source) {
  Tiles t;
  const int tpr = team_size_for(head_dim, bc);
  t.block_rows = br;
  t.block_cols = bc;
  t.padded_head_dim = (head_dim + tpr - 1) / tpr * tpr;
  t.work_group_size = static_cast<std::size_t>(br / std::min(kRowsPerTeam, br)) * tpr;
  t.local_bytes = local_bytes(algo, br, bc, tpr, t.padded_head_dim);
  t.source = source;
  return t;
}

bool fits(const Device& d, const Tiles& t, std::size_t budget) {
  return t.local_bytes <= budget && t.local_bytes <= d.local_bytes && t.work_group_size <= d.max_work_group;
}

Tiles model_fa1(const Device& dev, int head_dim) {
  const long m = static_cast<long>((dev.cpu ? std::min(dev.local_bytes, kCpuBudget) : dev.local_bytes) / 4);
  long bc = std::min<long>((m + 4L * head_dim - 1) / (4L * head_dim), 128);
  long br = std::min<long>(bc, head_dim);
  const int tpr = team_size_for(head_dim, static_cast<int>(bc));
  bc = std::max<long>(tpr, bc / tpr * tpr);
  br = std::max<long>(kRowsPerTeam, br / kRowsPerTeam * kRowsPerTeam);
  for (;;) {
    Tiles t = flash(Algorithm::FA1, static_cast<int>(br), static_cast<int>(bc), head_dim, "model");
    if (fits(dev, t, dev.local_bytes)) return t;
    if (bc > tpr) bc -= tpr;
    else if (br > kRowsPerTeam) br -= kRowsPerTeam;
    else return {};
  }
}

Tiles model_fa2(const Device& dev, int head_dim) {
  static const int kPreferred[][2] = {{64, 64}, {64, 32}, {32, 64}, {32, 32}, {16, 32},
                                      {32, 16}, {16, 16}, {8, 16},  {8, 8},   {4, 16}, {4, 8}, {4, 4}};
  const std::size_t budget = dev.cpu ? std::min(dev.local_bytes, kCpuBudget) : dev.local_bytes;
  for (const auto& c : kPreferred) {
    if (c[1] % team_size_for(head_dim, c[1]) != 0) continue;
    Tiles t = flash(Algorithm::FA2, c[0], c[1], head_dim, "model");
    if (fits(dev, t, budget)) return t;
  }
  return {};
}

TileOverride env_override() {
  TileOverride t;
  const char* text = std::getenv("FLASHCL_TILE");
  if (text != nullptr && std::sscanf(text, "%dx%d", &t.block_rows, &t.block_cols) != 2) t = {};
  return t;
}

// The bench's model of the library's plan.
[[maybe_unused]] Tiles modelled(cl_device_id device, const ForwardArgs& args) {
  if (args.algorithm == Algorithm::Standard) {
    Tiles t;
    t.block_rows = t.block_cols = 16;
    t.work_group_size = 256;
    t.local_bytes = 2 * 16 * 17 * sizeof(float);
    t.padded_head_dim = args.head_dim;
    t.source = "model";
    return t;
  }
  TileOverride forced = args.tile;
  if (forced.block_rows == 0 && forced.block_cols == 0) forced = env_override();
  if (forced.block_rows > 0 && forced.block_cols > 0)
    return flash(args.algorithm, forced.block_rows, forced.block_cols, args.head_dim, "override");
  const Device dev = query(device);
  return args.algorithm == Algorithm::FA1 ? model_fa1(dev, args.head_dim) : model_fa2(dev, args.head_dim);
}

#if FLASHCL_BENCH_LIBRARY_TILES
// The library's plan; the padded head dim of fa1's scratch O follows from its workspace size
// (B*H*Nq rows of d_pad + 2 floats).
Tiles from_library(cl_device_id device, const ForwardArgs& args) {
  const flashcl::TileInfo info = flashcl::tile_info(device, args);
  Tiles t;
  t.block_rows = info.block_rows;
  t.block_cols = info.block_cols;
  t.work_group_size = info.work_group_size;
  t.local_bytes = info.local_bytes;
  t.padded_head_dim = args.head_dim;
  if (args.algorithm == Algorithm::FA1) {
    const std::size_t rows = static_cast<std::size_t>(args.batch) * args.heads * args.seqlen_q;
    t.padded_head_dim = static_cast<int>(workspace_bytes(device, args) / (rows * sizeof(float))) - 2;
  }
  t.source = "library";
  return t;
}
#endif

}  // namespace

Tiles tiles_for(cl_device_id device, const ForwardArgs& args) {
#if FLASHCL_BENCH_LIBRARY_TILES
  return from_library(device, args);
#else
  return modelled(device, args);
#endif
}

}  // namespace flashcl::bench
