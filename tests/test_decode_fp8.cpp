// test_decode_fp8.cpp: the FP8 KV cache (KvCacheArgs::cache_dtype e4m3/e5m2 with k/v descales
// (B, H_kv); docs/FP8.md "FP8 KV cache") against the float64 reference computed on the DEQUANTISED
// cache the device left (bytes decoded by the host codec times the sequence's descale), so what is
// measured is the kernel's own error, not the quantisation's. Fresh random bytes, descales and
// queries each case, O and LSE poisoned with NaN: contiguous and paged caches (odd page sizes,
// shuffled pools), GQA ratios, appends crossing pages with rotary, causal chunked prefill, splits 1
// and many, q in fp32/fp16/bf16, both fp8 formats. After an append the cache holds exactly the host
// encoder's bytes of fp8(x / descale) (rotated keys: within one code, as the device rotates with
// fp32 arithmetic it may contract), and every byte it should not write is unchanged. The suite is
// named Decode so the ctest entries that force a kernel form (decode_lanes_kernel,
// decode_stream_kernel, decode_fp8_staged) run it on each; the plain entries run it on the
// planner's form, decode_cpu on PoCL; bad inputs are DecodeInvalid.Fp8*.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <numeric>
#include <random>

#include "flashcl/flashcl.h"
#include "rotary_reference.hpp"
#include "support.hpp"

namespace flashcl::test {
namespace {

struct Fp8DecodeCase {
  int batch = 2, heads = 4, heads_kv = 2, seqlen_q = 1, head_dim = 32;
  int capacity = 200;
  std::vector<int> seqlens = {150, 37};
  int page_size = 0;  // 0: contiguous
  int seqlen_new = 0;
  int rotary = 0;  // 0 off, 1 interleaved, 2 half-split
  bool causal = false;
  int num_splits = 0;
  DType dtype = DType::F32, cache = DType::E4M3;
  std::uint64_t seed = 1;
  // (sequence, cached key, K/V head, column) set to a NaN code (0x7f, 0xff in turn: S.1111.111 in
  // e4m3, a NaN in e5m2): the rows that see it must be NaN where the reference is, and only there
  std::vector<std::array<int, 4>> nan_k, nan_v;
};

cl_mem make_buffer(const void* data, std::size_t bytes) {
  cl_int err = CL_SUCCESS;
  cl_mem m = clCreateBuffer(session().context(), CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, std::max<std::size_t>(bytes, 4),
                            const_cast<void*>(data), &err);
  EXPECT_EQ(err, CL_SUCCESS);
  return m;
}

struct Mem {  // a cl_mem released at scope exit
  cl_mem m = nullptr;
  explicit Mem(cl_mem x) : m(x) {}
  Mem(const Mem&) = delete;
  Mem& operator=(const Mem&) = delete;
  ~Mem() {
    if (m != nullptr) clReleaseMemObject(m);
  }
};

std::vector<std::uint8_t> read_bytes(cl_mem m, std::size_t n) {
  std::vector<std::uint8_t> out(n);
  EXPECT_EQ(clEnqueueReadBuffer(session().queue(), m, CL_TRUE, 0, n, out.data(), 0, nullptr, nullptr), CL_SUCCESS);
  return out;
}

// Runs the case and checks O, LSE and the cache bytes (GoogleTest expectations).
void expect_fp8_decode(const Fp8DecodeCase& c, const std::string& what) {
  SCOPED_TRACE(what);
  const int B = c.batch, H = c.heads, Hk = c.heads_kv, Nq = c.seqlen_q, d = c.head_dim, Nn = c.seqlen_new;
  const bool paged = c.page_size > 0;
  const int ps = c.page_size, max_pages = paged ? (c.capacity + ps - 1) / ps : 0;
  const int capacity = paged ? max_pages * ps : c.capacity;
  const int num_pages = paged ? B * max_pages + 2 : 0;
  const int slots = paged ? num_pages : B, slot_rows = paged ? ps : capacity;
  const std::size_t row = static_cast<std::size_t>(Hk) * d, cache_elems = static_cast<std::size_t>(slots) * slot_rows * row;
  std::mt19937 rng(static_cast<unsigned>(c.seed));

  // descales near what amax scaling gives (about 1/100 here), different per (sequence, K/V head)
  std::uniform_real_distribution<float> ds(0.004f, 0.03f);
  std::vector<float> kd(static_cast<std::size_t>(B) * Hk), vd(kd.size());
  for (auto& x : kd) x = ds(rng);
  for (auto& x : vd) x = ds(rng);
  // cache bytes: random codes of magnitude up to ~150 (e5m2's too), every slot (unused ones included)
  const auto code_values = [&](std::uint64_t s) { return bench::random_values(cache_elems, s, 150.0f); };
  std::vector<std::uint8_t> k_bytes = to_fp8(c.cache, code_values(c.seed * 11 + 1));
  std::vector<std::uint8_t> v_bytes = to_fp8(c.cache, code_values(c.seed * 11 + 2));
  const auto q = round_to(c.dtype, bench::random_values(static_cast<std::size_t>(B) * Nq * H * d, c.seed * 11 + 3));
  const std::size_t new_elems = static_cast<std::size_t>(B) * std::max(Nn, 1) * row;
  const auto k_new = round_to(c.dtype, bench::random_values(new_elems, c.seed * 11 + 4));
  const auto v_new = round_to(c.dtype, bench::random_values(new_elems, c.seed * 11 + 5));

  std::vector<int> pool(std::max(num_pages, 1));
  std::iota(pool.begin(), pool.end(), 0);
  std::shuffle(pool.begin(), pool.end(), rng);
  std::vector<int> table(std::max<std::size_t>(static_cast<std::size_t>(B) * max_pages, 1));
  for (std::size_t i = 0; i < table.size(); ++i) table[i] = pool[i];
  const auto locate = [&](int b, int p) {  // element offset of key p of sequence b, head 0
    const int slot = paged ? table[static_cast<std::size_t>(b) * max_pages + p / ps] : b;
    return (static_cast<std::size_t>(slot) * slot_rows + (paged ? p % ps : p)) * row;
  };
  std::vector<int> len(B);
  for (int b = 0; b < B; ++b) len[b] = std::clamp(c.seqlens[b], 0, capacity - Nn);
  std::uint8_t nan_code = 0x7f;
  for (auto* planted : {&c.nan_k, &c.nan_v})
    for (const auto& [b, p, h, e] : *planted) {
      ASSERT_LT(p, len[b]) << "a NaN code goes into a cached key, not an appended one";
      (planted == &c.nan_k ? k_bytes : v_bytes)[locate(b, p) + static_cast<std::size_t>(h) * d + e] = nan_code;
      nan_code ^= 0x80;
    }

  std::vector<float> cos_t, sin_t;
  if (c.rotary) rotary_tables(capacity, d, cos_t, sin_t);

  // the expected cache: appended rows encoded by the host codec, the rest unchanged
  auto expect_k = k_bytes, expect_v = v_bytes;
  std::vector<char> appended(cache_elems, 0);
  for (int b = 0; b < B; ++b)
    for (int t = 0; t < Nn; ++t)
      for (int h = 0; h < Hk; ++h) {
        const std::size_t src = (static_cast<std::size_t>(b) * Nn + t) * row + static_cast<std::size_t>(h) * d;
        const std::size_t dst = locate(b, len[b] + t) + static_cast<std::size_t>(h) * d;
        std::vector<float> kr(k_new.begin() + src, k_new.begin() + src + d), vr(v_new.begin() + src, v_new.begin() + src + d);
        if (c.rotary) rotate_row(kr.data(), d, c.rotary == 1, cos_t, sin_t, len[b] + t);
        for (int e = 0; e < d; ++e) {
          kr[e] /= kd[static_cast<std::size_t>(b) * Hk + h];
          vr[e] /= vd[static_cast<std::size_t>(b) * Hk + h];
        }
        const auto kq = to_fp8(c.cache, kr), vq = to_fp8(c.cache, vr);
        std::copy(kq.begin(), kq.end(), expect_k.begin() + dst);
        std::copy(vq.begin(), vq.end(), expect_v.begin() + dst);
        std::fill(appended.begin() + dst, appended.begin() + dst + d, 1);
      }

  Mem dk(make_buffer(k_bytes.data(), cache_elems)), dv(make_buffer(v_bytes.data(), cache_elems));
  Mem dkd(make_buffer(kd.data(), kd.size() * 4)), dvd(make_buffer(vd.data(), vd.size() * 4));
  Mem dlens(make_buffer(c.seqlens.data(), c.seqlens.size() * 4)), dtable(make_buffer(table.data(), table.size() * 4));
  std::unique_ptr<Mem> dcos, dsin;
  DeviceTensor dq(Layout::PaddedRows, B, Nq, H, d, &q, c.dtype);
  DeviceTensor dout(Layout::PaddedRows, B, Nq, H, d, nullptr, c.dtype);
  DeviceTensor dkn(Layout::BSHD, B, std::max(Nn, 1), Hk, d, &k_new, c.dtype);
  DeviceTensor dvn(Layout::BSHD, B, std::max(Nn, 1), Hk, d, &v_new, c.dtype);
  DeviceBuffer dlse(static_cast<std::size_t>(B) * H * Nq, std::numeric_limits<float>::quiet_NaN());

  KvCacheArgs a;
  a.batch = B;
  a.heads = H;
  a.heads_kv = Hk;
  a.seqlen_q = Nq;
  a.head_dim = d;
  a.causal = c.causal;
  a.dtype = c.dtype;
  a.cache_dtype = c.cache;
  a.k_descale = dkd.m;
  a.v_descale = dvd.m;
  a.check_device_data = (c.seed & 1) != 0;  // the read-back accepts good descales
  a.q = dq.view;
  a.o = dout.view;
  a.lse = dlse.mem;
  a.k_cache = {dk.m};
  a.v_cache = {dv.m};
  a.cache_seqlens = dlens.m;
  if (paged) {
    a.block_table = dtable.m;
    a.num_pages = num_pages;
    a.page_size = ps;
    a.max_pages = max_pages;
  } else {
    a.cache_seqlen = capacity;
  }
  if (Nn > 0) {
    a.k_new = dkn.view;
    a.v_new = dvn.view;
    a.seqlen_new = Nn;
  }
  if (c.rotary) {
    dcos = std::make_unique<Mem>(make_buffer(cos_t.data(), cos_t.size() * 4));
    dsin = std::make_unique<Mem>(make_buffer(sin_t.data(), sin_t.size() * 4));
    a.rotary_cos = dcos->m;
    a.rotary_sin = dsin->m;
    a.rotary_seqlen = capacity;
    a.rotary_interleaved = c.rotary == 1;
  }
  a.num_splits = c.num_splits;
  forward_kvcache(session().queue(), a).wait();

  // the cache bytes: appended ones as the host encoder's (rotated keys within one code), others unchanged
  const auto k_after = read_bytes(dk.m, cache_elems), v_after = read_bytes(dv.m, cache_elems);
  std::size_t bad = 0, near = 0;
  for (std::size_t i = 0; i < cache_elems; ++i) {
    if (v_after[i] != expect_v[i]) ++bad;
    if (k_after[i] == expect_k[i]) continue;
    const bool adjacent = appended[i] && c.rotary && (k_after[i] ^ expect_k[i]) < 0x80 &&
                          std::abs(int(k_after[i] & 0x7f) - int(expect_k[i] & 0x7f)) == 1;
    ++(adjacent ? near : bad);
  }
  EXPECT_EQ(bad, 0u) << what << ": cache bytes differ from the host encoder's (or were written where nothing was appended)";
  EXPECT_LE(near, cache_elems / 1000 + 2) << what << ": rotated keys one code off too often";

  // the reference on the dequantised cache the device left, sequences packed (varlen)
  bench::Shape s;
  s.batch = B;
  s.heads = H;
  s.heads_kv = Hk;
  s.head_dim = d;
  s.seqlen_q = Nq;
  s.causal = c.causal;
  s.cu_seqlens_q.push_back(0);
  s.cu_seqlens_k.push_back(0);
  std::vector<float> ref_k, ref_v;
  const std::vector<float> k_dec = from_fp8(c.cache, k_after), v_dec = from_fp8(c.cache, v_after);
  int max_keys = 1;
  for (int b = 0; b < B; ++b) {
    const int keys = len[b] + Nn;
    s.cu_seqlens_q.push_back((b + 1) * Nq);
    s.cu_seqlens_k.push_back(s.cu_seqlens_k.back() + keys);
    max_keys = std::max(max_keys, keys);
    for (int p = 0; p < keys; ++p)
      for (int h = 0; h < Hk; ++h)
        for (int e = 0; e < d; ++e) {
          const std::size_t at = locate(b, p) + static_cast<std::size_t>(h) * d + e;
          ref_k.push_back(k_dec[at] * kd[static_cast<std::size_t>(b) * Hk + h]);
          ref_v.push_back(v_dec[at] * vd[static_cast<std::size_t>(b) * Hk + h]);
        }
  }
  s.seqlen_k = max_keys;
  auto q_ref = q;
  if (c.rotary)
    for (int b = 0; b < B; ++b)
      for (int i = 0; i < Nq; ++i)
        for (int h = 0; h < H; ++h)
          rotate_row(&q_ref[((static_cast<std::size_t>(b) * Nq + i) * H + h) * d], d, c.rotary == 1, cos_t, sin_t,
                     std::min(len[b] + (c.causal ? i : 0), capacity - 1));
  const bench::Reference ref = bench::reference_attention(s, q_ref, ref_k, ref_v);
  CaseResult r;
  r.ref.out = ref.out;
  r.ref.lse.resize(ref.lse.size());
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < H; ++h)
      for (int i = 0; i < Nq; ++i)
        r.ref.lse[(static_cast<std::size_t>(b) * H + h) * Nq + i] = ref.lse[static_cast<std::size_t>(h) * B * Nq + b * Nq + i];
  r.o = dout.logical();
  r.lse_values = dlse.read();
  r.out = bench::compare(r.o, r.ref.out);
  r.lse = bench::compare(r.lse_values, r.ref.lse);
  r.gaps_written = dout.gap_elements_changed();
  if (!c.nan_k.empty() || !c.nan_v.empty()) {
    // NaN exactly where the reference has it (O elements, LSE rows); the rest as any case
    std::size_t nan_elements = 0;
    for (std::size_t i = 0; i < r.o.size(); ++i) {
      EXPECT_EQ(std::isnan(r.o[i]), std::isnan(r.ref.out[i])) << what << ": O element " << i;
      nan_elements += std::isnan(r.ref.out[i]);
    }
    for (std::size_t i = 0; i < r.lse_values.size(); ++i)
      EXPECT_EQ(std::isnan(r.lse_values[i]), std::isnan(r.ref.lse[i])) << what << ": LSE row " << i;
    EXPECT_GT(nan_elements, 0u) << what << ": the planted NaN codes reach no row";
    const auto finite_only = [](std::vector<float>& got, std::vector<double>& want) {
      std::size_t kept = 0;
      for (std::size_t i = 0; i < got.size(); ++i)
        if (!std::isnan(want[i])) {
          got[kept] = got[i];
          want[kept++] = want[i];
        }
      got.resize(kept);
      want.resize(kept);
    };
    finite_only(r.o, r.ref.out);
    finite_only(r.lse_values, r.ref.lse);
    r.out = bench::compare(r.o, r.ref.out);
    r.lse = bench::compare(r.lse_values, r.ref.lse);
  }
  expect_accurate(r, what, c.dtype);
  EXPECT_EQ(dq.gap_elements_changed() + dkn.gap_elements_changed() + dvn.gap_elements_changed(), 0u) << what;
}

std::string name_of(DType t) { return to_string(t); }

TEST(Decode, Fp8CacheContiguousAndPagedEveryQueryType) {
  std::uint64_t seed = 100;
  int at = 0;
  for (DType cache : {DType::E4M3, DType::E5M2})
    for (DType q : {DType::F32, DType::F16, DType::BF16}) {  // every program compiles: one layout each
      const int page = std::array<int, 3>{0, 5, 16}[at++ % 3];
      Fp8DecodeCase c;
      c.cache = cache;
      c.dtype = q;
      c.page_size = page;
      c.seed = ++seed;
      expect_fp8_decode(c, name_of(cache) + " q " + name_of(q) + " page " + std::to_string(page));
    }
}

TEST(Decode, Fp8CacheGqaRatiosAndSplits) {
  std::uint64_t seed = 200;
  for (auto [h, hk] : {std::pair{4, 4}, {8, 2}, {8, 1}, {16, 2}})
    for (int splits : {1, 3, 64}) {
      Fp8DecodeCase c;
      c.heads = h;
      c.heads_kv = hk;
      c.num_splits = splits;
      c.page_size = 7;
      c.capacity = 300;
      c.seqlens = {299, 120};
      c.dtype = DType::F16;
      c.cache = seed % 2 ? DType::E5M2 : DType::E4M3;
      c.seed = ++seed;
      expect_fp8_decode(c, "H " + std::to_string(h) + "/" + std::to_string(hk) + " splits " + std::to_string(splits) +
                               " " + name_of(c.cache));
    }
}

TEST(Decode, Fp8CacheAppendWithRotaryAcrossPages) {
  std::uint64_t seed = 300;
  for (int rotary : {0, 1, 2})
    for (int page : {0, 3, 16})
      for (DType cache : {DType::E4M3, DType::E5M2}) {
        Fp8DecodeCase c;
        c.seqlen_q = c.seqlen_new = 1;
        c.rotary = rotary;
        c.page_size = page;
        c.seqlens = {47, 2};  // 47 + 1 crosses a page of 3 and 16 at 48
        c.cache = cache;
        c.dtype = DType::BF16;
        c.seed = ++seed;
        expect_fp8_decode(c, "append rotary " + std::to_string(rotary) + " page " + std::to_string(page) + " " +
                                 name_of(cache));
      }
}

TEST(Decode, Fp8CacheCausalChunkedPrefill) {
  std::uint64_t seed = 400;
  for (int page : {0, 5})
    for (int splits : {1, 4}) {
      Fp8DecodeCase c;
      c.seqlen_q = c.seqlen_new = 9;  // 9 rows x group 2: the staged kernel's shapes by default
      c.causal = true;
      c.rotary = 2;
      c.page_size = page;
      c.num_splits = splits;
      c.seqlens = {100, 0};
      c.dtype = DType::F16;
      c.seed = ++seed;
      expect_fp8_decode(c, "causal prefill page " + std::to_string(page) + " splits " + std::to_string(splits));
    }
}

TEST(Decode, Fp8CacheHeadDim128) {
  Fp8DecodeCase c;
  c.heads = 32;
  c.heads_kv = 8;
  c.head_dim = 128;
  c.batch = 1;
  c.seqlens = {1000};
  c.capacity = 1024;
  c.page_size = 16;
  c.seqlen_new = 1;
  c.rotary = 2;
  c.dtype = DType::F16;
  c.seed = 501;
  expect_fp8_decode(c, "d 128 GQA 32/8 e4m3");
}

// Every byte decoded exactly: one cached key per sequence (P = 1, so O is its V row times the
// descale, exactly in fp32, zeros of either sign equal), V rows holding all 256 codes, NaN codes giving NaN and e5m2's
// infinities infinity. On each form (the ctest entries force them), so every cache loader
// (VEC-wide and single-element) is covered with d = 32 (VEC 8) and a byte offset of 1 (VEC 1).
TEST(Decode, Fp8CacheDecodesEveryCode) {
  for (DType cache : {DType::E4M3, DType::E5M2})
    for (int offset : {0, 1}) {
      SCOPED_TRACE(std::string(to_string(cache)) + " offset " + std::to_string(offset));
      const int B = 8, d = 32, S = 4;  // 8 sequences x 32 columns = 256 codes
      std::vector<std::uint8_t> v(offset + static_cast<std::size_t>(B) * S * d), k(v.size());
      const std::vector<std::uint8_t> finite = to_fp8(cache, bench::random_values(k.size(), 3, 2.0f));
      for (std::size_t i = 0; i < k.size(); ++i) k[i] = finite[i];
      for (int b = 0; b < B; ++b)
        for (int c = 0; c < d; ++c) v[offset + static_cast<std::size_t>(b) * S * d + c] = static_cast<std::uint8_t>(b * d + c);
      std::vector<float> vd(B);
      for (int b = 0; b < B; ++b) vd[b] = std::ldexp(1.0f, -b);  // powers of two: the product is exact
      const std::vector<float> kd(B, 0.01f), qv(static_cast<std::size_t>(B) * d, 0.25f);
      const std::vector<int> lens(B, 1);
      Mem dk(make_buffer(k.data(), k.size())), dv(make_buffer(v.data(), v.size()));
      Mem dkd(make_buffer(kd.data(), B * 4)), dvd(make_buffer(vd.data(), B * 4)), dl(make_buffer(lens.data(), B * 4));
      DeviceTensor q(Layout::BSHD, B, 1, 1, d, &qv, DType::F32), o(Layout::BSHD, B, 1, 1, d, nullptr, DType::F32);
      KvCacheArgs a;
      a.batch = B;
      a.heads = a.heads_kv = 1;
      a.seqlen_q = 1;
      a.head_dim = d;
      a.dtype = DType::F32;
      a.cache_dtype = cache;
      a.k_descale = dkd.m;
      a.v_descale = dvd.m;
      a.q = q.view;
      a.o = o.view;
      a.k_cache = {dk.m, offset};
      a.v_cache = {dv.m, offset};
      a.k_cache.batch_stride = a.v_cache.batch_stride = S * d;
      a.k_cache.seq_stride = a.v_cache.seq_stride = a.k_cache.head_stride = a.v_cache.head_stride = d;
      a.cache_seqlen = S;
      a.cache_seqlens = dl.m;
      a.num_splits = 1;
      forward_kvcache(session().queue(), a).wait();
      const std::vector<float> out = o.logical();
      std::size_t bad = 0;
      for (int b = 0; b < B; ++b)
        for (int c = 0; c < d; ++c) {
          const std::uint8_t code = static_cast<std::uint8_t>(b * d + c);
          const float want = from_fp8(cache, {code})[0] * vd[b], got = out[static_cast<std::size_t>(b) * d + c];
          // (== not memcmp: the accumulation 0 + 1·(-0) gives +0, whatever the decode gives)
          if (!(std::isnan(want) ? std::isnan(got) : got == want)) {
            if (++bad <= 4) ADD_FAILURE() << "code 0x" << std::hex << int(code) << std::dec << ": " << got << ", want " << want;
          }
        }
      EXPECT_EQ(bad, 0u);
    }
}

// FLASHCL_TEST_QUICK_EXIT=1 (the oclgrind entries' environment): the process ends right after the
// tests, as check_main.cpp does for flashcl_check_tests, whose comment says why (oclgrind 21.10
// frees its own thread-local state before the shared Session's destructor runs, and glibc then
// aborts the process). flashcl_tests links gtest_main, so the switch is this listener.
class QuickExitAfterTests : public testing::EmptyTestEventListener {
  void OnTestProgramEnd(const testing::UnitTest& unit) override {
    const char* quick = std::getenv("FLASHCL_TEST_QUICK_EXIT");
    if (quick == nullptr || std::string(quick) != "1") return;
    std::fflush(stdout);
    std::fflush(stderr);
    std::_Exit(unit.Passed() ? 0 : 1);
  }
};
const bool quick_exit_registered = [] {
  testing::UnitTest::GetInstance()->listeners().Append(new QuickExitAfterTests);
  return true;
}();

// Small enough for oclgrind (ctest's oclgrind_decode_fp8, each kernel form): paged with a page of
// 5, an append with rotary crossing a page, GQA 2, each format, with few splits and with more
// splits than keys (most of them empty: the merge must skip their unwritten partials). One call a
// test case, because run_oclgrind.sh runs each case in its own process: oclgrind 21.10's
// uninitialised-value shadow goes stale when a later call's larger buffer takes a freed one's place
// (two calls in one process at 8 splits drew false reports on the second call only; each call alone
// is clean).
struct TinyFp8Decode {
  DType cache;
  int splits;
};
class Fp8CacheTiny : public testing::TestWithParam<TinyFp8Decode> {};

TEST_P(Fp8CacheTiny, MatchesReference) {
  const TinyFp8Decode p = GetParam();
  Fp8DecodeCase c;
  c.head_dim = 16;
  c.capacity = 24;
  c.seqlens = {9, 3};
  c.page_size = 5;
  c.seqlen_new = c.seqlen_q = 1;
  c.rotary = 1;
  c.num_splits = p.splits;
  c.cache = p.cache;
  c.dtype = DType::F16;
  c.seed = 600 + static_cast<std::uint64_t>(p.splits) + (p.cache == DType::E4M3 ? 0 : 100);
  expect_fp8_decode(c, "tiny " + name_of(p.cache) + " splits " + std::to_string(p.splits));
}

INSTANTIATE_TEST_SUITE_P(Decode, Fp8CacheTiny,
                         testing::Values(TinyFp8Decode{DType::E4M3, 2}, TinyFp8Decode{DType::E5M2, 2},
                                         TinyFp8Decode{DType::E4M3, 8}, TinyFp8Decode{DType::E5M2, 33}),
                         [](const testing::TestParamInfo<TinyFp8Decode>& info) {
                           return name_of(info.param.cache) + "_splits_" + std::to_string(info.param.splits);
                         });

// NaN codes in the cache (a K row's: every row of its head NaN, LSE too; a V row's: its column of
// O in every row of its head), and no other row or column touched: decode_cpu finds e4m3's NaN
// codes once per key and per block of V rather than per vector, so this checks its exact pass, on
// one column group (d 32) and several (d 128, GQA 4: decode_cpu's CG 4 of 8 vectors); small enough
// for oclgrind (ctest's oclgrind_decode_fp8_*).
TEST(Decode, Fp8CacheNaNCodesReachOnlyTheirRows) {
  std::uint64_t seed = 700;
  for (DType cache : {DType::E4M3, DType::E5M2})
    for (int d : {32, 128})
      for (int page : {0, 5})
        for (int splits : {1, 3}) {
          Fp8DecodeCase c;
          c.head_dim = d;
          c.heads = d == 128 ? 8 : 4;
          c.capacity = 40;
          c.batch = 3;
          c.seqlens = {33, 20, 1};  // sequence 2's only key scores NaN: no stream or split may take it for none
          c.page_size = page;
          c.num_splits = splits;
          c.cache = cache;
          c.nan_k = {{0, 17, 1, 5}, {2, 0, 0, 3}};
          c.nan_v = {{1, 3, 0, d - 3}, {1, 19, 1, 0}};
          c.seed = ++seed;
          expect_fp8_decode(c, "NaN codes " + name_of(cache) + " d " + std::to_string(d) + " page " + std::to_string(page) +
                                   " splits " + std::to_string(splits));
        }
}

// Bad inputs: named errors before anything is enqueued (the cache is not written).
struct Fp8Bad {
  std::vector<std::uint8_t> cache = std::vector<std::uint8_t>(2 * 64 * 2 * 32, 0x11);
  std::vector<float> descales = std::vector<float>(4, 0.01f);
  std::vector<int> lens = {10, 10};
  Mem k{make_buffer(cache.data(), cache.size())}, v{make_buffer(cache.data(), cache.size())};
  Mem kd{make_buffer(descales.data(), 16)}, vd{make_buffer(descales.data(), 16)}, small{make_buffer(descales.data(), 12)};
  Mem lens_mem{make_buffer(lens.data(), 8)};
  std::vector<float> qv = std::vector<float>(2 * 4 * 32, 0.5f);
  DeviceTensor q{Layout::BSHD, 2, 1, 4, 32, &qv, DType::F16};
  DeviceTensor o{Layout::BSHD, 2, 1, 4, 32, nullptr, DType::F16};
  KvCacheArgs args() {
    KvCacheArgs a;
    a.batch = 2;
    a.heads = 4;
    a.heads_kv = 2;
    a.seqlen_q = 1;
    a.head_dim = 32;
    a.dtype = DType::F16;
    a.cache_dtype = DType::E4M3;
    a.k_descale = kd.m;
    a.v_descale = vd.m;
    a.q = q.view;
    a.o = o.view;
    a.k_cache = {k.m};
    a.v_cache = {v.m};
    a.cache_seqlen = 64;
    a.cache_seqlens = lens_mem.m;
    return a;
  }
};

void expect_error(const KvCacheArgs& a, Status status, const std::string& names) {
  try {
    forward_kvcache(session().queue(), a).wait();
    ADD_FAILURE() << "accepted; expected an error naming " << names;
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), status) << e.what();
    EXPECT_NE(std::string(e.what()).find(names), std::string::npos) << e.what();
  }
}

TEST(DecodeFp8Invalid, CacheArguments) {
  Fp8Bad t;
  forward_kvcache(session().queue(), t.args()).wait();  // the valid call runs
  KvCacheArgs a = t.args();
  a.k_descale = nullptr;
  expect_error(a, Status::InvalidArgument, "k_descale");
  a = t.args();
  a.v_descale = nullptr;
  expect_error(a, Status::InvalidArgument, "v_descale");
  a = t.args();
  a.cache_dtype = DType::F16;  // descales without an fp8 cache
  expect_error(a, Status::InvalidArgument, "k_descale");
  a = t.args();
  a.cache_dtype = DType::F32;  // neither dtype nor fp8
  a.k_descale = a.v_descale = nullptr;
  expect_error(a, Status::UnsupportedDType, "cache_dtype");
  a = t.args();
  a.dtype = DType::E4M3;  // fp8 q
  expect_error(a, Status::UnsupportedDType, "dtype");
  a = t.args();
  a.v_descale = t.small.m;  // 3 floats for (B, H_kv) = 4
  expect_error(a, Status::InvalidArgument, "v_descale");
  a = t.args();
  a.k_cache.offset = 64 * 2 * 32;  // one cache row past the end in bytes (1 byte per element)
  expect_error(a, Status::InvalidArgument, "k_cache");
  for (float bad : {0.0f, -1.0f, std::numeric_limits<float>::infinity(), std::numeric_limits<float>::quiet_NaN()}) {
    std::vector<float> values(4, 0.01f);
    values[3] = bad;
    Mem m(make_buffer(values.data(), 16));
    a = t.args();
    a.v_descale = m.m;
    forward_kvcache(session().queue(), a).wait();  // device data is not read back by default
    a.check_device_data = true;
    expect_error(a, Status::InvalidArgument, "v_descale: entry 3");
  }
  // nothing was written by the refused calls (and the valid ones appended nothing)
  EXPECT_EQ(read_bytes(t.k.m, t.cache.size()), t.cache);
}

TEST(DecodeFp8Invalid, CacheThroughC) {
  Fp8Bad t;
  fcl_kvcache_args c;
  fcl_kvcache_args_init(&c);
  EXPECT_EQ(c.cache_dtype, FCL_DTYPE_DEFAULT);
  const KvCacheArgs a = t.args();
  c.batch = a.batch;
  c.heads = a.heads;
  c.heads_kv = a.heads_kv;
  c.seqlen_q = 1;
  c.head_dim = 32;
  c.dtype = FCL_DTYPE_F16;
  c.cache_dtype = FCL_DTYPE_E4M3;
  c.q.buffer = a.q.buffer;
  c.o.buffer = a.o.buffer;
  c.k_cache.buffer = t.k.m;
  c.v_cache.buffer = t.v.m;
  c.cache_seqlen = 64;
  c.cache_seqlens = t.lens_mem.m;
  EXPECT_EQ(fcl_forward_kvcache(session().queue(), &c, 0, nullptr, nullptr), FCL_INVALID_ARGUMENT);
  EXPECT_NE(std::string(fcl_last_error()).find("k_descale"), std::string::npos) << fcl_last_error();
  c.k_descale = t.kd.m;
  c.v_descale = t.vd.m;
  cl_event done = nullptr;
  ASSERT_EQ(fcl_forward_kvcache(session().queue(), &c, 0, nullptr, &done), FCL_SUCCESS) << fcl_last_error();
  clWaitForEvents(1, &done);
  clReleaseEvent(done);
  // a caller compiled before the fp8 fields: its fields end at num_splits, and its sizeof rounds that
  // up to the struct's alignment, over the bytes where cache_dtype now sits (here still E4M3, as a
  // caller's stack garbage might be); either size reads no further than num_splits
  const std::size_t fields = offsetof(fcl_kvcache_args, cache_dtype), align = alignof(fcl_kvcache_args);
  for (std::size_t size : {fields, (fields + align - 1) / align * align}) {
    SCOPED_TRACE(size);
    c.struct_size = size;
    // (so the caches are dtype f16 again, twice the bytes these buffers hold)
    EXPECT_EQ(fcl_forward_kvcache(session().queue(), &c, 0, nullptr, nullptr), FCL_INVALID_ARGUMENT);
    EXPECT_NE(std::string(fcl_last_error()).find("k_cache"), std::string::npos) << fcl_last_error();
  }
}

}  // namespace
}  // namespace flashcl::test
