// forward_programs.cpp: the forward paths' programs and -D options (forward_programs.hpp). The
// option strings are byte-for-byte those the launchers composed before the call plan held them
// (tests/data/plan_options.txt), so every program binary and cache key is unchanged.
#include "plan/forward_programs.hpp"

#include <cfloat>
#include <cmath>

#include "base/errors.hpp"

namespace flashcl::detail {

bool needs_half_units(float scale, float softcap, bool alibi, bool bias) {
  return softcap > 0.0f || alibi || bias || std::fabs(scale) > FLT_MAX / 1.4426950408889634;
}

bool transforms_scores(const ForwardArgs& a) {
  return a.softcap > 0.0f || a.alibi_slopes != nullptr || a.mask.kind != MaskKind::None;
}

std::string common_options(const ForwardArgs& a) {
  std::string options = concat("-cl-std=CL1.2 -DDTYPE=", static_cast<int>(a.dtype), " -DHEAD_DIM=", a.head_dim,
                               " -DCAUSAL=", a.causal ? 1 : 0);
  // Variant switches appear only when on, so the plain path's program (and cache key) is unchanged.
  if (a.heads_kv != 0 && a.heads_kv != a.heads) options += " -DGQA=1";
  if (windowed(a.window)) options += " -DWINDOW=1";
  if (a.alibi_slopes != nullptr) options += " -DALIBI=1";
  if (a.softcap > 0.0f) options += " -DSOFTCAP=1";
  if (a.mask.kind != MaskKind::None) options += concat(" -DMASK_KIND=", a.mask.kind == MaskKind::Bool ? 1 : 2);
  if (a.cu_seqlens_q != nullptr) options += " -DVARLEN=1";
  if (is_fp8(a.dtype)) {  // fp8 inputs (docs/FP8.md): O's storage, the descales' block, V's layout
    options += concat(" -DOUT_DTYPE=", static_cast<int>(a.out_dtype.value_or(DType::BF16)));
    if (a.fp8.quant_block > 0) options += concat(" -DQUANT_BLOCK=", a.fp8.quant_block);
    if (a.fp8.v_transposed) options += " -DV_TRANSPOSED=1";
  }
  if (needs_half_units(a.scale.value_or(1.0f), a.softcap, a.alibi_slopes != nullptr, a.mask.kind == MaskKind::Bias))
    options += " -DHALF_UNITS=1";
  return options;
}

std::string flash_options(const ForwardArgs& a, const TilePlan& plan) {
  return concat(common_options(a), " -DTPR=", plan.team_size, " -DD_PAD=", plan.padded_head_dim, " -DBR=",
                plan.block_rows, " -DBC=", plan.block_cols, " -DTM=", plan.rows_per_team);
}

ProgramChoice forward_program(ForwardPath path, const ForwardArgs& a, const TilePlan& t, int vector_width,
                              int column_vectors) {
  switch (path) {
    case ForwardPath::Standard:
      return choose_program(
          programs::standard,
          concat(common_options(a), " -DGEMM_WG_X=", t.gemm_wg_x, " -DGEMM_WG_Y=", t.gemm_wg_y, " -DGEMM_RM=", t.gemm_rm,
                 " -DGEMM_RN=", t.gemm_rn, " -DGEMM_KP=", t.gemm_kp, " -DGEMM_A_T=", t.gemm_a_t,
                 " -DSOFTMAX_WG=", t.softmax_wg, " -DSOFTMAX_VW=", t.softmax_vw));
    case ForwardPath::StandardCpu:
      return choose_program(programs::standard_cpu,
                            concat(common_options(a), " -DD_PAD=", t.padded_head_dim, " -DBR=", t.block_rows,
                                   " -DBC=", t.block_cols, " -DRM=", t.rows_per_team, " -DCG=", column_vectors,
                                   " -DVW=", vector_width));
    case ForwardPath::FA1: return choose_program(programs::fa1, flash_options(a, t));
    case ForwardPath::FA2Cpu:
      return choose_program(is_fp8(a.dtype) ? programs::fa2_cpu_fp8 : programs::fa2_cpu,
                            concat(common_options(a), " -DD_PAD=", t.padded_head_dim, " -DBR=", t.block_rows,
                                   " -DBC=", t.block_cols, " -DRM=", t.rows_per_team, " -DCG=", column_vectors,
                                   " -DVW=", vector_width));
    case ForwardPath::FA2: break;
  }
  // fp8 inputs (docs/FP8.md): the codec and the dequantising tile loads join the program; other
  // dtypes build the same program as before
  return choose_program(is_fp8(a.dtype) ? programs::fa2_fp8 : programs::fa2, flash_options(a, t));
}

ProgramChoice mma_program(const ForwardArgs& a, const TilePlan& plan, MmaKind kind) {
  // fa2_mma.cl over the operand file of its dtype and kind (kernels/programs.txt)
  const std::vector<std::string>& files =
      is_fp8(a.dtype)          ? (kind == MmaKind::Wgmma ? programs::fa2_mma_wgmma_e4m3 : programs::fa2_mma_e4m3)
      : is_tf32(a)             ? programs::fa2_mma_tf32
      : kind == MmaKind::Wgmma ? programs::fa2_mma_wgmma
                               : programs::fa2_mma_f16;
  const std::size_t warps = plan.work_group_size / 32;
  return choose_program(
      files,
      concat(common_options(a), " -DWARPS=", warps, " -DMT=", plan.block_rows / (16 * warps), " -DBC=",
             plan.block_cols, " -DSTAGES=", plan.stages, " -DLAZY_RESCALE=", plan.lazy_rescale ? 1 : 0,
             " -DVEC_LOAD=", rows_are_16_byte_aligned(a) ? 1 : 0, " -DPAIR_IO=", rows_are_pair_aligned(a) ? 1 : 0,
             " -DQUAD_IO=", rows_are_quad_aligned(a) ? 1 : 0,
             " -DO_VEC_STORE=", o_rows_are_16_byte_aligned(a) ? 1 : 0,
             // max(c s) = c max(s) needs c > 0, and -inf * c = -inf a c that no flush makes 0; a
             // score transform needs the scaled score
             " -DFOLD_SCALE=", a.scale.value_or(0.0f) >= FLT_MIN && !transforms_scores(a) ? 1 : 0,
             // wgmma means sm_90a, where mbarrier waiters can suspend (try_wait) instead of spinning
             kind == MmaKind::Wgmma ? " -DMBAR_TRY_WAIT=1" : "",
             // FLASHCL_FP8_QLOCAL=1: mma_e4m3.cl's Q in __local memory (absent otherwise: recorded rows unchanged)
             plan.q_local ? " -DQ_LOCAL=1" : "", plan.softcap_ex2 ? " -DSOFTCAP_EX2=1" : ""),
      kind == MmaKind::Wgmma);
}

}  // namespace flashcl::detail
