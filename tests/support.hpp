// support.hpp: what the tests share: one Session on the default device, cases made from a shape,
// device buffers with a chosen layout (dense or strided, gaps filled with NaN sentinels), and one
// call that runs an algorithm on a case and checks it against the float64 reference.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "flashcl/flashcl.hpp"
#include "problem.hpp"

namespace flashcl::test {

// The process-wide session (FLASHCL_PLATFORM / FLASHCL_DEVICE choose; PoCL's CPU in CI).
Session& session();

// Whether the session's device is an NVIDIA GPU of compute capability >= 8.0 (read through
// cl_nv_device_attribute_query), where the tensor-core paths run; their tests skip elsewhere.
bool tensor_core_device();

// Whether it is one of compute capability 9.0 exactly (sm_90a), where the opt-in kernels on
// Hopper's wgmma run (FLASHCL_FP8_WGMMA, FLASHCL_BWD_WGMMA); their tests skip elsewhere.
bool hopper_device();

// Throws Error(OpenCLError) naming `what` when a raw OpenCL call the tests make fails.
void check(cl_int err, const char* what);

// What Session's host-array calls can do in place on the session's device, read from it as
// src/api/host_buffers.cpp reads it: f32 arrays at CL_DEVICE_MEM_BASE_ADDR_ALIGN on a host-unified
// device lie over the caller's memory; inputs off it by whole floats too, where the page size is a
// multiple of the alignment (the buffer starts at the address rounded down, in the same page).
struct HostMemoryFacts {
  bool unified = false;   // CL_DEVICE_HOST_UNIFIED_MEMORY
  std::size_t align = 1;  // CL_DEVICE_MEM_BASE_ADDR_ALIGN, in bytes
  bool widen = false;     // inputs off the alignment can be used at an offset
  // For an array `shift` bytes past an address aligned to room_align() (allocations of the tests):
  bool aligned(std::size_t shift) const { return unified && shift % align == 0; }
  bool widened(std::size_t shift) const { return !aligned(shift) && widen && shift % sizeof(float) == 0; }
  // The alignment the tests' allocations start at: a page and the device's alignment.
  std::size_t room_align() const { return std::max<std::size_t>(align, 4096); }
};
HostMemoryFacts host_memory_facts();

// `bytes` bytes aligned to `align`, freed with the scope: the host-array tests place arrays at
// chosen shifts past an aligned address.
class AlignedRoom {
 public:
  AlignedRoom(std::size_t align, std::size_t bytes);
  AlignedRoom(const AlignedRoom&) = delete;
  AlignedRoom& operator=(const AlignedRoom&) = delete;
  ~AlignedRoom();
  char* bytes() const { return p_; }
  float* floats() const { return reinterpret_cast<float*>(p_); }

 private:
  std::size_t align_;
  char* p_;
};

enum class Layout {
  BSHD,        // dense (B, S, H, d): the default
  BHSD,        // dense (B, H, S, d) through strides
  PaddedRows,  // (B, S, H, d) with gaps between rows and heads, plus an offset
};

struct Case {
  bench::Shape shape;
  Layout layout = Layout::BSHD;
  DType dtype = DType::F32;
  std::uint64_t seed = 1;
  float amplitude = 1.0f;  // Q and K are uniform in [-amplitude, amplitude) (large-magnitude tests)
  std::string name() const;
};

// Names a case in test output (instead of gtest's byte dump).
inline void PrintTo(const Case& c, std::ostream* os) { *os << c.name(); }

// A plain (B = b, H = h, Nq, Nk, d) shape, causal or not (bench/problem.hpp).
using bench::dense_shape;

// A (B = b, H = h, Nq, Nk, d) case; the seed follows from the shape, so different shapes draw
// different inputs.
Case make_case(int nq, int nk, int d, bool causal, int b, int h, Layout layout = Layout::BSHD, double scale = 0.0);

// The case made variable-length: packed sequences of the given lengths (empty ones included) give
// the batch and cu_seqlens_q/k; seqlen_q/k become the longest lengths.
Case varlen(Case c, const std::vector<int>& len_q, const std::vector<int>& len_k);

// A cl_mem holding a logical (B, S, H, d) tensor in `layout` and storage `dtype`; gaps hold NaN.
struct DeviceTensor {
  Tensor view;
  std::size_t elems = 0;
  int batch = 0, seqlen = 0, heads = 0, dim = 0;
  DType dtype = DType::F32;
  DeviceTensor(Layout layout, int batch, int seqlen, int heads, int dim, const std::vector<float>* values,
               DType dtype = DType::F32);
  DeviceTensor(const DeviceTensor&) = delete;
  DeviceTensor& operator=(const DeviceTensor&) = delete;
  ~DeviceTensor();
  std::vector<float> raw() const;              // the whole buffer
  std::vector<float> logical() const;          // (B, S, H, d) dense
  std::size_t gap_elements_changed() const;    // gaps that no longer hold NaN
};

struct DeviceBuffer {
  cl_mem mem = nullptr;
  std::size_t floats = 0;
  explicit DeviceBuffer(std::size_t floats, float fill);
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer();
  std::vector<float> read() const;
};

// A cl_mem holding raw bytes (cu_seqlens, ALiBi slopes, masks).
struct DeviceBytes {
  cl_mem mem = nullptr;
  DeviceBytes(const void* data, std::size_t bytes);
  DeviceBytes(const DeviceBytes&) = delete;
  DeviceBytes& operator=(const DeviceBytes&) = delete;
  ~DeviceBytes();
};

// The variant arguments of a shape (GQA, window, softcap, ALiBi, mask, varlen) put into `args`,
// with the device buffers they need kept alive by the returned object.
struct VariantBuffers {
  std::vector<std::unique_ptr<DeviceBytes>> held;
  void apply(const bench::Shape& shape, ForwardArgs& args);
};

struct CaseResult {
  bench::ErrorStats out, lse;
  std::size_t gaps_written = 0;
  std::vector<float> o, lse_values;
  bench::Reference ref;
};

// Runs `algorithm` on the case (outputs poisoned with NaN first) and compares with the reference.
// The problem dimensions of `s` as call arguments: batch, heads, sequence lengths, head dim, causal
// and a scale when the shape sets one (buffers, dtype, algorithm and variants are the caller's).
ForwardArgs shape_args(const bench::Shape& s);

CaseResult run_case(const Case& c, Algorithm algorithm, TileOverride tile = {});

// Asserts the accuracy bounds every path must meet: fp32 within 1e-5; fp16/bf16 within twice the
// error of the float64 reference rounded to the same storage, plus a small floor (flash-attn's rule).
void expect_accurate(const CaseResult& r, const std::string& what, DType dtype = DType::F32);

// Rounds values to `dtype` storage and back (identity for F32).
std::vector<float> round_to(DType dtype, const std::vector<float>& values);

}  // namespace flashcl::test
