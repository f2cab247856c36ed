// plan_standard_cpu.hpp: whether the CPU-shaped `standard` (kernels/cpu/standard_cpu.cl) takes a
// call, its shape and its workspace. Pure functions of device facts, head dim and the
// FLASHCL_STANDARD_CPU override, so tests plan for simulated CPUs and GPUs. The portable standard
// (forward/gemm.cl + forward/standard.cl, tile_planner.cpp's tables) keeps every other device.
#pragma once

#include <cstddef>

#include "plan/device_facts.hpp"
#include "plan/overrides.hpp"
#include "plan/tile_planner.hpp"

namespace flashcl::detail {

struct StandardCpuPlan {
  TilePlan tiles;          // block_rows (BR, rows per work-item and panel), block_cols (BC, keys per
                           // staged K/V block), padded_head_dim, rows_per_team (RM), work_group_size 1
  int vector_width = 0;    // VW: floats per vector
  int column_vectors = 0;  // CG: output column vectors per P.V register block
};

// True when the CPU form runs this (normalised) call: standard with fp32, fp16 or bf16 storage and
// no forced tile (a forced tile is the portable GEMM's); on CPU devices unless FLASHCL_STANDARD_CPU
// is "0", on every device when it is "1" (the oclgrind checks).
bool standard_cpu_takes(const DeviceFacts& device, const ForwardArgs& args, const Overrides& overrides);

// The shape for head dim d (1..256); throws Error(OutOfResources) when nothing fits the device's
// local memory.
StandardCpuPlan plan_standard_cpu(const DeviceFacts& device, int head_dim);

// __local bytes standard_cpu.cl declares in its largest kernel: a BR x D_PAD tile (Q^T or O) and a
// BC x D_PAD one (K or V).
std::size_t standard_cpu_local_bytes(int block_rows, int block_cols, int padded_head_dim);

// Workspace bytes: batch * heads * ceil(seqlen_q / BR) panels of BR x (seqlen_k rounded up to BC)
// scores, then BR row maxima per panel (standard_cpu.cl's layout); saturating.
std::size_t standard_cpu_workspace_bytes(const ForwardArgs& args, const TilePlan& tiles);

}  // namespace flashcl::detail
