// test_call_plan.cpp: a forward call is planned once (issue 18). Each planner counts its runs
// (plan/plan_counts.hpp); one call through Session::forward on the OpenCL device here (PoCL in CI)
// must make exactly one call plan and run exactly one planner, once, for each path that device
// takes: standard, fa1, the team fa2 (a forced tile) and the CPU-shaped fa2; the size queries
// likewise. The tensor-core path needs an NVIDIA GPU, so its planning is counted on simulated
// NVIDIA facts: one plan per instruction the launcher may try (wgmma, then mma.sync) and one for
// the portable fa2 it falls back to (and FLASHCL_FP8_WGMMA=require is carried by the plan's wgmma
// candidate). The call's results are checked by the forward suites; here a
// call need only run to completion with finite outputs.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "flashcl/flashcl.hpp"
#include "plan/call_plan.hpp"
#include "plan/plan_counts.hpp"
#include "plan/plan_fa2_cpu.hpp"
#include "planner_calls.hpp"
#include "simulated_devices.hpp"

namespace flashcl::detail {
namespace {

// How many times each planner ran since construction.
struct Runs {
  unsigned long calls, tiles, fa2_cpu, mma_sync, wgmma;
};

Runs snapshot() {
  PlanCounts& c = plan_counts();
  return {c.calls.load(), c.tiles.load(), c.fa2_cpu.load(), c.mma_sync.load(), c.wgmma.load()};
}

Runs since(const Runs& before) {
  const Runs now = snapshot();
  return {now.calls - before.calls, now.tiles - before.tiles, now.fa2_cpu - before.fa2_cpu,
          now.mma_sync - before.mma_sync, now.wgmma - before.wgmma};
}

ForwardArgs shape(Algorithm algorithm, int d = 32) {
  ForwardArgs a;
  a.batch = 1;
  a.heads = 2;
  a.seqlen_q = 40;
  a.seqlen_k = 56;
  a.head_dim = d;
  a.algorithm = algorithm;
  return a;
}

// Dense (B, N, H, d) strides, as normalize_shape leaves them.
ForwardArgs normalized(ForwardArgs a) {
  for (Tensor* t : {&a.q, &a.k, &a.v, &a.o}) {
    t->head_stride = a.head_dim;
    t->seq_stride = static_cast<std::int64_t>(a.heads) * a.head_dim;
    t->batch_stride = t->seq_stride * a.seqlen_q;
  }
  return a;
}

Session& session() {
  static Session s;
  return s;
}

// Runs a forward through Session (random inputs) and returns the planner runs its second call made.
Runs runs_of_one_call(const ForwardArgs& a) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  auto random = [&](std::size_t n) {
    std::vector<float> x(n);
    for (float& e : x) e = u(rng);
    return x;
  };
  const std::size_t d = a.head_dim, h = a.heads;
  const std::vector<float> q = random(a.seqlen_q * h * d), k = random(a.seqlen_k * h * d), v = random(a.seqlen_k * h * d);
  // A first call may also plan a probe (a tensor-core path checks itself once per device and
  // shape, standard_mma on NVIDIA), so the counted call is the second of the same shape.
  session().forward(a, q, k, v);
  const Runs before = snapshot();
  const std::vector<float> o = session().forward(a, q, k, v);
  const Runs made = since(before);
  EXPECT_EQ(o.size(), q.size());
  for (float x : o) EXPECT_TRUE(std::isfinite(x));
  return made;
}

TEST(CallPlan, StandardPlansOnce) {
  const Runs r = runs_of_one_call(shape(Algorithm::Standard));
  EXPECT_EQ(r.calls, 1u);
  EXPECT_EQ(r.tiles, 1u);
  EXPECT_EQ(r.fa2_cpu + r.mma_sync + r.wgmma, 0u);
}

// Before the call plan, fa1's tiles were planned three times a call (validation's workspace
// size, forward's workspace size, the launcher).
TEST(CallPlan, Fa1PlansOnce) {
  const Runs r = runs_of_one_call(shape(Algorithm::FA1));
  EXPECT_EQ(r.calls, 1u);
  EXPECT_EQ(r.tiles, 1u);
  EXPECT_EQ(r.fa2_cpu + r.mma_sync + r.wgmma, 0u);
}

TEST(CallPlan, TeamFa2PlansOnce) {
  ForwardArgs a = shape(Algorithm::FA2);
  a.tile = {16, 16};  // a forced tile: the team kernel, on every device
  const Runs r = runs_of_one_call(a);
  EXPECT_EQ(r.calls, 1u);
  EXPECT_EQ(r.tiles, 1u);
  EXPECT_EQ(r.fa2_cpu + r.mma_sync + r.wgmma, 0u);
}

TEST(CallPlan, DeviceFa2PlansOnce) {
  const DeviceFacts& facts = device_facts(session().device());
  const ForwardArgs a = shape(Algorithm::FA2);
  if (!fa2_cpu_takes(facts, a, process_overrides()))
    GTEST_SKIP() << "the CPU-shaped fa2 does not take calls on " << facts.name;
  const Runs r = runs_of_one_call(a);
  EXPECT_EQ(r.calls, 1u);
  EXPECT_EQ(r.fa2_cpu, 1u);
  EXPECT_EQ(r.tiles + r.mma_sync + r.wgmma, 0u);
}

TEST(CallPlan, SizeQueriesPlanOnce) {
  for (Algorithm algorithm : {Algorithm::Standard, Algorithm::FA1, Algorithm::FA2}) {
    SCOPED_TRACE(to_string(algorithm));
    const ForwardArgs a = shape(algorithm);
    Runs before = snapshot();
    workspace_bytes(session().device(), a);
    EXPECT_EQ(since(before).calls, 1u);
    before = snapshot();
    device_bytes(session().device(), a);
    EXPECT_EQ(since(before).calls, 1u);
    before = snapshot();
    tile_info(session().device(), a);
    const Runs r = since(before);
    EXPECT_EQ(r.calls, 1u);
    EXPECT_EQ(r.tiles + r.fa2_cpu, 1u);
  }
}

// Hopper, fp16, d = 64: wgmma first, mma.sync if wgmma's probe fails, the portable fa2 if both do;
// each planned once, in the one call plan.
TEST(CallPlan, TensorCorePlansEachCandidateOnce) {
  const Overrides none;
  ForwardArgs a = normalized(shape(Algorithm::FA2, 64));
  a.dtype = DType::F16;
  Runs before = snapshot();
  CallPlan plan = plan_call(simulated_nvidia_gpu(48, 9, 0), a, none);
  Runs r = since(before);
  ASSERT_EQ(plan.tensor_cores.size(), 2u);
  EXPECT_EQ(plan.tensor_cores[0].kind, MmaKind::Wgmma);
  EXPECT_EQ(plan.tensor_cores[1].kind, MmaKind::MmaSync);
  EXPECT_EQ(plan.path, ForwardPath::FA2);
  EXPECT_EQ(r.calls, 1u);
  EXPECT_EQ(r.wgmma, 1u);
  EXPECT_EQ(r.mma_sync, 1u);
  EXPECT_EQ(r.tiles, 1u);
  EXPECT_EQ(r.fa2_cpu, 0u);

  // Ampere: mma.sync only
  before = snapshot();
  plan = plan_call(simulated_nvidia_gpu(48, 8, 0), a, none);
  r = since(before);
  ASSERT_EQ(plan.tensor_cores.size(), 1u);
  EXPECT_EQ(plan.tensor_cores[0].kind, MmaKind::MmaSync);
  EXPECT_EQ(r.calls, 1u);
  EXPECT_EQ(r.wgmma, 0u);
  EXPECT_EQ(r.mma_sync, 1u);
  EXPECT_EQ(r.tiles, 1u);

  // a variant the tensor cores do not take (a softcap with FLASHCL_TENSOR_CORE_TRANSFORMS=0): no
  // candidate, the portable fa2 alone
  a.softcap = 30.0f;
  Overrides transforms_off;
  transforms_off.tensor_core_transforms = false;
  before = snapshot();
  plan = plan_call(simulated_nvidia_gpu(48, 9, 0), a, transforms_off);
  r = since(before);
  EXPECT_TRUE(plan.tensor_cores.empty());
  EXPECT_EQ(r.calls, 1u);
  EXPECT_EQ(r.mma_sync + r.wgmma, 0u);
  EXPECT_EQ(r.tiles, 1u);
}

// FLASHCL_FP8_WGMMA=require travels in the plan, so the launcher reads no override of its own: the
// e4m3 wgmma candidate carries it; the mma.sync candidate behind it, the other settings, a device
// without wgmma and the fp16 wgmma candidate never do.
TEST(CallPlan, Fp8WgmmaRequireIsCarriedByTheWgmmaCandidate) {
  const DeviceFacts hopper = simulated_nvidia_gpu(48, 9, 0), ada = simulated_nvidia_gpu(48, 8, 9);
  const ForwardArgs e4m3 = dense_fa2_call(DType::E4M3, 128, false, 512);
  Overrides o;
  o.fp8_wgmma = "require";
  CallPlan plan = plan_call(hopper, e4m3, o);
  ASSERT_EQ(plan.tensor_cores.size(), 2u);
  EXPECT_EQ(plan.tensor_cores[0].kind, MmaKind::Wgmma);
  EXPECT_TRUE(plan.tensor_cores[0].required);
  EXPECT_FALSE(plan.tensor_cores[1].required);
  ASSERT_EQ(plan_call(ada, e4m3, o).tensor_cores.size(), 1u);
  EXPECT_FALSE(plan_call(ada, e4m3, o).tensor_cores[0].required);
  plan = plan_call(hopper, dense_fa2_call(DType::F16, 64), o);
  ASSERT_EQ(plan.tensor_cores.size(), 2u);
  EXPECT_EQ(plan.tensor_cores[0].kind, MmaKind::Wgmma);
  for (const MmaCandidate& c : plan.tensor_cores) EXPECT_FALSE(c.required);
  for (const char* other : {"", "1", "0"}) {
    o.fp8_wgmma = other;
    plan = plan_call(hopper, e4m3, o);
    ASSERT_FALSE(plan.tensor_cores.empty()) << other;
    for (const MmaCandidate& c : plan.tensor_cores) EXPECT_FALSE(c.required) << other;
  }
}

// The plan's grids are the launchers' old ones: fa2 one work-group per (Q block, head, batch) and
// fa1 one per (head, batch), standard three (scores, softmax rows, P.V); the workspace is fa1's
// O, m and l and standard's S.
TEST(CallPlan, GridsAndWorkspace) {
  const Overrides none;
  const DeviceFacts gpu = simulated_nvidia_gpu(48);
  const ForwardArgs a = normalized(shape(Algorithm::FA2, 64));
  CallPlan plan = plan_call(gpu, a, none);
  ASSERT_EQ(plan.grids.size(), 1u);
  const std::size_t q_blocks = (40 + plan.tiles.block_rows - 1) / plan.tiles.block_rows;
  EXPECT_EQ(plan.grids[0].global[0], q_blocks * plan.tiles.work_group_size);
  EXPECT_EQ(plan.grids[0].global[1], 2u);
  EXPECT_EQ(plan.grids[0].local[0], plan.tiles.work_group_size);
  EXPECT_EQ(plan.workspace_bytes, 0u);

  plan = plan_call(gpu, normalized(shape(Algorithm::FA1, 64)), none);
  EXPECT_EQ(plan.path, ForwardPath::FA1);
  EXPECT_EQ(plan.grids[0].global[0], plan.tiles.work_group_size);
  EXPECT_EQ(plan.workspace_bytes, 2u * 40 * (plan.tiles.padded_head_dim + 2) * sizeof(float));

  plan = plan_call(gpu, normalized(shape(Algorithm::Standard, 64)), none);
  EXPECT_EQ(plan.path, ForwardPath::Standard);
  ASSERT_EQ(plan.grids.size(), 3u);
  EXPECT_EQ(plan.grids[1].global[1], 40u);  // the softmax: one work-group per row
  EXPECT_EQ(plan.workspace_bytes, 2u * 40 * 56 * sizeof(float));
}

}  // namespace
}  // namespace flashcl::detail
