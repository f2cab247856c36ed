// test_plan_options.cpp: which program every kind of call builds, and its exact -D option string,
// over simulated devices (NVIDIA GPUs of compute capability 8.0, 8.9 and 9.0 and one without
// tensor cores, another vendor's GPU, an accelerator, PoCL-like CPUs), dtypes, head dims, the
// variants (causal, window, softcap, ALiBi, masks, bias gradient, varlen, GQA, fp8's switches,
// unaligned tensors, a scale past base 2's range), the overrides that pick a form, the backward
// (portable, CPU-shaped and tensor-core, atomic and deterministic) and the KV-cache forms (lanes, cpu, stream,
// staged; paged, rotary). One line per program, as the plans hold it (CallPlan::program and each
// tensor-core candidate's, backward_programs.hpp, KvCachePlan::program), compared with
// tests/data/plan_options.txt, which was recorded from the launchers' own option code before the
// plans held the programs (issue 18): the NVIDIA kernels' speed was measured with these strings,
// so an identical recording means identical binaries. The whole new table is written next to the
// test binary (plan_options.actual.txt), so an intended change is reviewed as a diff and copied over.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "base/errors.hpp"
#include "launch/decode.hpp"  // normalize_kvcache: the KV calls as forward_kvcache plans them
#include "plan/backward_programs.hpp"
#include "plan/bwd_mma_plan.hpp"
#include "plan/call_plan.hpp"
#include "plan/forward_programs.hpp"
#include "plan/kvcache_plan.hpp"
#include "plan/plan_backward.hpp"
#include "recorded_table.hpp"
#include "simulated_devices.hpp"

namespace flashcl::detail {
namespace {

struct Named {
  std::string name;
  DeviceFacts facts;
};

std::vector<Named> devices() {
  std::vector<Named> out;
  for (auto [kib, major, minor] : {std::tuple{48, 8, 0}, {100, 8, 9}, {228, 9, 0}, {48, 9, 0}, {48, 0, 0}}) {
    DeviceFacts f = simulated_nvidia_gpu(kib, major, minor);
    f.compute_units = 132;
    out.push_back({"nvidia" + std::to_string(kib) + "k_cc" + std::to_string(major) + std::to_string(minor), f});
  }
  DeviceFacts amd = simulated_nvidia_gpu(64);
  amd.vendor = "Advanced Micro Devices, Inc.";
  amd.max_work_group_size = 256;
  amd.work_group_multiple = 64;
  amd.compute_units = 96;
  out.push_back({"amd64k_wg256", amd});
  DeviceFacts other = simulated_nvidia_gpu(32);
  other.vendor = "Some Accelerator";
  other.kind = DeviceKind::Other;
  other.compute_units = 8;
  out.push_back({"other32k", other});
  for (auto [kib, width] : {std::pair{1024, 8}, {1024, 16}, {64, 4}}) {
    DeviceFacts f;
    f.vendor = "AuthenticAMD";
    f.kind = DeviceKind::CPU;
    f.local_mem_bytes = static_cast<std::size_t>(kib) * 1024;
    f.max_work_group_size = 4096;
    f.work_group_multiple = 8;
    f.float_vector_width = width;
    f.compute_units = 2;
    out.push_back({"cpu" + std::to_string(kib) + "k_f" + std::to_string(width), f});
  }
  return out;
}

// A handle the planners only compare with null.
cl_mem some_buffer() { return reinterpret_cast<cl_mem>(std::uintptr_t{0x1000}); }

void dense(Tensor& t, int seqlen, int heads, int d, std::int64_t offset = 0) {
  t.offset = offset;
  t.head_stride = d;
  t.seq_stride = static_cast<std::int64_t>(heads) * d;
  t.batch_stride = t.seq_stride * seqlen;
}

// The text of `f()`, or the error's status and message (a choice too: "nothing fits" must stay so).
std::string error_text(const Error& e) {
  return "error " + std::to_string(static_cast<int>(e.status())) + ": " + e.what();
}

template <typename F>
std::string outcome(F&& f) {
  try {
    return f();
  } catch (const Error& e) {
    return error_text(e);
  }
}

std::string describe(const ProgramChoice& p) {
  return std::string(p.name) + (p.arch_ptx ? " (arch PTX)" : "") + " | " + p.options;
}

// ---- forward ----

// A normalised forward call: dense strides, the scale resolved, one variant switched on.
ForwardArgs forward_call(Algorithm algorithm, DType dtype, int d, const std::string& variant) {
  ForwardArgs a;
  a.batch = 2;
  a.heads = 4;
  a.heads_kv = 4;
  a.seqlen_q = a.seqlen_k = 512;
  a.head_dim = d;
  a.dtype = dtype;
  a.algorithm = algorithm;
  a.scale = 1.0f / std::sqrt(static_cast<float>(d));
  if (is_fp8(dtype)) a.out_dtype = DType::BF16;
  if (variant == "causal") a.causal = true;
  if (variant == "gqa") a.heads_kv = 2;
  if (variant == "window") a.window = {64, 0};
  if (variant == "softcap") a.softcap = 30.0f;
  if (variant == "alibi") a.alibi_slopes = some_buffer();
  if (variant == "mask_bool") a.mask = {MaskKind::Bool, some_buffer()};
  if (variant == "bias") a.mask = {MaskKind::Bias, some_buffer()};
  if (variant == "varlen") a.cu_seqlens_q = a.cu_seqlens_k = some_buffer();
  if (variant == "big_scale") a.scale = 1e38f;
  if (variant == "fp8_block") a.fp8.quant_block = 64;
  if (variant == "fp8_v_transposed") a.fp8.v_transposed = true;
  if (variant == "fp8_out_f16") a.out_dtype = DType::F16;
  const std::int64_t offset = variant == "offset1" ? 1 : 0;
  dense(a.q, a.seqlen_q, a.heads, d, offset);
  dense(a.o, a.seqlen_q, a.heads, d, offset);
  dense(a.k, a.seqlen_k, a.heads_kv, d, offset);
  dense(a.v, a.seqlen_k, a.heads_kv, d, offset);
  return a;
}

// The programs of a forward call: every tensor-core candidate's, then the path's.
std::vector<std::string> forward_programs(const DeviceFacts& facts, const ForwardArgs& a, const Overrides& o) {
  std::vector<std::string> lines;
  try {
    const CallPlan call = plan_call(facts, a, o);
    for (const MmaCandidate& c : call.tensor_cores)
      lines.push_back(std::string(c.kind == MmaKind::Wgmma ? "wgmma" : "mma.sync") + ": " +
                      describe(c.program));
    for (const StandardMmaCandidate& c : call.standard_mma) lines.push_back("standard_mma: " + describe(c.program));
    lines.push_back("path: " + describe(call.program));
  } catch (const Error& e) {
    lines.push_back(error_text(e));
  }
  return lines;
}

void add_forward(std::vector<std::string>& lines) {
  const std::vector<std::string> variants = {"plain",   "causal", "gqa",    "window",    "softcap",
                                             "alibi",   "mask_bool", "bias", "varlen", "big_scale", "offset1"};
  struct Forced {
    std::string name;
    Overrides o;
  };
  std::vector<Forced> forced(8);
  forced[1].name = " FLASHCL_FA2_CPU=0", forced[1].o.fa2_cpu = "0";
  forced[2].name = " FLASHCL_FA2_CPU=1", forced[2].o.fa2_cpu = "1";
  forced[3].name = " FLASHCL_WGMMA=0", forced[3].o.wgmma = "0";
  forced[4].name = " FLASHCL_WGMMA=1", forced[4].o.wgmma = "1";
  forced[5].name = " FLASHCL_TILE=32x32", forced[5].o.tile = "32x32";
  forced[6].name = " FLASHCL_MMA_TILE=4x64", forced[6].o.mma_tile = "4x64";
  forced[7].name = " FLASHCL_MMA=0", forced[7].o.mma_off = true;
  for (const Named& dev : devices()) {
    const bool nvidia = dev.facts.is_nvidia() && dev.facts.kind == DeviceKind::GPU;
    const auto record = [&](const std::string& at, const ForwardArgs& a, const Overrides& o) {
      for (const std::string& line : forward_programs(dev.facts, a, o)) lines.push_back(at + " " + line);
    };
    for (int d : {64, 100, 128, 256}) {
      const std::string dim = " d" + std::to_string(d) + " ";
      // fa2 (and the tensor cores, the CPU-shaped fa2) with every variant
      for (DType dtype : {DType::F32, DType::F16, DType::BF16})
        for (const std::string& variant : variants) {
          const ForwardArgs a = forward_call(Algorithm::FA2, dtype, d, variant);
          const std::string at = "fwd " + dev.name + dim + to_string(dtype) + " fa2 " + variant;
          record(at, a, Overrides{});
          if (nvidia && (variant == "window" || variant == "varlen")) {  // fa2_mma.cl's variants, when off
            Overrides off;
            off.tensor_core_variants = false;
            record(at + " FLASHCL_TENSOR_CORE_VARIANTS=0", a, off);
          }
          if (dtype != DType::F16 || (variant != "plain" && variant != "causal") ||
              (!nvidia && dev.facts.kind != DeviceKind::CPU))
            continue;
          for (std::size_t i = 1; i < forced.size(); ++i) record(at + forced[i].name, a, forced[i].o);
        }
      // standard and fa1: their tiles with the switches that change their programs most
      for (Algorithm alg : {Algorithm::Standard, Algorithm::FA1})
        for (DType dtype : {DType::F32, DType::F16})
          for (const std::string& variant : {"plain", "causal", "bias", "varlen"})
            record("fwd " + dev.name + dim + to_string(dtype) + " " + to_string(alg) + " " + variant,
                   forward_call(alg, dtype, d, variant), Overrides{});
      if (d == 100 || d == 256) continue;
      for (const std::string& variant : {"plain", "causal", "gqa", "fp8_block", "fp8_v_transposed", "fp8_out_f16"})
        record("fwd " + dev.name + dim + "e4m3 fa2 " + variant, forward_call(Algorithm::FA2, DType::E4M3, d, variant),
               Overrides{});
      record("fwd " + dev.name + dim + "e5m2 fa2 plain", forward_call(Algorithm::FA2, DType::E5M2, d, "plain"),
             Overrides{});
    }
  }
}

// ---- backward ----

BackwardArgs backward_call(Algorithm algorithm, DType dtype, int d, const std::string& variant) {
  BackwardArgs g;
  const std::string forward_variant = variant == "dbias" ? "bias" : variant == "deterministic" ? "plain" : variant;
  g.forward = forward_call(algorithm, dtype, d, forward_variant);
  const ForwardArgs& a = g.forward;
  const std::int64_t offset = variant == "offset1" ? 1 : 0;
  dense(g.d_o, a.seqlen_q, a.heads, d, offset);
  dense(g.d_q, a.seqlen_q, a.heads, d, offset);
  dense(g.d_k, a.seqlen_k, a.heads_kv, d, offset);
  dense(g.d_v, a.seqlen_k, a.heads_kv, d, offset);
  if (variant == "dbias") g.d_bias = {MaskKind::Bias, some_buffer()};
  g.deterministic = variant == "deterministic";
  return g;
}

std::vector<std::string> backward_programs(const DeviceFacts& facts, const BackwardArgs& g, const Overrides& o) {
  const ForwardArgs& a = g.forward;
  std::vector<std::string> lines;
  lines.push_back("portable: " + outcome([&] {
                    return describe(backward_program(a, g.d_bias.kind != MaskKind::None, plan_backward(facts, a.head_dim)));
                  }));
  lines.push_back("cpu form: " + outcome([&]() -> std::string {
                    if (!bwd_cpu_takes(facts, a, o)) return "not taken";
                    return describe(bwd_cpu_program(a, g.d_bias.kind != MaskKind::None, plan_bwd_cpu(facts, a)));
                  }));
  lines.push_back("tensor cores: " + outcome([&]() -> std::string {
                    const BwdMmaChoice mma = plan_bwd_mma(facts, g, o);
                    return mma.eligible ? describe(mma.program) : "not eligible";
                  }));
  return lines;
}

void add_backward(std::vector<std::string>& lines) {
  struct Forced {
    std::string name;
    Overrides o;
  };
  std::vector<Forced> forced(6);
  forced[1].name = " FLASHCL_BWD_MMA=1", forced[1].o.bwd_mma = "1";
  forced[2].name = " FLASHCL_BWD_MMA_TILE=4x64x2", forced[2].o.bwd_mma_tile = "4x64x2";
  forced[3].name = " FLASHCL_BWD_MMA=1 FLASHCL_BWD_MMA_DQ_TILE=32x1", forced[3].o.bwd_mma = "1";
  forced[3].o.bwd_mma_dq_tile = "32x1";
  forced[4].name = " FLASHCL_BWD_MMA_DQ=atomic", forced[4].o.bwd_mma_dq = "atomic";
  forced[5].name = " FLASHCL_BWD_CPU=0", forced[5].o.bwd_cpu = "0";
  const std::vector<std::string> variants = {"plain",     "causal", "gqa",    "window",        "softcap", "alibi",
                                             "mask_bool", "dbias",  "varlen", "deterministic", "offset1"};
  for (const Named& dev : devices()) {
    const bool nvidia = dev.facts.is_nvidia() && dev.facts.kind == DeviceKind::GPU;
    const auto record = [&](const std::string& at, const BackwardArgs& g, const Overrides& o) {
      for (const std::string& line : backward_programs(dev.facts, g, o)) lines.push_back(at + " " + line);
    };
    for (int d : {64, 100, 128, 256}) {
      const std::string dim = " d" + std::to_string(d) + " ";
      // the program does not depend on the path (standard, fa1, fa2), only the tensor cores do
      record("bwd " + dev.name + dim + "f32 standard plain", backward_call(Algorithm::Standard, DType::F32, d, "plain"),
             Overrides{});
      record("bwd " + dev.name + dim + "f16 fa1 causal", backward_call(Algorithm::FA1, DType::F16, d, "causal"),
             Overrides{});
      for (DType dtype : {DType::F32, DType::F16, DType::BF16})
        for (const std::string& variant : variants) {
          if (dtype != DType::F16 && variant != "plain" && variant != "deterministic") continue;
          const BackwardArgs g = backward_call(Algorithm::FA2, dtype, d, variant);
          const std::string at = "bwd " + dev.name + dim + to_string(dtype) + " fa2 " + variant;
          record(at, g, Overrides{});
          if (nvidia && variant != "plain" && variant != "deterministic" && variant != "causal" && variant != "gqa" &&
              variant != "offset1") {  // bwd_kv_steps.cl's BWD_VARIANTS, when off
            Overrides off;
            off.tensor_core_variants = false;
            record(at + " FLASHCL_TENSOR_CORE_VARIANTS=0", g, off);
          }
          if (nvidia && variant == "softcap") {  // the library's tanh instead of one ex2.approx
            Overrides no_ex2;
            no_ex2.bwd_softcap_ex2 = false;
            record(at + " FLASHCL_BWD_SOFTCAP_EX2=0", g, no_ex2);
          }
          if (variant != "plain" && variant != "deterministic") continue;
          if (dev.facts.kind == DeviceKind::CPU) record(at + forced[5].name, g, forced[5].o);
          if (nvidia && dtype == DType::F32) {  // 3xTF32 (programs.txt's bwd_mma_tf32), when off
            Overrides no_tf32;
            no_tf32.bwd_tf32 = false;
            record(at + " FLASHCL_BWD_TF32=0", g, no_tf32);
            Overrides split;  // the A fragments split at each product: the default at d > 64
            split.bwd_tf32_split = d <= 64;
            record(at + (d <= 64 ? " FLASHCL_BWD_TF32_SPLIT=1" : " FLASHCL_BWD_TF32_SPLIT=0"), g, split);
          }
          if (!nvidia || dtype == DType::F32 || (d != 64 && d != 128)) continue;
          for (std::size_t i = 1; i < 5; ++i) record(at + forced[i].name, g, forced[i].o);
        }
    }
  }
}

// ---- KV cache ----

// A normalised KV-cache call: `rows` query rows per sequence, `group` query heads per K/V head.
KvCacheArgs kvcache_call(DType dtype, int d, int rows, int group, const std::string& variant) {
  KvCacheArgs a;
  a.batch = 4;
  a.heads_kv = 4;
  a.heads = 4 * group;
  a.seqlen_q = rows;
  a.head_dim = d;
  a.dtype = dtype;
  a.scale = 1.0f / std::sqrt(static_cast<float>(d));
  a.cache_seqlen = 4096;
  a.cache_batch = a.batch;
  a.cache_seqlens = some_buffer();
  if (variant == "paged") {
    a.cache_seqlen = 0;
    a.cache_batch = 0;
    a.block_table = some_buffer();
    a.page_size = 16;
    a.num_pages = 1024;
    a.max_pages = 256;
    a.block_table_stride = 256;
  }
  if (variant == "causal") a.causal = true;
  if (variant == "rotary" || variant == "rotary_interleaved") {
    a.rotary_cos = a.rotary_sin = some_buffer();
    a.rotary_dim = d;
    a.rotary_seqlen = 4096;
    a.rotary_interleaved = variant == "rotary_interleaved";
  }
  if (variant == "window") a.window = {256, 0};
  if (variant == "alibi") a.alibi_slopes = some_buffer();
  if (variant == "softcap") a.softcap = 30.0f;
  if (variant == "batch_idx") a.cache_batch_idx = some_buffer();
  if (variant == "big_scale") a.scale = 1e38f;
  if (variant == "splits") a.num_splits = 3;
  const int positions = variant == "paged" ? a.page_size : a.cache_seqlen;
  dense(a.q, a.seqlen_q, a.heads, d);
  dense(a.o, a.seqlen_q, a.heads, d);
  dense(a.k_cache, positions, a.heads_kv, d, variant == "offset1" ? 1 : 0);
  dense(a.v_cache, positions, a.heads_kv, d, variant == "offset4" ? 4 : 0);
  return a;
}

void add_kvcache(std::vector<std::string>& lines) {
  const std::pair<int, int> shapes[] = {{1, 1}, {1, 4}, {2, 4}, {16, 1}, {3, 4}};  // (rows, group)
  for (const Named& dev : devices()) {
    // decode's planner reads the vendor and kind; the program, the compute capability only for fp8
    // caches (-DNV_FP8_CVT=1 from 8.9 on, which cc 9.0's rows show; test_kvcache_fp8_plan.cpp checks 8.9)
    if (dev.facts.nv_compute_major == 8 && dev.facts.nv_compute_minor == 9) continue;
    if (dev.facts.nv_compute_major == 9 && dev.facts.local_mem_bytes < 100 * 1024) continue;
    const auto record = [&](const std::string& at, const KvCacheArgs& a, const Overrides& o) {
      lines.push_back(at + ": " +
                      outcome([&] { return describe(plan_kvcache(dev.facts, normalize_kvcache(a), o).program); }));
    };
    for (int d : {64, 80, 128, 256})
      for (auto [rows, group] : shapes) {
        const std::string at =
            "kv " + dev.name + " d" + std::to_string(d) + " rows" + std::to_string(rows) + "x" + std::to_string(group);
        for (DType dtype : {DType::F32, DType::BF16}) record(at + " " + to_string(dtype), kvcache_call(dtype, d, rows, group, "plain"), Overrides{});
        for (const std::string form : {"", "lanes", "lanes-single", "cpu", "stream", "staged"}) {
          Overrides o;
          o.decode = form;
          record(at + " f16" + (form.empty() ? "" : " FLASHCL_DECODE=" + form), kvcache_call(DType::F16, d, rows, group, "plain"), o);
        }
        // fp8 caches (docs/FP8.md "FP8 KV cache"): every form that takes one (a CPU streams), forced or not
        for (const std::string form : {"", "lanes", "cpu", "staged"}) {
          Overrides o;
          o.decode = form;
          KvCacheArgs a = kvcache_call(DType::F16, d, rows, group, "plain");
          a.cache_dtype = DType::E4M3;
          a.k_descale = a.v_descale = some_buffer();
          record(at + " f16 cache e4m3" + (form.empty() ? "" : " FLASHCL_DECODE=" + form), a, o);
        }
        KvCacheArgs e5 = kvcache_call(DType::BF16, d, rows, group, rows == 1 ? "paged" : "plain");
        e5.cache_dtype = DType::E5M2;
        e5.k_descale = e5.v_descale = some_buffer();
        record(at + " bf16 cache e5m2" + (rows == 1 ? " paged" : ""), e5, Overrides{});
        if (rows == 2 || rows == 3) continue;
        for (const std::string variant : {"paged", "causal", "rotary", "rotary_interleaved", "window", "alibi",
                                          "softcap", "batch_idx", "big_scale", "splits", "offset1", "offset4"})
          record(at + " f16 " + variant, kvcache_call(DType::F16, d, rows, group, variant), Overrides{});
      }
  }
}

std::vector<std::string> all_programs() {
  std::vector<std::string> lines;
  add_forward(lines);
  add_backward(lines);
  add_kvcache(lines);
  return lines;
}

TEST(PlanOptions, SameAsRecorded) { test::expect_same_as_recorded(all_programs(), "plan_options"); }

}  // namespace
}  // namespace flashcl::detail
