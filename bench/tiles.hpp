// tiles.hpp: the block sizes a forward call runs with, from flashcl::tile_info(), in the form the
// IO model needs (FA1's bytes scale with the number of K/V blocks, FA2's with the number of Q
// blocks, and FA1's scratch rows with the padded head dim).
#pragma once

#include <cstddef>
#include <string>

#include "flashcl/flashcl.hpp"

namespace flashcl::bench {

struct Tiles {
  int block_rows = 0;       // Br (fa1/fa2) or the GEMM tile edge (standard)
  int block_cols = 0;       // Bc (fa1/fa2) or the GEMM tile edge (standard)
  int padded_head_dim = 0;  // d rounded up to the team width (fa1's scratch O rows)
  std::size_t work_group_size = 0;
  std::size_t local_bytes = 0;  // __local memory per work-group (the paper's M, in bytes)
  std::string source;           // where the sizes came from ("library")
};

// Tiles of `args` on `device`, with args.tile or FLASHCL_TILE applied as the library applies them.
Tiles tiles_for(cl_device_id device, const ForwardArgs& args);

}  // namespace flashcl::bench
