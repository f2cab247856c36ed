// launchers.hpp: one enqueue function per path, each given the call's plan (plan/call_plan.hpp:
// tiles, grids, workspace), plus what they share: kernel creation from a planned program and the
// enqueue helper that records events.
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
#include "plan/call_plan.hpp"
#include "plan/forward_programs.hpp"
#include "plan/program_choice.hpp"
#include "plan/tile_planner.hpp"

namespace flashcl::detail {

// A planned grid with the argument block that goes with it: the call's AttnArgs with the grid's
// causal dispatch order (order_tail; common.cl's block_coordinates).
struct Fa2Grid {
  std::size_t global[3], local[3];
  AttnArgs args;
};
Fa2Grid with_args(const Problem& p, const Grid& grid);

// Creates `name` from the cached program for `files` + `options`, built by `route`.
cl::Kernel make_kernel(const Problem& p, const std::vector<std::string>& files, const std::string& options,
                       const char* name, BuildRoute route = BuildRoute::Source);
// Creates `name` from the cached build of a planned program (its files, options and route).
cl::Kernel make_kernel(const Problem& p, const ProgramChoice& program, const char* name);

// Sets kernel arguments first, first + 1, ... to `values` (cl_mem handles and the AttnArgs block by
// value).
template <typename... T>
void set_args_from(const cl::Kernel& kernel, cl_uint first, const T&... values) {
  cl_uint index = first;
  (check_cl(clSetKernelArg(kernel(), index++, sizeof(T), &values), "clSetKernelArg"), ...);
}

// Sets kernel arguments 0, 1, ... to `values`.
template <typename... T>
void set_args(const cl::Kernel& kernel, const T&... values) {
  set_args_from(kernel, 0, values...);
}

// Enqueues an NDRange kernel after `wait` and records its event in `launch`.
void enqueue(cl_command_queue queue, const cl::Kernel& kernel, const std::size_t global[3],
             const std::size_t local[3], const std::vector<cl_event>& wait, Launch& launch);

// The path's kernels, as the call plan has them (call.path, call.tiles, call.grids).
void launch_standard(cl_command_queue queue, const Problem& p, const CallPlan& call, cl_mem workspace,
                     const std::vector<cl_event>& wait, Launch& launch);
void launch_standard_cpu(cl_command_queue queue, const Problem& p, const CallPlan& call, cl_mem workspace,
                         const std::vector<cl_event>& wait, Launch& launch);
void launch_fa1(cl_command_queue queue, const Problem& p, const CallPlan& call, cl_mem workspace,
                const std::vector<cl_event>& wait, Launch& launch);
void launch_fa2(cl_command_queue queue, const Problem& p, const CallPlan& call, const std::vector<cl_event>& wait,
                Launch& launch);
void launch_fa2_cpu(cl_command_queue queue, const Problem& p, const CallPlan& call, const std::vector<cl_event>& wait,
                    Launch& launch);

// The standard path on NVIDIA tensor cores (launch_standard_mma.cpp): the plan's standard_mma
// candidate once its one-time probe passed on the device; returns false (enqueuing nothing) when
// there is none or it does not pass, so the caller runs the portable standard.
bool try_launch_standard_mma(cl_command_queue queue, const Problem& p, const CallPlan& call, cl_mem workspace,
                             const std::vector<cl_event>& wait, Launch& launch);

// The NVIDIA tensor-core fa2 (launch_fa2_mma.cpp): runs the plan's first candidate that fits and
// whose one-time probe passes on the device; returns false (enqueuing nothing) when none does, so
// the caller runs the plan's path.
bool try_launch_fa2_mma(cl_command_queue queue, const Problem& p, const CallPlan& call, const std::vector<cl_event>& wait,
                        Launch& launch);

}  // namespace flashcl::detail
