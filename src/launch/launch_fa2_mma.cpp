// launch_fa2_mma.cpp: the NVIDIA tensor-core path of fa2 (kernels/nvidia/fa2_mma.cl with an operand file:
// mma_wgmma.cl for fp16/bf16 with d <= 64 on compute capability 9.0 (Hopper's wgmma, built through
// retargeted PTX), mma_f16.cl for other fp16/bf16 (mma.sync), mma_e4m3.cl for FP8 (mma.sync
// m16n8k32, compute capability 8.9+), mma_tf32.cl for fp32 as 3xTF32). It is
// chosen at run time from device facts, never by a host #ifdef: an NVIDIA GPU of compute
// capability >= 8.0 (cl_nv_device_attribute_query), d <= 128, plain attention or GQA (windows and
// packed sequences too unless FLASHCL_TENSOR_CORE_VARIANTS=0, softcap, ALiBi, masks and biases unless
// FLASHCL_TENSOR_CORE_TRANSFORMS=0; mma_plan.cpp), no forced tile, and a
// probe that must pass on that device first (of the plain program: a variant's build failure is
// then the call's error, with its log): the kernel itself runs on a small problem
// (two key blocks, a partial one, the same kind of loads as the call) and its output must match a
// float64 reference (once per device, dtype, load kind, V's layout and operand file). A failed wgmma
// probe falls back to mma.sync (except for an fp8 V stored transposed, which only the wgmma kernel
// reads), a failed mma.sync probe to the portable kernels. FLASHCL_MMA=0 turns the
// tensor cores off, FLASHCL_WGMMA=0 only wgmma. e4m3 takes wgmma (mma_wgmma_e4m3.cl) up to d = 128
// unless FLASHCL_FP8_WGMMA=0; =require (the planned candidate's `required`) makes its failed probe an
// error instead of a fallback. The candidate shapes of each call, in order, are its call plan's
// (call_plan.cpp, from mma_plan.cpp); this file probes and enqueues them.
#include <algorithm>
#include <cmath>
#include <tuple>
#include <utility>

#include "base/errors.hpp"
#include "launch/launchers.hpp"
#include "launch/probe.hpp"
#include "launch/probe_problem.hpp"
#include "plan/forward_programs.hpp"  // transforms_scores
#include "plan/mma_plan.hpp"
#include "program/program_cache.hpp"

namespace flashcl::detail {
namespace {

void enqueue_mma(cl_command_queue queue, const Problem& p, const MmaCandidate& candidate,
                 const std::vector<cl_event>& wait, Launch& launch) {
  const ForwardArgs& a = p.args;
  cl::Kernel kernel = make_kernel(p, candidate.program, "fa2_mma_forward");
  const Fa2Grid grid = with_args(p, candidate.grid);
  // the kernel's arguments in its order: the fp8 descales (FP8_DESCALES), cu_seqlens (VARLEN), then
  // ALiBi's slopes and the mask or bias (SCORE_TRANSFORM; null where absent)
  set_args(kernel, a.q.buffer, a.k.buffer, a.v.buffer, a.o.buffer, a.lse, grid.args);
  cl_uint next = 6;
  if (is_fp8(a.dtype)) {
    set_args_from(kernel, next, a.fp8.q_descale, a.fp8.k_descale, a.fp8.v_descale);
    next += 3;
  }
  if (a.cu_seqlens_q != nullptr) {
    set_args_from(kernel, next, a.cu_seqlens_q, a.cu_seqlens_k);
    next += 2;
  }
  if (transforms_scores(a)) set_args_from(kernel, next, a.alibi_slopes, a.mask.buffer);
  enqueue(queue, kernel, grid.global, grid.local, wait, launch);
}

// The probe's name in FLASHCL_BUILD_LOG's messages.
std::string probe_name(MmaKind kind, DType dtype) {
  return concat("tensor-core probe (", kind == MmaKind::Wgmma ? "wgmma" : "mma.sync", ", ", to_string(dtype), ")");
}

// Runs the kernel for `dtype` (O stored as `out`) on one head (Nq = 37, Nk = 150; d = 32 for the
// 16-byte async copies, d = 30 for the element-wise loads) and compares O with a float64 reference:
// fp16/bf16 within 1e-2 (a wrong fragment layout is off by ~0.1), fp32 within 2e-5 (dropping
// 3xTF32's small terms is off by ~1e-3), FP8 within 1e-1 (P rounded to e4m3 costs up to ~3.3e-2
// on the probe's rows, which differ; a descale (0.5, 4 and 2) applied wrongly or keys in the
// wrong order are off by 0.6 or more: a float64 model of the probe, docs/FP8.md). A build failure
// or a wrong result is an answer for the device; running out of resources is not (Transient: the
// path is skipped for this call only).
ProbeResult run_probe(cl_context context, cl_device_id device, DType dtype, DType out, bool vec_load, bool v_transposed,
                      MmaKind kind) {
  const std::string what = probe_name(kind, dtype);
  return guarded_probe(what, [&] {
    const bool fp8 = is_fp8(dtype);
    ForwardProbe probe(context, device, dtype, out, vec_load, v_transposed);
    cl::CommandQueue& queue = probe.queue;
    const float descales[3] = {0.5f, 4.0f, 2.0f};  // q, k, v (FP8)
    std::vector<cl::Buffer> descale_buffers;
    for (float x : descales)
      descale_buffers.emplace_back(probe.ctx, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, sizeof(float), &x);
    ForwardArgs& args = probe.args;
    args.algorithm = Algorithm::FA2;
    if (fp8) {
      args.out_dtype = out;
      args.fp8.q_descale = descale_buffers[0]();
      args.fp8.k_descale = descale_buffers[1]();
      args.fp8.v_descale = descale_buffers[2]();
    }
    // Built and run outside the program cache, its counters and the fault hooks: the probe is the
    // library's own business, not part of the caller's call.
    const Problem p = validate(queue(), args);
    const TilePlan plan = plan_for_kind(p.args, kind);
    const ProgramChoice program = mma_program(p.args, plan, kind);
    cl::Kernel kernel(build_uncached(context, device, *program.files, program.options,
                                     program.arch_ptx ? BuildRoute::ArchPtx : BuildRoute::Source),
                      "fa2_mma_forward");
    kernel.setArg(0, probe.qb);
    kernel.setArg(1, probe.kb);
    kernel.setArg(2, probe.vb);
    kernel.setArg(3, probe.ob);
    kernel.setArg(4, sizeof(cl_mem), nullptr);
    const Fa2Grid grid = with_args(p, fa2_grid(*p.facts, p.args, plan));
    kernel.setArg(5, grid.args);
    if (fp8)
      for (cl_uint i = 0; i < 3; ++i) kernel.setArg(6 + i, descale_buffers[i]);
    queue.enqueueNDRangeKernel(kernel, cl::NullRange, cl::NDRange(grid.global[0], grid.global[1], grid.global[2]),
                               cl::NDRange(grid.local[0], grid.local[1], grid.local[2]));
    // the dequantised inputs are the reference's (FP8)
    return probe.check(what, probe.read_o(), dtype == DType::F32 ? 2e-5 : fp8 ? 1e-1 : 1e-2, fp8 ? descales : nullptr);
  });
}

// Once per (device, dtype, O's dtype, load kind, V's layout (fp8), operand file); transient failures
// are asked again next time.
bool probe_passes(cl_context context, cl_device_id device, DType dtype, DType out, bool vec_load, bool v_transposed,
                  MmaKind kind) {
  static ProbeMemo<std::tuple<cl_device_id, DType, DType, bool, bool, MmaKind>> memo;
  return memo.passes(std::make_tuple(device, dtype, out, vec_load, v_transposed, kind),
                     [&] { return run_probe(context, device, dtype, out, vec_load, v_transposed, kind); });
}

}  // namespace

bool try_launch_fa2_mma(cl_command_queue queue, const Problem& p, const CallPlan& call, const std::vector<cl_event>& wait,
                        Launch& launch) {
  const DeviceFacts& facts = *p.facts;
  const ForwardArgs& a = p.args;
  const bool vec_load = rows_are_16_byte_aligned(a);
  const DType out = is_fp8(a.dtype) ? a.out_dtype.value_or(DType::BF16) : a.dtype;
  // the first candidate (wgmma where it exists, else mma.sync) that fits and whose probe passed;
  // a forced shape that does not fit is an error, raised before its probe
  for (const MmaCandidate& candidate : call.tensor_cores) {
    const TilePlan& plan = candidate.tiles;
    if (plan.local_bytes > facts.local_mem_bytes) {
      if (call.mma_tile_forced)
        fail(Status::InvalidArgument, "FLASHCL_MMA_TILE: ", plan.block_cols, " keys per block need ",
             plan.local_bytes, " bytes of local memory; the device has ", facts.local_mem_bytes);
      continue;
    }
    const bool v_transposed = is_fp8(a.dtype) && a.fp8.v_transposed;
    if (probe_passes(p.context, p.device, a.dtype, out, vec_load, v_transposed, candidate.kind)) {
      enqueue_mma(queue, p, candidate, wait, launch);
      return true;
    }
    // FLASHCL_FP8_WGMMA=require or FLASHCL_MMA=any (tests, A/B runs): no silent fallback
    if (candidate.required)
      fail(Status::InternalError,
           is_fp8(a.dtype) && candidate.kind == MmaKind::Wgmma ? "FLASHCL_FP8_WGMMA=require" : "FLASHCL_MMA=any", ": the ",
           probe_name(candidate.kind, a.dtype), " failed on this device (", to_string(out), " O, ",
           vec_load ? "16-byte" : "element-wise", " copies; FLASHCL_BUILD_LOG=1 shows why)");
  }
  return false;
}

}  // namespace flashcl::detail
