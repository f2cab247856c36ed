// plan_counts.hpp: how many times each planner ran in this process, for the test that a forward
// call plans once (tests/test_call_plan.cpp) and nothing else. Internal: never in the public
// headers. Relaxed atomic increments, one per plan, so the cost is nothing next to a plan.
#pragma once

#include <atomic>

namespace flashcl::detail {

struct PlanCounts {
  std::atomic<unsigned long> calls{0};     // plan_call: one call plan
  std::atomic<unsigned long> tiles{0};     // plan_tiles: the portable standard, fa1 and fa2 tiles
  std::atomic<unsigned long> fa2_cpu{0};   // plan_fa2_cpu: the CPU-shaped fa2
  std::atomic<unsigned long> mma_sync{0};  // plan_for_kind(MmaSync): the tensor-core fa2 on mma.sync
  std::atomic<unsigned long> wgmma{0};     // plan_for_kind(Wgmma): the tensor-core fa2 on wgmma
};

PlanCounts& plan_counts();

// One more of `counter` (a member of plan_counts()).
inline void count_plan(std::atomic<unsigned long>& counter) { counter.fetch_add(1, std::memory_order_relaxed); }

}  // namespace flashcl::detail
