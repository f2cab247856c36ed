// test_plan_bwd_cpu.cpp: the CPU-shaped backward's planner (src/plan/plan_bwd_cpu.cpp) as a pure
// function: which calls it takes (fa2 on CPU devices, FLASHCL_BWD_CPU, dtypes), and for every head
// dim on AVX-512-, AVX2- and GPU-like devices a shape bwd_cpu.cl compiles (its #error
// conditions), tiles within the local-memory budget, and dQ chunks that keep both cores busy
// without more partials than K/V blocks.
#include <gtest/gtest.h>

#include <string>

#include "plan/plan_bwd_cpu.hpp"
#include "simulated_devices.hpp"

namespace flashcl::detail {
namespace {

DeviceFacts cpu(int float_width, int units = 2) { return simulated_pocl_cpu(float_width, units); }

Overrides with_bwd_cpu(const char* value) {
  Overrides o;
  o.bwd_cpu = value;
  return o;
}

ForwardArgs call(Algorithm algorithm = Algorithm::FA2, DType dtype = DType::F32, int d = 64) {
  ForwardArgs a;
  a.algorithm = algorithm;
  a.dtype = dtype;
  a.head_dim = d;
  a.batch = 1;
  a.heads = 8;
  a.heads_kv = 8;
  a.seqlen_q = a.seqlen_k = 2048;
  return a;
}

TEST(PlanBwdCpu, TakesFa2OnCpusOnly) {
  const Overrides none;
  for (DType t : {DType::F32, DType::F16, DType::BF16}) EXPECT_TRUE(bwd_cpu_takes(cpu(16), call(Algorithm::FA2, t), none));
  EXPECT_FALSE(bwd_cpu_takes(simulated_nvidia_gpu(48), call(), none));  // GPUs keep their kernels
  EXPECT_FALSE(bwd_cpu_takes(cpu(16), call(Algorithm::FA1), none));
  EXPECT_FALSE(bwd_cpu_takes(cpu(16), call(Algorithm::Standard), none));
}

TEST(PlanBwdCpu, Override) {
  EXPECT_FALSE(bwd_cpu_takes(cpu(16), call(), with_bwd_cpu("0")));
  EXPECT_TRUE(bwd_cpu_takes(simulated_nvidia_gpu(48), call(), with_bwd_cpu("1")));
  EXPECT_TRUE(bwd_cpu_takes(cpu(16), call(), with_bwd_cpu("")));
  EXPECT_FALSE(bwd_cpu_takes(cpu(16), call(Algorithm::FA1), with_bwd_cpu("1")));  // fa2 only
}

// bwd_cpu.cl's #error: BR % RM, BC % RM, BC % (KG * VW), D_PAD % VW and (D_PAD / VW) % CG all 0.
TEST(PlanBwdCpu, EveryHeadDimCompilesAndFits) {
  const DeviceFacts devices[] = {cpu(16), cpu(8), cpu(4), simulated_nvidia_gpu(48)};
  for (const DeviceFacts& dev : devices)
    for (int d = 1; d <= 256; ++d) {
      const BwdCpuPlan p = plan_bwd_cpu(dev, call(Algorithm::FA2, DType::F32, d));
      const int kg = std::min(4, p.block_cols / p.vector_width);
      SCOPED_TRACE(dev.name + " d=" + std::to_string(d));
      EXPECT_GE(p.padded_head_dim, d);
      EXPECT_EQ(p.block_rows % p.rows_per_block, 0);
      EXPECT_EQ(p.block_cols % p.rows_per_block, 0);
      ASSERT_GT(kg, 0);
      EXPECT_EQ(p.block_cols % (kg * p.vector_width), 0);
      EXPECT_EQ(p.padded_head_dim % p.vector_width, 0);
      EXPECT_EQ(p.padded_head_dim / p.vector_width % p.column_vectors, 0);
      EXPECT_EQ(p.local_bytes, bwd_cpu_local_bytes(p.block_rows, p.block_cols, p.padded_head_dim));
      EXPECT_LE(p.local_bytes, std::min<std::size_t>(dev.local_mem_bytes, 768 * 1024));
      EXPECT_GE(p.chunks, 1);
    }
}

TEST(PlanBwdCpu, ChunksKeepTheCoresBusy) {
  // 8 (batch, K/V head) pairs already give 2 cores 4 work-items each: one dQ partial
  EXPECT_EQ(plan_bwd_cpu(cpu(16), call()).chunks, 1);
  ForwardArgs mqa = call();
  mqa.heads_kv = 1;  // one K/V head: 8 chunks for 2 cores
  EXPECT_EQ(plan_bwd_cpu(cpu(16), mqa).chunks, 8);
  ForwardArgs short_keys = mqa;
  short_keys.seqlen_k = 300;  // two 256-key blocks (d = 64): no more chunks than blocks
  EXPECT_EQ(plan_bwd_cpu(cpu(16), short_keys).chunks, 2);
  ForwardArgs huge = mqa;
  huge.seqlen_q = 1 << 20;  // the partials stay within 256 MiB: one chunk
  EXPECT_EQ(plan_bwd_cpu(cpu(16), huge).chunks, 1);
}

}  // namespace
}  // namespace flashcl::detail
