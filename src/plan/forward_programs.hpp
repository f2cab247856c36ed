// forward_programs.hpp: which program a forward path runs and its -D build options, as pure
// functions of the normalised arguments and the planned tiles (call_plan.cpp puts them into the
// call plan; the tensor-core probe asks mma_program for its own small call). Variant switches
// appear only when on, so the plain path's program and cache key stay what they were.
#pragma once

#include <string>

#include "flashcl/flashcl.hpp"
#include "plan/call_plan.hpp"
#include "plan/mma_plan.hpp"
#include "plan/program_choice.hpp"
#include "plan/tile_planner.hpp"

namespace flashcl::detail {

// Whether a program keeps scores in common.cl's halved natural units (HALF_UNITS) instead of base 2,
// where base 2 could overflow fp32: a softcap, ALiBi slopes or an additive bias (of any finite
// size), or a scale past FLT_MAX / log2 e. The forward's and the decode's programs both ask here.
bool needs_half_units(float scale, float softcap, bool alibi, bool bias);

// Whether a window bounds either side (flash-attn's window_size with a side other than -1): the
// WINDOW switch of every program, the forward's and the KV cache's.
inline bool windowed(const Window& w) { return w.left >= 0 || w.right >= 0; }

// Whether a call changes every score (SCORE_TRANSFORM: a softcap, ALiBi, a boolean mask or a bias).
bool transforms_scores(const ForwardArgs& args);

// -D options shared by every forward and backward program: dtype, head dim, causal, and the variant
// switches that are on (GQA, WINDOW, ALIBI, SOFTCAP, MASK_KIND, VARLEN, the fp8 switches, HALF_UNITS).
std::string common_options(const ForwardArgs& args);

// -D options of an fa1/fa2 program: common_options() plus the tile plan.
std::string flash_options(const ForwardArgs& args, const TilePlan& plan);

// The program of a portable path (standard, fa1, fa2 or its fp8 form, the CPU-shaped fa2 with its
// vector width and column vectors) with `tiles`.
ProgramChoice forward_program(ForwardPath path, const ForwardArgs& args, const TilePlan& tiles, int vector_width,
                              int column_vectors);

// The tensor-core program: fa2_mma.cl over the operand file of the dtype and `kind`, shaped by
// `tiles`, with the copy and access forms the tensors' strides allow (wgmma: through retargeted PTX).
ProgramChoice mma_program(const ForwardArgs& args, const TilePlan& tiles, MmaKind kind);

}  // namespace flashcl::detail
