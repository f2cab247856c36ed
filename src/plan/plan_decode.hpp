// plan_decode.hpp: the pure planner of the KV-cache (decode) path: from device facts and the
// host-known problem (batch, heads, query rows, head dim, cache capacity) to the split kernel's
// kernel (streaming or staged) and its tile (query rows BR, keys BC, work-group size), its local
// memory, and the number of key splits that fills the device (Flash-Decoding). No OpenCL calls, so tests plan for simulated devices.
#pragma once

#include <cstddef>
#include <string>

#include "plan/device_facts.hpp"
#include "flashcl/flashcl.hpp"

namespace flashcl::detail {

struct DecodeRequest {
  int batch = 1, heads = 1, heads_kv = 1, seqlen_q = 1, head_dim = 64;
  int max_keys = 1;        // the most keys a sequence can hold (S_cache or max_pages·page_size)
  int page_size = 0;       // paged caches: keys per page; 0: contiguous
  int vec = 1;             // elements per cache load (1, 4 or 8)
  int num_splits = 0;      // forced split count; 0: the planner's
  bool fp8_cache = false;  // 8-bit cache elements (e4m3, e5m2)
  bool rotary = false;     // the call rotates q (decode_mma cannot: it reads q as stored)
  int resident_per_cu = 0; // decode_lanes' work-groups one compute unit holds at once, read from the
                           // built kernel (decode.cpp): the split count then fills whole waves of
                           // them; 0: unknown (the 2-per-compute-unit rule); kResidentForSizing:
                           // the most any residency could ask for (the workspace query)
  bool mma_failed = false; // decode_mma's device probe failed (launch/decode_probe.hpp): the default plan
                           // takes another form (a forced "mma" is the caller's error, raised before planning)
  std::string form;        // FLASHCL_DECODE: "lanes", "lanes-single" (lanes without the next tile's
                           // loads in flight), "cpu", "stream" or "staged" forces that kernel where the
                           // call allows it; empty (or anything else): the planner's choice.
                           // "lanes-wide" (decode_lanes with LANE_WIDE and, on NVIDIA, 2 tiles
                           // prefetched into L2), "lanes-wide-np" (no prefetch), "lanes-wide16" (and
                           // fp8 caches at VEC 16: kvcache_plan asks with vec 16): forced forms;
                           // "lanes-async" (4 keys a work-item, 2 stages) or "lanes-async-k<K>s<S>":
                           // the wide form with K/V by cp.async into a ring of S tiles (NVIDIA,
                           // 16-bit caches at 8 elements a load; other calls keep the default)
                           // (paged 16-bit caches on NVIDIA take lanes-wide by default at 5-8 rows,
                           // the async form at 4); "mma" or "mma-b<BC>s<RING>": decode_mma.cl (tensor
                           // cores, 16-row blocks; 16-bit caches at 8 elements a load, no rotary;
                           // other calls keep the default) on NVIDIA of compute capability >= 8.0
                           // and on CPU devices (PoCL: it builds there only over tests/emulated_mma's
                           // operand files); other devices keep the default
};

struct DecodePlan {
  int block_rows = 0;      // BR: query rows (of one K/V head's group) per work-group
  int block_cols = 0;      // BC: keys per tile
  int row_blocks = 0;      // ⌈group·Nq / BR⌉
  int num_splits = 0;      // key splits per (sequence, K/V head, row block)
  int page_slots = 0;      // paged: most pages one tile spans
  int merge_wg = 0;        // work-items of the merge kernel (its launch size, not a build option)
  bool merge_serial = false;  // the merge walks the splits in turn (decode_merge_serial: few splits)
  bool stream = false;     // decode_stream.cl (K/V in registers) instead of decode_split.cl (staged)
  bool lanes = false;      // decode_lanes.cl (a key's chunks on adjacent lanes, summed by a butterfly)
  bool lane_shuffle = false;  // lanes: the butterfly by warp shuffles (NVIDIA), else through __local
  bool lane_pipeline = false; // lanes: the next tile's loads issued before this tile's arithmetic
  bool lane_wide = false;     // lanes, wide form: division-free page cursor, one page base per lane and tile
                              // (LANE_WIDE; under the async form, or paged 16-bit caches on NVIDIA at 5-8 rows,
                              // or FLASHCL_DECODE=lanes-wide*)
  bool lane_page_kpt = false; // lanes-wide, paged: page_size % KPT == 0, so a lane's keys share a page (LANE_PAGE_KPT)
  int lane_prefetch = 0;      // lanes-wide on NVIDIA: tiles ahead prefetched into L2 (LANE_PREFETCH; 0: none)
  int lane_async = 0;         // lanes-wide on NVIDIA: stages of the cp.async ring in __local (LANE_ASYNC; 0: loads
                              // into registers): NVIDIA's default for 16-bit caches at 4 rows (2 stages),
                              // or forced by FLASHCL_DECODE=lanes-async[-k<KPT>s<stages>]
  bool mma = false;        // decode_mma.cl (tensor cores, a warp per 16-row block, 1-4 a work-group)
  int mma_ring = 0;        // mma: tiles of the cp.async ring (RING)
  int mma_run = 0;         // mma, paged: keys of a tile read as one run with stepped copies (DM_RUN:
                           // gcd(page_size, BC) where it is 8 or more; 0: each copy addressed on its own,
                           // a paged cache's through the key table in __local)
  bool cpu = false;        // decode_cpu.cl: one work-item per work-group, VW-wide vectors (CPU devices)
  int vector_width = 0;    // cpu: floats per vector (VW), a divisor of head_dim
  bool cpu_prefetch = false;  // cpu: software prefetch (CPU devices only: a simulator may lack it)
  int heads_per_item = 1;  // cpu: K/V heads per work-item (HB, divides heads_kv); grid dimension 1 is heads_kv / HB
  int keys_per_thread = 0; // stream, lanes: keys each work-item loads per tile (BC = key groups × this)
  std::size_t work_group_size = 0;
  std::size_t local_bytes = 0;
  std::string reason;
};

// Plans the split kernel; throws Error(OutOfResources) when no tile fits the device's local
// memory and Error(InvalidArgument) for a forced split count out of 1 … kMaxDecodeSplits.
DecodePlan plan_decode(const DeviceFacts& device, const DecodeRequest& request);

// __local bytes decode_split.cl declares for these sizes.
std::size_t decode_local_bytes(int block_rows, int block_cols, int head_dim, int page_slots);

// __local bytes decode_stream.cl declares (key_groups × chunks work-items, chunks = d / VEC).
std::size_t decode_stream_local_bytes(int block_rows, int block_cols, int head_dim, int key_groups, int chunks,
                                      int page_slots);

// __local bytes decode_mma.cl declares (a ring of `ring` BC-key K and V tiles at fp16/bf16, and,
// for a paged cache read through the key table (no page runs), its two tables and per-stage flags).
std::size_t decode_mma_local_bytes(int block_cols, int head_dim, int ring, bool key_table);

// decode_mma's run: the keys of a tile that lie together in the cache, read with stepped copies: a
// paged cache's gcd(page_size, block_cols) where it is 8 or more (a tile's keys then lie on pages
// in whole aligned runs of it) and the stepped copies fit it (a key row's 16-byte chunks divide
// the work-group, and the rows a step covers divide the run); else 0, each copy addressed on its
// own. Contiguous caches get 0 (the kernel takes a whole tile as one run where the stepped
// copies fit: decode_mma.cl's DM_CONTIGUOUS_RUNS).
int decode_mma_run(int page_size, int block_cols, int head_dim, int work_group_size);
// Whether decode_mma's stepped copies serve a run of `run` keys: a key row's 16-byte chunks divide
// the work-group and the rows one step covers divide the run (decode_mma.cl's condition).
bool decode_mma_stepped(int run, int head_dim, int work_group_size);

// __local bytes decode_lanes.cl declares (key_groups × chunks work-items).
std::size_t decode_lanes_local_bytes(int block_rows, int block_cols, int head_dim, int key_groups, int chunks,
                                     bool shuffle, int async_stages = 0);

// Whether FLASHCL_DECODE's `form` asks for decode_mma ("mma" or "mma-b<BC>s<RING>").
inline bool forces_decode_mma(const std::string& form) { return form.rfind("mma", 0) == 0; }

constexpr int kMaxDecodeSplits = 1024;  // decode_merge.cl's MERGE_MAX_SPLITS (its __local weights)

// DecodeRequest::resident_per_cu for the workspace query, which cannot build the kernel: a split
// count at least that of every residency the call may find (so a workspace of that size always holds
// the call's partials).
constexpr int kResidentForSizing = -1;

}  // namespace flashcl::detail
