// kvcache_plan.hpp: the plan of a KV-cache (decode) call from its normalised arguments, the
// device's facts and the overrides (FLASHCL_DECODE): the cache's load width, the decode planner's
// kernel form, tile and split count (plan_decode.hpp), and the program with its -D options. Pure
// functions, so tests plan for simulated devices; forward_kvcache (launch/decode.cpp) reads the plan.
#pragma once

#include <cstdint>

#include "flashcl/flashcl.hpp"
#include "plan/device_facts.hpp"
#include "plan/overrides.hpp"
#include "plan/plan_decode.hpp"
#include "plan/program_choice.hpp"

namespace flashcl::detail {

inline bool paged(const KvCacheArgs& a) { return a.block_table != nullptr; }
inline bool rotary(const KvCacheArgs& a) { return a.rotary_cos != nullptr; }

// The keys one sequence can hold.
inline std::int64_t capacity_of(const KvCacheArgs& a) {
  return paged(a) ? static_cast<std::int64_t>(a.max_pages) * a.page_size : a.cache_seqlen;
}

// The caches' storage: cache_dtype, or dtype where it is unset (the call normalises it so).
inline DType kvcache_cache_dtype(const KvCacheArgs& a) { return a.cache_dtype.value_or(a.dtype); }

// Elements per cache load: 16 bytes (8 for fp16/bf16, 4 for fp32; 8 bytes for fp8) when d and every cache offset
// and stride are multiples of it, else 4, else 1.
int kvcache_vector_width(const KvCacheArgs& a);

struct KvCachePlan {
  DecodePlan decode;                  // the kernel form, tile and split count (plan_decode.hpp)
  int vec = 1;                        // elements per cache load (kvcache_vector_width)
  bool half_units = false;            // scores in halved natural units (needs_half_units), else base 2
  ProgramChoice program;              // decode_lanes, decode_cpu, decode_stream or decode_split (each
                                      // with the append and merge kernels) and its -D options
  const char* attention_kernel = "";  // the split-KV attention kernel of that program
};

// The plan of the normalised call `a`: Error(OutOfResources) when no tile fits the device,
// Error(InvalidArgument) for a forced split count out of range. resident_per_cu: DecodeRequest's
// (0 unknown; the split kernel's residency once built; kResidentForSizing for the workspace query):
// it moves only the split count, never the program. mma_failed: decode_mma's probe failed on the
// device (DecodeRequest's), so the default plan takes another form.
KvCachePlan plan_kvcache(const DeviceFacts& facts, const KvCacheArgs& a, const Overrides& o, int resident_per_cu = 0,
                         bool mma_failed = false);

}  // namespace flashcl::detail
