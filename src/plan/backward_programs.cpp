// backward_programs.cpp: the backward's programs and -D options (backward_programs.hpp), byte for
// byte the strings the launchers composed before (tests/data/plan_options.txt).
#include "plan/backward_programs.hpp"

#include "plan/forward_programs.hpp"

namespace flashcl::detail {

ProgramChoice backward_program(const ForwardArgs& a, bool dbias, const BackwardPlan& plan) {
  std::string options = common_options(a);
  if (dbias) options += " -DDBIAS=1";
  return choose_program(programs::backward, options + concat(" -DBR=", plan.block_rows, " -DBC=", plan.block_cols,
                                                             " -DBWD_WG=", plan.work_group_size));
}

ProgramChoice bwd_cpu_program(const ForwardArgs& a, bool dbias, const BwdCpuPlan& c) {
  std::string options = common_options(a);
  if (dbias) options += " -DDBIAS=1";
  return choose_program(programs::bwd_cpu,
                        options + concat(" -DD_PAD=", c.padded_head_dim, " -DBR=", c.block_rows, " -DBC=", c.block_cols,
                                         " -DRM=", c.rows_per_block, " -DCG=", c.column_vectors, " -DVW=", c.vector_width));
}

ProgramChoice bwd_mma_program(const BackwardArgs& args, const BwdMmaPlan& plan) {
  return choose_program(programs::bwd_mma_f16, common_options(args.forward) + bwd_mma_options(args, plan));
}

}  // namespace flashcl::detail
