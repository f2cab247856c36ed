// test_plan_choices.cpp: every forward tile choice, over a grid of simulated devices (NVIDIA GPUs
// of several compute capabilities, local memory sizes and work-group limits, another vendor's GPU,
// an accelerator, PoCL-like CPUs of three vector widths and several local sizes) and shapes (head
// dims 1..256, dtypes, causal or not), written as one line per choice and compared with
// tests/data/plan_choices.txt, recorded from the planners before their choices became tables
// (issue 18). A planner change that moves any tile, work-group, buffer count or reason fails here
// with the first differing line; the whole new table is written next to the test binary
// (plan_choices.actual.txt) so an intended change is reviewed as a diff and copied over.
#include <gtest/gtest.h>

#include <sstream>
#include <string>
#include <vector>

#include "base/errors.hpp"
#include "plan/mma_plan.hpp"
#include "plan/overrides.hpp"
#include "plan/plan_fa2_cpu.hpp"
#include "plan/tile_planner.hpp"
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
  for (std::size_t kib : {16, 32, 48, 64, 100, 228})
    for (auto [major, minor] : {std::pair{0, 0}, {8, 0}, {8, 9}, {9, 0}}) {
      DeviceFacts f = simulated_nvidia_gpu(kib, major, minor);
      f.compute_units = 132;
      out.push_back({"nvidia" + std::to_string(kib) + "k_cc" + std::to_string(major) + std::to_string(minor), f});
    }
  for (std::size_t wg : {64, 128, 256}) {
    DeviceFacts f = simulated_nvidia_gpu(48, 8, 0);
    f.max_work_group_size = wg;
    out.push_back({"nvidia48k_cc80_wg" + std::to_string(wg), f});
  }
  DeviceFacts amd = simulated_nvidia_gpu(64);
  amd.vendor = "Advanced Micro Devices, Inc.";
  amd.max_work_group_size = 256;
  amd.work_group_multiple = 64;
  out.push_back({"amd64k_wg256", amd});
  DeviceFacts other = simulated_nvidia_gpu(32);
  other.vendor = "Some Accelerator";
  other.kind = DeviceKind::Other;
  out.push_back({"other32k", other});
  for (std::size_t kib : {32, 64, 512, 1024, 4096})
    for (int width : {4, 8, 16}) {
      DeviceFacts f;
      f.vendor = "AuthenticAMD";
      f.kind = DeviceKind::CPU;
      f.local_mem_bytes = kib * 1024;
      f.max_work_group_size = 4096;
      f.work_group_multiple = 8;
      f.float_vector_width = width;
      f.compute_units = 2;
      out.push_back({"cpu" + std::to_string(kib) + "k_f" + std::to_string(width), f});
    }
  return out;
}

// Dense (B, N, H, d) tensors with every stride set, as validate() leaves them.
ForwardArgs call(Algorithm algorithm, DType dtype, int d, bool causal) {
  ForwardArgs a;
  a.batch = 2;
  a.heads = 4;
  a.seqlen_q = a.seqlen_k = 256;
  a.head_dim = d;
  a.dtype = dtype;
  a.causal = causal;
  a.algorithm = algorithm;
  for (Tensor* t : {&a.q, &a.k, &a.v, &a.o}) {
    t->head_stride = d;
    t->seq_stride = static_cast<std::int64_t>(a.heads) * d;
    t->batch_stride = t->seq_stride * a.seqlen_q;
  }
  if (is_fp8(dtype)) a.out_dtype = DType::BF16;
  return a;
}

std::string describe(const TilePlan& p) {
  std::ostringstream s;
  s << p.block_rows << "x" << p.block_cols << " tm" << p.rows_per_team << " tpr" << p.team_size << " dpad"
    << p.padded_head_dim << " wg" << p.work_group_size << " local" << p.local_bytes;
  if (p.gemm_wg_x != 0)
    s << " gemm" << p.gemm_wg_x << "x" << p.gemm_wg_y << "/" << p.gemm_rm << "x" << p.gemm_rn << "/kp" << p.gemm_kp
      << "/at" << p.gemm_a_t << " softmax" << p.softmax_wg << "x" << p.softmax_vw;
  s << " stages" << p.stages << " lazy" << p.lazy_rescale << " | " << p.reason;
  return s.str();
}

// The plan's text, or the error's status and message (a choice too: "nothing fits" must stay so).
template <typename F>
std::string outcome(F&& plan) {
  try {
    return plan();
  } catch (const Error& e) {
    return std::string("error ") + std::to_string(static_cast<int>(e.status())) + ": " + e.what();
  }
}

std::vector<std::string> all_choices() {
  const Overrides none;
  std::vector<std::string> lines;
  const int dims[] = {1, 2, 3, 7, 8, 15, 16, 24, 30, 32, 33, 48, 63, 64, 65, 80, 96, 100, 112, 127, 128, 129, 160, 192, 200, 255, 256};
  for (const Named& dev : devices())
    for (int d : dims) {
      const std::string at = dev.name + " d" + std::to_string(d);
      for (Algorithm alg : {Algorithm::Standard, Algorithm::FA1, Algorithm::FA2}) {
        PlanRequest r;
        r.algorithm = alg;
        r.head_dim = d;
        lines.push_back(at + " " + to_string(alg) + ": " + outcome([&] { return describe(plan_tiles(dev.facts, r)); }));
      }
      lines.push_back(at + " fa2_cpu: " + outcome([&] {
                        const Fa2CpuPlan p = plan_fa2_cpu(dev.facts, d);
                        return describe(p.tiles) + " vw" + std::to_string(p.vector_width) + " cg" +
                               std::to_string(p.column_vectors);
                      }));
      for (DType dtype : {DType::F32, DType::F16, DType::BF16, DType::E4M3})
        for (bool causal : {false, true}) {
          const ForwardArgs a = call(Algorithm::FA2, dtype, d, causal);
          const std::string what = at + " mma " + to_string(dtype) + (causal ? " causal" : "");
          if (!mma_eligible(dev.facts, a, none)) {
            lines.push_back(what + ": not eligible");
            continue;
          }
          lines.push_back(what + ": wanted " + (wgmma_wanted(dev.facts, a, none) ? "wgmma" : "mma.sync") + ", " +
                          outcome([&] { return describe(mma_plan(dev.facts, a, none)); }));
          lines.push_back(what + " mma.sync: " +
                          outcome([&] { return describe(plan_for_kind(a, MmaKind::MmaSync, none)); }));
        }
    }
  return lines;
}

TEST(PlanChoices, SameAsRecorded) { test::expect_same_as_recorded(all_choices(), "plan_choices"); }

}  // namespace
}  // namespace flashcl::detail
