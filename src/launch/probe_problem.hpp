// probe_problem.hpp: the problem the forward tensor-core probes run (launch_fa2_mma.cpp,
// launch_standard_mma.cpp), set up and checked in one place: one batch and head, Nq = 37 and
// Nk = 150 (partial blocks of rows and keys), d = 32 for the 16-byte copies or 30 for the
// element-wise loads; inputs exact in their storage (multiples of 1/64 for 16 bits, 1/8 for fp8;
// fp32 gets low bits that TF32 alone drops), O read back from its storage and compared with a
// float64 softmax(scale·QKᵀ)·V. fp8 rows shift their values (all rows were equal at d = 32); with a
// transposed V (Fp8Scales::v_transposed) V is uploaded (d, Nk) with a pitch of 192 keys (so the last
// 16-byte copy of a row is partial, and the 42 keys past Nk up to the end of the last 64-key block,
// NaN bytes, must never be read). Host-side only: each probe still builds and runs its own kernels
// with its own program choice, and picks its own bound.
#pragma once

#include <string>
#include <vector>

#include "base/cl_bindings.hpp"
#include "flashcl/flashcl.hpp"
#include "launch/probe.hpp"

namespace flashcl::detail {

struct ForwardProbe {
  static constexpr int nq = 37, nk = 150;
  int d;
  DType dtype, out;            // the inputs' storage, O's
  std::vector<float> q, k, v;  // the values uploaded (fp8: before the descales)
  cl::Context ctx;             // the caller's context, retained
  cl::CommandQueue queue;      // a queue of the probe's own
  cl::Buffer qb, kb, vb, ob;
  ForwardArgs args;  // shape, dtype and Q, K, V, O; algorithm and fp8 fields are the caller's

  ForwardProbe(cl_context context, cl_device_id device, DType dtype, DType out, bool vec_load,
               bool v_transposed = false);
  // O after the caller's kernels ran on `queue` (blocking), as floats.
  std::vector<float> read_o();
  // Pass when every element of `o` is within `bound` of the float64 reference over q, k and v
  // (times `descales`, {q, k, v}, when given), else probe_failed naming the first one.
  ProbeResult check(const std::string& what, const std::vector<float>& o, double bound,
                    const float* descales = nullptr) const;
};

}  // namespace flashcl::detail
