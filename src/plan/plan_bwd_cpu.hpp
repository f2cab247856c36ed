// plan_bwd_cpu.hpp: whether the CPU-shaped backward (kernels/cpu/bwd_cpu.cl) takes an fa2 backward
// call, and its shape. Pure functions of device facts, the normalised call and the
// FLASHCL_BWD_CPU override, so tests plan for simulated CPUs and GPUs. The tiles come from a table
// (kBwdCpuTiles in the .cpp, each row with its measured reason), the vector width, padded head dim
// and register blocks from the CPU-shaped forward's planner (plan_fa2_cpu), and the number of dQ
// partials (chunks of K/V blocks) from the device's compute units and the call's (batch, K/V head)
// pairs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "flashcl/flashcl.hpp"
#include "plan/device_facts.hpp"
#include "plan/overrides.hpp"

namespace flashcl::detail {

struct BwdCpuPlan {
  int block_rows = 0;       // BR: query rows per Q block
  int block_cols = 0;       // BC: keys per K/V block (one work-item's block at a time)
  int rows_per_block = 0;   // RM: rows (or keys) per register block
  int column_vectors = 0;   // CG: column vectors per register block
  int vector_width = 0;     // VW: floats per vector
  int padded_head_dim = 0;  // D_PAD: d rounded up to whole vectors (the dQ partials' row pitch)
  int chunks = 0;           // work-items per (batch, K/V head), each with its own fp32 dQ partial; 0: not taken
  std::size_t local_bytes = 0;
  std::string reason;
};

// True when the CPU form runs this backward: fa2 (normalised algorithm) with fp32, fp16 or bf16
// storage; on CPU devices unless FLASHCL_BWD_CPU is "0", on every device when it is "1" (the
// oclgrind checks). Every variant the portable backward takes is covered, and every call is
// deterministic, so nothing else is routed away.
bool bwd_cpu_takes(const DeviceFacts& device, const ForwardArgs& args, const Overrides& overrides);

// The shape for the normalised call `args` (head dim 1..256); throws Error(OutOfResources) when
// nothing fits the device's local memory.
BwdCpuPlan plan_bwd_cpu(const DeviceFacts& device, const ForwardArgs& args);

// __local bytes bwd_cpu.cl declares: Q, dO (BR x D_PAD), K^T, V^T, K, dK, dV (BC x D_PAD), P and
// dS (BR x BC), the LSE and D of a block (BR).
std::size_t bwd_cpu_local_bytes(int block_rows, int block_cols, int padded_head_dim);

}  // namespace flashcl::detail
