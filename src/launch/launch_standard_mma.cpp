// launch_standard_mma.cpp: the standard path on NVIDIA tensor cores (kernels/nvidia/standard_mma.cl
// over the fa2_mma operand files, with standard_softmax.cl between its two products), chosen by the
// call plan (standard_mma_plan.cpp) from device facts, never by a host #ifdef. Before its first use
// on a device it must pass a probe of its own, as the tensor-core fa2 does (probe.hpp's frame): the
// three kernels run on fa2's probe problem (probe_problem.hpp: Nq = 37, Nk = 150, partial blocks of
// rows and keys; d = 32 for the 16-byte copies, 30 for the element-wise ones) and O must match a
// float64 reference within the fa2 probe's bounds (fp16/bf16 1e-2, fp32 2e-5). A failed probe
// leaves every call to the portable standard; FLASHCL_STANDARD_MMA=0 (or FLASHCL_MMA=0) does so
// without asking, and FLASHCL_STANDARD_MMA=1 makes a failed probe an error (bench/gpu/standard.sh
// runs the tests so, since a silent fallback would pass them).
#include <cmath>
#include <tuple>

#include "base/errors.hpp"
#include "launch/launchers.hpp"
#include "launch/probe.hpp"
#include "launch/probe_problem.hpp"
#include "plan/mma_plan.hpp"
#include "plan/standard_mma_plan.hpp"
#include "program/program_cache.hpp"

namespace flashcl::detail {
namespace {

// The three kernels' arguments, as the portable standard's (launch_standard.cpp), each kernel's
// through `set(kernel, values...)`: the call's set_args (checked, through the fault hooks) or the
// probe's own setter, which stays outside the hooks.
template <typename Set>
void set_kernel_args(cl::Kernel& scores, cl::Kernel& softmax, cl::Kernel& pv, const ForwardArgs& a, cl_mem workspace,
                     const AttnArgs& args, Set set) {
  set(scores, a.q.buffer, a.k.buffer, workspace, a.cu_seqlens_q, a.cu_seqlens_k, a.alibi_slopes, a.mask.buffer, args);
  set(softmax, workspace, a.lse, a.cu_seqlens_q, a.cu_seqlens_k, a.alibi_slopes, a.mask.buffer, args);
  set(pv, workspace, a.v.buffer, a.o.buffer, a.cu_seqlens_q, a.cu_seqlens_k, a.alibi_slopes, a.mask.buffer, args);
}

// The probe's setter: the C++ bindings' setArg (cl::Error on failure, which the probe's guard
// takes), not the library's hooked clSetKernelArg, so an injected fault meant for a caller's call
// never lands in the probe (where it would only turn the tensor-core path off).
template <typename... T>
void set_probe_args(cl::Kernel& kernel, const T&... values) {
  cl_uint index = 0;
  (kernel.setArg(index++, sizeof values, &values), ...);
}

std::string probe_name(DType dtype) { return concat("tensor-core standard probe (", to_string(dtype), ")"); }

ProbeResult run_probe(cl_context context, cl_device_id device, DType dtype, bool vec_load) {
  const std::string what = probe_name(dtype);
  return guarded_probe(what, [&] {
    ForwardProbe probe(context, device, dtype, dtype, vec_load);
    const int nq = ForwardProbe::nq, nk = ForwardProbe::nk, d = probe.d;
    cl::CommandQueue& queue = probe.queue;
    cl::Buffer ws(probe.ctx, CL_MEM_READ_WRITE, static_cast<std::size_t>(nq) * nk * sizeof(float));
    ForwardArgs& args = probe.args;
    args.algorithm = Algorithm::Standard;
    // Built and run outside the program cache, its counters and the fault hooks, as fa2's probe.
    const Problem p = validate(queue(), args);
    PlanRequest request;  // the portable standard's softmax shape, as plan_call takes it
    request.algorithm = Algorithm::Standard;
    request.head_dim = d;
    request.dtype = dtype;
    const std::vector<StandardMmaCandidate> candidates = plan_standard_mma(*p.facts, p.args, plan_tiles(*p.facts, request), process_overrides());
    if (candidates.empty()) return ProbeResult::Transient;  // no shape fits: nothing learnt about the device
    const StandardMmaCandidate& c = candidates.front();
    const cl::Program program = build_uncached(context, device, *c.program.files, c.program.options);
    cl::Kernel scores(program, "standard_mma_scores"), softmax(program, "standard_softmax"), pv(program, "standard_mma_pv");
    set_kernel_args(scores, softmax, pv, p.args, ws(), p.kernel_args,
                    [](cl::Kernel& k, const auto&... v) { set_probe_args(k, v...); });
    for (auto [kernel, grid] : {std::pair{&scores, &c.grids[0]}, {&softmax, &c.grids[1]}, {&pv, &c.grids[2]}})
      queue.enqueueNDRangeKernel(*kernel, cl::NullRange, cl::NDRange(grid->global[0], grid->global[1], grid->global[2]),
                                 cl::NDRange(grid->local[0], grid->local[1], grid->local[2]));
    return probe.check(what, probe.read_o(), dtype == DType::F32 ? 2e-5 : 1e-2);
  });
}

// Once per (device, dtype, load kind); transient failures are asked again next time.
bool probe_passes(cl_context context, cl_device_id device, DType dtype, bool vec_load) {
  static ProbeMemo<std::tuple<cl_device_id, DType, bool>> memo;
  return memo.passes(std::make_tuple(device, dtype, vec_load), [&] { return run_probe(context, device, dtype, vec_load); });
}

}  // namespace

bool try_launch_standard_mma(cl_command_queue queue, const Problem& p, const CallPlan& call, cl_mem workspace,
                             const std::vector<cl_event>& wait, Launch& launch) {
  if (call.standard_mma.empty()) return false;
  const StandardMmaCandidate& c = call.standard_mma.front();
  if (!probe_passes(p.context, p.device, p.args.dtype, rows_are_16_byte_aligned(p.args))) {
    if (c.required)
      fail(Status::InternalError, "FLASHCL_STANDARD_MMA=1: the tensor-core standard's probe failed on this device (",
           to_string(p.args.dtype), "; FLASHCL_BUILD_LOG=1 shows why)");
    return false;
  }
  cl::Kernel scores = make_kernel(p, c.program, "standard_mma_scores");
  cl::Kernel softmax = make_kernel(p, c.program, "standard_softmax");
  cl::Kernel pv = make_kernel(p, c.program, "standard_mma_pv");
  set_kernel_args(scores, softmax, pv, p.args, workspace, p.kernel_args,
                  [](const cl::Kernel& k, const auto&... v) { set_args(k, v...); });
  enqueue(queue, scores, c.grids[0].global, c.grids[0].local, wait, launch);
  enqueue(queue, softmax, c.grids[1].global, c.grids[1].local, {launch.last()}, launch);
  enqueue(queue, pv, c.grids[2].global, c.grids[2].local, {launch.last()}, launch);
  return true;
}

}  // namespace flashcl::detail
