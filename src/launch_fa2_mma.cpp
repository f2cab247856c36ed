// launch_fa2_mma.cpp: the NVIDIA tensor-core path of fa2 (kernels/fa2_mma.cl). It is chosen at run
// time from device facts, never by a host #ifdef: an NVIDIA GPU of compute capability >= 8.0
// (cl_nv_device_attribute_query), fp16/bf16 storage, d <= 128, and a probe kernel that must build
// and compute an exact 16x8x16 product on that device first (once per device; any failure falls
// back to the portable kernels). FLASHCL_MMA=0 turns the path off, for comparisons.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>

#include "errors.hpp"
#include "launchers.hpp"
#include "program_cache.hpp"

namespace flashcl::detail {
namespace {

constexpr cl_device_info kComputeCapabilityMajorNV = 0x4000;  // CL_DEVICE_COMPUTE_CAPABILITY_MAJOR_NV
// Work-group shape: FLASHCL_MMA_TILE="WARPSxBC" overrides it for experiments.
struct MmaShape {
  int warps = 8, block_cols = 64;  // H100: 8x64 141.7 TFLOP/s fp16 (d=128, N=4096), 4x64 134.6, 4x128 140.7
};

MmaShape mma_shape() {
  MmaShape s;
  if (const char* env = std::getenv("FLASHCL_MMA_TILE"); env != nullptr && *env) {
    char tail = 0;
    if (std::sscanf(env, "%dx%d%c", &s.warps, &s.block_cols, &tail) != 2 || s.warps < 1 || s.warps > 16 ||
        s.block_cols < 16 || s.block_cols > 128 || s.block_cols % 16 != 0)
      fail(Status::InvalidArgument, "FLASHCL_MMA_TILE: expected WARPSxBC such as 4x64 (BC a multiple of 16), got '",
           env, "'");
  }
  return s;
}

// 16-byte loads need every row of K and V to start on a multiple of 8 elements.
bool rows_are_16_byte_aligned(const ForwardArgs& a) {
  auto aligned = [](const Tensor& t) {
    return t.offset % 8 == 0 && t.seq_stride % 8 == 0 && t.batch_stride % 8 == 0 && t.head_stride % 8 == 0;
  };
  return a.head_dim % 8 == 0 && aligned(a.k) && aligned(a.v);
}
const std::vector<std::string> kFiles = {"attn_args.h", "common.cl", "fa2_mma.cl"};

int compute_capability_major(cl_device_id device) {
  cl_uint major = 0;
  if (clGetDeviceInfo(device, kComputeCapabilityMajorNV, sizeof major, &major, nullptr) != CL_SUCCESS) return 0;
  return static_cast<int>(major);
}

// Builds and runs mma_probe on its own queue; true when D matches the exact product.
bool run_probe(cl_context context, cl_device_id device) {
  try {
    ForwardArgs shape;
    shape.head_dim = 16;
    shape.dtype = DType::F16;
    cl::Program program = cached_program(context, device, kFiles, common_options(shape));
    cl_int err = CL_SUCCESS;
    cl::Kernel kernel(clCreateKernel(program(), "mma_probe", &err));
    if (err != CL_SUCCESS) return false;
    cl::Buffer out(cl::Context(context, true), CL_MEM_WRITE_ONLY, 16 * 8 * sizeof(float));
    cl::CommandQueue queue(cl::Context(context, true), cl::Device(device, true));
    kernel.setArg(0, out);
    queue.enqueueNDRangeKernel(kernel, cl::NullRange, cl::NDRange(32), cl::NDRange(32));
    std::vector<float> d(16 * 8);
    queue.enqueueReadBuffer(out, CL_TRUE, 0, d.size() * sizeof(float), d.data());
    for (int i = 0; i < 16; ++i)
      for (int j = 0; j < 8; ++j) {
        float want = 0.0f;
        for (int kk = 0; kk < 16; ++kk) want += float((i + 2 * kk) % 7 - 3) * float((3 * kk + j) % 5 - 2);
        if (d[i * 8 + j] != want) return false;
      }
    return true;
  } catch (const std::exception&) {
    return false;  // no inline PTX, no mma.sync, or anything else: the portable path it is
  }
}

bool probe_passes(cl_context context, cl_device_id device) {
  static std::mutex mutex;
  static std::map<cl_device_id, bool> results;
  std::lock_guard<std::mutex> lock(mutex);
  auto it = results.find(device);
  if (it == results.end()) it = results.emplace(device, run_probe(context, device)).first;
  return it->second;
}

}  // namespace

bool mma_eligible(const DeviceFacts& facts, cl_device_id device, const ForwardArgs& a) {
  const char* env = std::getenv("FLASHCL_MMA");
  if (env != nullptr && std::string(env) == "0") return false;
  if (a.algorithm != Algorithm::FA2 || (a.dtype != DType::F16 && a.dtype != DType::BF16)) return false;
  if (a.head_dim > 128 || a.tile.block_rows != 0 || a.tile.block_cols != 0) return false;
  if (!facts.is_nvidia() || facts.kind != DeviceKind::GPU) return false;
  return compute_capability_major(device) >= 8;
}

TilePlan mma_plan(const ForwardArgs& a) {
  const MmaShape shape = mma_shape();
  TilePlan p;
  p.block_rows = 16 * shape.warps;
  p.block_cols = shape.block_cols;
  p.rows_per_team = 16;
  p.team_size = 32;
  p.padded_head_dim = (a.head_dim + 15) / 16 * 16;
  p.work_group_size = 32 * static_cast<std::size_t>(shape.warps);
  p.local_bytes = static_cast<std::size_t>(p.block_cols) * (p.padded_head_dim + 8) * 2 +
                  static_cast<std::size_t>(p.padded_head_dim) * (p.block_cols + 8) * 2;
  p.reason = concat("fa2 on tensor cores: ", shape.warps, " warps x 16 rows, ", p.block_cols,
                    " keys per block, mma.sync.m16n8k16");
  return p;
}

bool try_launch_fa2_mma(cl_command_queue queue, const Problem& p, const std::vector<cl_event>& wait, Launch& launch) {
  if (!mma_eligible(*p.facts, p.device, p.args) || !probe_passes(p.context, p.device)) return false;
  const ForwardArgs& a = p.args;
  const TilePlan plan = mma_plan(a);
  const std::string options = concat(common_options(a), " -DWARPS=", plan.block_rows / 16, " -DBC=", plan.block_cols,
                                     " -DVEC_LOAD=", rows_are_16_byte_aligned(a) ? 1 : 0);
  cl::Kernel kernel = make_kernel(p, kFiles, options, "fa2_mma_forward");
  set_args(kernel, a.q.buffer, a.k.buffer, a.v.buffer, a.o.buffer, a.lse, p.kernel_args);
  const std::size_t q_blocks = (static_cast<std::size_t>(a.seqlen_q) + plan.block_rows - 1) / plan.block_rows;
  const std::size_t local[3] = {plan.work_group_size, 1, 1};
  const std::size_t global[3] = {q_blocks * plan.work_group_size, static_cast<std::size_t>(a.heads),
                                 static_cast<std::size_t>(a.batch)};
  enqueue(queue, kernel, global, local, wait, launch);
  return true;
}

}  // namespace flashcl::detail
