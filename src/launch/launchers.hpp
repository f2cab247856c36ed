// launchers.hpp: one enqueue function per algorithm, plus what they share: the workspace each
// needs, the -D options that specialise a program, and the enqueue helper that records events.
#pragma once

#include <CL/cl.h>

#include <string>
#include <vector>

#include "base/cl_bindings.hpp"
#include "base/errors.hpp"
#include "validate/problem.hpp"
#include "base/saturating.hpp"
#include "program/program_cache.hpp"
#include "program/programs.hpp"
#include "plan/tile_planner.hpp"

namespace flashcl::detail {

// Scratch bytes for a normalised call (algorithm already concrete).
std::size_t workspace_bytes_for(cl_device_id device, const ForwardArgs& args);

// The plan for a normalised call (planner + FLASHCL_TILE / args.tile override).
TilePlan plan_for(const DeviceFacts& facts, const ForwardArgs& args);

// -D options shared by every program: dtype, head dim, causal, and the variant switches that are on
// (WINDOW, ALIBI, SOFTCAP, MASK_KIND, VARLEN).
std::string common_options(const ForwardArgs& args);

// Whether a program keeps scores in common.cl's halved natural units (HALF_UNITS) instead of base 2,
// where base 2 could overflow fp32: a softcap, ALiBi slopes or an additive bias (of any finite
// size), or a scale past FLT_MAX / log2 e. The forward's and the decode's programs both ask here.
bool needs_half_units(float scale, float softcap, bool alibi, bool bias);

// -D options of an fa1/fa2 program: common_options() plus the tile plan.
std::string flash_options(const ForwardArgs& args, const TilePlan& plan);

// The grid of both fa2 kernels, one work-group per (Q block, head, batch), and the argument block
// with its causal dispatch order (order_tail; common.cl's block_coordinates).
struct Fa2Grid {
  std::size_t global[3], local[3];
  AttnArgs args;
};
Fa2Grid fa2_grid(const Problem& p, const TilePlan& plan);

// Creates `name` from the cached program for `files` + `options`, built by `route`.
cl::Kernel make_kernel(const Problem& p, const std::vector<std::string>& files, const std::string& options,
                       const char* name, BuildRoute route = BuildRoute::Source);

// Sets kernel arguments 0, 1, ... to `values` (cl_mem handles and the AttnArgs block by value).
template <typename... T>
void set_args(const cl::Kernel& kernel, const T&... values) {
  cl_uint index = 0;
  (check_cl(clSetKernelArg(kernel(), index++, sizeof(T), &values), "clSetKernelArg"), ...);
}

// Enqueues an NDRange kernel after `wait` and records its event in `launch`.
void enqueue(cl_command_queue queue, const cl::Kernel& kernel, const std::size_t global[3],
             const std::size_t local[3], const std::vector<cl_event>& wait, Launch& launch);

void launch_standard(cl_command_queue queue, const Problem& p, cl_mem workspace, const std::vector<cl_event>& wait,
                     Launch& launch);
void launch_fa1(cl_command_queue queue, const Problem& p, cl_mem workspace, const std::vector<cl_event>& wait,
                Launch& launch);
void launch_fa2(cl_command_queue queue, const Problem& p, const std::vector<cl_event>& wait, Launch& launch);

// The NVIDIA tensor-core path of fa2 (launch_fa2_mma.cpp; its eligibility and plan in
// mma_plan.hpp): a launch that returns false (enqueuing nothing) when the device cannot take it,
// so the caller falls back to launch_fa2.
bool try_launch_fa2_mma(cl_command_queue queue, const Problem& p, const std::vector<cl_event>& wait, Launch& launch);

// The CPU-shaped fa2 (launch_fa2_cpu.cpp, plan in plan_fa2_cpu.hpp): returns false (enqueuing
// nothing) unless plan_fa2_cpu's device choice and FLASHCL_FA2_CPU give it the call and no tile is
// forced, so the caller falls back to launch_fa2.
bool try_launch_fa2_cpu(cl_command_queue queue, const Problem& p, const std::vector<cl_event>& wait, Launch& launch);

}  // namespace flashcl::detail
