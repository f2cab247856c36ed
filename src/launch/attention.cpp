// attention.cpp: the forward entry point, which takes a call through its stages in order (validate,
// plan once, check or allocate the workspace, launch the plan's path), the size queries that read
// the same plan, and what the launchers share: kernel creation from a planned program, enqueue,
// and the Launch record of enqueued kernels.
#include <algorithm>
#include <cstdint>
#include <initializer_list>

#include "base/errors.hpp"
#include "base/fault_injection.hpp"
#include "launch/call_workspace.hpp"
#include "launch/launchers.hpp"
#include "plan/call_plan.hpp"
#include "plan/overrides.hpp"
#include "program/program_cache.hpp"

namespace flashcl {
namespace detail {

namespace {

// The plan of a call described by (device, args) alone, for the size queries.
CallPlan plan_for_query(cl_device_id device, const ForwardArgs& normalized) {
  return plan_call(device_facts(device), normalized, process_overrides());
}

}  // namespace

Fa2Grid with_args(const Problem& p, const Grid& grid) {
  Fa2Grid out{{grid.global[0], grid.global[1], grid.global[2]}, {grid.local[0], grid.local[1], grid.local[2]},
              p.kernel_args};
  out.args.order_tail = grid.order_tail;
  return out;
}

cl::Kernel make_kernel(const Problem& p, const std::vector<std::string>& files, const std::string& options,
                       const char* name, BuildRoute route) {
  cl::Program program = cached_program(p.context, p.device, files, options, route);
  cl_int err = injected_fault("clCreateKernel");
  cl_kernel kernel = err == CL_SUCCESS ? clCreateKernel(program(), name, &err) : nullptr;
  check_cl_result(err, "clCreateKernel");
  return cl::Kernel(kernel);
}

cl::Kernel make_kernel(const Problem& p, const ProgramChoice& program, const char* name) {
  return make_kernel(p, *program.files, program.options, name, program.arch_ptx ? BuildRoute::ArchPtx : BuildRoute::Source);
}

void enqueue(cl_command_queue queue, const cl::Kernel& kernel, const std::size_t global[3], const std::size_t local[3],
             const std::vector<cl_event>& wait, Launch& launch) {
  cl_event event = nullptr;
  cl_int err = injected_fault("clEnqueueNDRangeKernel");
  if (err == CL_SUCCESS)
    err = clEnqueueNDRangeKernel(queue, kernel(), 3, nullptr, global, local, static_cast<cl_uint>(wait.size()),
                                 wait.empty() ? nullptr : wait.data(), &event);
  check_cl_result(err, "clEnqueueNDRangeKernel");
  launch.add(event);
}

}  // namespace detail

Algorithm resolve_algorithm(cl_device_id device, const ForwardArgs& args) {
  (void)device;
  // fa2 is exact, allocates nothing and is the fastest path on every device measured so far.
  return args.algorithm == Algorithm::Auto ? Algorithm::FA2 : args.algorithm;
}

std::size_t workspace_bytes(cl_device_id device, const ForwardArgs& args) {
  return detail::plan_for_query(device, detail::normalize_shape(device, args)).workspace_bytes;
}

TileInfo tile_info(cl_device_id device, const ForwardArgs& args) {
  const ForwardArgs a = detail::normalize_shape(device, args);
  // (the tensor-core path still needs its probe at the first call; this reports its plan as soon
  // as the device qualifies)
  const detail::CallPlan call = detail::plan_for_query(device, a);
  const detail::TilePlan& plan = detail::reported_tiles(call);
  TileInfo info;
  info.algorithm = a.algorithm;
  info.block_rows = plan.block_rows;
  info.block_cols = plan.block_cols;
  info.work_group_size = plan.work_group_size;
  info.local_bytes = plan.local_bytes;
  info.reason = plan.reason;
  return info;
}

std::size_t device_bytes(cl_device_id device, const ForwardArgs& args) {
  const ForwardArgs a = detail::normalize_shape(device, args);
  const auto n = [](int x) { return static_cast<std::uint64_t>(x); };
  const std::size_t elem = element_size(a.dtype), o_elem = element_size(a.out_dtype.value_or(a.dtype));
  // every term saturated and the sum too: a huge shape must not wrap to a size that fits
  std::size_t total = 0;
  for (std::size_t bytes :
       {detail::saturating_bytes({n(a.batch), n(a.seqlen_q), n(a.heads), n(a.head_dim), elem}),        // Q
        detail::saturating_bytes({n(a.batch), n(a.seqlen_q), n(a.heads), n(a.head_dim), o_elem}),      // O
        detail::saturating_bytes({2, n(a.batch), n(a.seqlen_k), n(a.heads_kv), n(a.head_dim), elem}),  // K, V
        detail::saturating_bytes({n(a.batch), n(a.heads), n(a.seqlen_q), sizeof(float)}),              // LSE
        detail::plan_for_query(device, a).workspace_bytes})
    total = bytes > SIZE_MAX - total ? SIZE_MAX : total + bytes;
  return total;
}

Launch forward(cl_command_queue queue, const ForwardArgs& args, const std::vector<cl_event>& wait_list) {
  for (cl_event e : wait_list)
    if (e == nullptr) detail::fail(Status::InvalidHandle, "wait_list: null cl_event");
  // validate -> plan (once) -> the workspace the plan needs -> program and launch of its path
  const detail::Problem p = detail::validate(queue, args, wait_list);
  const detail::CallPlan call = detail::plan_call(*p.facts, p.args, detail::process_overrides());
  detail::check_workspace(p, call.workspace_bytes);

  Launch launch;
  const detail::CallWorkspace owned_or_callers(p.context, p.args.workspace, call.workspace_bytes);
  const cl_mem workspace = owned_or_callers.get();
  detail::with_cl_errors([&] {
    // the tensor-core kernel takes plain attention, GQA and (unless switched off) the variants
    // in 16 or 32 bits (mma_plan.cpp) when its probe passes; otherwise the
    // plan's path runs (on CPUs the CPU-shaped fa2 takes what it can, plan_fa2_cpu.hpp)
    if (call.tensor_cores.empty() || !detail::try_launch_fa2_mma(queue, p, call, wait_list, launch)) {
      switch (call.path) {
        case detail::ForwardPath::Standard:
          if (!detail::try_launch_standard_mma(queue, p, call, workspace, wait_list, launch))
            detail::launch_standard(queue, p, call, workspace, wait_list, launch);
          break;
        case detail::ForwardPath::StandardCpu:
          detail::launch_standard_cpu(queue, p, call, workspace, wait_list, launch);
          break;
        case detail::ForwardPath::FA1: detail::launch_fa1(queue, p, call, workspace, wait_list, launch); break;
        case detail::ForwardPath::FA2Cpu: detail::launch_fa2_cpu(queue, p, call, wait_list, launch); break;
        case detail::ForwardPath::FA2: detail::launch_fa2(queue, p, call, wait_list, launch); break;
      }
    }
  });
  return launch;
}

Launch::Launch(Launch&& other) noexcept : events_(std::move(other.events_)) { other.events_.clear(); }

Launch& Launch::operator=(Launch&& other) noexcept {
  if (this != &other) {
    for (cl_event e : events_) clReleaseEvent(e);
    events_ = std::move(other.events_);
    other.events_.clear();
  }
  return *this;
}

Launch::~Launch() {
  for (cl_event e : events_) clReleaseEvent(e);
}

void Launch::wait() const {
  if (!events_.empty())
    detail::check_cl(clWaitForEvents(static_cast<cl_uint>(events_.size()), events_.data()), "clWaitForEvents");
}

double Launch::device_ms() const {
  if (events_.empty()) return 0.0;
  wait();
  cl_ulong start = 0, end = 0;
  detail::check_cl(clGetEventProfilingInfo(events_.front(), CL_PROFILING_COMMAND_START, sizeof start, &start, nullptr),
                   "clGetEventProfilingInfo (is the queue created with CL_QUEUE_PROFILING_ENABLE?)");
  detail::check_cl(clGetEventProfilingInfo(events_.back(), CL_PROFILING_COMMAND_END, sizeof end, &end, nullptr),
                   "clGetEventProfilingInfo");
  return static_cast<double>(end - start) * 1e-6;
}

}  // namespace flashcl
