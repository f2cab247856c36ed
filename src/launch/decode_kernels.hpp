// decode_kernels.hpp: what a KV-cache call hands its split-KV attention kernel and its merge, shared
// by forward_kvcache (decode.cpp) and decode_mma's device probe (decode_probe.cpp), so the probe
// sets up the kernels with the call's own code: the DecodeArgs and AttnArgs blocks from the
// normalised arguments and the plan, the two kernels' argument lists (through the caller's setter:
// the call's is checked and passes the fault hooks, the probe's stays outside them), their grids
// (one work-group per (row block x split, K/V head, sequence), then one per (query row, head,
// sequence)) and the workspace they share.
#pragma once

#include <cstddef>

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

// The workspace bytes of the call `a` under `plan`: each split's partial O (head_dim floats) and
// LSE for every (sequence, head, query row).
std::size_t workspace_for(const KvCacheArgs& a, const DecodePlan& plan);

// The merge kernel of `plan`'s program: decode_cpu_merge, decode_merge_serial (few splits) or decode_merge.
const char* merge_kernel_name(const DecodePlan& plan);

// The split kernel's and the merge's NDRanges.
struct SplitMergeGrids {
  std::size_t split_global[3], split_local[3], merge_global[3], merge_local[3];
};
SplitMergeGrids split_merge_grids(const KvCacheArgs& a, const DecodePlan& plan);

// The arguments of `split` (the plan's attention kernel, up to its fp8 descales: set_descale_args)
// and `merge`, each kernel's through set(kernel, values...): the split kernel writes each split's
// partial O and LSE into `workspace`, the merge combines them into a.o and a.lse.
template <typename Set>
void set_split_merge_args(cl::Kernel& split, cl::Kernel& merge, const KvCacheArgs& a, cl_mem workspace,
                          const DecodeKernelArgs& k, Set set) {
  set(split, a.q.buffer, a.k_cache.buffer, a.v_cache.buffer, workspace, a.cache_seqlens, a.block_table,
      a.cache_batch_idx, a.rotary_cos, a.rotary_sin, a.alibi_slopes, k.decode, k.attn);
  set(merge, workspace, a.o.buffer, a.lse, k.decode);
}

// An fp8 program's last two kernel arguments (decode_common.cl's CACHE_DESCALE_PARAMS), after the
// `first` ones every program takes.
void set_descale_args(const cl::Kernel& kernel, cl_uint first, const KvCacheArgs& a);

}  // namespace flashcl::detail
