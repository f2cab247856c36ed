// kvcache_plan.cpp: a KV-cache call's load width, decode plan and program (kvcache_plan.hpp). The
// option string is byte for byte the one forward_kvcache composed before (tests/data/plan_options.txt).
#include "plan/kvcache_plan.hpp"

#include "base/errors.hpp"
#include "plan/forward_programs.hpp"

namespace flashcl::detail {

// (vloadn needs only element alignment, but the rows of a wide load must not straddle a head or a
// position)
// An fp8 cache loads 8 bytes (8 elements) where allowed, not 16: the kernels' register arrays and
// lane counts are shaped for at most 8 elements a load (16 would halve decode_lanes' lanes per key
// and double every work-item's query and accumulator registers).
int kvcache_vector_width(const KvCacheArgs& a) {
  const auto fits = [&](int w) {
    if (a.head_dim % w != 0) return false;
    for (const Tensor* t : {&a.k_cache, &a.v_cache})
      if (t->offset % w != 0 || t->batch_stride % w != 0 || t->seq_stride % w != 0 || t->head_stride % w != 0)
        return false;
    return true;
  };
  if (kvcache_cache_dtype(a) != DType::F32 && fits(8)) return 8;
  return fits(4) ? 4 : 1;
}

namespace {

// FLASHCL_DECODE=lanes-wide16 (opt-in): an fp8 cache at 16 bytes (16 elements) a load where the
// layout allows, for decode_lanes' wide form only (plan_kvcache falls back to the usual width when
// the planner gives the call another kernel).
int wide_vector_width(const KvCacheArgs& a, const Overrides& o) {
  const int usual = kvcache_vector_width(a);
  if (o.decode != "lanes-wide16" || !is_fp8(kvcache_cache_dtype(a)) || usual != 8 || a.head_dim % 16 != 0) return usual;
  for (const Tensor* t : {&a.k_cache, &a.v_cache})
    if (t->offset % 16 != 0 || t->batch_stride % 16 != 0 || t->seq_stride % 16 != 0 || t->head_stride % 16 != 0)
      return usual;
  return 16;
}

DecodePlan plan_decode_form(const DeviceFacts& facts, const KvCacheArgs& a, const Overrides& o, int vec, int resident,
                            bool mma_failed) {
  DecodeRequest r;
  r.batch = a.batch;
  r.heads = a.heads;
  r.heads_kv = a.heads_kv;
  r.seqlen_q = a.seqlen_q;
  r.head_dim = a.head_dim;
  r.max_keys = static_cast<int>(capacity_of(a));
  r.page_size = paged(a) ? a.page_size : 0;
  r.vec = vec;
  r.num_splits = a.num_splits;
  r.fp8_cache = is_fp8(kvcache_cache_dtype(a));
  r.rotary = rotary(a);
  r.form = o.decode;
  r.resident_per_cu = resident;
  r.mma_failed = mma_failed;
  return plan_decode(facts, r);
}

// NVIDIA GPUs of compute capability 8.9 or more decode fp8 in hardware (cvt.rn.f16x2.e4m3x2 /
// .e5m2x2, PTX ISA 7.8, sm_89): decode_common.cl's vector loads take it under -DNV_FP8_CVT=1. The
// default since it passed the fp8 decode tests on an H100 (cc 9.0) and read e4m3 caches 1.6-2x
// faster than the bit decode (docs/FP8.md); FLASHCL_FP8_CVT=0 keeps the portable bit decode.
bool nv_fp8_cvt(const DeviceFacts& f, const Overrides& o) {
  return o.fp8_cvt && f.is_nvidia() && f.kind == DeviceKind::GPU && f.nv_compute_major * 10 + f.nv_compute_minor >= 89;
}

// The variants' switches, after the form's own options (the same order for every form).
std::string variant_options(const KvCacheArgs& a, bool half_units) {
  std::string options;
  if (rotary(a)) options += concat(" -DROTARY=", a.rotary_interleaved ? 1 : 2);
  if (windowed(a.window)) options += " -DWINDOW=1";
  if (a.alibi_slopes != nullptr) options += " -DALIBI=1";
  if (a.softcap > 0.0f) options += " -DSOFTCAP=1";
  if (half_units) options += " -DHALF_UNITS=1";
  return options;
}

// The switches every decode program starts with: storage, head dim, causal, cache layout, load width.
std::string call_options(const KvCacheArgs& a, int vec) {
  return concat("-cl-std=CL1.2 -DDTYPE=", static_cast<int>(a.dtype), " -DHEAD_DIM=", a.head_dim,
                " -DCAUSAL=", a.causal ? 1 : 0, " -DVARLEN=1 -DPAGED=", paged(a) ? 1 : 0,
                " -DBATCH_IDX=", a.cache_batch_idx != nullptr ? 1 : 0, " -DVEC=", vec);
}

// decode_mma.cl's program: the fa2_mma geometry (WARPS warps of one m-tile each: BR and WG_SIZE
// from mma_ptx.cl) and its ring, no decode_lanes switches.
ProgramChoice decode_mma_program(const KvCachePlan& p, const KvCacheArgs& a) {
  const std::string options = call_options(a, p.vec) +
                              concat(" -DWARPS=", p.decode.work_group_size / 32, " -DMT=1 -DBC=", p.decode.block_cols,
                                     " -DRING=", p.decode.mma_ring) +
                              (p.decode.mma_run > 0 ? concat(" -DDM_RUN=", p.decode.mma_run) : "") +
                              variant_options(a, p.half_units);
  return choose_program(programs::decode_mma, options);
}

ProgramChoice kvcache_program(const DeviceFacts& facts, const KvCacheArgs& a, const DecodePlan& plan, int vec,
                              bool half_units, const Overrides& o) {
  std::string options = call_options(a, vec) + concat(" -DBR=", plan.block_rows, " -DBC=", plan.block_cols,
                                                      " -DWG_SIZE=", plan.work_group_size);
  if (plan.stream || plan.lanes) options += concat(" -DKPT=", plan.keys_per_thread);
  if (plan.lane_shuffle) options += " -DLANE_SHUFFLE=1";
  if (plan.lane_pipeline) options += " -DLANE_PIPELINE=1";
  if (plan.lane_wide) options += " -DLANE_WIDE=1";
  if (plan.lane_page_kpt) options += " -DLANE_PAGE_KPT=1";
  if (plan.lane_prefetch > 0) options += concat(" -DLANE_PREFETCH=", plan.lane_prefetch);
  if (plan.lane_async > 0) options += concat(" -DLANE_ASYNC=", plan.lane_async);
  if (plan.cpu)
    options += concat(" -DVW=", plan.vector_width, " -DHB=", plan.heads_per_item,
                      " -DCPU_PREFETCH=", plan.cpu_prefetch ? 1 : 0);
  if (paged(a)) options += concat(" -DPAGE_SLOTS=", plan.page_slots);
  options += variant_options(a, half_units);
  // An fp8 cache: its storage after every other switch (so the rows of other calls are unchanged)
  // and the program with the codec (programs.txt's *_fp8).
  const DType cache = kvcache_cache_dtype(a);
  if (is_fp8(cache)) {
    options += concat(" -DCACHE_DTYPE=", static_cast<int>(cache));
    // the hardware decode for the NVIDIA forms (decode_cpu keeps its own VW-wide decode)
    if (!plan.cpu && nv_fp8_cvt(facts, o)) options += " -DNV_FP8_CVT=1";
    return choose_program(plan.lanes    ? programs::decode_lanes_fp8
                          : plan.cpu    ? programs::decode_cpu_fp8
                          : plan.stream ? programs::decode_stream_fp8
                                        : programs::decode_split_fp8,
                          options);
  }
  const std::vector<std::string>& files = plan.lanes    ? programs::decode_lanes
                                          : plan.cpu    ? programs::decode_cpu
                                          : plan.stream ? programs::decode_stream
                                                        : programs::decode_split;
  return choose_program(files, options);
}

}  // namespace

KvCachePlan plan_kvcache(const DeviceFacts& facts, const KvCacheArgs& a, const Overrides& o, int resident_per_cu,
                         bool mma_failed) {
  KvCachePlan p;
  p.vec = wide_vector_width(a, o);
  p.decode = plan_decode_form(facts, a, o, p.vec, resident_per_cu, mma_failed);
  if (p.vec == 16 && !p.decode.lanes) {  // 16 elements a load only in decode_lanes' wide form
    p.vec = kvcache_vector_width(a);
    p.decode = plan_decode_form(facts, a, o, p.vec, resident_per_cu, mma_failed);
  }
  // decided as for the forward (common.cl); the scale is converted to that unit in decode.cpp
  p.half_units = needs_half_units(*a.scale, a.softcap, a.alibi_slopes != nullptr, false);
  p.program = p.decode.mma ? decode_mma_program(p, a) : kvcache_program(facts, a, p.decode, p.vec, p.half_units, o);
  const DecodePlan& d = p.decode;
  p.attention_kernel = d.mma      ? "decode_mma"
                       : d.lanes  ? "decode_lanes"
                       : d.cpu    ? "decode_cpu"
                       : d.stream ? "decode_stream"
                                  : "decode_split";
  return p;
}

}  // namespace flashcl::detail
