// head_dims.hpp: the head dims the forward takes, stated once. Validation rejects others by name
// (validate.cpp); the planners repeat the check for callers that reach them directly (tests, the
// fuzzer) and take their ranges from here, so raising a limit is this line plus what the kernels
// need for it (team.cl's private tiles against the register budget, the tensor-core operand files).
#pragma once

namespace flashcl::detail {

constexpr int kMaxHeadDim = 256;     // standard, fa1, fa2 and the CPU-shaped fa2
constexpr int kMaxMmaHeadDim = 128;  // the NVIDIA tensor-core fa2 (larger heads run the portable fa2)

}  // namespace flashcl::detail
