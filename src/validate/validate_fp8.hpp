// validate_fp8.hpp: the rules of fp8 calls (docs/FP8.md) that validate.cpp applies: out_dtype and
// the paths that take fp8, the descale buffers' sizes, and the optional read-back of their values.
#pragma once

#include <CL/cl.h>

#include <cstddef>
#include <vector>

#include "flashcl/flashcl.hpp"

namespace flashcl::detail {

// Shape-level rules, before strides are resolved: out_dtype resolved (fp8: BF16 unless set; other
// dtypes: must be unset or equal, and no fp8 field set), the algorithm (fp8: fa2 or auto),
// quant_block >= 0, v_transposed (not with varlen; zero strides: dense (B, H_kv, d, Nk)).
void normalize_fp8(ForwardArgs& a);

// Floats each descale buffer holds: (B, H_kv), or with quant_block n: (B, H, ⌈Nq/n⌉) for q and
// (B, H_kv, ⌈Nk/n⌉) for k and v.
struct DescaleCounts {
  std::size_t q = 0, k = 0, v = 0;
};
DescaleCounts descale_counts(const ForwardArgs& a);

// check_device_data: reads the three descale buffers back (blocking, after `wait`) and rejects an
// entry that is not finite and > 0, naming the buffer and the entry.
void check_descale_values(cl_command_queue queue, const ForwardArgs& a, const std::vector<cl_event>& wait);

}  // namespace flashcl::detail
