// test_decode.cpp: the KV-cache path (forward_kvcache) against the float64 reference on fresh
// random inputs, outputs poisoned with NaN and written through padded strides: contiguous and
// paged caches (page sizes 1, 3, 4, 5, 7, 16, pages shuffled in a pool with unused pages), both
// attention kernels (streaming for few rows per K/V head, staged for many), GQA and
// MQA, Nq = 1 and chunked prefill (causal, bottom-right), appends of k_new/v_new (the cache
// afterwards equals the model: new rows rotated, every other element unchanged), rotary in both
// styles, window, softcap, ALiBi, cache_batch_idx, empty sequences, and forced split counts. Hostile
// device values (cache_seqlens, block-table entries, cache_batch_idx out of range) must give the
// documented clamped result without touching anything outside the tensors. Invalid host
// arguments are rejected with an error naming them, through C++ and C. The decode planner is a
// pure function, tested here on simulated devices.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>

#include "decode_support.hpp"
#include "flashcl/flashcl.h"
#include "plan/plan_decode.hpp"  // internal (hidden in the library): src/plan/plan_decode.cpp is compiled in
#include "support.hpp"

namespace flashcl::test {
namespace {

const float kNaN = std::numeric_limits<float>::quiet_NaN();

std::unique_ptr<DeviceBytes> ints(const std::vector<int>& values) {
  return std::make_unique<DeviceBytes>(values.data(), std::max<std::size_t>(values.size(), 1) * sizeof(int));
}
std::unique_ptr<DeviceBytes> floats(const std::vector<float>& values) {
  return std::make_unique<DeviceBytes>(values.data(), values.size() * sizeof(float));
}

// The case on device buffers: q and the caches in their layouts, o poisoned and padded.
DecodeResult run_decode(const DecodeCase& c) {
  const DecodeProblem p = make_decode_problem(c);
  const int B = c.batch, H = c.heads, Hk = c.heads_kv, Nq = c.seqlen_q, d = c.head_dim, Nn = c.seqlen_new;
  DeviceTensor dq(Layout::PaddedRows, B, Nq, H, d, &p.q, c.dtype);
  DeviceTensor dout(Layout::PaddedRows, B, Nq, H, d, nullptr, c.dtype);
  DeviceTensor dk(c.cache_layout, p.cache_rows, p.cache_seq, Hk, d, &p.k_cache, c.dtype);
  DeviceTensor dv(c.cache_layout, p.cache_rows, p.cache_seq, Hk, d, &p.v_cache, c.dtype);
  DeviceTensor dkn(Layout::BSHD, B, std::max(Nn, 1), Hk, d, &p.k_new, c.dtype);
  DeviceTensor dvn(Layout::BSHD, B, std::max(Nn, 1), Hk, d, &p.v_new, c.dtype);
  DeviceBuffer dlse(static_cast<std::size_t>(B) * H * Nq, kNaN);
  std::vector<std::unique_ptr<DeviceBytes>> held;
  auto hold = [&](std::unique_ptr<DeviceBytes> b) {
    held.push_back(std::move(b));
    return held.back()->mem;
  };

  KvCacheArgs a = p.shape();
  a.q = dq.view;
  a.o = dout.view;
  a.lse = dlse.mem;
  a.k_cache = dk.view;
  a.v_cache = dv.view;
  a.cache_seqlens = hold(ints(c.seqlens));
  if (p.paged) a.block_table = hold(ints(p.table));
  if (!p.paged && !c.batch_idx.empty()) a.cache_batch_idx = hold(ints(c.batch_idx));
  if (Nn > 0) {
    a.k_new = dkn.view;
    a.v_new = dvn.view;
  }
  if (c.rotary) {
    a.rotary_cos = hold(floats(p.cos_t));
    a.rotary_sin = hold(floats(p.sin_t));
  }
  if (c.alibi) a.alibi_slopes = hold(floats(p.slopes));
  forward_kvcache(session().queue(), a).wait();
  const std::string kernel = kvcache_info(session().queue(), a).kernel;

  DecodeResult r = check_decode(p, dk.logical(), dv.logical(), dout.logical(), dlse.read());
  r.gaps_changed = dout.gap_elements_changed() + dk.gap_elements_changed() + dv.gap_elements_changed() +
                   dq.gap_elements_changed() + dkn.gap_elements_changed() + dvn.gap_elements_changed();
  r.result.gaps_written = dout.gap_elements_changed();
  r.kernel = kernel;
  return r;
}

// want_kernel: the split kernel the call must have run (empty: any).
void expect_decode(const DecodeCase& c, const std::string& what, const std::string& want_kernel = "") {
  SCOPED_TRACE(what);
  const DecodeResult r = run_decode(c);
  if (!want_kernel.empty()) EXPECT_EQ(r.kernel, want_kernel) << what;
  expect_accurate(r.result, what, c.dtype);
  EXPECT_EQ(r.cache_bad, 0u) << what << ": cache elements differ from the model after the call";
  EXPECT_EQ(r.gaps_changed, 0u) << what << ": wrote outside a tensor's layout";
}

TEST(Decode, ContiguousGqaSingleQuery) { expect_decode(base(), "contiguous GQA 4/2 Nq=1"); }

// Page sizes 3 (SplitCountsAgree), 4 (WindowSoftcapAlibi), 5 (rotary), 16 (HalfPrecisionCaches)
// are covered elsewhere; each size is its own program to build.
TEST(Decode, PagedPageSizes) {
  for (int ps : {1, 7}) {
    DecodeCase c = base({190, 100});
    c.page_size = ps;
    c.seed = 200 + ps;
    expect_decode(c, "paged page_size " + std::to_string(ps));
  }
  DecodeCase c = base({190, 100});
  c.page_size = 7;
  c.share_first_page = true;  // a shared prefix: two block-table rows name the same page
  expect_decode(c, "paged, shared first page");
}

TEST(Decode, PagedInOrderEqualsContiguous) {
  DecodeCase c = base({150, 133});
  c.page_size = 16;
  c.shuffle = false;
  c.spare_pages = 0;
  const DecodeResult paged = run_decode(c);
  c.page_size = 0;
  c.capacity = 208;  // the paged capacity, so both caches hold the same values
  const DecodeResult contiguous = run_decode(c);
  ASSERT_EQ(paged.result.o.size(), contiguous.result.o.size());
  for (std::size_t i = 0; i < paged.result.o.size(); ++i) EXPECT_EQ(paged.result.o[i], contiguous.result.o[i]) << i;
  expect_accurate(paged.result, "paged in order", DType::F32);
}

TEST(Decode, GqaRatiosAndMqa) {
  for (int hk : {1, 4}) {  // 8/1 (MQA) and 8/4; 4/2 and 8/8 elsewhere
    DecodeCase c = base({200, 1});  // a full cache and a single key
    c.heads = 8;
    c.heads_kv = hk;
    c.seed = 300 + hk;
    expect_decode(c, "heads 8 / heads_kv " + std::to_string(hk));
  }
}

TEST(Decode, ChunkedPrefillCausalWithAppend) {
  DecodeCase c = base({120, 0});
  c.seqlen_q = c.seqlen_new = 9;  // the second sequence starts empty
  c.causal = true;
  c.page_size = 7;               // appends cross page boundaries
  expect_decode(c, "chunked prefill, paged append");
  c.seqlens = {60, 0};
  c.seqlen_q = c.seqlen_new = 100;  // 200 rows per K/V head: 13 row blocks
  expect_decode(c, "chunked prefill of 100 queries, paged append");
  c.page_size = 0;
  c.heads = c.heads_kv = 3;      // plain MHA, contiguous append
  c.head_dim = 20;
  c.rotary = 2;
  expect_decode(c, "chunked prefill, contiguous append with rotary, d 20");
}

TEST(Decode, AppendWithRotaryBothStyles) {
  for (int style : {1, 2}) {
    DecodeCase c = base({130, 9});
    c.seqlen_new = c.seqlen_q = 2;
    c.causal = true;
    c.rotary = style;
    c.rotary_dim = style == 1 ? 32 : 16;  // full and partial rotation
    c.page_size = style == 1 ? 0 : 5;
    c.seed = 400 + style;
    expect_decode(c, style == 1 ? "rotary interleaved" : "rotary half-split, partial");
  }
  DecodeCase c = base({18, 3});
  c.seqlen_new = c.seqlen_q = 3;
  c.rotary = 2;  // not causal: every query rotated at position cache_seqlens (flash-attn)
  expect_decode(c, "rotary, non-causal queries at L0");
}

TEST(Decode, WindowSoftcapAlibi) {
  DecodeCase c = base({180, 129});
  c.seqlen_q = 3;
  c.causal = true;
  c.window_left = 10;
  c.window_right = 0;
  c.softcap = 5.0f;
  c.alibi = true;
  c.page_size = 4;
  expect_decode(c, "window + softcap + alibi, paged (streaming kernel)");
  c.heads = 8;  // 12 rows per K/V head: the staged kernel
  expect_decode(c, "window + softcap + alibi, paged (staged kernel)");
}

TEST(Decode, CacheBatchIdxAndEmptySequences) {
  DecodeCase c = base({0, 125, 0});
  c.batch = 3;
  c.batch_idx = {4, 0, 2};  // cache has 5 rows
  c.seqlen_new = 1;
  expect_decode(c, "cache_batch_idx with append into empty sequences");
  c.seqlen_new = 0;  // no key at all in sequences 0 and 2: O = 0, LSE = -inf
  expect_decode(c, "cache_batch_idx, empty sequences");
}

TEST(Decode, SplitCountsAgree) {
  DecodeCase c = base({200, 2});
  c.page_size = 3;
  c.causal = true;
  for (int rows : {4, 12}) {  // streaming kernel, staged kernel
    c.seqlen_q = rows == 4 ? 2 : 3;
    c.heads = rows == 4 ? 4 : 8;
    std::vector<float> first;
    for (int splits : {1, 2, 5, 64}) {  // 64 leaves most splits empty
      c.num_splits = splits;
      const DecodeResult r = run_decode(c);
      expect_accurate(r.result, "num_splits " + std::to_string(splits), DType::F32);
      if (first.empty()) first = r.result.o;
      for (std::size_t i = 0; i < first.size(); ++i)
        ASSERT_NEAR(r.result.o[i], first[i], 2e-6) << rows << " rows, " << splits << " splits, " << i;
    }
  }
}

TEST(Decode, HalfPrecisionCaches) {
  for (DType dtype : {DType::F16, DType::BF16}) {
    DecodeCase c = base({141, 67});
    c.dtype = dtype;
    c.page_size = 16;
    c.seqlen_new = c.seqlen_q = 1;
    c.rotary = 2;
    c.causal = true;
    expect_decode(c, std::string("paged append ") + to_string(dtype));
  }
  DecodeCase c = base({41, 17});  // (scalar loads from padded caches: the hostile cases)
  c.dtype = DType::BF16;
  c.head_dim = 20;  // 4-wide loads (8-wide need d % 8 == 0)
  expect_decode(c, "bf16 d 20");
}

// The shapes decode_lanes.cl is built for (FLASHCL_DECODE=lanes runs this whole suite on it; on
// NVIDIA it is the planner's choice): d = 128 in 16-byte chunks (16 lanes per key), the four and
// eight query heads of a K/V head (4 and 2 keys per work-item), paged with page sizes 16 and 256
// (a work-item's keys in one page) and 6 (its keys crossing pages), bf16 and fp16, a split count
// that leaves tiles partial, an append and causal masking.
TEST(Decode, HeadDim128GqaGroups) {
  for (DType dtype : {DType::F16, DType::BF16})
    for (int group : {4, 8})
      for (int ps : {0, 16, 256, 6}) {
        if (dtype == DType::BF16 ? ps != 16 || group != 4 : group == 8 && ps != 256 && ps != 6)
          continue;  // bf16 differs in the load only, and 8 rows in the keys per work-item: fewer builds
        DecodeCase c = base({300, 77});
        c.dtype = dtype;
        c.head_dim = 128;
        c.heads = 2 * group;
        c.heads_kv = 2;
        c.capacity = 512;
        c.page_size = ps;
        c.seqlen_new = 1;
        c.causal = true;
        c.num_splits = ps == 6 ? 3 : 0;
        expect_decode(c, std::string(to_string(dtype)) + " group " + std::to_string(group) + " page " + std::to_string(ps));
      }
}

// The shapes decode_mma.cl takes (FLASHCL_DECODE=mma runs this suite on it: on NVIDIA's tensor
// cores, and on PoCL over emulated operands, the decode_mma_emulated test; elsewhere these run on
// the default forms): 16-bit caches with d a multiple of 8, a K/V head's rows (Nq x group) in one,
// two and five blocks of 16 (work-groups of 1, 2 and 4 warps), every page size, the variants,
// hostile device values, empty sequences, head dims padded to the mma's k (72), and split counts
// that leave splits empty; each against float64.
TEST(Decode, TensorCoreShapes) {
  std::vector<std::pair<std::string, DecodeCase>> cases;
  const auto half = [](std::vector<int> seqlens, DType dtype, int head_dim, int heads) {
    DecodeCase c = base(std::move(seqlens));
    c.dtype = dtype;
    c.head_dim = head_dim;
    c.heads = heads;
    return c;
  };
  cases.emplace_back("f16 d 64 group 2", half({170, 75}, DType::F16, 64, 4));
  DecodeCase g16 = half({300, 77}, DType::BF16, 128, 32);
  g16.capacity = 512;
  g16.page_size = 16;
  g16.seqlen_new = 1;
  cases.emplace_back("bf16 d 128 group 16 page 16 append", g16);
  DecodeCase mha = half({120, 33}, DType::F16, 64, 2);
  mha.heads_kv = 2;
  mha.seqlen_q = mha.seqlen_new = 4;
  mha.causal = true;
  mha.page_size = 6;
  mha.num_splits = 3;
  cases.emplace_back("f16 MHA Nq 4 causal append page 6 splits 3", mha);
  // speculative decoding: 3 queries of a group of 4 (12 rows)
  DecodeCase spec = half({150, 60}, DType::BF16, 64, 8);
  spec.seqlen_q = spec.seqlen_new = 3;
  spec.causal = true;
  cases.emplace_back("bf16 Nq 3 group 4 causal append", spec);
  DecodeCase prefill = half({140, 30}, DType::F16, 64, 8);  // chunked prefill: 20 rows, two warps
  prefill.seqlen_q = prefill.seqlen_new = 5;
  prefill.causal = true;
  prefill.page_size = 16;
  cases.emplace_back("f16 Nq 5 group 4 causal append page 16", prefill);
  // chunked prefill of 68 rows: a work-group of 4 warps (64 rows) and one of 4 rows
  DecodeCase chunk = half({200, 70}, DType::BF16, 64, 8);
  chunk.capacity = 300;
  chunk.seqlen_q = chunk.seqlen_new = 17;
  chunk.causal = true;
  chunk.page_size = 6;
  cases.emplace_back("bf16 Nq 17 group 4 causal append page 6", chunk);
  chunk.page_size = 0;  // the same rows on a contiguous cache: 4 warps stepping through one run a tile
  cases.emplace_back("bf16 Nq 17 group 4 causal append contiguous", chunk);
  DecodeCase var = half({160, 90}, DType::F16, 72, 8);
  var.page_size = 1;
  var.window_left = 40;
  var.softcap = 5.0f;
  var.alibi = true;
  cases.emplace_back("f16 d 72 page 1 window softcap alibi", var);
  DecodeCase hostile = half({-5, 1000000, 30}, DType::BF16, 32, 4);
  hostile.batch = 3;
  hostile.page_size = 4;
  hostile.seqlen_new = 1;
  hostile.bad_pages = {{2, 1}, {2, 7}, {1, 11}, {0, 0}};
  cases.emplace_back("bf16 hostile cache_seqlens and block table", hostile);
  hostile.page_size = 8;  // decode_mma's page runs (of 8 keys): a run on a page outside the pool
  cases.emplace_back("bf16 hostile cache_seqlens and block table page 8", hostile);
  DecodeCase runs24 = half({210, 47}, DType::F16, 64, 8);  // runs of 8 on pages that tiles cross mid-page
  runs24.page_size = 24;
  runs24.window_left = 100;
  runs24.num_splits = 3;
  cases.emplace_back("f16 page 24 window splits 3", runs24);
  DecodeCase empty = half({0, 125, 0}, DType::F16, 32, 4);
  empty.batch = 3;
  empty.batch_idx = {4, 0, 2};
  cases.emplace_back("f16 cache_batch_idx, empty sequences", empty);
  DecodeCase extreme = half({90, 41}, DType::F16, 32, 4);
  extreme.scale = 3e38f;
  extreme.qk_amplitude = 1e-3f;  // scale * q.k far past fp32's range: halved natural units
  cases.emplace_back("f16 scale 3e38", extreme);
  for (int splits : {1, 2, 5, 64}) {
    DecodeCase s = half({200, 2}, DType::F16, 64, 4);
    s.page_size = 16;
    s.num_splits = splits;
    cases.emplace_back("f16 page 16 splits " + std::to_string(splits), s);
  }
  // Forced onto decode_mma (decode_mma_emulated, bench/gpu/decode_*.sh), every case must run there
  // where the device's local memory holds the form's ring (read from the device: PoCL reports
  // more or less by host CPU, NVIDIA 48 KiB).
  const char* form = std::getenv("FLASHCL_DECODE");
  int bc = 32, ring = 2;
  const bool forced =
      form != nullptr && (std::string(form) == "mma" || std::sscanf(form, "mma-b%ds%d", &bc, &ring) == 2);
  cl_ulong local_bytes = 0;
  check(clGetDeviceInfo(session().device(), CL_DEVICE_LOCAL_MEM_SIZE, sizeof local_bytes, &local_bytes, nullptr),
        "clGetDeviceInfo(CL_DEVICE_LOCAL_MEM_SIZE)");
  for (const auto& [name, e] : cases) {
    const bool fits = detail::decode_mma_local_bytes(bc, e.head_dim, ring, e.page_size > 0) <= local_bytes;  // (the most)
    expect_decode(e, name, forced && fits ? "decode_mma" : "");
  }
}

// Hostile device values: clamped as documented, nothing outside the tensors touched.
TEST(Decode, HostileDeviceValuesStayInBounds) {
  DecodeCase c = base({-5, 1000000, 30});
  c.batch = 3;
  c.page_size = 4;
  c.seqlen_new = c.seqlen_q = 2;
  c.causal = true;
  c.cache_layout = Layout::PaddedRows;
  c.bad_pages = {{2, 1}, {2, 7}, {1, 11}, {0, 0}};  // entries -1, num_pages, INT_MAX, INT_MIN
  expect_decode(c, "hostile cache_seqlens and block table");
  for (int rotary : {1, 2}) {  // rotary positions from the clamped cache_seqlens (a gap a review named)
    DecodeCase r = c;
    r.rotary = rotary;
    expect_decode(r, "hostile cache_seqlens and block table, rotary " + std::to_string(rotary));
  }
  c.seqlen_q = c.seqlen_new = 5;  // 10 rows per K/V head: the staged kernel
  expect_decode(c, "hostile cache_seqlens and block table, staged kernel");
  DecodeCase k = base({std::numeric_limits<int>::min(), 20, std::numeric_limits<int>::max()});
  k.batch = 3;
  k.batch_idx = {-1, 1, 5};  // 5 rows: -1 and 5 are outside
  k.seqlen_new = k.seqlen_q = 1;
  k.cache_layout = Layout::PaddedRows;
  expect_decode(k, "hostile cache_batch_idx");
}

// Finite values at the edges of what validation accepts, against float64 (issue 19's defect 1, on
// the decode path): the kernels multiplied the scale, softcap and ALiBi slopes by log2 e in fp32,
// so a scale or softcap past FLT_MAX / log2 e ~ 2.4e38 became inf (O and LSE NaN), and a slope of
// that size gave inf * 0 = NaN at the key on the diagonal. Both kernels (streaming: 4 rows per K/V
// head; staged: 12), contiguous and paged, with an append.
TEST(Decode, ExtremeFiniteValuesMatchFloat64) {
  std::vector<std::pair<std::string, DecodeCase>> cases;
  const auto add = [&](const std::string& name, DecodeCase c) {
    const std::vector<float> slopes = c.slopes;  // 8: one per head of the staged case
    if (c.alibi) c.slopes.resize(c.heads);
    cases.emplace_back(name + " (streaming)", c);
    c.heads = 8;
    c.seqlen_q = c.seqlen_new = 3;  // 12 rows per K/V head
    c.causal = true;
    c.page_size = 5;
    c.slopes = slopes;
    cases.emplace_back(name + " (staged, paged, causal)", c);
  };
  DecodeCase c = base({90, 41});
  c.seqlen_q = c.seqlen_new = 2;
  c.qk_amplitude = 1e-19f;  // scale * q.k of order 1 at scale 3e38
  for (float scale : {3e38f, -3e38f, FLT_MAX, 2e38f}) {
    DecodeCase e = c;
    e.scale = scale;
    add("scale " + std::to_string(scale), e);
  }
  DecodeCase zero_q = c;  // scale 3e38 with q = k = 0: uniform attention, LSE = ln(keys)
  zero_q.scale = 3e38f;
  zero_q.qk_amplitude = 0.0f;
  add("scale 3e38, q = 0", zero_q);
  for (float cap : {3e38f, FLT_MAX, 1e-45f, 1e-30f}) {
    DecodeCase e = base({90, 41});
    e.seqlen_q = e.seqlen_new = 2;
    e.softcap = cap;
    add("softcap " + std::to_string(cap), e);
  }
  DecodeCase both = c;
  both.scale = both.softcap = 3e38f;
  add("scale and softcap 3e38", both);
  for (float slope : {3e38f, FLT_MAX, 1e30f}) {
    DecodeCase e = base({90, 41});
    e.seqlen_q = e.seqlen_new = 2;
    e.alibi = true;
    e.slopes = {slope, slope / 2, 0.5f, 1e-45f, slope / 3, slope, 0.25f, slope};
    add("alibi slopes " + std::to_string(slope), e);
  }
  for (const auto& [name, e] : cases) expect_decode(e, name);
}

// The red-team pass (issue 19): the window's right side was clamped to capacity + Nq, so at the
// largest capacity validation accepts (2^30 - 1 keys) the kernels' key bound q_end + shift + right
// reached 2^31 and wrapped: every key hidden, O = 0 and LSE = -inf. Keys broadcast through a
// sequence stride of 0 (one row serves all 2^30), and a window that leaves each query the last one
// or two keys (cheap on any device): O = V's row, LSE = scale q.k + ln(keys seen).
// A NaN in the cache reaches the rows that see its key as NaN (O, and LSE for a NaN in K), as in the
// forward and the float64 reference, and no other row: a split or key stream that met it is not
// taken for an empty one and dropped. Contiguous and paged, planner's and forced split counts.
TEST(Decode, NaNInTheCacheReachesOnlyItsRows) {
  for (DType dtype : {DType::F32, DType::F16})  // (f16: the shapes of decode_mma too)
    for (int page : {0, 16})
      for (int splits : {0, 1, 3}) {
        DecodeCase c = base({170, 75, 1});
        c.batch = 3;
        c.dtype = dtype;
        c.page_size = page;
        c.num_splits = splits;
        // 16-bit storage: its rounding of q, K and V, and of P on the tensor cores
        const double tol = dtype == DType::F32 ? 1e-5 : 2e-3;
        // sequence 0 (170 keys), key 100, K/V head 1: query heads 2, 3; sequence 2's only key, K/V
        // head 0: query heads 0, 1 see a NaN alone (no key stream or split may take it for none)
        c.nan_k = {{0, 100, 1}, {2, 0, 0}};
        c.nan_v = {{1, 10, 0}};  // sequence 1 (75 keys), key 10, K/V head 0: query heads 0, 1
        const std::string what =
            std::string(to_string(dtype)) + ", page " + std::to_string(page) + ", splits " + std::to_string(splits);
        SCOPED_TRACE(what);
        const DecodeResult r = run_decode(c);
        EXPECT_EQ(r.cache_bad, 0u);
        const CaseResult& cr = r.result;
        int nan_rows = 0;
        for (std::size_t row = 0; row < cr.lse_values.size(); ++row) {  // (b, h), Nq = 1
          bool nan_ref = std::isnan(cr.ref.lse[row]);  // a NaN in V reaches its column of O only
          for (int j = 0; j < c.head_dim; ++j) nan_ref |= std::isnan(cr.ref.out[row * c.head_dim + j]);
          nan_rows += nan_ref;
          EXPECT_EQ(std::isnan(cr.lse_values[row]), std::isnan(cr.ref.lse[row])) << "LSE of row " << row;
          if (!std::isnan(cr.ref.lse[row])) EXPECT_NEAR(cr.lse_values[row], cr.ref.lse[row], 1e-4) << "row " << row;
          for (int j = 0; j < c.head_dim; ++j) {
            const float got = cr.o[row * c.head_dim + j];
            const double want = cr.ref.out[row * c.head_dim + j];
            if (std::isnan(want)) {
              EXPECT_TRUE(std::isnan(got)) << "row " << row << " column " << j << " sees the NaN: " << got;
            } else {
              EXPECT_NEAR(got, want, tol + tol * std::fabs(want)) << "row " << row << " column " << j;
            }
          }
        }
        EXPECT_EQ(nan_rows, 6) << "the reference's NaN rows: heads 2, 3 of sequence 0 and 0, 1 of sequences 1 and 2";
      }
}

TEST(Decode, WindowBoundAtTheLargestCapacity) {
  const int d = 4, nq = 2, capacity = std::numeric_limits<int>::max() / 2;
  const std::vector<float> q = bench::random_values(nq * d, 61), kv = bench::random_values(2 * d, 62);
  DeviceBytes dq(q.data(), q.size() * sizeof(float)), dk(kv.data(), d * sizeof(float)),
      dv(kv.data() + d, d * sizeof(float));
  const std::vector<int> lens = {capacity};
  DeviceBytes seqlens(lens.data(), sizeof(int));
  DeviceBuffer o(nq * d, kNaN), lse(nq, kNaN);
  KvCacheArgs a;
  a.batch = a.heads = 1;
  a.seqlen_q = nq;
  a.head_dim = d;
  a.q.buffer = dq.mem;
  a.o.buffer = o.mem;
  a.lse = lse.mem;
  a.k_cache = {dk.mem, 0, 0, 0, d};  // batch and sequence strides 0: one row for every key
  a.v_cache = {dv.mem, 0, 0, 0, d};
  a.cache_seqlen = capacity;
  a.cache_seqlens = seqlens.mem;
  a.window = {0, std::numeric_limits<int>::max()};
  forward_kvcache(session().queue(), a).wait();
  const auto got = o.read(), got_lse = lse.read();
  for (int i = 0; i < nq; ++i) {
    double dot = 0.0;
    for (int c = 0; c < d; ++c) dot += double(q[i * d + c]) * kv[c];
    const double want = dot / std::sqrt(double(d)) + std::log(double(nq - i));  // row i sees nq - i keys
    EXPECT_NEAR(got_lse[i], want, 1e-5 * std::max(1.0, std::fabs(want))) << "row " << i;
    for (int c = 0; c < d; ++c) EXPECT_NEAR(got[i * d + c], kv[d + c], 1e-6) << "row " << i;
  }
}

// ---- invalid host arguments ----------------------------------------------------------------

class DecodeInvalid : public testing::Test {
 protected:
  static constexpr int kB = 2, kH = 4, kHk = 2, kD = 8, kS = 16;
  std::vector<float> values = bench::random_values(static_cast<std::size_t>(kB) * kS * kH * kD, 5);
  DeviceTensor q{Layout::BSHD, kB, 1, kH, kD, &values};
  DeviceTensor o{Layout::BSHD, kB, 1, kH, kD, nullptr};
  DeviceTensor k{Layout::BSHD, kB, kS, kHk, kD, &values};
  DeviceTensor v{Layout::BSHD, kB, kS, kHk, kD, &values};
  std::vector<int> lens = {3, 16};
  DeviceBytes seqlens{lens.data(), lens.size() * sizeof(int)};
  std::vector<int> table_values = {0, 1, 2, 3};
  DeviceBytes table{table_values.data(), table_values.size() * sizeof(int)};

  KvCacheArgs valid() const {
    KvCacheArgs a;
    a.batch = kB;
    a.heads = kH;
    a.heads_kv = kHk;
    a.seqlen_q = 1;
    a.head_dim = kD;
    a.q = q.view;
    a.o = o.view;
    a.k_cache = k.view;
    a.v_cache = v.view;
    a.cache_seqlen = kS;
    a.cache_seqlens = seqlens.mem;
    return a;
  }
  KvCacheArgs valid_paged() const {  // the same buffers as a pool of 4 pages of 8
    KvCacheArgs a = valid();
    a.cache_seqlen = 0;
    a.k_cache = a.v_cache = {};
    a.k_cache.buffer = k.view.buffer;
    a.v_cache.buffer = v.view.buffer;
    a.block_table = table.mem;
    a.num_pages = 4;
    a.page_size = 8;
    a.max_pages = 2;
    return a;
  }

  void expect_rejected(const KvCacheArgs& args, Status status, const std::string& parameter) {
    const auto before = o.raw();
    try {
      forward_kvcache(session().queue(), args).wait();
      ADD_FAILURE() << "accepted; expected an error naming '" << parameter << "'";
    } catch (const Error& e) {
      EXPECT_EQ(e.status(), status) << e.what();
      EXPECT_NE(std::string(e.what()).find(parameter), std::string::npos) << "message: " << e.what();
    }
    clFinish(session().queue());
    const auto after = o.raw();
    for (std::size_t i = 0; i < after.size(); ++i) ASSERT_TRUE(std::isnan(after[i])) << "o written before the error";
  }
};

TEST_F(DecodeInvalid, ValidArgumentsRun) {
  forward_kvcache(session().queue(), valid()).wait();
  forward_kvcache(session().queue(), valid_paged()).wait();
}

TEST_F(DecodeInvalid, ShapesAndSettings) {
  auto with = [&](auto change, KvCacheArgs a) { change(a); return a; };
  expect_rejected(with([](KvCacheArgs& a) { a.batch = 0; }, valid()), Status::InvalidArgument, "batch");
  expect_rejected(with([](KvCacheArgs& a) { a.heads_kv = 3; }, valid()), Status::InvalidArgument, "heads_kv");
  expect_rejected(with([](KvCacheArgs& a) { a.seqlen_q = 0; }, valid()), Status::InvalidArgument, "seqlen_q");
  expect_rejected(with([](KvCacheArgs& a) { a.head_dim = 300; }, valid()), Status::InvalidArgument, "head_dim");
  expect_rejected(with([](KvCacheArgs& a) { a.scale = INFINITY; }, valid()), Status::InvalidArgument, "scale");
  expect_rejected(with([](KvCacheArgs& a) { a.cache_seqlen = 0; }, valid()), Status::InvalidArgument, "cache_seqlen");
  expect_rejected(with([](KvCacheArgs& a) { a.cache_batch = 1; }, valid()), Status::InvalidArgument, "cache_batch");
  expect_rejected(with([](KvCacheArgs& a) { a.window.left = -2; }, valid()), Status::InvalidArgument, "window.left");
  expect_rejected(with([](KvCacheArgs& a) { a.softcap = -1.0f; }, valid()), Status::InvalidArgument, "softcap");
  expect_rejected(with([](KvCacheArgs& a) { a.num_splits = 5000; }, valid()), Status::InvalidArgument, "num_splits");
  expect_rejected(with([](KvCacheArgs& a) { a.seqlen_new = 1; }, valid()), Status::InvalidArgument, "seqlen_new");
  expect_rejected(with([&](KvCacheArgs& a) { a.k_new = q.view; }, valid()), Status::InvalidArgument, "v_new");
  expect_rejected(with([&](KvCacheArgs& a) { a.k_new = a.v_new = k.view; a.seqlen_new = kS + 1; }, valid()),
                  Status::InvalidArgument, "seqlen_new");
  expect_rejected(with([&](KvCacheArgs& a) { a.rotary_cos = seqlens.mem; }, valid()), Status::InvalidArgument,
                  "rotary_sin");
  expect_rejected(with([&](KvCacheArgs& a) { a.rotary_cos = a.rotary_sin = seqlens.mem; a.rotary_seqlen = kS; a.rotary_dim = 3; }, valid()),
                  Status::InvalidArgument, "rotary_dim");
  expect_rejected(with([&](KvCacheArgs& a) { a.rotary_cos = a.rotary_sin = seqlens.mem; a.rotary_seqlen = kS - 1; }, valid()),
                  Status::InvalidArgument, "rotary_seqlen");
  expect_rejected(with([&](KvCacheArgs& a) { a.rotary_cos = a.rotary_sin = seqlens.mem; a.rotary_seqlen = kS; }, valid()),
                  Status::InvalidArgument, "rotary_cos");  // 16 rows x 4 floats do not fit 8 bytes
}

TEST_F(DecodeInvalid, BuffersAndPagedLayout) {
  auto with = [&](auto change, KvCacheArgs a) { change(a); return a; };
  expect_rejected(with([](KvCacheArgs& a) { a.cache_seqlens = nullptr; }, valid()), Status::InvalidHandle, "cache_seqlens");
  expect_rejected(with([](KvCacheArgs& a) { a.q.buffer = nullptr; }, valid()), Status::InvalidHandle, "q");
  expect_rejected(with([](KvCacheArgs& a) { a.cache_seqlen = kS + 1; }, valid()), Status::InvalidArgument, "k_cache");
  expect_rejected(with([](KvCacheArgs& a) { a.o.seq_stride = -1; }, valid()), Status::InvalidArgument, "o");
  expect_rejected(with([&](KvCacheArgs& a) { a.lse = seqlens.mem; }, valid()), Status::InvalidArgument, "lse");
  expect_rejected(with([&](KvCacheArgs& a) { a.workspace = seqlens.mem; }, valid()), Status::InvalidArgument, "workspace");
  expect_rejected(with([](KvCacheArgs& a) { a.page_size = 0; }, valid_paged()), Status::InvalidArgument, "page_size");
  expect_rejected(with([](KvCacheArgs& a) { a.num_pages = 0; }, valid_paged()), Status::InvalidArgument, "num_pages");
  expect_rejected(with([](KvCacheArgs& a) { a.num_pages = 5; }, valid_paged()), Status::InvalidArgument, "k_cache");
  expect_rejected(with([](KvCacheArgs& a) { a.max_pages = 3; }, valid_paged()), Status::InvalidArgument, "block_table");
  expect_rejected(with([](KvCacheArgs& a) { a.block_table_stride = 1; }, valid_paged()), Status::InvalidArgument,
                  "block_table_stride");
  expect_rejected(with([](KvCacheArgs& a) { a.block_table_stride = std::int64_t{1} << 62; }, valid_paged()),
                  Status::InvalidArgument, "block_table");  // (B - 1) * stride would wrap 64 bits
  expect_rejected(with([&](KvCacheArgs& a) { a.cache_batch_idx = seqlens.mem; }, valid_paged()), Status::InvalidArgument,
                  "cache_batch_idx");
  expect_rejected(with([](KvCacheArgs& a) { a.block_table = nullptr; }, valid_paged()), Status::InvalidArgument,
                  "block_table");
}

// The red-team pass (issue 19): forward_kvcache checked each buffer's handle, context and size but
// not what the forward checks besides, so an output aliasing an input, an image, or a read-only
// output was accepted. Now: outputs (o, lse, workspace, and the caches when k_new is appended into
// them) may not share bytes with another argument, and each buffer's kind and flags must allow its use.
TEST_F(DecodeInvalid, OutputsMayNotAliasInputs) {
  auto with = [&](auto change, KvCacheArgs a) { change(a); return a; };
  const auto append = [&](KvCacheArgs& a) {
    a.k_new = a.v_new = q.view;  // (B, 1, H_kv, d) fits q's (B, 1, H, d): inputs may share memory
    a.seqlen_new = 1;
  };
  // (one split: the workspace, B * H * splits * (d + 1) floats, fits the buffers it is aimed at)
  expect_rejected(with([&](KvCacheArgs& a) { a.lse = k.view.buffer; }, valid()), Status::InvalidArgument,
                  "lse: overlaps k_cache");
  expect_rejected(with([&](KvCacheArgs& a) { a.workspace = v.view.buffer; a.num_splits = 1; }, valid()),
                  Status::InvalidArgument, "workspace: overlaps v_cache");
  expect_rejected(with([&](KvCacheArgs& a) { a.workspace = k.view.buffer; a.num_splits = 1; }, valid_paged()),
                  Status::InvalidArgument, "workspace: overlaps k_cache");
  // the caches are outputs when k_new is appended: q, k_new or the int arrays inside them are refused
  expect_rejected(with([&](KvCacheArgs& a) { append(a); a.q = a.k_new = a.v_new = k.view; }, valid()),
                  Status::InvalidArgument, "k_cache");
  expect_rejected(with([&](KvCacheArgs& a) { append(a); a.v_cache = k.view; }, valid()), Status::InvalidArgument,
                  "v_cache");
  // without an append the caches are inputs like q: sharing among inputs is fine
  KvCacheArgs shared = valid();
  shared.v_cache = k.view;
  forward_kvcache(session().queue(), shared).wait();
  for (float x : o.logical()) ASSERT_TRUE(std::isfinite(x));
}

// The caches appended into were compared only as whole views (a red-team pass, 2026-12-08): a
// cache whose strides repeat elements lost a head's appended key, and a V view shifted one head
// into K's memory wrote keys and values over each other. Now each cache appended into gets the
// output rule for its strides, and K and V in one allocation must interleave (a (row, K or V, head,
// d) pool passes and runs) or not meet.
TEST_F(DecodeInvalid, CachesAppendedIntoGetTheOutputRules) {
  const auto append = [&](KvCacheArgs& a) {
    a.k_new = a.v_new = q.view;  // (B, 1, H_kv, d) fits q's (B, 1, H, d)
    a.seqlen_new = 1;
  };
  KvCacheArgs a = valid();
  append(a);
  a.k_cache.head_stride = 0;  // both K/V heads on one memory
  expect_rejected(a, Status::InvalidArgument, "k_cache: its strides send different elements to one address");
  a = valid();
  append(a);
  a.v_cache.seq_stride = 0;  // every row on one memory
  expect_rejected(a, Status::InvalidArgument, "v_cache: its strides send different elements to one address");
  // one (B, S, 2 x H_kv, d) allocation: K in heads 0..H_kv-1 of each row, V in the rest
  DeviceTensor pool{Layout::BSHD, kB, kS, 2 * kHk, kD, &values};
  a = valid();
  append(a);
  a.k_cache = pool.view;
  a.v_cache = pool.view;
  a.v_cache.offset = kD;  // V's head 0 is K's head 1
  expect_rejected(a, Status::InvalidArgument, "v_cache: its strides send different elements to one address");
  KvCacheArgs dense = a;
  dense.v_cache = {pool.view.buffer, kD};  // dense (B, S, H_kv, d) strides, one head into K's first row
  expect_rejected(dense, Status::InvalidArgument, "v_cache: overlaps k_cache");
  a.v_cache.offset = std::int64_t{kHk} * kD;
  forward_kvcache(session().queue(), a).wait();  // interleaved: valid (last: it writes o)
}

// An O whose strides send two elements to one address (its heads on one memory) is refused: its
// stores would race and leave elements unwritten.
TEST_F(DecodeInvalid, OutputWhoseStridesRepeatElements) {
  KvCacheArgs a = valid();
  a.o = Tensor{o.view.buffer, 0, std::int64_t{kH} * kD, std::int64_t{kH} * kD, 0};
  expect_rejected(a, Status::InvalidArgument, "o: its strides send different elements to one address");
}

// O written into the memory of an input computed garbage (or overwrote the cache); each pairing
// is refused, and the same call with O in its own buffer runs.
TEST_F(DecodeInvalid, OutputIntoAnInputIsRefused) {
  KvCacheArgs a = valid();
  for (const Tensor* input : {&q.view, &k.view, &v.view}) {
    a.o = *input;
    a.o.seq_stride = a.o.batch_stride = a.o.head_stride = 0;  // dense (B, 1, H, d): inside each buffer
    expect_rejected(a, Status::InvalidArgument, "o: overlaps");
  }
  std::vector<int> ints(64, 0);
  DeviceBytes big(ints.data(), ints.size() * sizeof(int));  // cache_seqlens inside o's memory
  a = valid();
  a.o = {};
  a.o.buffer = big.mem;
  a.cache_seqlens = big.mem;
  expect_rejected(a, Status::InvalidArgument, "overlaps cache_seqlens");
}

// Memory-object kind and flags: an image, a read-only output, a write-only input; a read-only cache
// is fine for reading and refused when k_new is appended into it.
TEST_F(DecodeInvalid, MemoryObjectKindAndFlags) {
  cl_int err = CL_SUCCESS;
  const std::size_t bytes = values.size() * sizeof(float);
  cl_mem read_only = clCreateBuffer(session().context(), CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, bytes,
                                    values.data(), &err);
  check(err, "clCreateBuffer");
  cl_mem write_only = clCreateBuffer(session().context(), CL_MEM_WRITE_ONLY, bytes, nullptr, &err);
  check(err, "clCreateBuffer");
  const cl_image_format format{CL_R, CL_FLOAT};
  cl_image_desc desc{};
  desc.image_type = CL_MEM_OBJECT_IMAGE2D;
  desc.image_width = desc.image_height = 64;
  cl_mem image = clCreateImage(session().context(), CL_MEM_READ_WRITE, &format, &desc, nullptr, &err);
  if (err != CL_SUCCESS) image = nullptr;  // a device without images: that case is skipped
  auto with = [&](auto change, KvCacheArgs a) { change(a); return a; };
  expect_rejected(with([&](KvCacheArgs& a) { a.q.buffer = write_only; }, valid()), Status::InvalidArgument, "q");
  expect_rejected(with([&](KvCacheArgs& a) { a.lse = read_only; }, valid()), Status::InvalidArgument, "lse");
  expect_rejected(with([&](KvCacheArgs& a) { a.workspace = read_only; a.num_splits = 1; }, valid()),
                  Status::InvalidArgument, "workspace: a CL_MEM_READ_ONLY");
  expect_rejected(with([&](KvCacheArgs& a) { a.cache_seqlens = write_only; }, valid()), Status::InvalidArgument,
                  "cache_seqlens");
  const auto append_into_read_only = [&](KvCacheArgs& a) {
    a.k_cache.buffer = read_only;
    a.k_new = a.v_new = q.view;
    a.seqlen_new = 1;
  };
  expect_rejected(with(append_into_read_only, valid()), Status::InvalidArgument, "k_cache");
  if (image != nullptr)
    expect_rejected(with([&](KvCacheArgs& a) { a.alibi_slopes = image; }, valid()), Status::InvalidHandle,
                    "alibi_slopes");
  KvCacheArgs reading = valid();
  reading.k_cache.buffer = read_only;  // (read only: fine without an append)
  forward_kvcache(session().queue(), reading).wait();
  DeviceTensor o2{Layout::BSHD, kB, 1, kH, kD, nullptr};
  KvCacheArgs plain = valid();
  plain.o = o2.view;
  forward_kvcache(session().queue(), plain).wait();
  const auto got = o.logical(), want = o2.logical();  // the read-only cache holds the same values
  EXPECT_EQ(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)), 0);
  for (cl_mem m : {read_only, write_only, image})
    if (m != nullptr) clReleaseMemObject(m);
}

TEST_F(DecodeInvalid, CApiChecksStructSizeAndReportsErrors) {
  fcl_kvcache_args a;
  fcl_kvcache_args_init(&a);
  EXPECT_EQ(a.struct_size, sizeof a);
  a.batch = kB;
  a.heads = kH;
  a.heads_kv = kHk;
  a.seqlen_q = 1;
  a.head_dim = kD;
  a.q.buffer = q.view.buffer;
  a.o.buffer = o.view.buffer;
  a.k_cache.buffer = k.view.buffer;
  a.v_cache.buffer = v.view.buffer;
  a.cache_seqlen = kS;
  a.cache_seqlens = seqlens.mem;
  size_t bytes = 0;
  EXPECT_EQ(fcl_kvcache_workspace_bytes(session().device(), &a, &bytes), FCL_SUCCESS) << fcl_last_error();
  EXPECT_GT(bytes, 0u);
  cl_event event = nullptr;
  ASSERT_EQ(fcl_forward_kvcache(session().queue(), &a, 0, nullptr, &event), FCL_SUCCESS) << fcl_last_error();
  ASSERT_NE(event, nullptr);
  EXPECT_EQ(clWaitForEvents(1, &event), CL_SUCCESS);
  clReleaseEvent(event);

  fcl_kvcache_args old = a;
  old.struct_size = sizeof a - 8;
  EXPECT_EQ(fcl_forward_kvcache(session().queue(), &old, 0, nullptr, nullptr), FCL_INVALID_ARGUMENT);
  EXPECT_NE(std::string(fcl_last_error()).find("struct_size"), std::string::npos) << fcl_last_error();
  a.page_size = 4;  // without a block table
  EXPECT_EQ(fcl_forward_kvcache(session().queue(), &a, 0, nullptr, nullptr), FCL_INVALID_ARGUMENT);
  EXPECT_NE(std::string(fcl_last_error()).find("block_table"), std::string::npos) << fcl_last_error();
  a.page_size = 0;
  a.dtype = static_cast<fcl_dtype>(7);
  EXPECT_EQ(fcl_forward_kvcache(session().queue(), &a, 0, nullptr, nullptr), FCL_UNSUPPORTED_DTYPE);
  EXPECT_EQ(fcl_forward_kvcache(session().queue(), nullptr, 0, nullptr, nullptr), FCL_INVALID_ARGUMENT);
}

// ---- the planner on simulated devices -------------------------------------------------------

using detail::DecodePlan;
using detail::DecodeRequest;
using detail::DeviceFacts;

DeviceFacts nvidia_gpu(std::size_t local_kib, int compute_units = 132) {
  DeviceFacts f;
  f.name = "simulated GPU";
  f.vendor = "NVIDIA Corporation";
  f.kind = detail::DeviceKind::GPU;
  f.local_mem_bytes = local_kib * 1024;
  f.max_work_group_size = 1024;
  f.work_group_multiple = 32;
  f.compute_units = compute_units;
  return f;
}
DeviceFacts h200() { return nvidia_gpu(48); }
DeviceFacts pocl() {
  DeviceFacts f;
  f.kind = detail::DeviceKind::CPU;
  f.local_mem_bytes = 512 * 1024;
  f.max_work_group_size = 4096;
  f.work_group_multiple = 8;
  f.compute_units = 2;
  f.float_vector_width = 16;  // AVX-512
  return f;
}

DecodeRequest decode_request(int batch, int keys, int page_size = 0) {
  DecodeRequest r;
  r.batch = batch;
  r.heads = 32;
  r.heads_kv = 8;
  r.seqlen_q = 1;
  r.head_dim = 128;
  r.max_keys = keys;
  r.page_size = page_size;
  r.vec = 8;  // fp16, d = 128: 16-byte loads
  return r;
}

void expect_runnable(const DeviceFacts& f, const DecodeRequest& r, const DecodePlan& p) {
  EXPECT_LE(p.local_bytes, f.local_mem_bytes);
  const int chunks = r.head_dim / r.vec;
  if (p.stream) {  // decode_stream.cl's shape: chunks x key groups work-items, BC = key groups x KPT
    const int key_groups = static_cast<int>(p.work_group_size) / chunks;
    EXPECT_EQ(p.work_group_size, static_cast<std::size_t>(key_groups * chunks));
    EXPECT_EQ(p.block_cols, key_groups * p.keys_per_thread);
    EXPECT_LE(p.block_rows * r.vec, 64) << "registers";
    EXPECT_EQ(p.local_bytes, detail::decode_stream_local_bytes(p.block_rows, p.block_cols, r.head_dim, key_groups,
                                                               chunks, p.page_slots));
  } else if (p.lanes) {  // decode_lanes.cl's shape: a power of two <= 32 lanes per key
    const int key_groups = static_cast<int>(p.work_group_size) / chunks;
    EXPECT_EQ(chunks & (chunks - 1), 0);
    EXPECT_LE(chunks, 32);
    EXPECT_EQ(p.work_group_size, static_cast<std::size_t>(key_groups * chunks));
    EXPECT_EQ(p.block_cols, key_groups * p.keys_per_thread);
    EXPECT_LE(p.block_rows * r.vec, 64) << "registers";
    EXPECT_EQ(p.local_bytes, detail::decode_lanes_local_bytes(p.block_rows, p.block_cols, r.head_dim, key_groups,
                                                              chunks, p.lane_shuffle, p.lane_async));
  } else if (p.cpu) {
    EXPECT_EQ(p.local_bytes, 0u);
  } else {
    EXPECT_EQ(p.local_bytes, detail::decode_local_bytes(p.block_rows, p.block_cols, r.head_dim, p.page_slots));
  }
  EXPECT_LE(p.work_group_size, f.max_work_group_size);
  if (p.cpu)  // decode_cpu.cl: one work-item, one score vector of VW keys per row
    EXPECT_TRUE(p.work_group_size == 1 && p.block_cols == p.vector_width && r.head_dim % p.vector_width == 0);
  else
    EXPECT_GE(p.work_group_size, static_cast<std::size_t>(p.block_rows));  // one work-item per row's softmax
  EXPECT_EQ(p.block_rows * p.row_blocks >= r.heads / r.heads_kv * r.seqlen_q, true);
  EXPECT_GE(p.num_splits, 1);
  EXPECT_LE(p.num_splits, detail::kMaxDecodeSplits);
  if (r.page_size > 0 && !p.lanes) EXPECT_EQ(p.page_slots, std::min(p.block_cols, (p.block_cols - 1) / r.page_size + 2));
  EXPECT_FALSE(p.reason.empty());
}

TEST(DecodePlanner, FillsTheH200) {
  const DeviceFacts f = h200();
  for (int batch : {1, 8})
    for (int keys : {4096, 32768, 131072}) {
      const DecodeRequest r = decode_request(batch, keys);
      const DecodePlan p = detail::plan_decode(f, r);
      SCOPED_TRACE(p.reason);
      expect_runnable(f, r, p);
      EXPECT_EQ(p.block_rows, 4);  // the four query heads of a K/V head share each tile
      EXPECT_TRUE(p.lanes);        // NVIDIA: the shuffle kernel
      EXPECT_TRUE(p.lane_shuffle);
      EXPECT_EQ(p.work_group_size, 128u);  // 16 chunks of 8 halves x 8 key groups
      EXPECT_EQ(p.block_cols, 32);         // 4 keys per work-item
      const long groups = static_cast<long>(batch) * 8 * p.row_blocks * p.num_splits;
      EXPECT_GE(keys / p.num_splits, 256) << "no split under 256 keys";
      if (keys >= 32768) EXPECT_GE(groups, 2L * f.compute_units) << "two work-groups for each of 132 SMs";
    }
  // a short cache is not cut into slivers: at least two tiles per split
  const DecodePlan p = detail::plan_decode(f, decode_request(1, 256));
  EXPECT_LE(p.num_splits, std::max(1, (256 + p.block_cols - 1) / p.block_cols / 2));
}

// SplitRule for decode_lanes: 2 work-groups per compute unit (no split under 256 keys), then splits
// of about 2048 keys; the H200 sweep's best count in brackets.
TEST(DecodePlanner, LanesSplitCounts) {
  const DeviceFacts f = h200();
  EXPECT_EQ(detail::plan_decode(f, decode_request(8, 4096)).num_splits, 5);     // 264 / 64 (4: best of 4-264)
  EXPECT_EQ(detail::plan_decode(f, decode_request(8, 32768)).num_splits, 16);   // 32768 / 2048 (16)
  EXPECT_EQ(detail::plan_decode(f, decode_request(8, 131072)).num_splits, 64);  // (66; 33-132 within 1 %)
  EXPECT_EQ(detail::plan_decode(f, decode_request(1, 4096)).num_splits, 16);    // 4096 / 256 (16)
  EXPECT_EQ(detail::plan_decode(f, decode_request(1, 32768)).num_splits, 33);   // 264 / 8 (33)
  EXPECT_EQ(detail::plan_decode(f, decode_request(1, 131072)).num_splits, 64);  // (33: 2.32 TB/s, 66: 2.18)
  EXPECT_EQ(detail::plan_decode(f, decode_request(1, 100)).num_splits, 1);
}

// With the built kernel's residency (decode.cpp reads it from NVIDIA's CL_KERNEL_WORK_GROUP_SIZE):
// whole waves of resident work-groups; the H200's figures (bench/gpu/decode_waves.sh) in brackets.
// The workspace query's count (kResidentForSizing) is at least every residency's and the old rule's.
TEST(DecodePlanner, LanesSplitsFillWholeWaves) {
  const DeviceFacts f = h200();  // 132 compute units
  const auto splits = [&](int batch, int keys, int resident) {
    DecodeRequest r = decode_request(batch, keys);
    r.resident_per_cu = resident;
    const DecodePlan p = detail::plan_decode(f, r);
    expect_runnable(f, r, p);
    return p.num_splits;
  };
  EXPECT_EQ(splits(1, 32768, 3), 49);   // 392 of 396 (49: 1.88 TB/s; 33: 1.76; 66: 1.50)
  EXPECT_EQ(splits(1, 131072, 3), 49);  // (49: 2.66; the 2048-key rule's 64: 2.18; 99: 2.39)
  EXPECT_EQ(splits(8, 32768, 3), 12);   // 768: two waves (12: 2.88; 16: 2.81)
  EXPECT_EQ(splits(8, 131072, 3), 61);  // ten waves (61 not timed; 49: 3.10, 64: 3.05)
  EXPECT_EQ(splits(1, 4096, 3), 16);    // no split under 256 keys
  EXPECT_EQ(splits(8, 4096, 3), 6);     // one wave of 384
  EXPECT_EQ(splits(1, 100, 3), 1);
  EXPECT_EQ(splits(1, 32768, 2), 33);   // two a compute unit: the old rule's wave
  for (int batch : {1, 3, 8, 64})
    for (int keys : {100, 4096, 32768, 131072, 1 << 20}) {
      const int sized = splits(batch, keys, detail::kResidentForSizing);
      EXPECT_GE(sized, splits(batch, keys, 0)) << batch << " x " << keys;
      for (int resident = 1; resident <= 7; ++resident)  // what decode.cpp can read: a size under 1024, over 128
        EXPECT_GE(sized, splits(batch, keys, resident)) << batch << " x " << keys << " at " << resident;
    }
  // CPUs and the other kernels keep their rules whatever the residency
  DecodeRequest r = decode_request(8, 32768);
  r.resident_per_cu = 3;
  const DeviceFacts cpu = pocl();
  EXPECT_EQ(detail::plan_decode(cpu, r).num_splits, detail::plan_decode(cpu, decode_request(8, 32768)).num_splits);
}

// Which decode kernel: lanes needs NVIDIA (or FLASHCL_DECODE=lanes) and a key's chunks a power of
// two up to 32; eight rows halve its keys per work-item; the override forces each form where the
// call allows it.
TEST(DecodePlanner, KernelFormsAndOverride) {
  DecodeRequest r = decode_request(2, 4096);
  DeviceFacts other_gpu = h200();
  other_gpu.vendor = "Advanced Micro Devices, Inc.";
  EXPECT_TRUE(detail::plan_decode(other_gpu, r).stream);
  EXPECT_FALSE(detail::plan_decode(other_gpu, r).lanes);
  EXPECT_FALSE(detail::plan_decode(pocl(), r).lanes);
  r.heads = 64;  // 8 rows per K/V head
  DecodePlan p = detail::plan_decode(h200(), r);
  EXPECT_TRUE(p.lanes);
  EXPECT_EQ(p.keys_per_thread, 2);
  expect_runnable(h200(), r, p);
  r.heads = 32;
  r.head_dim = 72;  // 9 chunks: not a butterfly
  EXPECT_TRUE(detail::plan_decode(h200(), r).stream);
  r.head_dim = 128;
  r.vec = 1;  // 128 lanes per key: more than a warp
  EXPECT_FALSE(detail::plan_decode(h200(), r).lanes);
  r.vec = 4;  // fp32: 32 lanes per key, 4 key groups
  p = detail::plan_decode(h200(), r);
  EXPECT_TRUE(p.lanes);
  EXPECT_EQ(p.block_cols, 16);
  expect_runnable(h200(), r, p);

  r.vec = 8;
  EXPECT_FALSE(detail::plan_decode(h200(), r).lane_pipeline);  // the form measured on the H200
  r.form = "lanes";
  EXPECT_TRUE(detail::plan_decode(h200(), r).lane_pipeline);  // the next tile's loads in flight
  r.form = "lanes-single";
  p = detail::plan_decode(h200(), r);
  EXPECT_TRUE(p.lanes && p.lane_shuffle && !p.lane_pipeline);
  r.form = "lanes";  // forced on a CPU: the __local butterfly
  p = detail::plan_decode(pocl(), r);
  EXPECT_TRUE(p.lanes);
  EXPECT_FALSE(p.lane_shuffle);
  expect_runnable(pocl(), r, p);
  r.form = "stream";
  EXPECT_TRUE(detail::plan_decode(h200(), r).stream);
  r.form = "staged";
  p = detail::plan_decode(h200(), r);
  EXPECT_FALSE(p.stream || p.lanes);
  expect_runnable(h200(), r, p);
  r.form = "lanes";
  r.seqlen_q = 16;  // 64 rows: lanes cannot take it, the staged kernel does
  p = detail::plan_decode(h200(), r);
  EXPECT_FALSE(p.stream || p.lanes);
}

// CPU devices: decode_cpu (one work-item, VW-wide vectors, VW halved until it divides d), 8
// work-groups per core and no split under 512 keys; the streaming kernel where no width divides d.
TEST(DecodePlanner, CpuForm) {
  const DeviceFacts f = pocl();
  DecodeRequest r = decode_request(1, 8192);
  DecodePlan p = detail::plan_decode(f, r);
  SCOPED_TRACE(p.reason);
  expect_runnable(f, r, p);
  EXPECT_TRUE(p.cpu);
  EXPECT_EQ(p.vector_width, 16);
  EXPECT_EQ(p.heads_per_item, 8);  // all 8 K/V heads (whole cache rows): 8 x 5 KiB of state
  EXPECT_TRUE(p.cpu_prefetch);
  EXPECT_EQ(p.num_splits, 16);     // 16 work-items for 2 cores, 512 keys each
  EXPECT_EQ(detail::plan_decode(f, decode_request(8, 8192)).num_splits, 2);
  EXPECT_EQ(detail::plan_decode(f, decode_request(1, 600)).num_splits, 1);
  r.heads = 64;  // 8 rows per K/V head at d = 256: 2·8·256 + 4·16·8 floats, 18 KiB a head: 4 heads
  r.head_dim = 256;
  EXPECT_EQ(detail::plan_decode(f, r).heads_per_item, 4);
  r.heads = 32;
  r.head_dim = 72;
  EXPECT_EQ(detail::plan_decode(f, r).vector_width, 8);
  r.head_dim = 20;
  EXPECT_EQ(detail::plan_decode(f, r).vector_width, 4);
  r.head_dim = 30;  // no width of 4 or more divides it
  EXPECT_TRUE(detail::plan_decode(f, r).stream);
  r.head_dim = 128;
  r.seqlen_q = 4;  // 16 rows per K/V head: the staged kernel
  EXPECT_FALSE(detail::plan_decode(f, r).cpu);
  r.seqlen_q = 1;
  r.form = "stream";
  EXPECT_TRUE(detail::plan_decode(f, r).stream);
  r.form = "cpu";  // forced on a GPU: no clang prefetch builtin there
  p = detail::plan_decode(h200(), r);
  EXPECT_TRUE(p.cpu);
  EXPECT_FALSE(p.cpu_prefetch);
  expect_runnable(h200(), r, p);
}

TEST(DecodePlanner, ManyRowsTakeTheStagedKernel) {
  DecodeRequest r = decode_request(8, 4096);
  r.seqlen_q = 16;  // chunked prefill: 64 rows per K/V head
  const DecodePlan p = detail::plan_decode(h200(), r);
  SCOPED_TRACE(p.reason);
  expect_runnable(h200(), r, p);
  EXPECT_FALSE(p.stream);
  EXPECT_EQ(p.block_rows, 16);
  EXPECT_EQ(p.row_blocks, 4);
  r.seqlen_q = 1;
  r.heads_kv = 1;  // MQA decode: 32 rows
  EXPECT_FALSE(detail::plan_decode(h200(), r).stream);
}

TEST(DecodePlanner, BigBatchesNeedNoSplitOnACpu) {
  const DeviceFacts f = pocl();
  const DecodeRequest r = decode_request(64, 8192);
  const DecodePlan p = detail::plan_decode(f, r);
  expect_runnable(f, r, p);
  EXPECT_EQ(p.num_splits, 1);
  EXPECT_GT(detail::plan_decode(f, decode_request(1, 8192)).num_splits, 0);
}

TEST(DecodePlanner, PagedTilesAndForcedSplits) {
  for (int ps : {1, 3, 16, 256}) {
    const DecodeRequest r = decode_request(2, 1000, ps);
    const DecodePlan p = detail::plan_decode(h200(), r);
    expect_runnable(h200(), r, p);
  }
  DecodeRequest r = decode_request(2, 1000);
  r.num_splits = 7;
  EXPECT_EQ(detail::plan_decode(h200(), r).num_splits, 7);
  r.num_splits = detail::kMaxDecodeSplits + 1;
  EXPECT_THROW(detail::plan_decode(h200(), r), Error);
}

TEST(DecodePlanner, ShrinksTilesToLocalMemoryOrFails) {
  for (std::size_t kib : {24, 32, 48}) {
    const DeviceFacts f = nvidia_gpu(kib);
    DecodeRequest r = decode_request(1, 4096);
    r.head_dim = 256;
    r.seqlen_q = 8;  // 32 rows
    const DecodePlan p = detail::plan_decode(f, r);
    SCOPED_TRACE(p.reason);
    expect_runnable(f, r, p);
  }
  DecodeRequest r = decode_request(1, 4096);
  r.head_dim = 256;
  try {
    detail::plan_decode(nvidia_gpu(8), r);
    ADD_FAILURE() << "planned a tile for 8 KiB of local memory";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), Status::OutOfResources);
  }
}

}  // namespace
}  // namespace flashcl::test
