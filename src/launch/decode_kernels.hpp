// decode_kernels.hpp: what a KV-cache call hands its split-KV attention kernel and its merge, and
// their enqueue, shared by forward_kvcache (decode.cpp) and decode_mma's device probe
// (decode_probe.cpp), so the probe runs the kernels exactly as a call does: the DecodeArgs and
// AttnArgs blocks from the normalised arguments and the plan, the two kernels' argument lists and
// their grids (one work-group per (row block x split, K/V head, sequence), then one per (query row,
// head, sequence)).
#pragma once

#include <vector>

#include "attn_args.h"
#include "base/cl_bindings.hpp"
#include "decode_args.h"
#include "flashcl/flashcl.hpp"
#include "plan/kvcache_plan.hpp"

namespace flashcl::detail {

struct DecodeKernelArgs {
  DecodeArgs decode;  // the decode kernels' block (views, shape, splits, scale in score units)
  AttnArgs attn;      // common.cl's helpers' (window, softcap, shape)
};

// The blocks for the normalised call `a` under `call`.
DecodeKernelArgs decode_kernel_args(const KvCacheArgs& a, const KvCachePlan& call);

// The merge kernel of `plan`'s program: decode_cpu_merge, decode_merge_serial (few splits) or decode_merge.
const char* merge_kernel_name(const DecodePlan& plan);

// An fp8 program's last two kernel arguments (decode_common.cl's CACHE_DESCALE_PARAMS), after the
// `first` ones every program takes.
void set_descale_args(const cl::Kernel& kernel, cl_uint first, const KvCacheArgs& a);

// Sets the arguments of `split` (the plan's attention kernel) and `merge` and enqueues both after
// `wait`, recording their events in `launch`: the split kernel writes each split's partial O and LSE
// into `workspace`, the merge combines them into a.o and a.lse.
void enqueue_split_merge(cl_command_queue queue, const KvCacheArgs& a, const DecodePlan& plan, const cl::Kernel& split,
                         const cl::Kernel& merge, cl_mem workspace, const DecodeKernelArgs& k,
                         const std::vector<cl_event>& wait, Launch& launch);

}  // namespace flashcl::detail
