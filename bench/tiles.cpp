// tiles.cpp: flashcl::tile_info() adapted for the IO model. The padded head dim of fa1's scratch
// O is not part of TileInfo; it follows from fa1's workspace, B*H*Nq rows of (d_pad + 2) floats
// (O, then m and l).
#include "tiles.hpp"

namespace flashcl::bench {

Tiles tiles_for(cl_device_id device, const ForwardArgs& args) {
  const TileInfo info = tile_info(device, args);
  Tiles t;
  t.block_rows = info.block_rows;
  t.block_cols = info.block_cols;
  t.work_group_size = info.work_group_size;
  t.local_bytes = info.local_bytes;
  t.padded_head_dim = args.head_dim;
  if (info.algorithm == Algorithm::FA1) {
    const std::size_t rows = static_cast<std::size_t>(args.batch) * args.heads * args.seqlen_q;
    t.padded_head_dim = static_cast<int>(workspace_bytes(device, args) / (rows * sizeof(float))) - 2;
  }
  t.source = "library";
  return t;
}

}  // namespace flashcl::bench
