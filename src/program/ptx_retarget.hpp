// ptx_retarget.hpp: arch-specific PTX from NVIDIA's OpenCL compiler. That compiler emits PTX for a
// device's base target (sm_90 on an H100), where Hopper's wgmma does not exist. A kernel built
// with -DARCH_PTX_RETARGET writes such instructions behind a PTX comment marker (ARCH_ONLY in
// kernels/nvidia/wgmma_ptx.cl), so the base build passes; retarget_ptx() then removes the markers and
// moves the module to the arch-specific target (sm_90 -> sm_90a), and the driver compiles the
// result as a program binary (program_cache.cpp, BuildRoute::ArchPtx).
#pragma once

#include <string>

namespace flashcl::detail {

// The marker kernels put before arch-specific PTX (must match ARCH_ONLY in the kernels).
inline constexpr const char* kArchOnlyMarker = "//sm_90a ";

// `ptx` with every kArchOnlyMarker removed and ".target sm_NN" made ".target sm_NNa" (left as it
// is when it already names sm_NNa). Fails (Status::BuildFailure) when the text has no
// ".target sm_NN" line or no marker at all.
std::string retarget_ptx(const std::string& ptx);

}  // namespace flashcl::detail
