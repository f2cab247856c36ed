// flashcl C++ API: exact attention O = softmax(scale·QKᵀ [+ bias, masks])·V on any OpenCL device,
// computed by the baseline (standard) or the FlashAttention algorithms (fa1, fa2). The low-level
// call works on the caller's own context, queue and buffers and enqueues asynchronously; the
// Session layer picks a device and takes host arrays. Every error is a flashcl::Error carrying a
// Status and a message that names the offending parameter. Invalid arguments are found before
// anything is enqueued; where an OpenCL call fails partway, the kernels enqueued before it stay
// queued and may write some outputs (then unspecified; Session's calls wait for them before they
// throw, so the caller's arrays are its own again when the error arrives).
#pragma once

// Said plainly, instead of an error deep in <optional>: CMake's flashcl::flashcl sets C++17 for its
// consumers; with pkg-config or by hand, compile with -std=c++17 or later.
#if (defined(_MSVC_LANG) ? _MSVC_LANG : __cplusplus) < 201703L
#error "flashcl.hpp needs C++17 or later (-std=c++17)"
#endif

#include <CL/cl.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "flashcl/export.h"   // FLASHCL_API
#include "flashcl/version.h"  // FLASHCL_VERSION_MAJOR, _MINOR, _PATCH

namespace flashcl {

// Status codes shared with the C API (fcl_status); negative OpenCL codes pass through unchanged.
enum class Status : int {
  Success = 0,
  InvalidArgument = -2001,    // a parameter is out of range or inconsistent
  InvalidHandle = -2002,      // a null or mismatched OpenCL handle
  UnsupportedDType = -2003,   // dtype not supported by this build or path
  OutOfResources = -2004,     // the problem does not fit the device (local memory, buffers)
  BuildFailure = -2005,       // a kernel failed to compile (message has device, options, log)
  DeviceNotFound = -2006,     // no platform/device matches the selection
  OpenCLError = -2007,        // an OpenCL call failed (message has the call and code)
  InternalError = -2099,
};

class FLASHCL_API Error : public std::runtime_error {
 public:
  Error(Status status, const std::string& message) : std::runtime_error(message), status_(status) {}
  Status status() const noexcept { return status_; }

 private:
  Status status_;
};

enum class Algorithm { Auto, Standard, FA1, FA2 };
// Storage type of Q, K, V and O; arithmetic is always fp32 and LSE is fp32. E4M3 and E5M2 are the
// 1-byte fp8 formats of FlashAttention-3 (OCP FP8: e4m3 bias 7, max 448, no infinities; e5m2 bias
// 15, max 57344): inputs only, with descales (Fp8Scales) and O stored as ForwardArgs::out_dtype.
enum class DType { F32, F16, BF16, E4M3, E5M2 };

FLASHCL_API const char* to_string(Algorithm algorithm);
FLASHCL_API const char* to_string(DType dtype);
FLASHCL_API std::optional<DType> parse_dtype(const std::string& name);  // "f32", "f16", "bf16", "e4m3", "e5m2"
FLASHCL_API std::size_t element_size(DType dtype);
FLASHCL_API bool is_fp8(DType dtype);  // E4M3 or E5M2

// Host conversions for fp16 (IEEE binary16) and bf16 storage, rounding to nearest even.
FLASHCL_API std::vector<std::uint16_t> to_storage(DType dtype, const std::vector<float>& values);  // F16/BF16
FLASHCL_API std::vector<float> from_storage(DType dtype, const std::vector<std::uint16_t>& bits);
// Host fp8 codec (E4M3/E5M2), bit-identical to the kernels': round to nearest even, saturating to
// ±max (448 or 57344; infinities too), NaN kept NaN; decoding is exact.
FLASHCL_API std::vector<std::uint8_t> to_fp8(DType dtype, const std::vector<float>& values);
FLASHCL_API std::vector<float> from_fp8(DType dtype, const std::vector<std::uint8_t>& bits);
FLASHCL_API std::optional<Algorithm> parse_algorithm(const std::string& name);
FLASHCL_API const char* version();

// A tensor in a cl_mem, addressed in elements: element (b, s, h, i) is at
// offset + b·batch_stride + s·seq_stride + h·head_stride + i. Zero strides mean dense (B, S, H, d).
struct Tensor {
  cl_mem buffer = nullptr;
  std::int64_t offset = 0;
  std::int64_t batch_stride = 0;
  std::int64_t seq_stride = 0;
  std::int64_t head_stride = 0;
};

// Forces tile sizes for experiments (FLASHCL_TILE="BRxBC" or "BRxBCxTPRxTM" does the same for
// fa1/fa2); 0 leaves the planner's choice. standard (this field only): its GEMM's output block,
// block_rows x block_cols, with team_size columns (1, 2, 4, 8, 16; default 4) x rows_per_team rows
// (default 4) per work-item, run in the GPU form on any device.
struct TileOverride {
  int block_rows = 0;     // Br: query rows per block
  int block_cols = 0;     // Bc: keys per block
  int team_size = 0;      // work-items sharing a group of rows (fa1/fa2)
  int rows_per_team = 0;  // query rows each team owns (fa1/fa2)
};

// Optional mask, as SDPA's attn_mask: shape (B or 1, H or 1, Nq, Nk), keys contiguous; element
// (b, h, i, j) is at offset + b·batch_stride + h·head_stride + i·row_stride + j (strides of
// broadcast dims are ignored; all three 0 means dense). Bool: uint8, 0 hides the key (SDPA's
// False); Bias: fp32 added to the scaled scores (-inf hides).
enum class MaskKind { None, Bool, Bias };
struct Mask {
  MaskKind kind = MaskKind::None;
  cl_mem buffer = nullptr;
  int batch = 0;  // 1 (broadcast) or B; 0 means B
  int heads = 0;  // 1 (broadcast) or H; 0 means H
  std::int64_t offset = 0, batch_stride = 0, head_stride = 0, row_stride = 0;
};

// Local (sliding-window) attention as flash-attn's window_size: query i sees keys j with
// i + Nk − Nq − left ≤ j ≤ i + Nk − Nq + right; −1 leaves a side unbounded. Combines with causal.
struct Window {
  int left = -1, right = -1;
};

// Descales of an fp8 call (docs/FP8.md), FlashAttention-3's convention: the dequantised inputs are
// Q = q_descale·Q₈ and so on, all fp32 cl_mem, required when ForwardArgs::dtype is E4M3/E5M2.
// quant_block 0 (per tensor or per head): each is (B, H_kv), element b·H_kv + h_kv (a query head h
// takes entry h / (H / H_kv)). quant_block = n > 0 (block quantisation: one scale per n rows): q is
// (B, H, ⌈Nq/n⌉), element (b·H + h)·⌈Nq/n⌉ + i/n for query row i; k and v (B, H_kv, ⌈Nk/n⌉) likewise
// (varlen: Nq, Nk are seqlen_q/k, the maxima, and i, j are rows within each sequence). Descales are
// device data, never read back unless check_device_data (then ≤ 0 or non-finite is a named error);
// unchecked, they scale the products as given and cannot make a kernel touch other memory.
// v_transposed: V is stored (B, H_kv, d, Nk), element (b, j, h, i) at offset + b·batch_stride +
// h·head_stride + i·seq_stride + j (seq_stride is the pitch of one d-row, ≥ Nk; all strides 0: dense),
// the K-major operand layout FP8 tensor cores take for P·V (quantize_fp8 writes it); not with varlen.
struct Fp8Scales {
  cl_mem q_descale = nullptr, k_descale = nullptr, v_descale = nullptr;
  int quant_block = 0;
  bool v_transposed = false;
};

// One attention call. Shapes: Q (B, Nq, H, d); K, V (B, Nk, H_kv, d); O like Q; LSE (B, H, Nq)
// fp32. Variable-length batches (cu_seqlens_q/k set): Q and O are packed (total_q, H, d), K and V
// (total_k, H_kv, d), batch strides are ignored, seqlen_q/k are the maximum lengths and LSE is
// (H, total_q). Every variant is off by default.
struct ForwardArgs {
  int batch = 0;
  int heads = 0;
  int seqlen_q = 0;
  int seqlen_k = 0;
  int head_dim = 0;                 // 1 … 256
  std::optional<float> scale;      // default 1/√d
  bool causal = false;             // bottom-right aligned when seqlen_q ≠ seqlen_k
  DType dtype = DType::F32;
  Algorithm algorithm = Algorithm::Auto;
  Tensor q, k, v, o;
  cl_mem lse = nullptr;            // optional, dense (B, H, Nq) fp32
  cl_mem workspace = nullptr;      // optional scratch of at least workspace_bytes(); else allocated
  TileOverride tile;

  int heads_kv = 0;                 // K/V heads, GQA/MQA (heads % heads_kv == 0); 0: = heads
  Window window;                    // sliding window; {-1, -1}: off
  float softcap = 0.0f;             // scores s <- c·tanh(s/c) before the softmax; 0: off
  cl_mem alibi_slopes = nullptr;    // ALiBi: fp32 slopes (H), or (B, H) with alibi_per_batch;
  bool alibi_per_batch = false;     //   bias −slope·|i + Nk − Nq − j| (flash-attn's convention)
  Mask mask;                        // additive bias or boolean mask, broadcast over B and H
  cl_mem cu_seqlens_q = nullptr;    // varlen: int32 (B + 1) cumulative offsets of the packed
  cl_mem cu_seqlens_k = nullptr;    //   sequences, non-decreasing (both or neither). Never read
                                    //   back: the grid comes from seqlen_q/k. Kernels clamp bad
                                    //   offsets (below 0 → 0, past the rows the buffers hold →
                                    //   there; decreasing → empty; longer than seqlen_q/k →
                                    //   truncated), so nothing outside the buffers is touched.
  int total_q = 0;                  // varlen: packed query rows (flash-attn's q.shape[0]); LSE is
                                    //   (H, total_q); 0: cu_seqlens_q[B], read by the kernels
  bool check_device_data = false;   // varlen: read cu_seqlens back (blocking, after wait_list) and
                                    //   reject what kernels would clamp; total_q 0 → cu_seqlens_q[B]
                                    //   fp8: also read the descales back and reject ≤ 0 or non-finite
  std::optional<DType> out_dtype;   // fp8 dtype: O's storage (F32, F16 or BF16; unset: BF16, as FA3); other
                                    //   dtypes: leave unset (O is stored as dtype)
  Fp8Scales fp8;                    // fp8 dtype: the descales (required), block size, V layout
};

// The algorithm `auto` resolves to for this device and shape.
FLASHCL_API Algorithm resolve_algorithm(cl_device_id device, const ForwardArgs& args);

// Device scratch bytes the call needs beyond Q, K, V, O, LSE (standard: B·H·Nq·Nk floats, padded
// to whole tiles by the CPU-shaped form; fa1: O(B·H·Nq·d); fa2: 0).
FLASHCL_API std::size_t workspace_bytes(cl_device_id device, const ForwardArgs& args);

// All device bytes the call touches: inputs, outputs and workspace.
FLASHCL_API std::size_t device_bytes(cl_device_id device, const ForwardArgs& args);

// The tiles and work-group shape a call would use on `device` (after any override).
struct TileInfo {
  Algorithm algorithm = Algorithm::FA2;  // the concrete algorithm (auto resolved)
  int block_rows = 0, block_cols = 0;    // Br, Bc (standard: the GEMM's output block)
  std::size_t work_group_size = 0;
  std::size_t local_bytes = 0;           // __local memory per work-group
  std::string reason;                    // why the planner chose these
};
FLASHCL_API TileInfo tile_info(cl_device_id device, const ForwardArgs& args);

// Kernels one call enqueued (retained; released by the destructor).
class FLASHCL_API Launch {
 public:
  Launch() = default;
  Launch(const Launch&) = delete;
  Launch& operator=(const Launch&) = delete;
  Launch(Launch&& other) noexcept;
  Launch& operator=(Launch&& other) noexcept;
  ~Launch();

  void add(cl_event event) { events_.push_back(event); }
  const std::vector<cl_event>& events() const { return events_; }
  cl_event last() const { return events_.empty() ? nullptr : events_.back(); }
  void wait() const;
  // Device time from the first kernel's start to the last one's end (queue needs profiling).
  double device_ms() const;

 private:
  std::vector<cl_event> events_;
};

// Validates everything, then enqueues the kernels on `queue` (asynchronously).
FLASHCL_API Launch forward(cl_command_queue queue, const ForwardArgs& args,
                           const std::vector<cl_event>& wait_list = {});

// ---- FP8 quantisation (docs/FP8.md) -------------------------------------------------------------

// Which rows share one scale: the whole tensor, each (batch, head group), or each block of rows of
// a (batch, head). The descales are written in the layout ForwardArgs::fp8 takes: Tensor and Head
// fill (B, H / head_group) entries (Tensor: all equal), Block (B, H, ⌈S/block⌉).
enum class QuantGranularity { Tensor, Head, Block };

// fp32/fp16/bf16 (B, S, H, d) → fp8 with amax scaling: descale = amax/max (448 for E4M3, 57344
// for E5M2; 1 where amax is 0), element = fp8(x / descale), rounded to nearest even and saturated.
// hadamard: x is first multiplied along d by M = H_d·diag(signs)/√d (H_d Sylvester's Hadamard
// matrix, signs ±1 drawn from hadamard_seed; d a power of two), in the same pass; use one seed for
// Q and K (QMᵀ(KM)ᵀ = QKᵀ) and never on V. transposed: out is written (B, H, d, S) as
// Fp8Scales::v_transposed describes (out.seq_stride = d-row pitch); for V of a tensor-core kernel.
// Varlen (cu_seqlens set): in and out are packed (total, H, d) as the varlen attention takes them,
// batch strides ignored; `batch` counts sequences, `seqlen` is the longest, and scales are per
// sequence in the same layouts (a block's rows counted within its sequence). cu_seqlens are device
// data, never read back: kernels clamp them as the attention does, and rows in no sequence are
// written as zeros.
struct QuantizeArgs {
  int batch = 0, seqlen = 0, heads = 0, head_dim = 0;
  DType in_dtype = DType::F32;   // F32, F16 or BF16
  DType out_dtype = DType::E4M3; // E4M3 or E5M2
  Tensor in, out;                // element strides; zero: dense (out transposed: (B, H, d, S))
  cl_mem descale = nullptr;      // output, fp32, in the layout above
  QuantGranularity granularity = QuantGranularity::Tensor;
  int head_group = 1;            // Tensor/Head: heads per scale (Q under GQA: H / H_kv), divides H
  int block = 0;                 // Block: rows per scale (= Fp8Scales::quant_block)
  bool hadamard = false;
  std::uint64_t hadamard_seed = 0;
  bool transposed = false;
  cl_mem cu_seqlens = nullptr;   // varlen: int32 (B + 1) cumulative offsets of the packed sequences
  int total = 0;                 // varlen: packed rows of in and out (required with cu_seqlens)
};

// Entries `descale` needs for `args` (floats).
FLASHCL_API std::size_t quantize_descale_count(const QuantizeArgs& args);

// The signs of the Hadamard transform for (head_dim, seed): entry i is +1 or -1 (host reference).
FLASHCL_API std::vector<float> hadamard_signs(int head_dim, std::uint64_t seed);

// Validates (named errors), then enqueues the quantisation (three small kernels) after wait_list.
FLASHCL_API Launch quantize_fp8(cl_command_queue queue, const QuantizeArgs& args,
                                const std::vector<cl_event>& wait_list = {});

// The backward of one forward call: dQ, dK, dV (and optionally the bias gradient) from Q, K, V, O,
// dO and the forward's LSE, recomputing P block by block (fa1, fa2) or materialising it (standard).
// `forward` is the forward call as it was made (every variant, forward.lse required: its LSE
// output; forward.workspace and forward.tile are not used here); forward.algorithm picks the path
// (auto: fa2). The gradients have their own offsets and strides (zero: dense) and the forward's
// dtype; dQ like Q, dK and dV like K and V (GQA: summed over each K/V head's query heads). No
// output may share a cl_mem (or the memory under a sub-buffer) with an input.
struct BackwardArgs {
  ForwardArgs forward;
  Tensor d_o;             // input: the gradient of O, shaped like O
  Tensor d_q, d_k, d_v;   // outputs
  // Optional gradient of forward.mask's additive bias (kind Bias; batch/heads 0: the bias's), fp32,
  // shaped like the bias and summed over the dimensions it broadcasts over, as PyTorch's SDPA.
  Mask d_bias;
  // fa2: dQ without atomics, bit-identical on every run (a second kernel per Q block). The default
  // accumulates dQ with fp32 atomic adds, whose order (and so the last bits) may vary between runs.
  // fa1 and standard are always deterministic.
  bool deterministic = false;
  cl_mem workspace = nullptr;  // optional scratch of at least backward_workspace_bytes(); else allocated
};

// Device scratch bytes the backward needs (fa1/fa2: O(B·H·Nq·d); standard: 2·B·H·Nq·Nk floats more;
// a broadcast d_bias: B·H·Nq·Nk floats more). Varlen: exact when forward.total_q is set; without
// it, enough for the rows forward.lse holds (the kernels' bound then).
FLASHCL_API std::size_t backward_workspace_bytes(cl_device_id device, const BackwardArgs& args);

// The kernels and blocks a backward call runs with (its planned form: the tensor cores' still
// probe at the first call), as the IO model of flashcl-bench --backward counts them.
struct BackwardTileInfo {
  std::string kernels;    // "standard", "fa1", "fa2", "fa2 CPU form" or "fa2 tensor cores"
  int block_rows = 0;     // query rows per Q block of the dK/dV kernel (0: standard, per entry)
  int block_cols = 0;     // keys per K/V block
  bool dq_pass = false;   // dQ by its own pass over Q blocks (re-reading K and V), not accumulated
  int dq_block_rows = 0;  // with dq_pass: query rows per Q block of that pass
  int dq_block_cols = 0;  // with dq_pass: keys per K/V block of that pass
  int dq_partials = 0;    // the CPU form's fp32 dQ partials per K/V head, summed at the end (else 0)
  std::string reason;     // why the planner chose these
};
FLASHCL_API BackwardTileInfo backward_tile_info(cl_device_id device, const BackwardArgs& args);

// Validates everything (nothing is enqueued on an error), then enqueues the backward on `queue`.
FLASHCL_API Launch backward(cl_command_queue queue, const BackwardArgs& args,
                            const std::vector<cl_event>& wait_list = {});

// Program cache control. Programs are cached per (context, device, options) in memory and as
// binaries on disk ($FLASHCL_CACHE_DIR, else $XDG_CACHE_HOME/flashcl, else ~/.cache/flashcl).
struct CacheStats {
  std::size_t memory_hits = 0, disk_hits = 0, builds = 0, disk_writes = 0, disk_rejects = 0;
  std::size_t memory_entries = 0;  // programs in the memory cache now (those of released contexts go)
};
FLASHCL_API void set_disk_cache_enabled(bool enabled);  // FLASHCL_DISK_CACHE=0 also disables it
FLASHCL_API void set_disk_cache_dir(const std::string& dir);  // empty: back to the default
FLASHCL_API std::string disk_cache_dir();
FLASHCL_API void clear_memory_cache();  // releases every cached program (and their contexts)
FLASHCL_API CacheStats cache_stats();

// ---- Inference with a KV cache (decode; docs/DECODE.md) ---------------------------------------

// One decode step, as flash-attn's flash_attn_with_kvcache: Nq query rows per sequence attend to
// the keys cached for it (plus k_new/v_new, appended in place first), with split-KV work-groups
// that serve all query heads of a K/V head at once and a merge by LSE. Shapes: q, o (B, Nq, H, d);
// the cache contiguous (cache_batch, cache_seqlen, H_kv, d), or paged (num_pages, page_size,
// H_kv, d) where Tensor::batch_stride is the page stride, with block_table int32 (B, max_pages):
// key p of sequence b is row p % page_size of page block_table[b][p / page_size]. Zero strides
// mean dense. cache_seqlens (int32, B) holds each sequence's cached keys; it is never read back:
// the grid is sized from the capacity (cache_seqlen, or max_pages·page_size) and the kernels
// clamp device values instead: cache_seqlens[b] to [0, capacity − seqlen_new]; a cache_batch_idx
// outside [0, cache_batch) makes the sequence empty (nothing appended, O = 0, LSE = −inf); a
// block-table entry outside [0, num_pages) hides that page's keys and drops appends to it.
struct KvCacheArgs {
  int batch = 0;
  int heads = 0;
  int heads_kv = 0;                  // 0: heads (heads % heads_kv == 0: GQA/MQA)
  int seqlen_q = 0;                  // Nq ≥ 1 (decode: 1; chunked prefill: more, with causal)
  int head_dim = 0;                  // 1 … 256
  std::optional<float> scale;        // default 1/√d
  bool causal = false;               // bottom-right: query i sees keys j ≤ i + L − Nq (L: keys after the append)
  DType dtype = DType::F32;          // of q, o, k_new, v_new, and the caches unless cache_dtype says
  std::optional<DType> cache_dtype;  // the caches' storage: unset = dtype; E4M3/E5M2: an fp8 KV cache
                                     //   (docs/FP8.md "FP8 KV cache"; needs k_descale and v_descale)
  cl_mem k_descale = nullptr;        // fp8 cache: fp32 (B, H_kv), entry b·H_kv + h_kv; cached value =
  cl_mem v_descale = nullptr;        //   fp8 byte × descale; the append stores fp8(x / descale)
  bool check_device_data = false;    // fp8 cache: read the descales back (blocking, after wait_list)
                                     //   and reject ≤ 0 or non-finite
  Tensor q, o;
  cl_mem lse = nullptr;              // optional (B, H, Nq) fp32

  Tensor k_cache, v_cache;           // written in place when k_new is given
  int cache_seqlen = 0;              // contiguous: S_cache, the capacity of a cache row
  int cache_batch = 0;               // contiguous: cache rows; 0: batch
  cl_mem cache_batch_idx = nullptr;  // contiguous, optional: int32 (B), the cache row of each sequence
  cl_mem block_table = nullptr;      // set: paged cache
  int num_pages = 0, page_size = 0, max_pages = 0;
  std::int64_t block_table_stride = 0;  // int32 entries between sequences' rows; 0: max_pages
  cl_mem cache_seqlens = nullptr;    // int32 (B), required

  Tensor k_new, v_new;               // optional (B, seqlen_new, H_kv, d), both or neither
  int seqlen_new = 0;                // 0 with k_new given: seqlen_q

  cl_mem rotary_cos = nullptr;       // optional fp32 (rotary_seqlen, rotary_dim / 2) each, both or
  cl_mem rotary_sin = nullptr;       //   neither: applied to q and k_new (flash-attn's positions:
  int rotary_dim = 0;                //   k_new row t at L₀ + t, q row i at L₀ + i when causal or
  int rotary_seqlen = 0;             //   windowed, else at L₀; L₀ = cache_seqlens[b]); dim 0: d
  bool rotary_interleaved = false;   // pairs (2j, 2j+1); false: (j, j + rotary_dim/2) (GPT-NeoX)

  Window window;                     // as ForwardArgs
  float softcap = 0.0f;
  cl_mem alibi_slopes = nullptr;     // fp32 (H), or (B, H) with alibi_per_batch
  bool alibi_per_batch = false;
  cl_mem workspace = nullptr;        // optional, at least kvcache_workspace_bytes(); else allocated
  int num_splits = 0;                // forced key splits (1 … 1024); 0: the planner's choice
};

// Scratch the call needs: the partial O and LSE of every split (fp32). At least what any call of
// these arguments uses: on NVIDIA the split count follows the built kernel's residency, which this
// query cannot know, so it sizes for the most splits any residency could ask.
FLASHCL_API std::size_t kvcache_workspace_bytes(cl_device_id device, const KvCacheArgs& args);

// The split kernel a call of `args` on `queue` runs and how (builds its program and enqueues nothing
// on `queue`; on NVIDIA its first ask may run decode_mma's one-time device probe on a queue of its own).
struct KvCacheInfo {
  std::string kernel;                // decode_mma, decode_lanes, decode_cpu, decode_stream or decode_split
  int num_splits = 0;                // key splits per (sequence, K/V head, row block)
  std::size_t work_group_size = 0;
  std::string reason;                // why the planner chose these
};
FLASHCL_API KvCacheInfo kvcache_info(cl_command_queue queue, const KvCacheArgs& args);

// Validates every host-side argument (naming the offending one), then enqueues the append (when
// k_new is given), the split kernel and the merge on `queue`, asynchronously.
FLASHCL_API Launch forward_kvcache(cl_command_queue queue, const KvCacheArgs& args,
                                   const std::vector<cl_event>& wait_list = {});

// ---- Convenience layer: device choice and host arrays -----------------------------------------

struct DeviceInfo {
  int platform_index = 0, device_index = 0;
  std::string platform, name, vendor, driver, version;
  bool is_gpu = false, is_cpu = false;
  int compute_units = 0;
  std::size_t local_mem_bytes = 0, global_mem_bytes = 0;
};
FLASHCL_API std::vector<DeviceInfo> list_devices();

// The variants' data as host arrays, for Session::forward; their switches and shapes stay in the
// ForwardArgs it takes (alibi_per_batch; mask.kind, batch, heads and strides, 0 = dense).
struct HostVariants {
  std::vector<float> alibi_slopes;              // ALiBi: H slopes, or B·H with alibi_per_batch
  std::vector<std::uint8_t> mask;               // mask.kind == Bool: 0 hides a key
  std::vector<float> bias;                      // mask.kind == Bias: added to the scores
  std::vector<int> cu_seqlens_q, cu_seqlens_k;  // varlen: B + 1 offsets each; Q, K, V, O packed
};

// A host array the caller owns, as pointer and element count: Session::forward reads and writes
// it in place (no copy is kept past the call).
template <typename T>
struct HostView {
  T* data = nullptr;
  std::size_t size = 0;
};

// The arrays of Session::forward_kvcache, each dense in the layout KvCacheArgs gives it (strides
// and offsets are not taken); an optional one is absent when its data is null.
struct KvCacheHostArrays {
  HostView<const float> q;                 // (B, Nq, H, d)
  HostView<float> o;                       // (B, Nq, H, d), written
  HostView<float> lse;                     // optional (B, H, Nq), written
  HostView<float> k_cache, v_cache;        // contiguous or paged; written in place when k_new is given
  HostView<const int> cache_seqlens;       // (B), required
  HostView<const float> k_new, v_new;      // optional (B, seqlen_new, H_kv, d), both or neither
  HostView<const int> cache_batch_idx;     // optional (B), contiguous caches
  HostView<const int> block_table;         // given: a paged cache, (B, max_pages)
  HostView<const float> rotary_cos, rotary_sin;  // optional (rotary_seqlen, rotary_dim / 2) each
  HostView<const float> alibi_slopes;      // optional (H), or (B, H) with alibi_per_batch
};

// Owns a context and a profiling-enabled in-order queue on one device. Platform and device are
// chosen by index or name substring; empty means $FLASHCL_PLATFORM / $FLASHCL_DEVICE, else the
// first GPU, else the first device.
class FLASHCL_API Session {
 public:
  explicit Session(const std::string& platform = "", const std::string& device = "");
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;
  ~Session();

  cl_context context() const { return context_; }
  cl_command_queue queue() const { return queue_; }
  cl_device_id device() const { return device_; }
  const DeviceInfo& info() const { return info_; }

  // Runs attention on dense (B, S, H, d) host arrays; returns O and, when asked, fills lse. With
  // dtype F16/BF16 the inputs are rounded to that storage and O comes back from it. Every variant
  // works: the shape-level ones from `shape`, the data of ALiBi, masks and varlen from `variants`
  // (varlen: Q and O are packed (total_q, H, d), K and V (total_k, H_kv, d), LSE (H, total_q)).
  std::vector<float> forward(const ForwardArgs& shape, const std::vector<float>& q,
                             const std::vector<float>& k, const std::vector<float>& v,
                             std::vector<float>* lse = nullptr);
  std::vector<float> forward(const ForwardArgs& shape, const std::vector<float>& q,
                             const std::vector<float>& k, const std::vector<float>& v,
                             const HostVariants& variants, std::vector<float>* lse = nullptr);
  // The same on the caller's memory: O (and LSE when lse.data is set) written into `o` (`lse`),
  // sized as above. On host-unified devices (CPUs such as PoCL) f32 arrays aligned to
  // CL_DEVICE_MEM_BASE_ADDR_ALIGN become buffers over that memory (CL_MEM_USE_HOST_PTR, no copy),
  // and so do Q, K, V off it by whole floats (numpy's arrays), from the aligned address below them
  // at an element offset (never written); elsewhere, for other misalignments and for misaligned O
  // or LSE, buffers are copied in and O read back. O and LSE may not overlap any other array (a
  // named error).
  void forward(const ForwardArgs& shape, HostView<const float> q, HostView<const float> k,
               HostView<const float> v, HostView<float> o, const HostVariants& variants = {},
               HostView<float> lse = {});
  // How many of the last host forward's Q, K, V, O, LSE buffers lay over the caller's memory
  // (CL_MEM_USE_HOST_PTR); 0 when all were copies.
  int last_forward_host_buffers() const { return last_forward_host_buffers_; }

  // The backward on host arrays (same layouts and rounding as forward): q, k, v, o, d_o and the
  // forward's lse in, dQ, dK, dV out (and d_bias, when shape.d_bias.kind is Bias). The shape and
  // switches come from `shape` (its tensors and buffers are ignored), the variants' data from
  // `variants`, as for forward.
  struct Gradients {
    std::vector<float> d_q, d_k, d_v, d_bias;
  };
  Gradients backward(const BackwardArgs& shape, const std::vector<float>& q, const std::vector<float>& k,
                     const std::vector<float>& v, const std::vector<float>& o, const std::vector<float>& d_o,
                     const std::vector<float>& lse, const HostVariants& variants = {});
  // The same on the caller's memory: dQ (q's size), dK, dV (k's) and d_bias (d_bias_size(shape)
  // floats, when shape.d_bias.kind is Bias) written into `grads`. As for forward's HostView
  // overload: on host-unified devices f32 arrays at CL_DEVICE_MEM_BASE_ADDR_ALIGN become buffers
  // over that memory, Q, K, V, O and dO off it by whole floats too (at an element offset), the
  // others are copied. An output overlapping any other array is an error.
  struct GradientViews {
    HostView<float> d_q, d_k, d_v, d_bias;
  };
  void backward(const BackwardArgs& shape, HostView<const float> q, HostView<const float> k,
                HostView<const float> v, HostView<const float> o, HostView<const float> d_o,
                HostView<const float> lse, const GradientViews& grads, const HostVariants& variants = {});
  // Floats of the bias gradient (dense, the bias's broadcast shape); 0 without shape.d_bias.
  static std::size_t d_bias_size(const BackwardArgs& shape);
  // How many of the last host backward's Q, K, V, O, dO, LSE, dQ, dK, dV, d_bias buffers lay over
  // the caller's memory; 0 when all were copies.
  int last_backward_host_buffers() const { return last_backward_host_buffers_; }

  // forward_kvcache (one decode step, docs/DECODE.md) on host arrays: O (and LSE when lse.data is
  // set) written into `arrays`, and k_new/v_new appended into the caller's caches in place. The
  // sizes and switches come from `shape` (its tensors and cl_mem fields are ignored; which of the
  // optional arrays are given says paged, append, rotary, ALiBi, cache_batch_idx), every array
  // dense and of exactly the size the shape implies (a named error otherwise; block_table_stride
  // 0 or max_pages). With dtype F16/BF16, q, k_new, v_new and the caches are rounded to that
  // storage and O comes back from it; fp8 caches (cache_dtype E4M3/E5M2) run on device buffers
  // only. As for forward: on host-unified devices f32 arrays at CL_DEVICE_MEM_BASE_ADDR_ALIGN
  // become buffers over the caller's memory (q, k_new, v_new off it by whole floats too, at an
  // element offset; the caches then too when nothing is appended), so an aligned f32 cache is
  // appended into where it lies, with no copy; other caches are copied in and, after an append,
  // only the rows the append wrote are copied back. cache_seqlens, cache_batch_idx and block-table
  // entries are checked here, as host values can be: a sequence past the capacity (with the
  // append), a cache row or a page (of those the sequence uses) outside the cache or pool is a named
  // error, where device buffers' values are clamped or dropped by the kernels. o, lse and the
  // written caches may not overlap any other array (a named error).
  void forward_kvcache(const KvCacheArgs& shape, const KvCacheHostArrays& arrays);
  // How many of the last host forward_kvcache's q, k_new, v_new, k_cache, v_cache, o, lse buffers
  // lay over the caller's memory; 0 when all were copies.
  int last_kvcache_host_buffers() const { return last_kvcache_host_buffers_; }

 private:
  cl_context context_ = nullptr;
  cl_command_queue queue_ = nullptr;
  cl_device_id device_ = nullptr;
  DeviceInfo info_;
  bool host_unified_ = false;        // CL_DEVICE_HOST_UNIFIED_MEMORY
  std::size_t host_ptr_align_ = 0;   // CL_DEVICE_MEM_BASE_ADDR_ALIGN, in bytes
  int last_forward_host_buffers_ = 0;
  int last_backward_host_buffers_ = 0;
  int last_kvcache_host_buffers_ = 0;
};

}  // namespace flashcl
