// plan_counts.cpp: the process's planner counters (plan_counts.hpp).
#include "plan/plan_counts.hpp"

namespace flashcl::detail {

PlanCounts& plan_counts() {
  static PlanCounts counts;
  return counts;
}

}  // namespace flashcl::detail
