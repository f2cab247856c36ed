// test_kvcache_normalize.cpp: what forward_kvcache's normalisation (src/launch/decode.cpp) makes of
// a call before planning. One query under bottom-right causal sees every key (it sits at the last
// one) and keeps its rotary position, so the flag is dropped and the non-causal program runs; from
// two queries on the flag stays.
#include <gtest/gtest.h>

#include "launch/decode.hpp"

namespace flashcl::detail {
namespace {

TEST(KvCacheNormalize, OneCausalQueryRunsTheNonCausalProgram) {
  KvCacheArgs a;
  a.batch = 1;
  a.heads = 4;
  a.heads_kv = 2;
  a.head_dim = 64;
  a.dtype = DType::F32;
  a.cache_seqlen = 64;
  a.causal = true;
  a.seqlen_q = 1;
  EXPECT_FALSE(normalize_kvcache(a).causal);
  a.seqlen_q = 2;
  EXPECT_TRUE(normalize_kvcache(a).causal);
  a.causal = false;
  EXPECT_FALSE(normalize_kvcache(a).causal);
}

}  // namespace
}  // namespace flashcl::detail
