// decode_support.hpp: the KV-cache tests' problems and their float64 check, shared by the suite on
// device buffers (test_decode.cpp) and Session's host-array form (test_session_kvcache.cpp): a
// case's random inputs (cache slots, q, k_new, v_new, the block table, rotary tables, ALiBi
// slopes), the documented clamping as the model of what the kernels see, the cache the append
// should leave, and O and LSE against the reference computed from the caches the call left.
#pragma once

#include <array>
#include <string>
#include <utility>
#include <vector>

#include "support.hpp"

namespace flashcl::test {

struct DecodeCase {
  int batch = 2, heads = 4, heads_kv = 2, seqlen_q = 1, head_dim = 32;
  int capacity = 200;                          // keys a sequence can hold (paged: rounded up to whole pages);
                                               // over three tiles of 64 keys (PoCL's), so splits and tile edges matter
  std::vector<int> seqlens;                    // cache_seqlens as the device sees them (hostile ones included)
  int page_size = 0;                           // 0: contiguous
  int spare_pages = 3;                         // pool pages no sequence uses
  bool shuffle = true;                         // paged: pages in random pool order
  std::vector<std::pair<int, int>> bad_pages;  // (sequence, page index) given an out-of-pool entry
  bool share_first_page = false;               // paged, no append: sequence 1 reads sequence 0's first page
  int seqlen_new = 0;                          // rows of k_new/v_new (0: no append)
  int rotary = 0;                              // 0 off, 1 interleaved, 2 half-split
  int rotary_dim = 0;                          // 0: head_dim
  bool causal = false;
  int window_left = -1, window_right = -1;
  float softcap = 0.0f;
  bool alibi = false;
  std::vector<float> slopes;   // alibi: these H slopes (empty: 0.5 / (h + 1))
  float scale = 0.0f;          // 0: 1/sqrt(d)
  float qk_amplitude = 1.0f;   // q, the cached and the new keys scaled by it (extreme-value cases)
  std::vector<int> batch_idx;  // contiguous: cache row per sequence (empty: off); cache has batch + 2 rows
  int num_splits = 0;
  DType dtype = DType::F32;
  Layout cache_layout = Layout::BSHD;
  std::uint64_t seed = 1;
  std::vector<std::array<int, 3>> nan_k, nan_v;  // (sequence, key, K/V head) whose cached K or V gets a NaN
};

// A case's host side, in the caches' dense layouts: (cache_rows, cache_seq, H_kv, d) for both
// forms (paged: cache_rows pages of cache_seq = page_size keys).
struct DecodeProblem {
  DecodeCase c;
  bool paged = false;
  int max_pages = 0, capacity = 0, num_pages = 0, cache_rows = 0, cache_seq = 0, rotary_dim = 0;
  std::size_t cache_elems = 0;
  std::vector<float> q, k_cache, v_cache, k_new, v_new;  // in storage precision (k_new/v_new: one row when no append)
  std::vector<int> table;                                // paged: (B, max_pages), bad entries included
  std::vector<int> len, keys;                            // per sequence: clamped cache_seqlens; keys seen (-1: none)
  std::vector<float> cos_t, sin_t, slopes;
  std::vector<float> expected_k, expected_v;  // the caches after the append
  std::vector<char> appended;                 // per d-element row of a cache: written by the append

  // (slot, row) of key p of sequence b; slot -1 when its page is outside the pool.
  void locate(int b, int p, int& slot, int& row) const;
  // The call's sizes and switches, no buffers set.
  KvCacheArgs shape() const;
};
DecodeProblem make_decode_problem(const DecodeCase& c);

struct DecodeResult {
  CaseResult result;             // O and LSE against the reference (expect_accurate's input)
  std::size_t cache_bad = 0;     // cache elements that differ from the model after the call
  std::size_t gaps_changed = 0;  // elements outside any tensor's layout that were written
  std::string kernel;            // the split kernel the call ran (kvcache_info's)
};

// The caches the call left (k_after, v_after: dense, as DecodeProblem's) against the model (appended
// rows as expected, every other element bit for bit unchanged), and O (B, Nq, H, d) and LSE
// (B, H, Nq) against the float64 reference on those caches. gaps_changed and gaps_written are the
// caller's to fill.
DecodeResult check_decode(const DecodeProblem& p, const std::vector<float>& k_after, const std::vector<float>& v_after,
                          std::vector<float> o, std::vector<float> lse);

// The default case: two sequences of these cached lengths (GQA 4/2, d 32, Nq 1, contiguous).
DecodeCase base(std::vector<int> seqlens = {170, 75});

}  // namespace flashcl::test
