// plan_fa2_cpu.hpp: whether the CPU-shaped fa2 (kernels/cpu/fa2_cpu.cl) takes a call, and its shape.
// Pure functions of device facts, head dim and the FLASHCL_FA2_CPU override, so tests plan for
// simulated CPUs and GPUs. The tiles come from a table per device class (tile_table in the .cpp,
// each row with its measured reason); the register blocks from the device's vector width.
#pragma once

#include <cstddef>
#include <string>

#include "plan/device_facts.hpp"
#include "plan/overrides.hpp"
#include "plan/tile_planner.hpp"

namespace flashcl::detail {

struct Fa2CpuPlan {
  TilePlan tiles;          // block_rows (BR, rows per work-item), block_cols (BC), padded_head_dim,
                           // rows_per_team (RM: rows per register block), work_group_size 1, reason
  int vector_width = 0;    // VW: floats per vector
  int column_vectors = 0;  // CG: output column vectors per register block
};

// True when the CPU form runs this (normalised) call: fa2 with fp32, fp16, bf16 or fp8 storage (fp8
// with V in its natural layout, not v_transposed) and no forced tile (ForwardArgs::tile or FLASHCL_TILE, which are the team kernel's, as on the
// tensor-core path); on CPU devices unless FLASHCL_FA2_CPU is "0", on every device when it is "1"
// (the oclgrind checks).
bool fa2_cpu_takes(const DeviceFacts& device, const ForwardArgs& args, const Overrides& overrides);

// The shape for head dim d (1..256); throws Error(OutOfResources) when nothing fits the device's
// local memory.
Fa2CpuPlan plan_fa2_cpu(const DeviceFacts& device, int head_dim);

// __local bytes fa2_cpu.cl declares: the Q and O tiles (BR x D_PAD) and the K and V tiles (BC x D_PAD).
std::size_t fa2_cpu_local_bytes(int block_rows, int block_cols, int padded_head_dim);

// The shape both CPU forms (fa2_cpu, and standard_cpu, whose products are fa2_cpu's register
// blocks) take for head dim d: VW, D_PAD, RM and CG by the rules of plan_fa2_cpu.cpp's header, and
// BR x BC from the caller's first tiles, halved (BC first, down to min_block_cols; then BR, down to
// RM) until local_bytes(BR, BC, D_PAD) fits budget. Fills tiles but for its reason. Throws
// Error(OutOfResources), naming `form` ("fa2", "standard"), when nothing fits.
struct CpuShape {
  TilePlan tiles;
  int vector_width = 0, column_vectors = 0;
};
CpuShape fit_cpu_shape(const DeviceFacts& device, int head_dim, int block_rows, int block_cols, int min_block_cols,
                       std::size_t budget, std::size_t (*local_bytes)(int, int, int), const char* form);

}  // namespace flashcl::detail
