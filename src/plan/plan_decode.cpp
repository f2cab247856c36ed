// plan_decode.cpp: the decode planner (plan_decode.hpp). Up to 8 query rows per K/V head (decode)
// go to a register-streaming kernel: on NVIDIA GPUs, when a key's head dimension is a power-of-two
// number of chunks up to a warp, decode_lanes.cl (no barrier per tile: partial dots summed by warp
// shuffles); on CPUs decode_cpu.cl (one work-item per work-group walking the keys with VW-wide
// vectors, as PoCL compiles well); elsewhere decode_stream.cl (K and V chunks in registers,
// partial dots through a few KiB of __local). More rows (chunked prefill) go to the staged kernel (decode_split.cl), which
// stages a BC-key K tile (rows padded by one float), a V tile, BR scaled query rows and the BR×BC
// scores in __local memory: the planner takes the widest key tile that fits, since each tile
// costs its barriers whatever its width. Then the split count that gives every compute unit
// several work-groups (SplitRule: the numbers and why).
#include "plan/plan_decode.hpp"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <numeric>

#include "base/errors.hpp"

namespace flashcl::detail {
namespace {

std::size_t pow2_at_least(std::size_t x) {
  std::size_t p = 1;
  while (p < x) p *= 2;
  return p;
}

bool power_of_two(int x) { return x > 0 && (x & (x - 1)) == 0; }

int page_slots_for(int block_cols, int page_size) {
  return page_size > 0 ? std::min(block_cols, (block_cols - 1) / page_size + 2) : 0;
}

// How many key splits: work-groups wanted per compute unit over the whole grid, and the fewest
// keys (or tiles) one split may hold; with target_keys, also splits of about that many keys
// however many work-groups that makes. decode_lanes, measured on the H200 (bench/gpu/decode.sh's
// forced-split sweep, fp16, H 32/8, d 128; docs/perf/nvidia-h200.md): a split reads best at about
// 2048 keys (B 8: 16 splits at 32k 2.80 TB/s against 2.72 at 33 and 2.48 at 8; 128k flat from 33
// to 132), but the grid wants 2 work-groups per SM first (B 1 at 32k: 33 splits 1.75 TB/s, 16
// 1.28, 128 1.26; B 1 at 4k: 16 splits of 256 keys 0.52, 4 0.36). A split writes BR·(d + 1)
// floats that the merge reads back; 256 keys (128 KiB of fp16 K/V at d = 128) keep that under 2 %
// of its read. The older kernels keep their rule: 4 work-groups per compute unit on a GPU, 2 on a
// CPU, at least two tiles per split.
// decode_lanes where the built kernel says how many of its work-groups a compute unit holds at once
// (DecodeRequest::resident_per_cu; NVIDIA's CL_KERNEL_WORK_GROUP_SIZE: 2 at d = 128) takes whole waves of
// them instead (wave_splits): on the H200 (bench/gpu/decode_waves.sh, docs/perf/nvidia-h200.md)
// B 1 at 32k keys read 1.88 TB/s at 49 splits (392 work-groups, one wave of 3 per SM) against 1.76
// at 33 and 1.50 at 66 (1.3 waves), at 128k 2.66 at 49 against 2.18 at the 2048-key rule's 64;
// B 8 at 32k 2.88 at 12 (two waves) against 2.81 at 16. The driver counts 2 a compute unit, so the
// rule takes 33 at B 1 (the single form would take 49 at 3); the async form, the default now,
// measured 33 best at B 1 on the H100.
struct SplitRule {
  int per_compute_unit;
  int min_keys;     // fewest keys per split (0: min_tiles counts instead)
  int min_tiles;
  int target_keys;  // keys per split wanted once the compute units are filled (0: none)
};
constexpr SplitRule kLanesSplits{2, 256, 0, 2048};
// decode_mma: whole waves of 3 work-groups a compute unit, whatever the length. On the H100
// (bench/gpu/decode_mma.sh's sweep, fp16, H 32/8, d 128, contiguous) B 1 read best at 33-49 splits
// (32k: 1.95 / 1.92 TB/s against 1.63 at 99; 128k: 2.50 / 2.56 against 2.41), B 8 at 8-12 (32k 2.81
// at 8, 2.77 at 12 and 4, 2.65 at 16; 128k 2.89 at 8, 2.87 at 12, 2.82 at 33-61): 2-4 a compute unit,
// fewer than the 6 its 35 KiB of __local would allow, and no gain from splits of fewer keys.
constexpr SplitRule kMmaSplits{3, 256, 0, 0};
constexpr SplitRule kGpuSplits{4, 0, 2, 0};
constexpr SplitRule kCpuSplits{2, 0, 2, 0};
// decode_cpu: one work-item per work-group, so 8 per core balance the cores (PoCL hands out
// work-groups dynamically); 512 keys per split keep the per-split prologue (query rows, rotary)
// and the partial write small next to the 256 KiB of fp16 K/V such a split reads at d = 128.
constexpr SplitRule kCpuDecodeSplits{8, 512, 0, 0};

// decode_cpu's vector width: the device's preferred float width (16 on AVX-512), halved until it
// divides the head dimension; 0 (no such kernel) below 4.
int cpu_vector_width(const DeviceFacts& f, int head_dim) {
  for (int w = f.float_vector_width >= 16 ? 16 : f.float_vector_width >= 8 ? 8 : 4; w >= 4; w /= 2)
    if (head_dim % w == 0) return w;
  return 0;
}

// A wave is every compute unit holding `resident` work-groups. The splits the rule wants with it:
// the wave's share per (sequence, K/V head, row block) triple, or splits of target_keys, whichever
// is more.
std::int64_t wave_share(const DeviceFacts& f, int resident, std::int64_t triples, std::int64_t keys, SplitRule rule) {
  const std::int64_t wave = static_cast<std::int64_t>(std::max(f.compute_units, 1)) * resident;
  return std::max<std::int64_t>(wave / triples, rule.target_keys > 0 ? keys / rule.target_keys : 0);
}

// Whole waves: wave_share rounded down to the whole waves it fills (at least one), and the splits of
// those waves taken, so no work-group runs in a part-filled last wave while the others idle. Never
// more than keys / min_keys, and never more than wave_share (which bounds the workspace query).
std::int64_t wave_splits(const DeviceFacts& f, int resident, std::int64_t triples, std::int64_t keys, SplitRule rule) {
  const std::int64_t wave = static_cast<std::int64_t>(std::max(f.compute_units, 1)) * resident;
  const std::int64_t waves = std::max<std::int64_t>(1, wave_share(f, resident, triples, keys, rule) * triples / wave);
  return std::min<std::int64_t>(waves * wave / triples, keys / rule.min_keys);
}

// The most work-groups a compute unit can hold by decode.cpp's reading of the driver (a kernel
// work-group size below the device's maximum, over the work-group), for the workspace query.
int residency_bound(const DeviceFacts& f, const DecodePlan& p) {
  return static_cast<int>(std::max<std::size_t>(1, (std::max<std::size_t>(f.max_work_group_size, 2) - 1) / p.work_group_size));
}

// decode_mma's warps a work-group: one per 16-row block, up to 4 sharing each tile (chunked
// prefill: the cache read once per 64 rows), as many as divide the tile's 16-byte chunks.
int decode_mma_warps(std::int64_t rows, int bc, int d, std::size_t max_work_group_size) {
  int warps = rows <= 16 ? 1 : rows <= 32 ? 2 : 4;
  while (warps > 1 && ((bc * (d / 8)) % (32 * warps) != 0 || max_work_group_size < 32u * warps)) warps /= 2;
  return warps;
}

}  // namespace

std::size_t decode_local_bytes(int br, int bc, int d, int page_slots) {
  const std::size_t floats = static_cast<std::size_t>(br) * d            // q_tile
                             + static_cast<std::size_t>(bc) * (d + 1)    // k_tile
                             + static_cast<std::size_t>(bc) * d          // v_tile
                             + static_cast<std::size_t>(br) * bc         // p_tile
                             + static_cast<std::size_t>(br);             // slope_row
  return floats * sizeof(float) + static_cast<std::size_t>(page_slots) * sizeof(std::int32_t);
}

std::size_t decode_stream_local_bytes(int br, int bc, int d, int key_groups, int chunks, int page_slots) {
  const std::size_t partial_dots = static_cast<std::size_t>(br) * bc * (chunks + 1);
  const std::size_t streams = static_cast<std::size_t>(key_groups) * br * (d + 2);  // O, m, l per key group
  const std::size_t floats = std::max(partial_dots, streams) + static_cast<std::size_t>(br) * bc + br;
  return floats * sizeof(float) + static_cast<std::size_t>(page_slots) * sizeof(std::int32_t);
}

bool decode_mma_stepped(int run, int head_dim, int work_group_size) {
  const int chunks = head_dim / 8;  // 16-byte chunks of a key row
  return chunks > 0 && work_group_size % chunks == 0 && run % (work_group_size / chunks) == 0;
}

int decode_mma_run(int page_size, int block_cols, int head_dim, int work_group_size) {
  // (contiguous caches: the kernel itself takes a whole tile as one run where the stepped copies
  // fit, DM_CONTIGUOUS_RUNS in decode_mma.cl; nothing to plan)
  if (page_size <= 0) return 0;
  const int run = std::gcd(page_size, block_cols);
  return run >= 8 && decode_mma_stepped(run, head_dim, work_group_size) ? run : 0;
}

std::size_t decode_mma_local_bytes(int bc, int d, int ring, bool key_table) {
  const std::size_t pitch = static_cast<std::size_t>((d + 15) / 16 * 16 + 8);  // K_PITCH = V_PITCH (mma_f16.cl)
  const std::size_t ring_bytes = static_cast<std::size_t>(ring) * bc * 2 * pitch * 2;
  // the key table form: the two key tables (K and V offsets) and the stages' flags of which keys are there
  const std::size_t paged_bytes = 2 * 2 * static_cast<std::size_t>(bc) * sizeof(std::int64_t) +
                                  static_cast<std::size_t>(ring) * bc * sizeof(std::int32_t);
  return ring_bytes + (key_table ? paged_bytes : 0);
}

std::size_t decode_lanes_local_bytes(int br, int bc, int d, int key_groups, int chunks, bool shuffle, int async_stages) {
  const std::size_t streams = static_cast<std::size_t>(key_groups) * br * (d + 2);  // O, m, l per key group
  const std::size_t partial_dots = shuffle ? 0 : static_cast<std::size_t>(br) * bc * (chunks + 1);
  const std::size_t bytes = std::max(streams, partial_dots) * sizeof(float);
  // the cp.async ring: a K and a V slot of 16 bytes per key of a tile and lane; the streams reuse it
  const std::size_t ring = static_cast<std::size_t>(async_stages) * 2 * bc * chunks * 16;
  return async_stages > 0 ? std::max(ring, (bytes + 15) / 16 * 16) : bytes;
}

DecodePlan plan_decode(const DeviceFacts& f, const DecodeRequest& r) {
  if (r.num_splits < 0 || r.num_splits > kMaxDecodeSplits)
    fail(Status::InvalidArgument, "num_splits: must be 0 (planner) or 1..", kMaxDecodeSplits, ", got ", r.num_splits);
  const bool gpu = f.kind == DeviceKind::GPU;
  const int group = r.heads / std::max(1, r.heads_kv);
  const std::int64_t rows = static_cast<std::int64_t>(group) * r.seqlen_q;
  // 48 KiB is what an OpenCL work-group gets on NVIDIA; smaller tiles there let more work-groups
  // (and so more loads) be resident per compute unit. PoCL's local memory is plain host memory.
  const std::size_t budget = std::min<std::size_t>(f.local_mem_bytes, gpu ? 48 * 1024 : 256 * 1024);

  DecodePlan p;
  // decode_mma: a warp per 16-row block of a K/V head's rows (Nq x group, GQA-packed) on the
  // tensor cores, where the call gives it 16-bit caches at 8 elements a load (16-byte cp.async) and
  // q as stored (no rotary). Forced by FLASHCL_DECODE=mma or mma-b<BC>s<RING> (a call it cannot take
  // gets the default plan). The default on NVIDIA of compute capability >= 8.0 (H100,
  // bench/gpu/decode_mma.sh and decode_rows.sh, fp16, H 32/8, d 128, one call each, device-event
  // medians; docs/DECODE.md):
  //  - one query on caches of 4096 keys or more, contiguous or paged where its tiles are read in
  //    runs (decode_mma_run: pages of a multiple of 8 keys; contiguous tiles are one run): at 4k keys
  //    contiguous caches read 1.11-1.12x the async form at B 1 and 8, pages of 16 / 256 1.03-1.10x;
  //    at 32k, B 8, pages of 16 / 256 read 2.95 / 2.96 TB/s against the async form's 2.69 / 2.72
  //    (1.09-1.10x; 128k 1.07x; B 1 1.02-1.08x) and 0.99x the contiguous cache
  //    (bench/gpu/decode_quick.sh STEPS=runs, two rounds each); other page sizes keep the async form
  //    (the key table's pages of 16 read 0.95-0.99x it), as do caches under 4k keys (not measured)
  //    and, under 8k keys, contiguous caches whose tiles are not one run (d 72, 80, ...: per copy
  //    decode_mma read 0.97x the async form at 4k, B 1; from 8k 1.02-1.07x);
  //  - more queries (speculative decoding, chunked prefill), any cache: at 32k keys, B 8, 2 queries
  //    of a group of 4 read 2.98 TB/s against decode_lanes' 1.10 (causal 2.87 against 0.61, pages of
  //    16 2.70 against 1.23), 4 queries 2.96 against the staged kernel's 0.23, 16 queries (64 rows,
  //    one 4-warp work-group) 2.29 against 0.064; measured at 32k only, but 2.6-36x leaves room.
  const bool forced_mma = forces_decode_mma(r.form);
  const int default_wg = 32 * decode_mma_warps(rows, 32, r.head_dim, f.max_work_group_size);
  const bool in_runs = r.page_size > 0 ? decode_mma_run(r.page_size, 32, r.head_dim, default_wg) > 0
                                       : decode_mma_stepped(32, r.head_dim, default_wg);
  const bool default_mma = r.form.empty() && !r.mma_failed && gpu && f.is_nvidia() && f.nv_compute_major >= 8 &&
                           (r.seqlen_q > 1 ||
                            (r.max_keys >= 4096 && (in_runs || (r.page_size == 0 && r.max_keys >= 8192))));
  if (forced_mma || default_mma) {
    int bc = 32, ring = 2, used = 0;
    if (forced_mma && r.form != "mma" &&
        (std::sscanf(r.form.c_str(), "mma-b%ds%d%n", &bc, &ring, &used) != 2 || used != static_cast<int>(r.form.size()) ||
         (bc != 16 && bc != 32 && bc != 64) || ring < 2 || ring > 8))
      fail(Status::InvalidArgument, "FLASHCL_DECODE: '", r.form, "' is not mma or mma-b<16|32|64>s<2..8>");
    const int warps = decode_mma_warps(rows, bc, r.head_dim, f.max_work_group_size);
    const int run = decode_mma_run(r.page_size, bc, r.head_dim, 32 * warps);
    const std::size_t bytes = decode_mma_local_bytes(bc, r.head_dim, ring, r.page_size > 0 && run == 0);
    // (NVIDIA's PTX from compute capability 8.0: cp.async, m16n8k16; off NVIDIA only CPU devices, where
    // tests/emulated_mma's operand files stand in, take a forced form: other GPUs get the default plan)
    const bool device_ok = (f.is_nvidia() && f.nv_compute_major >= 8) || f.kind == DeviceKind::CPU;
    const bool fits = device_ok && r.vec == 8 && !r.fp8_cache && !r.rotary &&
                      (bc * (r.head_dim / 8)) % 32 == 0 && bytes <= budget && f.max_work_group_size >= 32;
    if (!fits && forced_mma) {
      DecodeRequest unforced = r;
      unforced.form.clear();
      return plan_decode(f, unforced);
    }
    if (fits) {
      p.mma = true;
      p.mma_ring = ring;
      p.mma_run = run;
      p.block_rows = 16 * warps;
      p.block_cols = bc;
      p.work_group_size = 32u * warps;
      p.local_bytes = bytes;
    }
  }
  const int wg_cap = gpu ? 128 : 64;
  const int vec = std::max(1, r.vec), chunks = r.head_dim / vec;
  // Few rows per K/V head (decode), their query chunks within 64 registers: K and V stream through
  // registers. decode_lanes where a key's chunks are a power of two up to a warp (the butterfly's
  // lanes) on NVIDIA (shuffles by inline PTX); its PTX-free form (__local, two barriers per tile)
  // is for tests on other devices (FLASHCL_DECODE=lanes).
  const bool few_rows = rows <= 8 && rows * vec <= 64;
  const std::size_t lanes_wg = std::min<std::size_t>(128, f.max_work_group_size);
  // The wide form: forced by its names, and the default where it was measured faster: paged 16-bit
  // caches (8-element loads) on NVIDIA whose pages hold whole runs of a lane's keys (page_size % KPT
  // == 0: a page base per lane), 1.03-1.17x the single form (H100, fp16, B 8 and 1, 4k-128k keys,
  // pages of 16 and 256; docs/perf/nvidia-h100.md, "Decode"). Contiguous caches keep the single form
  // (0.86-0.94x there), fp8 caches too (its prefetch state costs them a work-group per SM: 0.62-0.90x
  // contiguous); fp32 caches and other page sizes are unmeasured. Where the async form below is the
  // default (4 rows), it takes the wide form's cursor and replaces its prefetch.
  int kpt = rows <= 4 ? 4 : 2;  // keys_per_thread below
  // The async form (decode_lanes.cl's LANE_ASYNC): K/V by cp.async into a ring of tiles in __local,
  // bytes in flight without registers. The default for NVIDIA's 16-bit caches at 8 elements a load
  // (16-byte copies) with 4 rows, the shape measured (4 keys a work-item, 2 stages; contiguous or
  // pages of a multiple of 4 keys; fewer rows hold fewer registers in the single form, which the
  // ring's 32 KiB may then cost more than it gives: not measured, so they keep it): on the H200
  // (bench/gpu/decode_async.sh, fp16, H 32/8, d 128, B 8 and 1, 4k to 128k keys, contiguous and
  // pages of 16 and 256) 1.05-1.23x the single and wide forms it
  // replaces, at 128-144 registers against 165 and 32 KiB of __local; 3 or 4 stages, or 2 keys a
  // work-item, were no faster. Forced: FLASHCL_DECODE=lanes-async[-k<KPT>s<stages>] (8 rows
  // included); FLASHCL_DECODE=lanes-single or lanes-wide keep the forms before it.
  int async_stages = 0;
  const bool async_fits = gpu && f.is_nvidia() && f.nv_compute_major >= 8 && r.vec == 8 && !r.fp8_cache;  // cp.async: sm_80
  if (r.form.rfind("lanes-async", 0) == 0) {
    int k = 4, st = 2, used = 0;
    if (r.form != "lanes-async" &&
        (std::sscanf(r.form.c_str(), "lanes-async-k%ds%d%n", &k, &st, &used) != 2 || used != static_cast<int>(r.form.size()) ||
         (k != 1 && k != 2 && k != 4) || st < 2 || st > 8))
      fail(Status::InvalidArgument, "FLASHCL_DECODE: '", r.form, "' is not lanes-async or lanes-async-k<1|2|4>s<2..8>");
    if (!async_fits || (r.page_size > 0 && r.page_size % k != 0)) {  // a call it cannot take: the default plan
      DecodeRequest unforced = r;
      unforced.form.clear();
      return plan_decode(f, unforced);
    }
    kpt = k;
    async_stages = st;
  } else if (r.form.empty() && async_fits && rows == 4 && (r.page_size == 0 || r.page_size % kpt == 0)) {
    async_stages = 2;
  }
  const bool wide = r.form == "lanes-wide" || r.form == "lanes-wide-np" || r.form == "lanes-wide16" || async_stages > 0 ||
                    (r.form.empty() && gpu && f.is_nvidia() && r.page_size > 0 && r.page_size % kpt == 0 &&
                     !r.fp8_cache && r.vec == 8);
  if (!p.mma && few_rows && power_of_two(chunks) && chunks <= 32 && static_cast<std::size_t>(chunks) <= lanes_wg &&
      (r.form == "lanes" || r.form == "lanes-single" || wide || (r.form.empty() && gpu && f.is_nvidia()))) {
    const int key_groups = static_cast<int>(lanes_wg) / chunks;
    p.lanes = true;
    p.lane_shuffle = f.is_nvidia();
    // Pipelined (FLASHCL_DECODE=lanes): each warp issues the next tile's 2·KPT loads before this
    // tile's arithmetic. Not the default: it has not run on the H200 yet, while the single form
    // passed the decode tests there and measured 1.2-1.6x the stream kernel (docs/perf/nvidia-h200.md).
    p.lane_pipeline = r.form == "lanes";
    // 2·KPT independent 16-byte loads in flight per work-item; 2 when 8 rows' query chunks and
    // accumulators take the registers
    p.keys_per_thread = kpt;
    if (wide) {
      // The wide form (decode_lanes.cl's LANE_WIDE): the page cursor without divisions; a page
      // base per lane and tile where the lane's KPT keys share a page; on NVIDIA the tile 2 ahead
      // requested into L2 (bytes in flight that hold no registers), contiguous or such pages only.
      // 16 elements a lane (fp8 at VEC 16): 2 keys, so BC stays 32 and the K/V registers 16.
      p.lane_wide = true;
      if (vec >= 16) p.keys_per_thread = 2;
      p.lane_page_kpt = r.page_size > 0 && r.page_size % p.keys_per_thread == 0;
      p.lane_prefetch = f.is_nvidia() && r.form != "lanes-wide-np" && (r.page_size == 0 || p.lane_page_kpt) ? 2 : 0;
      if (async_stages > 0) {  // the ring instead of the L2 prefetch
        p.keys_per_thread = kpt;
        p.lane_async = async_stages;
        p.lane_prefetch = 0;
      }
    }
    p.block_rows = static_cast<int>(rows);
    p.block_cols = key_groups * p.keys_per_thread;
    p.work_group_size = static_cast<std::size_t>(key_groups) * chunks;
    p.local_bytes = decode_lanes_local_bytes(p.block_rows, p.block_cols, r.head_dim, key_groups, chunks, p.lane_shuffle,
                                             p.lane_async);
    if (p.local_bytes > budget) p = DecodePlan{};  // (d = 256 at 8 rows: 33 KiB, fits) another kernel instead
  }
  // CPU devices: decode_cpu, one work-item per work-group, for an fp8 cache too (decode_cpu_fp8:
  // VW bytes decoded through the fp16 converter; docs/DECODE.md has its speed against fp16).
  const int cpu_vw = cpu_vector_width(f, r.head_dim);
  if (!p.lanes && !p.mma && few_rows && cpu_vw > 0 &&
      (r.form == "cpu" || (r.form.empty() && f.kind == DeviceKind::CPU))) {
    p.cpu = true;
    p.vector_width = cpu_vw;
    p.block_rows = static_cast<int>(rows);
    p.block_cols = cpu_vw;  // the kernel's blocks are 2·BC keys (phase 3's accumulators in registers over them)
    p.work_group_size = 1;
    // V rows prefetched in address order for phase 3: 7.4 -> 9.5-10.9 GB per CPU-second on PoCL (8k keys, B 8)
    p.cpu_prefetch = f.kind == DeviceKind::CPU;
    // As many K/V heads per work-item as divide H_kv with their state (query rows and accumulators,
    // 2·BR·d floats a head, and the block's scores and P, 2·KB·BRP with KB = 2·BC) within 96 KiB of the
    // work-item's stack and L2: whole cache rows are then read in address order, which the
    // hardware prefetcher follows; part of each row reads at half the rate (decode_cpu.cl's header).
    const std::size_t brp = rows <= 1 ? 1 : rows <= 2 ? 2 : rows <= 4 ? 4 : 8;
    const std::size_t per_head = (2 * static_cast<std::size_t>(rows) * r.head_dim + 4 * brp * cpu_vw) * sizeof(float);
    for (int hb = std::max(1, r.heads_kv); hb >= 1; --hb)
      if (r.heads_kv % hb == 0 && (hb == 1 || hb * per_head <= 96 * 1024)) {
        p.heads_per_item = hb;
        break;
      }
  }
  // Otherwise the streaming kernel: one work-item per VEC-wide column chunk times as many key
  // groups as fit the cap.
  if (!p.lanes && !p.cpu && !p.mma && r.form != "staged" && few_rows && chunks <= wg_cap &&
      static_cast<std::size_t>(chunks) <= f.max_work_group_size) {
    const int key_groups = std::min<int>(wg_cap, static_cast<int>(f.max_work_group_size)) / chunks;
    p.stream = true;
    p.keys_per_thread = 4;  // two 16-byte loads each in flight per work-item and key
    p.block_rows = static_cast<int>(rows);
    p.block_cols = key_groups * p.keys_per_thread;
    p.work_group_size = static_cast<std::size_t>(key_groups) * chunks;
    p.page_slots = page_slots_for(p.block_cols, r.page_size);
    p.local_bytes = decode_stream_local_bytes(p.block_rows, p.block_cols, r.head_dim, key_groups, chunks, p.page_slots);
    if (p.local_bytes > budget) p = DecodePlan{};  // (never for d <= 256: a few KiB) staged instead
  }
  const std::int64_t br_max = std::min<std::int64_t>({rows, 16, static_cast<std::int64_t>(std::max<std::size_t>(f.max_work_group_size, 1))});
  for (int br = static_cast<int>(br_max); br >= 1 && p.block_cols == 0; br /= 2)
    for (int bc = 64; bc >= 8; bc -= 8)
      if (decode_local_bytes(br, bc, r.head_dim, page_slots_for(bc, r.page_size)) <= budget) {
        p.block_rows = br;
        p.block_cols = bc;
        break;
      }
  if (p.block_cols == 0)
    fail(Status::OutOfResources, "head_dim: ", r.head_dim, " needs ",
         decode_local_bytes(1, 8, r.head_dim, page_slots_for(8, r.page_size)),
         " bytes of local memory for the smallest decode tile, the device has ", f.local_mem_bytes);
  p.row_blocks = static_cast<int>((rows + p.block_rows - 1) / p.block_rows);
  if (!p.stream && !p.lanes && !p.cpu && !p.mma) {
    p.page_slots = page_slots_for(p.block_cols, r.page_size);
    p.local_bytes = decode_local_bytes(p.block_rows, p.block_cols, r.head_dim, p.page_slots);
    // Enough work-items for one score or one VEC-wide output column each, within 32 … 128 (GPU:
    // more resident work-groups per compute unit) or 64 (CPU: PoCL runs a work-group as one loop).
    std::size_t wg = pow2_at_least(std::max<std::size_t>(static_cast<std::size_t>(p.block_rows) *
                                                             std::max<std::size_t>(p.block_cols, chunks), 32));
    wg = std::min<std::size_t>(wg, wg_cap);
    const std::size_t multiple = std::max<std::size_t>(f.work_group_multiple, 1);
    wg = std::max(wg, multiple) / multiple * multiple;
    p.work_group_size = std::max<std::size_t>(1, std::min(wg, f.max_work_group_size));
  }

  // Split count (SplitRule): enough work-groups over all (sequence, K/V head, row block) triples
  // for the compute units, and no split shorter than the rule's fewest keys or tiles.
  const SplitRule rule = p.mma     ? kMmaSplits
                         : p.lanes ? kLanesSplits
                         : p.cpu   ? kCpuDecodeSplits
                         : gpu     ? kGpuSplits
                                   : kCpuSplits;
  const std::int64_t triples = static_cast<std::int64_t>(r.batch) * (r.heads_kv / p.heads_per_item) * p.row_blocks;
  const std::int64_t keys = std::max(r.max_keys, 1);
  const std::int64_t tiles = (keys + p.block_cols - 1) / p.block_cols;
  if (r.num_splits > 0) {
    p.num_splits = r.num_splits;
    p.reason = "num_splits forced";
  } else {
    const std::int64_t target = static_cast<std::int64_t>(std::max(f.compute_units, 1)) * rule.per_compute_unit;
    std::int64_t splits = (target + triples - 1) / triples;
    splits = std::min<std::int64_t>(splits, rule.min_keys > 0 ? keys / rule.min_keys : tiles / rule.min_tiles);
    if (rule.target_keys > 0) splits = std::max<std::int64_t>(splits, keys / rule.target_keys);
    const bool waves = p.lanes && p.lane_shuffle && r.resident_per_cu != 0;  // (residency read on NVIDIA only)
    // whole waves: of the residency read from decode_lanes' built kernel, or decode_mma's rule
    const int resident = p.mma ? rule.per_compute_unit : waves && r.resident_per_cu > 0 ? r.resident_per_cu : 0;
    if (resident > 0) splits = wave_splits(f, resident, triples, keys, rule);
    if (waves && r.resident_per_cu == kResidentForSizing)  // at least every residency's count (wave_splits' bound)
      splits = std::max(splits, std::min<std::int64_t>(wave_share(f, residency_bound(f, p), triples, keys, rule),
                                                       keys / rule.min_keys));
    p.num_splits = static_cast<int>(std::clamp<std::int64_t>(splits, 1, 256));
    p.reason = concat(triples, " (sequence, K/V head, row block) work-groups for ", f.compute_units,
                      " compute units: ", p.num_splits, " splits of ", tiles, " tiles");
    if (waves && r.resident_per_cu > 0) p.reason += concat(" (whole waves of ", r.resident_per_cu, " work-groups a compute unit)");
    if (waves && r.resident_per_cu < 0) p.reason += " (the most any residency asks: workspace sizing)";
  }
  // The merge (decode_merge.cl). Fewer than 32 splits: decode_merge_serial, a column a work-item
  // walking the splits (64 work-items, 32 under d 64), the form on record. From 32: decode_merge,
  // a group of 32 work-items per 4 splits up to 8 groups, each lane's loads in flight together (H100,
  // B 1, 32k keys: the merge 7.7 against 9.7-9.9 us at 49 splits, 12.5 against 22.1-22.6 at 132;
  // at 1 and 16 splits it measured 0.4-1 us slower than the walk, so those keep the walk).
  const std::size_t serial_wg = r.head_dim >= 64 ? 64 : 32;
  p.merge_serial = p.num_splits < 32 && f.max_work_group_size >= serial_wg;
  const std::size_t merge_groups = static_cast<std::size_t>(std::clamp((p.num_splits + 3) / 4, 1, 8));
  p.merge_wg = static_cast<int>(p.merge_serial ? serial_wg
                                               : std::min<std::size_t>(32 * merge_groups, std::max<std::size_t>(f.max_work_group_size, 1)));
  const char* form = p.mma         ? "; mma (tensor cores)"
                     : p.lane_wide ? (p.lane_shuffle ? "; lanes-wide (shuffles)" : "; lanes-wide (__local)")
                     : p.lanes ? (p.lane_shuffle ? (p.lane_pipeline ? "; lanes (shuffles, pipelined)" : "; lanes (shuffles)")
                                              : (p.lane_pipeline ? "; lanes (__local, pipelined)" : "; lanes (__local)"))
                     : p.cpu  ? "; cpu"
                     : p.stream ? "; streaming"
                                : "; staged";
  p.reason += concat(form, " BR ", p.block_rows, " x BC ", p.block_cols, " (", p.local_bytes, " bytes of ", budget,
                     " local), ", p.work_group_size, " work-items");
  if (p.cpu) p.reason += concat(", ", p.heads_per_item, " K/V heads each");
  if (p.lane_wide)
    p.reason += concat(p.lane_page_kpt ? ", a page base per lane and tile" : "", ", L2 prefetch ", p.lane_prefetch, " tiles ahead");
  if (p.lane_async > 0) p.reason += concat(", K/V by cp.async in a ring of ", p.lane_async, " tiles");
  if (p.mma) p.reason += concat(", K/V by cp.async in a ring of ", p.mma_ring, " tiles");
  if (p.mma && p.mma_run > 0) p.reason += concat(", read in runs of ", p.mma_run, " keys");
  return p;
}

}  // namespace flashcl::detail
