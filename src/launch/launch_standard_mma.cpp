// launch_standard_mma.cpp: the standard path on NVIDIA tensor cores (kernels/nvidia/standard_mma.cl
// over the fa2_mma operand files, with standard_softmax.cl between its two products), chosen by the
// call plan (standard_mma_plan.cpp) from device facts, never by a host #ifdef. Before its first use
// on a device it must pass a probe of its own, as the tensor-core fa2 does (probe.hpp's frame): the
// three kernels run on a small problem (Nq = 37, Nk = 150: partial blocks of rows and keys; d = 32
// for the 16-byte copies, 30 for the element-wise ones) and O must match a float64 reference within
// the fa2 probe's bounds (fp16/bf16 1e-2, fp32 2e-5). A failed probe leaves every call to the
// portable standard; FLASHCL_STANDARD_MMA=0 (or FLASHCL_MMA=0) does so without asking, and
// FLASHCL_STANDARD_MMA=1 makes a failed probe an error (bench/gpu/standard.sh runs the tests so,
// since a silent fallback would pass them).
#include <cmath>
#include <tuple>

#include "base/errors.hpp"
#include "launch/launchers.hpp"
#include "launch/probe.hpp"
#include "plan/mma_plan.hpp"
#include "plan/standard_mma_plan.hpp"
#include "program/program_cache.hpp"

namespace flashcl::detail {
namespace {

// The three kernels' arguments, as the portable standard's (launch_standard.cpp).
void set_kernel_args(cl::Kernel& scores, cl::Kernel& softmax, cl::Kernel& pv, const ForwardArgs& a, cl_mem workspace,
                     const AttnArgs& args) {
  set_args(scores, a.q.buffer, a.k.buffer, workspace, a.cu_seqlens_q, a.cu_seqlens_k, a.alibi_slopes, a.mask.buffer,
           args);
  set_args(softmax, workspace, a.lse, a.cu_seqlens_q, a.cu_seqlens_k, a.alibi_slopes, a.mask.buffer, args);
  set_args(pv, workspace, a.v.buffer, a.o.buffer, a.cu_seqlens_q, a.cu_seqlens_k, a.alibi_slopes, a.mask.buffer, args);
}

std::string probe_name(DType dtype) { return concat("tensor-core standard probe (", to_string(dtype), ")"); }

ProbeResult run_probe(cl_context context, cl_device_id device, DType dtype, bool vec_load) {
  const std::string what = probe_name(dtype);
  return guarded_probe(what, [&] {
    const int nq = 37, nk = 150, d = vec_load ? 32 : 30;
    cl::Context ctx(context, true);
    cl::CommandQueue queue(ctx, cl::Device(device, true));
    std::vector<float> q(nq * d), k(nk * d), v(nk * d);
    for (std::size_t i = 0; i < q.size(); ++i) q[i] = probe_value(i, 1, 11, 64);
    for (std::size_t i = 0; i < k.size(); ++i) k[i] = probe_value(i, 2, 11, 64), v[i] = probe_value(i, 3, 11, 64);
    if (dtype == DType::F32)  // low bits that TF32 alone drops
      for (auto* t : {&q, &k, &v})
        for (std::size_t i = 0; i < t->size(); ++i) (*t)[i] += static_cast<float>(i % 7) * 0x1p-17f;
    auto upload = [&](const std::vector<float>& x) {
      if (dtype == DType::F32)
        return cl::Buffer(ctx, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, x.size() * 4, const_cast<float*>(x.data()));
      std::vector<std::uint16_t> bits = to_storage(dtype, x);  // exact: multiples of 1/64
      return cl::Buffer(ctx, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, bits.size() * 2, bits.data());
    };
    cl::Buffer qb = upload(q), kb = upload(k), vb = upload(v), ob(ctx, CL_MEM_READ_WRITE, nq * d * element_size(dtype));
    cl::Buffer ws(ctx, CL_MEM_READ_WRITE, static_cast<std::size_t>(nq) * nk * sizeof(float));
    ForwardArgs args;
    args.batch = args.heads = 1;
    args.seqlen_q = nq;
    args.seqlen_k = nk;
    args.head_dim = d;
    args.dtype = dtype;
    args.algorithm = Algorithm::Standard;
    args.q.buffer = qb();
    args.k.buffer = kb();
    args.v.buffer = vb();
    args.o.buffer = ob();
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
    set_kernel_args(scores, softmax, pv, p.args, ws(), p.kernel_args);
    for (auto [kernel, grid] : {std::pair{&scores, &c.grids[0]}, {&softmax, &c.grids[1]}, {&pv, &c.grids[2]}})
      queue.enqueueNDRangeKernel(*kernel, cl::NullRange, cl::NDRange(grid->global[0], grid->global[1], grid->global[2]),
                                 cl::NDRange(grid->local[0], grid->local[1], grid->local[2]));
    std::vector<float> result(nq * d);
    if (dtype == DType::F32) {
      queue.enqueueReadBuffer(ob, CL_TRUE, 0, result.size() * 4, result.data());
    } else {
      std::vector<std::uint16_t> bits(result.size());
      queue.enqueueReadBuffer(ob, CL_TRUE, 0, bits.size() * 2, bits.data());
      result = from_storage(dtype, bits);
    }
    const double scale = 1.0 / std::sqrt(static_cast<double>(d)), bound = dtype == DType::F32 ? 2e-5 : 1e-2;
    for (int i = 0; i < nq; ++i) {
      std::vector<double> w(nk);
      double mx = -INFINITY, sum = 0.0;
      for (int j = 0; j < nk; ++j) {
        double dot = 0.0;
        for (int col = 0; col < d; ++col) dot += double(q[i * d + col]) * double(k[j * d + col]);
        mx = std::max(mx, w[j] = dot * scale);
      }
      for (int j = 0; j < nk; ++j) sum += (w[j] = std::exp(w[j] - mx));
      for (int col = 0; col < d; ++col) {
        double want = 0.0;
        for (int j = 0; j < nk; ++j) want += w[j] * double(v[j * d + col]);
        want /= sum;
        const float got = result[static_cast<std::size_t>(i) * d + col];
        if (!(std::fabs(got - want) <= bound))
          return probe_failed(what, concat("O[", i, "][", col, "] = ", got, ", float64 says ", want));
      }
    }
    return ProbeResult::Pass;
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
  set_kernel_args(scores, softmax, pv, p.args, workspace, p.kernel_args);
  enqueue(queue, scores, c.grids[0].global, c.grids[0].local, wait, launch);
  enqueue(queue, softmax, c.grids[1].global, c.grids[1].local, {launch.last()}, launch);
  enqueue(queue, pv, c.grids[2].global, c.grids[2].local, {launch.last()}, launch);
  return true;
}

}  // namespace flashcl::detail
