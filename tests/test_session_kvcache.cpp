// test_session_kvcache.cpp: Session::forward_kvcache, the decode step on host arrays, against the
// decode suite's float64 reference (decode_support.hpp) on fresh random inputs, O and LSE poisoned
// with NaN: contiguous and paged caches with an append (afterwards the caller's caches hold the
// appended rows and every other element bit for bit as it was), chunked prefill with rotary,
// window, softcap, ALiBi, cache_batch_idx, f16 and bf16 storage, and no append. Each case runs
// with its arrays at the device's base address alignment and one float past it: where the device
// shares host memory (read from it, never assumed) f32 caches are appended into in place, aligned
// or a whole number of floats off the alignment (then through a buffer widened down to it, unless
// the bytes it would cover are another array's: a cache right after v_new goes through a copy),
// which last_kvcache_host_buffers counts; the others go through copies; all match the reference.
// Wrong sizes, overlapping arrays, fp8 caches and indices out of range (cache_seqlens past the
// capacity, cache_batch_idx and used block-table entries outside the cache) are named errors
// raised before anything runs.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "decode_support.hpp"

namespace flashcl::test {
namespace {

const float kNaN = std::numeric_limits<float>::quiet_NaN();

// A case's arrays in host memory, each in its own slot of an aligned room, `shift` bytes past the
// slot's start (slots start at a multiple of the device's alignment and of a page).
class HostDecode {
 public:
  enum Slot { Q, KNew, VNew, KCache, VCache, O, Lse, kSlots };

  // `cache_after_new`: the K cache starts right where v_new ends (in v_new's slot and its own).
  HostDecode(const DecodeCase& c, std::size_t shift, bool cache_after_new = false)
      : p_(make_decode_problem(c)),
        facts_(host_memory_facts()),
        room_(facts_.room_align(), kSlots * slot_bytes(shift)) {
    const std::size_t slot = slot_bytes(shift);
    for (int i = 0; i < kSlots; ++i) at_[i] = reinterpret_cast<float*>(room_.bytes() + i * slot + shift);
    if (cache_after_new) at_[KCache] = at_[VNew] + p_.v_new.size();
    cache_after_new_ = cache_after_new;
    const std::vector<float>* inputs[] = {&p_.q, &p_.k_new, &p_.v_new, &p_.k_cache, &p_.v_cache};
    for (int i = Q; i <= VCache; ++i) std::memcpy(at_[i], inputs[i]->data(), inputs[i]->size() * sizeof(float));
    std::fill(at_[O], at_[O] + p_.q.size(), kNaN);
    std::fill(at_[Lse], at_[Lse] + lse_size(), kNaN);
  }

  const DecodeProblem& problem() const { return p_; }
  std::size_t lse_size() const { return static_cast<std::size_t>(p_.c.batch) * p_.c.heads * p_.c.seqlen_q; }
  std::vector<float> read(Slot s, std::size_t n) const { return std::vector<float>(at_[s], at_[s] + n); }

  // The arrays as Session::forward_kvcache takes them (the optional ones as the case asks).
  KvCacheHostArrays arrays() const {
    const DecodeCase& c = p_.c;
    KvCacheHostArrays x;
    x.q = {at_[Q], p_.q.size()};
    x.o = {at_[O], p_.q.size()};
    x.lse = {at_[Lse], lse_size()};
    x.k_cache = {at_[KCache], p_.cache_elems};
    x.v_cache = {at_[VCache], p_.cache_elems};
    x.cache_seqlens = {c.seqlens.data(), c.seqlens.size()};
    if (c.seqlen_new > 0) {
      x.k_new = {at_[KNew], p_.k_new.size()};
      x.v_new = {at_[VNew], p_.v_new.size()};
    }
    if (p_.paged) x.block_table = {p_.table.data(), p_.table.size()};
    if (!c.batch_idx.empty()) x.cache_batch_idx = {c.batch_idx.data(), c.batch_idx.size()};
    if (c.rotary) {
      x.rotary_cos = {p_.cos_t.data(), p_.cos_t.size()};
      x.rotary_sin = {p_.sin_t.data(), p_.sin_t.size()};
    }
    if (c.alibi) x.alibi_slopes = {p_.slopes.data(), p_.slopes.size()};
    return x;
  }

  // Runs the call and checks the caller's caches, O and LSE afterwards.
  DecodeResult run() const {
    session().forward_kvcache(p_.shape(), arrays());
    return check_decode(p_, read(KCache, p_.cache_elems), read(VCache, p_.cache_elems), read(O, p_.q.size()),
                        read(Lse, lse_size()));
  }

  // The buffers Session should lay over this memory (host_buffers.hpp's rules, from the device's
  // facts and the arrays' addresses): f32 arrays at the alignment; q, k_new, v_new and the caches
  // a whole number of floats off it through a widened buffer, but not a cache whose widened start
  // would cover another array (the K cache right after v_new, when appended into); O and LSE (f32
  // whatever the storage) only at the alignment, as they are written.
  int expected_host_buffers() const {
    const bool append = p_.c.seqlen_new > 0, f32 = p_.c.dtype == DType::F32;
    auto aligned = [&](Slot s) { return facts_.aligned(reinterpret_cast<std::uintptr_t>(at_[s])); };
    auto in_place = [&](Slot s, bool may_widen) {
      return aligned(s) || (may_widen && facts_.widened(reinterpret_cast<std::uintptr_t>(at_[s])));
    };
    int n = in_place(Lse, false) ? 1 : 0;
    if (!f32) return n;
    for (Slot s : {Q, VCache, O}) n += in_place(s, s != O);
    if (append) n += in_place(KNew, true) + in_place(VNew, true);
    return n + in_place(KCache, !(append && cache_after_new_));
  }

 private:
  std::size_t slot_bytes(std::size_t shift) const {
    const std::size_t largest = std::max({p_.q.size(), p_.k_new.size(), p_.k_cache.size(), lse_size()});
    const std::size_t align = facts_.room_align();
    return (largest * sizeof(float) + shift + align - 1) / align * align;
  }

  DecodeProblem p_;
  HostMemoryFacts facts_;
  AlignedRoom room_;
  float* at_[kSlots] = {};
  bool cache_after_new_ = false;
};

// Each case at the alignment, a float past it, and (with an append) a float past it with the K cache
// right after v_new, so that cache goes through a copy whose written rows come back.
void expect_session_decode(const DecodeCase& c, const std::string& what) {
  struct Layout {
    std::size_t shift;
    bool cache_after_new;
  };
  for (const Layout l : {Layout{0, false}, Layout{sizeof(float), false}, Layout{sizeof(float), true}}) {
    if (l.cache_after_new && c.seqlen_new == 0) continue;
    const std::string at = what + ", " + std::to_string(l.shift) + " bytes past the alignment" +
                           (l.cache_after_new ? ", K cache right after v_new" : "");
    SCOPED_TRACE(at);
    const HostDecode host(c, l.shift, l.cache_after_new);
    const DecodeResult r = host.run();
    expect_accurate(r.result, at, c.dtype);
    EXPECT_EQ(r.cache_bad, 0u) << at << ": the caller's cache differs from the model after the call";
    EXPECT_EQ(session().last_kvcache_host_buffers(), host.expected_host_buffers()) << at;
  }
}

TEST(SessionKvCache, ContiguousAppend) {
  DecodeCase c = base({170, 75});
  c.seqlen_new = 1;
  expect_session_decode(c, "contiguous GQA 4/2, one key appended");
}

TEST(SessionKvCache, PagedAppendChunkedPrefillWithRotary) {
  DecodeCase c = base({120, 0});
  c.seqlen_q = c.seqlen_new = 9;  // appends cross page boundaries; the second sequence starts empty
  c.causal = true;
  c.page_size = 7;
  c.rotary = 2;
  expect_session_decode(c, "paged chunked prefill, rotary half-split");
}

TEST(SessionKvCache, WindowSoftcapAlibiAndCacheBatchIdx) {
  DecodeCase c = base({180, 129});
  c.seqlen_q = c.seqlen_new = 3;
  c.causal = true;
  c.window_left = 10;
  c.window_right = 0;
  c.softcap = 5.0f;
  c.alibi = true;
  c.page_size = 4;
  expect_session_decode(c, "window + softcap + alibi, paged append");
  DecodeCase b = base({0, 125, 0});
  b.batch = 3;
  b.batch_idx = {4, 0, 2};  // 5 cache rows
  b.seqlen_new = 1;
  b.rotary = 1;
  expect_session_decode(b, "cache_batch_idx, rotary interleaved, append into empty sequences");
}

// Host indices are the caller's values, known before anything runs: a sequence past the capacity
// once the append is counted (the kernels would clamp it and overwrite the last keys), a cache row
// or a used page outside the cache or pool (the kernels would drop the append) is a named error,
// and O keeps its poison. (Device buffers' values are clamped by the kernels: tests/test_decode.cpp.)
TEST(SessionKvCache, HostIndicesOutOfRangeAreNamedErrors) {
  const auto expect_error = [](const HostDecode& host, const KvCacheHostArrays& x, const std::string& says) {
    try {
      session().forward_kvcache(host.problem().shape(), x);
      ADD_FAILURE() << "accepted: " << says;
    } catch (const Error& e) {
      EXPECT_EQ(e.status(), Status::InvalidArgument) << e.what();
      EXPECT_NE(std::string(e.what()).find(says), std::string::npos) << e.what();
    }
    const std::vector<float> o = host.read(HostDecode::O, host.problem().q.size());
    EXPECT_TRUE(std::isnan(o.front()) && std::isnan(o.back())) << says << ": O was written";
  };
  DecodeCase c = base({30, 20, 7});  // capacity: the longest, 30 keys, plus the append
  c.batch = 3;
  c.seqlen_new = 2;
  const HostDecode host(c, 0);
  const KvCacheHostArrays good = host.arrays();
  const int capacity = host.problem().shape().cache_seqlen;
  for (const int len : {-1, capacity - 1, capacity, std::numeric_limits<int>::max()}) {
    std::vector<int> lens(good.cache_seqlens.data, good.cache_seqlens.data + good.cache_seqlens.size);
    lens[1] = len;
    KvCacheHostArrays x = good;
    x.cache_seqlens.data = lens.data();
    expect_error(host, x, "cache_seqlens: sequence 1 holds " + std::to_string(len) + " keys");
  }
  DecodeCase rows = c;
  rows.batch_idx = {4, 0, 2};  // 5 cache rows
  const HostDecode row_host(rows, 0);
  for (const int row : {-1, 5, std::numeric_limits<int>::min()}) {
    std::vector<int> idx = {4, row, 2};
    KvCacheHostArrays x = row_host.arrays();
    x.cache_batch_idx.data = idx.data();
    expect_error(row_host, x, "cache_batch_idx: entry 1 is " + std::to_string(row));
  }
  DecodeCase paged = c;
  paged.page_size = 4;
  const HostDecode page_host(paged, 0);
  const KvCacheHostArrays pages = page_host.arrays();
  const int num_pages = page_host.problem().shape().num_pages;
  for (const int entry : {-1, num_pages, std::numeric_limits<int>::max()}) {
    std::vector<int> table(pages.block_table.data, pages.block_table.data + pages.block_table.size);
    table[static_cast<std::size_t>(page_host.problem().shape().max_pages) * 2 + 1] = entry;  // sequence 2, page 1
    KvCacheHostArrays x = pages;
    x.block_table.data = table.data();
    expect_error(page_host, x, "block_table: sequence 2's page 1 is " + std::to_string(entry));
  }
}

TEST(SessionKvCache, HalfPrecisionStorageAndNoAppend) {
  for (DType dtype : {DType::F16, DType::BF16}) {
    DecodeCase c = base({141, 67});
    c.dtype = dtype;
    c.page_size = dtype == DType::F16 ? 16 : 0;
    c.seqlen_new = 1;
    expect_session_decode(c, std::string("append, ") + to_string(dtype));
  }
  expect_session_decode(base({200, 1}), "no append: the caches only read");
}

// A cache a float off the alignment whose widened buffer would cover the end of v_new (written
// nowhere, but OpenCL leaves overlapping host regions undefined once one is written) goes through a
// copy; the V cache, with nothing before it, is still appended into in place where the device
// allows. v_new stays as it was.
TEST(SessionKvCache, CacheRightAfterAnotherArrayIsCopied) {
  DecodeCase c = base({60, 33});
  c.seqlen_new = 2;
  const HostDecode host(c, sizeof(float), true);
  const std::vector<float> v_new_before = host.read(HostDecode::VNew, host.problem().v_new.size());
  const DecodeResult r = host.run();
  expect_accurate(r.result, "cache after v_new", c.dtype);
  EXPECT_EQ(r.cache_bad, 0u);
  EXPECT_EQ(host.read(HostDecode::VNew, v_new_before.size()), v_new_before);
  EXPECT_EQ(session().last_kvcache_host_buffers(), host.expected_host_buffers());
}

// Named errors, raised before anything runs (O keeps its poison).
TEST(SessionKvCache, NamedErrors) {
  DecodeCase c = base({30, 20});
  c.seqlen_new = 1;
  const HostDecode host(c, 0);
  const KvCacheHostArrays good = host.arrays();
  const auto expect_error = [&](KvCacheArgs shape, const KvCacheHostArrays& x, Status status, const std::string& says) {
    try {
      session().forward_kvcache(shape, x);
      ADD_FAILURE() << "accepted: " << says;
    } catch (const Error& e) {
      EXPECT_EQ(e.status(), status) << e.what();
      EXPECT_NE(std::string(e.what()).find(says), std::string::npos) << e.what();
    }
    const std::vector<float> o = host.read(HostDecode::O, host.problem().q.size());
    EXPECT_TRUE(std::isnan(o.front()) && std::isnan(o.back())) << says << ": O was written";
  };
  const KvCacheArgs shape = host.problem().shape();
  KvCacheHostArrays x = good;
  x.k_cache.size -= 1;
  expect_error(shape, x, Status::InvalidArgument, "k_cache: expected");
  x = good;
  x.v_cache = good.k_cache;
  expect_error(shape, x, Status::InvalidArgument, "v_cache: its memory overlaps k_cache's");
  x = good;
  x.o.data = const_cast<float*>(good.q.data);
  expect_error(shape, x, Status::InvalidArgument, "o: its memory overlaps q's");
  x = good;
  x.v_new = {};
  expect_error(shape, x, Status::InvalidArgument, "v_new");
  x = good;
  x.cache_seqlens = {};
  expect_error(shape, x, Status::InvalidArgument, "cache_seqlens");
  KvCacheArgs bad = shape;
  bad.heads_kv = 3;
  expect_error(bad, good, Status::InvalidArgument, "heads_kv");
  bad = shape;
  bad.cache_dtype = DType::E4M3;
  expect_error(bad, good, Status::UnsupportedDType, "cache_dtype");
}

}  // namespace
}  // namespace flashcl::test
