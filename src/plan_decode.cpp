// plan_decode.cpp: the decode planner (plan_decode.hpp). The split kernel stages a BC-key K tile
// (rows padded by one float), a V tile, BR scaled query rows and the BR×BC scores in __local
// memory; the planner takes the widest key tile that fits, since each tile costs four barriers
// whatever its width, then the split count that gives every compute unit a few work-groups.
#include "plan_decode.hpp"

#include <algorithm>
#include <cstdint>

#include "errors.hpp"

namespace flashcl::detail {
namespace {

std::size_t pow2_at_least(std::size_t x) {
  std::size_t p = 1;
  while (p < x) p *= 2;
  return p;
}

int page_slots_for(int block_cols, int page_size) {
  return page_size > 0 ? std::min(block_cols, (block_cols - 1) / page_size + 2) : 0;
}

}  // namespace

std::size_t decode_local_bytes(int br, int bc, int d, int page_slots) {
  const std::size_t floats = static_cast<std::size_t>(br) * d            // q_tile
                             + static_cast<std::size_t>(bc) * (d + 1)    // k_tile
                             + static_cast<std::size_t>(bc) * d          // v_tile
                             + static_cast<std::size_t>(br) * bc         // p_tile
                             + static_cast<std::size_t>(br);             // slope_row
  return floats * sizeof(float) + static_cast<std::size_t>(page_slots) * sizeof(std::int32_t);
}

DecodePlan plan_decode(const DeviceFacts& f, const DecodeRequest& r) {
  if (r.num_splits < 0 || r.num_splits > kMaxDecodeSplits)
    fail(Status::InvalidArgument, "num_splits: must be 0 (planner) or 1..", kMaxDecodeSplits, ", got ", r.num_splits);
  const bool gpu = f.kind == DeviceKind::GPU;
  const int group = r.heads / std::max(1, r.heads_kv);
  const std::int64_t rows = static_cast<std::int64_t>(group) * r.seqlen_q;
  // 48 KiB is what an OpenCL work-group gets on NVIDIA; smaller tiles there let more work-groups
  // (and so more loads) be resident per compute unit. PoCL's local memory is plain host memory.
  const std::size_t budget = std::min<std::size_t>(f.local_mem_bytes, gpu ? 48 * 1024 : 256 * 1024);

  DecodePlan p;
  const std::int64_t br_max = std::min<std::int64_t>({rows, 16, static_cast<std::int64_t>(std::max<std::size_t>(f.max_work_group_size, 1))});
  for (int br = static_cast<int>(br_max); br >= 1 && p.block_cols == 0; br /= 2)
    for (int bc = 64; bc >= 8; bc -= 8)
      if (decode_local_bytes(br, bc, r.head_dim, page_slots_for(bc, r.page_size)) <= budget) {
        p.block_rows = br;
        p.block_cols = bc;
        break;
      }
  if (p.block_cols == 0)
    fail(Status::OutOfResources, "head_dim: ", r.head_dim, " needs ",
         decode_local_bytes(1, 8, r.head_dim, page_slots_for(8, r.page_size)),
         " bytes of local memory for the smallest decode tile, the device has ", f.local_mem_bytes);
  p.page_slots = page_slots_for(p.block_cols, r.page_size);
  p.local_bytes = decode_local_bytes(p.block_rows, p.block_cols, r.head_dim, p.page_slots);
  p.row_blocks = static_cast<int>((rows + p.block_rows - 1) / p.block_rows);

  // Enough work-items for one score or one VEC-wide output column each, within 32 … 128 (GPU: more
  // resident work-groups per compute unit) or 64 (CPU: PoCL runs a work-group as one loop).
  const std::size_t columns = static_cast<std::size_t>(r.head_dim / std::max(1, r.vec));
  std::size_t wg = pow2_at_least(std::max<std::size_t>(static_cast<std::size_t>(p.block_rows) *
                                                           std::max<std::size_t>(p.block_cols, columns), 32));
  wg = std::min<std::size_t>(wg, gpu ? 128 : 64);
  const std::size_t multiple = std::max<std::size_t>(f.work_group_multiple, 1);
  wg = std::max(wg, multiple) / multiple * multiple;
  p.work_group_size = std::max<std::size_t>(1, std::min(wg, f.max_work_group_size));
  p.merge_wg = static_cast<int>(std::min<std::size_t>(r.head_dim >= 64 ? 64 : 32, f.max_work_group_size));

  // Split count: about four work-groups per compute unit on a GPU (two on a CPU) over all
  // (sequence, K/V head, row block) triples, with at least two tiles per split on the longest
  // sequence so the merge stays small next to the cache read.
  const std::int64_t triples = static_cast<std::int64_t>(r.batch) * r.heads_kv * p.row_blocks;
  const std::int64_t tiles = (static_cast<std::int64_t>(std::max(r.max_keys, 1)) + p.block_cols - 1) / p.block_cols;
  if (r.num_splits > 0) {
    p.num_splits = r.num_splits;
    p.reason = "num_splits forced";
  } else {
    const std::int64_t target = static_cast<std::int64_t>(std::max(f.compute_units, 1)) * (gpu ? 4 : 2);
    std::int64_t splits = (target + triples - 1) / triples;
    splits = std::min<std::int64_t>(splits, std::max<std::int64_t>(1, tiles / 2));
    p.num_splits = static_cast<int>(std::clamp<std::int64_t>(splits, 1, 256));
    p.reason = concat(triples, " (sequence, K/V head, row block) work-groups for ", f.compute_units,
                      " compute units: ", p.num_splits, " splits of ", tiles, " tiles");
  }
  p.reason += concat("; BR ", p.block_rows, " x BC ", p.block_cols, " (", p.local_bytes, " bytes of ", budget,
                     " local), ", p.work_group_size, " work-items");
  return p;
}

}  // namespace flashcl::detail
