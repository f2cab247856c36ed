// decode_probe.hpp: the one-time device probe of decode_mma (kernels/nvidia/decode_mma.cl), as the
// forward's and the backward's tensor-core paths have theirs (probe.hpp): before a device's first
// KV-cache call on the tensor cores, the kernel and its merge run a small problem and must match a
// float64 reference. decode_mma needs cp.async with the .L2::256B hint (PTX ISA 7.4) and mma.sync;
// a driver that cannot build it, or a device that computes it wrong, then leaves the planner's
// default to the next form (decode.cpp) instead of failing every call, and a forced
// FLASHCL_DECODE=mma* gets an error saying why.
#pragma once

#include <string>

#include <CL/cl.h>

#include "flashcl/flashcl.hpp"
#include "launch/probe.hpp"

namespace flashcl::detail {

// decode_mma's probe on `device` for 16-bit caches of `dtype` (F16, BF16): run once per (device,
// dtype) in `context` on a queue of its own, remembered for the process; Transient (it ran out of
// resources) is not remembered, so the next call asks again. On failure, *why (where given) says
// why: the build log, an OpenCL error, or the first element off the reference.
ProbeResult decode_mma_probe(cl_context context, cl_device_id device, DType dtype, std::string* why = nullptr);

}  // namespace flashcl::detail
