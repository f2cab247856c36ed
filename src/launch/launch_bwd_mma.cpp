// launch_bwd_mma.cpp: the NVIDIA tensor-core fa2 backward (kernels/nvidia/bwd_mma.cl over the
// forward's mma_ptx.cl, mma_half_io.cl and mma_f16.cl), the dK/dV (and atomic dQ) step of an fa2
// backward call between bwd_common.cl's preprocess and dQ conversion. Chosen at run time from
// device facts (bwd_mma_plan.hpp: an NVIDIA GPU of compute capability >= 8.0, fp16/bf16, or fp32
// through 3xTF32 (programs.txt's bwd_mma_tf32) unless FLASHCL_BWD_TF32=0, d <= 128 where the planned
// shape compiles (bwd_mma_plan.cpp's shape_compiles), any variant
// but a bias gradient) and a probe that must pass on the device first: the
// kernel runs on a small causal problem (two key blocks, one partial, Nq != Nk) and its dK, dV and
// dQ accumulator must match a float64 reference; once per (device, dtype, head dim, copy form,
// shape). A failed probe leaves the call to the portable bwd_dkdv, unless FLASHCL_BWD_MMA=1 asks
// for the tensor cores, where it is an error (the GPU tests run so, so a silent fallback cannot
// pass them). FLASHCL_BUILD_LOG=1 prints why a probe failed. By default (and always for deterministic
// calls) the kernel runs without its dQ adds (DQ_ATOMIC=0) and then bwd_mma_dq
// (kernels/nvidia/bwd_mma_dq.cl) writes dQ itself, which measured faster than the atomic adds; the
// probe then runs both and checks dQ as written. FLASHCL_BWD_MMA_DQ=atomic keeps the adds.
// FLASHCL_BWD_WGMMA on compute capability 9.0 takes both kernels ("1") or the dQ pass alone ("dq")
// from programs.txt's bwd_mma_wgmma instead (Hopper's wgmma, through retargeted PTX), probed the
// same way.
#include <algorithm>
#include <cmath>
#include <tuple>

#include "base/errors.hpp"
#include "launch/launchers.hpp"
#include "launch/probe.hpp"
#include "plan/backward_programs.hpp"
#include "plan/bwd_mma_plan.hpp"
#include "plan/overrides.hpp"
#include "program/program_cache.hpp"
#include "validate/backward_problem.hpp"

namespace flashcl::detail {
namespace {

// The call's arguments with the forward part normalised (what eligibility and options read).
BackwardArgs resolved(const BackwardProblem& bp) {
  BackwardArgs r = bp.args;
  r.forward = bp.forward.args;
  return r;
}

// One work-group per (K/V block of 16 * key m-tiles * warps keys, half that with warps in pairs,
// K/V head, batch).
void grid_for(const BackwardProblem& bp, const BwdMmaPlan& plan, std::size_t global[3], std::size_t local[3]) {
  const ForwardArgs& a = bp.forward.args;
  const std::size_t wg = 32 * static_cast<std::size_t>(plan.warps),
                    keys = static_cast<std::size_t>(bwd_mma_block_keys(plan));
  const std::size_t blocks = (static_cast<std::size_t>(a.seqlen_k) + keys - 1) / keys;
  global[0] = blocks * wg;
  global[1] = static_cast<std::size_t>(a.heads_kv != 0 ? a.heads_kv : a.heads);
  global[2] = static_cast<std::size_t>(a.batch);
  local[0] = wg;
  local[1] = local[2] = 1;
}

// bwd_mma_dq: one work-group per (Q block of 16 * m-tiles * warps rows, query head, batch).
void dq_grid_for(const BackwardProblem& bp, const BwdMmaPlan& plan, std::size_t global[3], std::size_t local[3]) {
  const ForwardArgs& a = bp.forward.args;
  const std::size_t wg = 32 * static_cast<std::size_t>(plan.warps),
                    rows = static_cast<std::size_t>(bwd_mma_dq_block_rows(plan));
  global[0] = (static_cast<std::size_t>(a.seqlen_q) + rows - 1) / rows * wg;
  global[1] = static_cast<std::size_t>(a.heads);
  global[2] = static_cast<std::size_t>(a.batch);
  local[0] = wg;
  local[1] = local[2] = 1;
}

// float64 gradients of one causal head (bottom-right aligned, scale 1/sqrt(d)) on the probe's
// inputs: dK, dV (nk x d), dQ (nq x d), and the LSE and D the kernel is given.
struct ProbeReference {
  std::vector<double> dq, dk, dv, lse, d;
};
ProbeReference probe_reference(const std::vector<float>& q, const std::vector<float>& k, const std::vector<float>& v,
                               const std::vector<float>& d_o, int nq, int nk, int d) {
  ProbeReference r;
  r.dq.assign(static_cast<std::size_t>(nq) * d, 0.0);
  r.dk.assign(static_cast<std::size_t>(nk) * d, 0.0);
  r.dv.assign(static_cast<std::size_t>(nk) * d, 0.0);
  r.lse.assign(nq, -INFINITY);
  r.d.assign(nq, 0.0);
  const double scale = 1.0 / std::sqrt(static_cast<double>(d));
  const int shift = nk - nq;
  for (int i = 0; i < nq; ++i) {
    const int seen = std::min(nk, std::max(0, i + shift + 1));  // keys 0 .. i + shift
    if (seen == 0) continue;
    std::vector<double> p(seen), dp(seen);
    double mx = -INFINITY, sum = 0.0;
    for (int j = 0; j < seen; ++j) {
      double dot = 0.0, dpv = 0.0;
      for (int c = 0; c < d; ++c) {
        dot += double(q[i * d + c]) * k[j * d + c];
        dpv += double(d_o[i * d + c]) * v[j * d + c];
      }
      p[j] = dot * scale;
      dp[j] = dpv;
      mx = std::max(mx, p[j]);
    }
    for (int j = 0; j < seen; ++j) sum += std::exp(p[j] - mx);
    r.lse[i] = mx + std::log(sum);
    double dd = 0.0;
    for (int j = 0; j < seen; ++j) dd += (p[j] = std::exp(p[j] - r.lse[i])) * dp[j];
    r.d[i] = dd;
    for (int j = 0; j < seen; ++j) {
      const double ds = p[j] * (dp[j] - dd);
      for (int c = 0; c < d; ++c) {
        r.dv[j * d + c] += p[j] * d_o[i * d + c];
        r.dk[j * d + c] += scale * ds * q[i * d + c];
        r.dq[i * d + c] += scale * ds * k[j * d + c];
      }
    }
  }
  return r;
}

// Largest error of `got` against `want` relative to the largest |want| (plus 1e-3 absolute).
double probe_error(const std::vector<float>& got, const std::vector<double>& want) {
  double peak = 0.0, err = 0.0;
  for (double x : want) peak = std::max(peak, std::fabs(x));
  for (std::size_t i = 0; i < want.size(); ++i) {
    const double e = std::fabs(double(got[i]) - want[i]);
    err = std::isfinite(got[i]) ? std::max(err, e) : INFINITY;
  }
  return err / (peak + 1e-3);
}

// Runs bwd_mma_dkdv alone for `dtype` at head dim `d` and the call's shape and copy form on one
// causal head (Nq = 77, Nk = 100) with LSE and D from float64, and compares dK, dV and the dQ
// accumulator (deterministic: then bwd_mma_dq too, and dQ as it wrote it) with float64: within
// 1e-3 (fp32, 3xTF32), 1e-2 (fp16) or 3e-2 (bf16) of the largest gradient, where a wrong fragment layout is off by tens
// of percent. A build failure or a wrong answer is an answer
// for the device; running out of resources is not (Transient).
ProbeResult run_probe(cl_context context, cl_device_id device, DType dtype, int d, bool vec_load, bool deterministic,
                      bool dkdv_wgmma, bool dq_wgmma, const BwdMmaPlan& plan) {
  const std::string what = concat("tensor-core backward probe (", to_string(dtype), ")");
  return guarded_probe(what, [&] {
    const int nq = 77, nk = 100;
    cl::Context ctx(context, true);
    cl::CommandQueue queue(ctx, cl::Device(device, true));
    std::vector<float> q(nq * d), k(nk * d), v(nk * d), d_o(nq * d);
    for (std::size_t i = 0; i < q.size(); ++i) q[i] = probe_value(i, 1, 13, 64), d_o[i] = probe_value(i, 4, 13, 64) * 0.5f;
    for (std::size_t i = 0; i < k.size(); ++i) k[i] = probe_value(i, 2, 13, 64), v[i] = probe_value(i, 3, 13, 64);
    const ProbeReference ref = probe_reference(q, k, v, d_o, nq, nk, d);
    // one element of padding in front of every tensor when the call copies element-wise, so the
    // probe's rows are not 16-byte aligned either
    const int pad = vec_load ? 0 : 1;
    const std::size_t elem = dtype == DType::F32 ? 4 : 2;
    auto upload = [&](const std::vector<float>& x) { return probe_upload(ctx, dtype, x, pad); };
    auto output = [&](std::size_t elems) { return cl::Buffer(ctx, CL_MEM_READ_WRITE, (elems + pad) * elem); };
    cl::Buffer qb = upload(q), kb = upload(k), vb = upload(v), dob = upload(d_o), ob = output(q.size());
    cl::Buffer dqb = output(q.size()), dkb = output(k.size()), dvb = output(v.size());
    std::vector<float> lse(ref.lse.begin(), ref.lse.end());
    cl::Buffer lseb(ctx, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, lse.size() * 4, lse.data());
    BackwardArgs args;
    ForwardArgs& f = args.forward;
    f.batch = f.heads = 1;
    f.seqlen_q = nq;
    f.seqlen_k = nk;
    f.head_dim = d;
    f.causal = true;
    f.dtype = dtype;
    f.algorithm = Algorithm::FA2;
    f.q = {qb(), pad, 0, 0, 0};
    f.k = {kb(), pad, 0, 0, 0};
    f.v = {vb(), pad, 0, 0, 0};
    f.o = {ob(), pad, 0, 0, 0};
    f.lse = lseb();
    args.d_o = {dob(), pad, 0, 0, 0};
    args.d_q = {dqb(), pad, 0, 0, 0};
    args.d_k = {dkb(), pad, 0, 0, 0};
    args.d_v = {dvb(), pad, 0, 0, 0};
    args.deterministic = deterministic;
    const BackwardProblem bp = validate_backward(queue(), args);
    // the workspace: D from float64, the dQ accumulator cleared
    std::vector<float> ws(bp.workspace.bytes / 4 + 1, 0.0f);
    for (int i = 0; i < nq; ++i) ws[bp.workspace.d + i] = static_cast<float>(ref.d[i]);
    cl::Buffer wsb(ctx, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, ws.size() * 4, ws.data());
    // Built and run outside the program cache and the fault hooks: the probe is the library's own
    // business, not part of the caller's call.
    const BwdMmaPrograms choice = bwd_mma_kernel_programs(resolved(bp), plan, dkdv_wgmma, dq_wgmma);
    auto build = [&](const ProgramChoice& c) {
      return build_uncached(context, device, *c.files, c.options, c.arch_ptx ? BuildRoute::ArchPtx : BuildRoute::Source);
    };
    const cl::Program program = build(choice.dkdv);
    cl::Kernel kernel(program, "bwd_mma_dkdv");
    cl_mem mems[8] = {qb(), kb(), vb(), dob(), lseb(), dkb(), dvb(), wsb()};
    for (cl_uint i = 0; i < 8; ++i) kernel.setArg(i, sizeof(cl_mem), &mems[i]);
    kernel.setArg(8, bp.forward.kernel_args);
    kernel.setArg(9, bp.kernel_args);
    std::size_t global[3], local[3];
    grid_for(bp, plan, global, local);
    queue.enqueueNDRangeKernel(kernel, cl::NullRange, cl::NDRange(global[0], global[1], global[2]),
                               cl::NDRange(local[0], local[1], local[2]));
    auto read = [&](const cl::Buffer& b, std::size_t elems) {
      if (dtype == DType::F32) {
        std::vector<float> values(elems + pad);
        queue.enqueueReadBuffer(b, CL_TRUE, 0, values.size() * 4, values.data());
        values.erase(values.begin(), values.begin() + pad);
        return values;
      }
      std::vector<std::uint16_t> bits(elems + pad);
      queue.enqueueReadBuffer(b, CL_TRUE, 0, bits.size() * 2, bits.data());
      bits.erase(bits.begin(), bits.begin() + pad);
      return from_storage(dtype, bits);
    };
    std::vector<float> dq(q.size());
    if (deterministic) {
      const cl::Program dq_program = choice.shared ? program : build(choice.dq);
      cl::Kernel dq_kernel(dq_program, "bwd_mma_dq");
      cl_mem dq_mems[7] = {qb(), kb(), vb(), dob(), lseb(), dqb(), wsb()};
      for (cl_uint i = 0; i < 7; ++i) dq_kernel.setArg(i, sizeof(cl_mem), &dq_mems[i]);
      dq_kernel.setArg(7, bp.forward.kernel_args);
      dq_kernel.setArg(8, bp.kernel_args);
      dq_grid_for(bp, plan, global, local);
      queue.enqueueNDRangeKernel(dq_kernel, cl::NullRange, cl::NDRange(global[0], global[1], global[2]),
                                 cl::NDRange(local[0], local[1], local[2]));
      dq = read(dqb, q.size());
    } else {
      queue.enqueueReadBuffer(wsb, CL_TRUE, bp.workspace.dq * 4, dq.size() * 4, dq.data());
    }
    const std::vector<float> dk = read(dkb, k.size()), dv = read(dvb, v.size());
    const double bound = dtype == DType::F32 ? 1e-3 : dtype == DType::F16 ? 1e-2 : 3e-2;
    const double e_dk = probe_error(dk, ref.dk), e_dv = probe_error(dv, ref.dv), e_dq = probe_error(dq, ref.dq);
    if (!(e_dk <= bound && e_dv <= bound && e_dq <= bound))
      return probe_failed(what, concat("d = ", d, ": errors relative to the largest gradient dK ", e_dk, ", dV ", e_dv,
                                        ", dQ ", e_dq, " (bound ", bound, ")"));
    return ProbeResult::Pass;
  });
}

bool probe_passes(cl_context context, cl_device_id device, DType dtype, int d, bool vec_load, bool deterministic,
                  bool dkdv_wgmma, bool dq_wgmma, const BwdMmaPlan& plan) {
  static ProbeMemo<std::tuple<cl_device_id, DType, int, bool, int, int, int, int, bool, int, int, int, bool, bool, bool>> memo;
  // the dQ kernel's shape only where it runs
  const int dq_keys = deterministic ? plan.dq_keys : 0, dq_stages = deterministic ? plan.dq_stages : 0;
  const int dq_mtiles = deterministic ? plan.dq_mtiles : 0;
  return memo.passes(std::make_tuple(device, dtype, d, vec_load, plan.warps, plan.query_rows, plan.stages,
                                     plan.key_mtiles, plan.warp_pairs, dq_keys, dq_stages, dq_mtiles, dkdv_wgmma,
                                     deterministic && dq_wgmma, deterministic && plan.dq_overlap),
      [&] { return run_probe(context, device, dtype, d, vec_load, deterministic, dkdv_wgmma, dq_wgmma, plan); });
}

}  // namespace

bool try_launch_bwd_mma(cl_command_queue queue, const BackwardProblem& bp, const BwdMmaChoice& mma, cl_mem workspace,
                        const BwdArgs& kernel_args, Launch& launch) {
  if (!mma.eligible) return false;
  const BackwardArgs args = resolved(bp);
  const BwdMmaPlan& plan = mma.shape;
  const ProgramChoice& program = mma.program;
  if (!probe_passes(bp.forward.context, bp.forward.device, args.forward.dtype, args.forward.head_dim, mma.vec_load,
                    mma.writes_dq, mma.dkdv_wgmma, mma.dq_wgmma, plan)) {
    if (mma.required)
      fail(Status::InternalError, "FLASHCL_BWD_MMA=", process_overrides().bwd_mma,
           ": the tensor-core backward's probe failed on this device (",
           to_string(args.forward.dtype), ", d = ", args.forward.head_dim,
           "; FLASHCL_BUILD_LOG=1 shows why)");
    return false;
  }
  const ForwardArgs& a = args.forward;
  cl::Kernel kernel = make_kernel(bp.forward, program, "bwd_mma_dkdv");
  set_args(kernel, a.q.buffer, a.k.buffer, a.v.buffer, args.d_o.buffer, a.lse, args.d_k.buffer, args.d_v.buffer,
           workspace, bp.forward.kernel_args, kernel_args);
  // a variant's program takes the variant buffers after the argument blocks (bwd_kv_steps.cl's
  // BWD_VARIANT_PARAMS); a plain one has none
  const bool variants = bwd_mma_has_variants(a);
  const cl_mem cu_q = a.cu_seqlens_q, cu_k = a.cu_seqlens_k, slopes = a.alibi_slopes, mask = a.mask.buffer;
  if (variants) set_args_from(kernel, 10, cu_q, cu_k, slopes, mask);
  std::size_t global[3], local[3];
  grid_for(bp, plan, global, local);
  enqueue(queue, kernel, global, local, {launch.last()}, launch);
  if (mma.writes_dq) {  // dQ without atomics, written in its dtype (no accumulator, no conversion)
    cl::Kernel dq = make_kernel(bp.forward, mma.dq_program, "bwd_mma_dq");
    set_args(dq, a.q.buffer, a.k.buffer, a.v.buffer, args.d_o.buffer, a.lse, args.d_q.buffer, workspace,
             bp.forward.kernel_args, kernel_args);
    if (variants) set_args_from(dq, 9, cu_q, cu_k, slopes, mask);
    dq_grid_for(bp, plan, global, local);
    enqueue(queue, dq, global, local, {launch.last()}, launch);
  }
  return true;
}

}  // namespace flashcl::detail
