// decode_probe.cpp: decode_mma's device probe (decode_probe.hpp). The problem: two sequences of
// 150 and 37 keys in a contiguous cache of 160 rows, 8 query heads over 2 K/V heads (GQA groups of
// 4, packed as decode_mma packs them), one query each, d = 64, three key splits (so a split of the
// short sequence sees no key: the merge's LSE = -inf path), values multiples of 1/64 in [-1, 1)
// (exact in fp16 and bf16), each row's shifted by 5 (probe_value repeats every 128 elements: two
// rows at d = 64, so unshifted every key of a head would be the same and a kernel reading the wrong
// keys or sequence would pass). It is planned and its arguments and grids set up by the call's own
// code (kvcache_plan.hpp, decode_kernels.hpp) under FLASHCL_DECODE=mma, one plain form (contiguous,
// one query, the default tile): like the other probes it answers whether the device builds and
// computes the kernel, not every form's every switch, whose build failures stay the call's errors
// with their logs. Built and run outside the program cache, its counters and the fault hooks: the
// probe is the library's business, not part of the caller's call. O and LSE must lie within 1e-2
// of float64 (P rounded to 16 bits costs ~1e-3; a kernel reading another sequence's cache rows is
// off by 0.02, a wrong head or fragment layout by ~0.1 or more).
#include "launch/decode_probe.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <tuple>
#include <vector>

#include "base/cl_bindings.hpp"
#include "base/errors.hpp"
#include "launch/decode.hpp"
#include "launch/decode_kernels.hpp"
#include "launch/probe.hpp"
#include "plan/device_facts.hpp"
#include "plan/kvcache_plan.hpp"
#include "program/program_cache.hpp"

namespace flashcl::detail {
namespace {

constexpr int kBatch = 2, kHeads = 8, kHeadsKv = 2, kHeadDim = 64, kCapacity = 160, kSplits = 3;
constexpr int kLengths[kBatch] = {150, 37};

// float64 O (B, H, d) and natural LSE (B, H) of one query per head over the first kLengths[b] keys.
void reference(const std::vector<float>& q, const std::vector<float>& k, const std::vector<float>& v,
               std::vector<double>& o, std::vector<double>& lse) {
  const int group = kHeads / kHeadsKv;
  const double scale = 1.0 / std::sqrt(static_cast<double>(kHeadDim));
  o.assign(static_cast<std::size_t>(kBatch) * kHeads * kHeadDim, 0.0);
  lse.assign(static_cast<std::size_t>(kBatch) * kHeads, 0.0);
  for (int b = 0; b < kBatch; ++b)
    for (int h = 0; h < kHeads; ++h) {
      const int hk = h / group, n = kLengths[b];
      const std::size_t qa = (static_cast<std::size_t>(b) * kHeads + h) * kHeadDim;
      auto at = [&](int j) { return ((static_cast<std::size_t>(b) * kCapacity + j) * kHeadsKv + hk) * kHeadDim; };
      std::vector<double> w(n);
      double mx = -INFINITY, sum = 0.0;
      for (int j = 0; j < n; ++j) {
        double dot = 0.0;
        for (int c = 0; c < kHeadDim; ++c) dot += double(q[qa + c]) * double(k[at(j) + c]);
        mx = std::max(mx, w[j] = dot * scale);
      }
      for (int j = 0; j < n; ++j) sum += (w[j] = std::exp(w[j] - mx));
      for (int c = 0; c < kHeadDim; ++c) {
        double acc = 0.0;
        for (int j = 0; j < n; ++j) acc += w[j] * double(v[at(j) + c]);
        o[qa + c] = acc / sum;
      }
      lse[static_cast<std::size_t>(b) * kHeads + h] = mx + std::log(sum);
    }
}

ProbeResult run_probe(cl_context context, cl_device_id device, DType dtype, std::string* reason) {
  const std::string what = concat("tensor-core decode probe (", to_string(dtype), ")");
  return guarded_probe(
      what,
      [&] {
        cl::Context ctx(context, true);
        cl::CommandQueue queue(ctx, cl::Device(device, true));
        std::vector<float> q(static_cast<std::size_t>(kBatch) * kHeads * kHeadDim),
            k(static_cast<std::size_t>(kBatch) * kCapacity * kHeadsKv * kHeadDim), v(k.size());
        auto value = [](std::size_t i, int salt) { return probe_value(i + i / kHeadDim * 5, salt, 11, 64); };
        for (std::size_t i = 0; i < q.size(); ++i) q[i] = value(i, 1);
        for (std::size_t i = 0; i < k.size(); ++i) k[i] = value(i, 2), v[i] = value(i, 3);
        cl::Buffer qb = probe_upload(ctx, dtype, q), kb = probe_upload(ctx, dtype, k), vb = probe_upload(ctx, dtype, v);
        std::vector<std::int32_t> lengths(kLengths, kLengths + kBatch);
        cl::Buffer lengths_b(ctx, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, lengths.size() * 4, lengths.data());
        cl::Buffer ob(ctx, CL_MEM_READ_WRITE, q.size() * 2), lse_b(ctx, CL_MEM_READ_WRITE, kBatch * kHeads * 4);

        KvCacheArgs args;
        args.batch = kBatch;
        args.heads = kHeads;
        args.heads_kv = kHeadsKv;
        args.seqlen_q = 1;
        args.head_dim = kHeadDim;
        args.dtype = dtype;
        args.cache_seqlen = kCapacity;
        args.num_splits = kSplits;
        args.q.buffer = qb();
        args.o.buffer = ob();
        args.k_cache.buffer = kb();
        args.v_cache.buffer = vb();
        args.cache_seqlens = lengths_b();
        args.lse = lse_b();
        const KvCacheArgs a = normalize_kvcache(args);
        Overrides forced = process_overrides();
        forced.decode = "mma";
        const KvCachePlan call = plan_kvcache(device_facts(device), a, forced);
        if (!call.decode.mma)
          return probe_failed(what, concat("decode_mma does not fit the device (", call.decode.reason, ")"), reason);

        cl::Program program = build_uncached(context, device, *call.program.files, call.program.options,
                                             call.program.arch_ptx ? BuildRoute::ArchPtx : BuildRoute::Source);
        cl::Kernel split(program, call.attention_kernel), merge(program, merge_kernel_name(call.decode));
        cl::Buffer work(ctx, CL_MEM_READ_WRITE, workspace_for(a, call.decode));
        // the C++ bindings' setArg and enqueue (cl::Error, which the guard takes), not the library's
        // hooked ones: a fault injected for a caller's call must not land here and turn the form off
        set_split_merge_args(split, merge, a, work(), decode_kernel_args(a, call),
                             [](cl::Kernel& kernel, const auto&... values) {
                               cl_uint index = 0;
                               (kernel.setArg(index++, sizeof values, &values), ...);
                             });
        const SplitMergeGrids grids = split_merge_grids(a, call.decode);
        auto range = [](const std::size_t r[3]) { return cl::NDRange(r[0], r[1], r[2]); };
        queue.enqueueNDRangeKernel(split, cl::NullRange, range(grids.split_global), range(grids.split_local));
        queue.enqueueNDRangeKernel(merge, cl::NullRange, range(grids.merge_global), range(grids.merge_local));
        std::vector<std::uint16_t> bits(q.size());
        std::vector<float> lse(static_cast<std::size_t>(kBatch) * kHeads);
        queue.enqueueReadBuffer(ob, CL_TRUE, 0, bits.size() * 2, bits.data());
        queue.enqueueReadBuffer(lse_b, CL_TRUE, 0, lse.size() * 4, lse.data());
        const std::vector<float> o = from_storage(dtype, bits);

        std::vector<double> want_o, want_lse;
        reference(q, k, v, want_o, want_lse);
        for (std::size_t i = 0; i < o.size(); ++i)
          if (!(std::fabs(o[i] - want_o[i]) <= 1e-2))
            return probe_failed(what, concat("O[", i, "] = ", o[i], ", float64 says ", want_o[i]), reason);
        for (std::size_t i = 0; i < lse.size(); ++i)
          if (!(std::fabs(lse[i] - want_lse[i]) <= 1e-2))
            return probe_failed(what, concat("LSE[", i, "] = ", lse[i], ", float64 says ", want_lse[i]), reason);
        return ProbeResult::Pass;
      },
      reason);
}

}  // namespace

ProbeResult decode_mma_probe(cl_context context, cl_device_id device, DType dtype, std::string* why) {
  static ProbeMemo<std::tuple<cl_device_id, DType>> memo;
  return memo.result(
      std::make_tuple(device, dtype), [&](std::string* reason) { return run_probe(context, device, dtype, reason); },
      why);
}

}  // namespace flashcl::detail
