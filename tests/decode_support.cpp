// decode_support.cpp: the KV-cache tests' problems and check (decode_support.hpp says what each
// part is for).
#include "decode_support.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>

#include "rotary_reference.hpp"

namespace flashcl::test {

DecodeProblem make_decode_problem(const DecodeCase& c) {
  DecodeProblem p;
  p.c = c;
  const int B = c.batch, H = c.heads, Hk = c.heads_kv, Nq = c.seqlen_q, d = c.head_dim, Nn = c.seqlen_new;
  p.paged = c.page_size > 0;
  const int ps = c.page_size;
  p.max_pages = p.paged ? (c.capacity + ps - 1) / ps : 0;
  p.capacity = p.paged ? p.max_pages * ps : c.capacity;
  p.num_pages = p.paged ? B * p.max_pages + c.spare_pages : 0;
  p.cache_rows = p.paged ? p.num_pages : (c.batch_idx.empty() ? B : B + 2);
  p.cache_seq = p.paged ? ps : p.capacity;
  const std::size_t row_elems = static_cast<std::size_t>(Hk) * d;
  std::mt19937 rng(static_cast<unsigned>(c.seed));

  // cache contents (every slot random, unused ones included), q, k_new, v_new in storage precision
  p.cache_elems = static_cast<std::size_t>(p.cache_rows) * p.cache_seq * row_elems;
  const auto amplified = [&](std::vector<float> x) {
    for (float& e : x) e *= c.qk_amplitude;
    return round_to(c.dtype, x);
  };
  p.k_cache = amplified(bench::random_values(p.cache_elems, c.seed * 7 + 1));
  p.v_cache = round_to(c.dtype, bench::random_values(p.cache_elems, c.seed * 7 + 2));
  p.q = amplified(bench::random_values(static_cast<std::size_t>(B) * Nq * H * d, c.seed * 7 + 3));
  const std::size_t new_elems = static_cast<std::size_t>(B) * std::max(Nn, 1) * row_elems;
  p.k_new = amplified(bench::random_values(new_elems, c.seed * 7 + 4));
  p.v_new = round_to(c.dtype, bench::random_values(new_elems, c.seed * 7 + 5));

  // block table: each sequence's pages, shuffled over the pool; the bad ones point outside it
  std::vector<int> pool(p.num_pages);
  std::iota(pool.begin(), pool.end(), 0);
  if (c.shuffle) std::shuffle(pool.begin(), pool.end(), rng);
  p.table.resize(static_cast<std::size_t>(B) * p.max_pages);
  for (std::size_t i = 0; i < p.table.size(); ++i) p.table[i] = pool[i];
  const int bad_values[] = {-1, p.num_pages, std::numeric_limits<int>::max(), std::numeric_limits<int>::min()};
  if (c.share_first_page) p.table[p.max_pages] = p.table[0];
  for (std::size_t i = 0; i < c.bad_pages.size(); ++i)
    p.table[static_cast<std::size_t>(c.bad_pages[i].first) * p.max_pages + c.bad_pages[i].second] = bad_values[i % 4];

  // the documented clamping, as the model of what the kernels see
  p.len.resize(B);
  p.keys.resize(B);
  for (int b = 0; b < B; ++b) {
    const int row_of = c.batch_idx.empty() ? b : c.batch_idx[b];
    const bool valid_row = p.paged || (row_of >= 0 && row_of < p.cache_rows);
    p.len[b] = valid_row ? std::clamp(c.seqlens[b], 0, p.capacity - Nn) : 0;
    p.keys[b] = valid_row ? p.len[b] + Nn : -1;  // -1: no keys at all
  }

  for (const auto& [cache, poisoned] : {std::pair{&c.nan_k, &p.k_cache}, std::pair{&c.nan_v, &p.v_cache}})
    for (const auto& [b, key, h] : *cache) {
      int slot, row;
      p.locate(b, key, slot, row);
      (*poisoned)[((static_cast<std::size_t>(slot) * p.cache_seq + row) * Hk + h) * d + d / 2] =
          std::numeric_limits<float>::quiet_NaN();
    }

  // rotary tables (S_rot = capacity): angles p * 10000^(-2j / d_rot)
  p.rotary_dim = c.rotary ? (c.rotary_dim ? c.rotary_dim : d) : 0;
  if (c.rotary) rotary_tables(p.capacity, p.rotary_dim, p.cos_t, p.sin_t);
  p.slopes = c.slopes;
  for (int h = 0; h < H && c.alibi && c.slopes.empty(); ++h) p.slopes.push_back(0.5f / static_cast<float>(h + 1));

  // the expected cache after the append
  p.expected_k = p.k_cache;
  p.expected_v = p.v_cache;
  p.appended.assign(p.cache_elems / d, 0);
  for (int b = 0; b < B; ++b) {
    if (p.keys[b] < 0) continue;
    for (int t = 0; t < Nn; ++t) {
      int slot, row;
      p.locate(b, p.len[b] + t, slot, row);
      if (slot < 0) continue;
      for (int h = 0; h < Hk; ++h) {
        const std::size_t src = (static_cast<std::size_t>(b) * Nn + t) * row_elems + static_cast<std::size_t>(h) * d;
        const std::size_t dst = ((static_cast<std::size_t>(slot) * p.cache_seq + row) * Hk + h) * d;
        std::vector<float> kr(p.k_new.begin() + src, p.k_new.begin() + src + d);
        if (c.rotary) rotate_row(kr.data(), p.rotary_dim, c.rotary == 1, p.cos_t, p.sin_t, p.len[b] + t);
        const auto kr_stored = round_to(c.dtype, kr);
        std::copy(kr_stored.begin(), kr_stored.end(), p.expected_k.begin() + dst);
        std::copy(p.v_new.begin() + src, p.v_new.begin() + src + d, p.expected_v.begin() + dst);
        p.appended[dst / d] = 1;
      }
    }
  }
  return p;
}

void DecodeProblem::locate(int b, int key, int& slot, int& row) const {
  if (paged) {
    const int e = table[static_cast<std::size_t>(b) * max_pages + key / c.page_size];
    slot = e >= 0 && e < num_pages ? e : -1;
    row = key % c.page_size;
  } else {
    slot = c.batch_idx.empty() ? b : c.batch_idx[b];
    row = key;
  }
}

KvCacheArgs DecodeProblem::shape() const {
  KvCacheArgs a;
  a.batch = c.batch;
  a.heads = c.heads;
  a.heads_kv = c.heads_kv;
  a.seqlen_q = c.seqlen_q;
  a.head_dim = c.head_dim;
  a.causal = c.causal;
  a.dtype = c.dtype;
  if (c.scale != 0.0f) a.scale = c.scale;
  if (paged) {
    a.num_pages = num_pages;
    a.page_size = c.page_size;
    a.max_pages = max_pages;
  } else {
    a.cache_seqlen = capacity;
    a.cache_batch = cache_rows;
  }
  a.seqlen_new = c.seqlen_new;
  if (c.rotary) {
    a.rotary_dim = rotary_dim;
    a.rotary_seqlen = capacity;
    a.rotary_interleaved = c.rotary == 1;
  }
  a.window = {c.window_left, c.window_right};
  a.softcap = c.softcap;
  a.num_splits = c.num_splits;
  return a;
}

DecodeResult check_decode(const DecodeProblem& p, const std::vector<float>& k_after, const std::vector<float>& v_after,
                          std::vector<float> o, std::vector<float> lse) {
  const DecodeCase& c = p.c;
  const int B = c.batch, H = c.heads, Hk = c.heads_kv, Nq = c.seqlen_q, d = c.head_dim;
  const std::size_t row_elems = static_cast<std::size_t>(Hk) * d;
  DecodeResult r;
  // the cache: appended rows as the model says, everything else bit for bit unchanged
  const double tol = c.dtype == DType::F32 ? 1e-6 : c.dtype == DType::F16 ? 2e-3 : 1.6e-2;
  for (std::size_t i = 0; i < p.cache_elems; ++i) {
    if (p.appended[i / d]) {
      const bool both_nan_k = std::isnan(k_after[i]) && std::isnan(p.expected_k[i]);  // (nan_k poison)
      const bool both_nan_v = std::isnan(v_after[i]) && std::isnan(p.expected_v[i]);
      if (!both_nan_k && !(std::fabs(k_after[i] - p.expected_k[i]) <= tol * (1 + std::fabs(p.expected_k[i]))))
        ++r.cache_bad;
      if (!both_nan_v && v_after[i] != p.expected_v[i]) ++r.cache_bad;
    } else if (std::memcmp(&k_after[i], &p.k_cache[i], sizeof(float)) != 0 ||
               std::memcmp(&v_after[i], &p.v_cache[i], sizeof(float)) != 0) {  // bit for bit (NaN poison too)
      ++r.cache_bad;
    }
  }

  // the reference: each sequence's visible keys packed (varlen), read from the cache the device
  // left (what it attended to), q rotated as flash-attn positions it; keys of bad pages masked
  bench::Shape s;
  s.batch = B;
  s.heads = H;
  s.heads_kv = Hk;
  s.head_dim = d;
  s.seqlen_q = Nq;
  s.causal = c.causal;
  s.scale = c.scale;  // (0: the default, as the call)
  s.window_left = c.window_left;
  s.window_right = c.window_right;
  s.softcap = c.softcap;
  s.alibi_slopes = p.slopes;
  s.cu_seqlens_q.push_back(0);
  s.cu_seqlens_k.push_back(0);
  int max_keys = 0;
  for (int b = 0; b < B; ++b) {
    s.cu_seqlens_q.push_back((b + 1) * Nq);
    s.cu_seqlens_k.push_back(s.cu_seqlens_k.back() + std::max(p.keys[b], 0));
    max_keys = std::max(max_keys, p.keys[b]);
  }
  s.seqlen_k = std::max(max_keys, 1);
  std::vector<float> ref_k, ref_v;
  std::vector<float> visible(static_cast<std::size_t>(B) * Nq * s.seqlen_k, 1.0f);
  bool any_hidden = false;
  for (int b = 0; b < B; ++b)
    for (int key = 0; key < p.keys[b]; ++key) {
      int slot, row;
      p.locate(b, key, slot, row);
      const std::size_t at = (static_cast<std::size_t>(std::max(slot, 0)) * p.cache_seq + row) * row_elems;
      ref_k.insert(ref_k.end(), k_after.begin() + at, k_after.begin() + at + row_elems);
      ref_v.insert(ref_v.end(), v_after.begin() + at, v_after.begin() + at + row_elems);
      if (slot < 0) {
        any_hidden = true;
        for (int i = 0; i < Nq; ++i) visible[(static_cast<std::size_t>(b) * Nq + i) * s.seqlen_k + key] = 0.0f;
      }
    }
  if (any_hidden) {
    s.mask = bench::MaskMode::Bool;
    s.mask_batch = B;
    s.mask_heads = 1;
    s.mask_values = visible;
  }
  auto q_ref = p.q;
  if (c.rotary)
    for (int b = 0; b < B; ++b)
      for (int i = 0; i < Nq; ++i)
        for (int h = 0; h < H; ++h) {
          const bool shifted = c.causal || c.window_left >= 0 || c.window_right >= 0;
          const int pos = std::min(p.len[b] + (shifted ? i : 0), p.capacity - 1);
          rotate_row(&q_ref[((static_cast<std::size_t>(b) * Nq + i) * H + h) * d], p.rotary_dim, c.rotary == 1, p.cos_t,
                     p.sin_t, pos);
        }
  const bench::Reference ref = bench::reference_attention(s, q_ref, ref_k, ref_v);

  CaseResult& cr = r.result;
  cr.ref.out = ref.out;  // (total_q, H, d) = (B, Nq, H, d)
  cr.ref.lse.resize(ref.lse.size());
  for (int b = 0; b < B; ++b)  // (H, total_q) -> (B, H, Nq)
    for (int h = 0; h < H; ++h)
      for (int i = 0; i < Nq; ++i)
        cr.ref.lse[(static_cast<std::size_t>(b) * H + h) * Nq + i] =
            ref.lse[static_cast<std::size_t>(h) * B * Nq + b * Nq + i];
  cr.o = std::move(o);
  cr.lse_values = std::move(lse);
  cr.out = bench::compare(cr.o, cr.ref.out);
  cr.lse = bench::compare(cr.lse_values, cr.ref.lse);
  return r;
}

DecodeCase base(std::vector<int> seqlens) {
  DecodeCase c;
  c.seqlens = std::move(seqlens);
  c.seed = 100 + c.seqlens[0];
  return c;
}

}  // namespace flashcl::test
