// probe.hpp: what the one-time device probes of the NVIDIA tensor-core paths share
// (launch_fa2_mma.cpp, launch_standard_mma.cpp, launch_bwd_mma.cpp, decode_probe.cpp): inputs
// exact in the probe's storage type, the outcome of one probe run, the conversion of whatever a run
// throws into that outcome (a build failure or a wrong answer is an answer for the device; running
// out of resources is not), the message under FLASHCL_BUILD_LOG=1, and the memo that runs each
// probe once per key. Each probe keeps its own problem, reference and tolerance; this file only
// holds their common frame.
#pragma once

#include <cstddef>
#include <cstdio>
#include <exception>
#include <map>
#include <mutex>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "base/cl_bindings.hpp"
#include "base/errors.hpp"
#include "plan/overrides.hpp"

namespace flashcl::detail {

enum class ProbeResult { Pass, Fail, Transient };

// Multiples of 1 / `steps` in [-1, 1), varied by element and `salt` (times `salt_step`): exact in
// 16 bits for steps 64, in e4m3 for steps 8.
inline float probe_value(std::size_t i, int salt, int salt_step, int steps) {
  return static_cast<float>((i * 37 + salt * salt_step) % (2 * steps)) / static_cast<float>(steps) - 1.0f;
}

// `values` in `dtype`'s storage (fp32, 16-bit bits, fp8 codes: exact for probe_value's inputs) in a
// new buffer of `ctx`, after `pad` zero elements (rows that are then not 16-byte aligned).
inline cl::Buffer probe_upload(const cl::Context& ctx, DType dtype, const std::vector<float>& values, int pad = 0) {
  auto buffer = [&](auto bits) {
    bits.insert(bits.begin(), pad, 0);
    return cl::Buffer(ctx, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, bits.size() * sizeof(bits[0]), bits.data());
  };
  if (is_fp8(dtype)) return buffer(to_fp8(dtype, values));
  if (dtype == DType::F32) return buffer(values);
  return buffer(to_storage(dtype, values));
}

// Why the probe `what` failed, on stderr under FLASHCL_BUILD_LOG=1 (the fallback itself is silent),
// and in *reason where the caller keeps it (for an error when the path was required).
inline ProbeResult probe_failed(const std::string& what, const std::string& why, std::string* reason = nullptr) {
  if (process_overrides().build_log)
    std::fprintf(stderr, "flashcl: %s failed, falling back: %s\n", what.c_str(), why.c_str());
  if (reason != nullptr) *reason = why;
  return ProbeResult::Fail;
}

// Runs `body` (which returns a ProbeResult) and turns what it throws into one: a failed build
// (with its log), an OpenCL error or a library error is Fail, reported as `what`; running out of
// resources or memory is Transient (the path is skipped for this call only, and asked again later).
template <typename Body>
ProbeResult guarded_probe(const std::string& what, Body&& body, std::string* reason = nullptr) {
  try {
    return body();
  } catch (const cl::BuildError& e) {
    const cl::BuildLogType log = e.getBuildLog();
    return probe_failed(what, concat("build failed:\n", log.empty() ? std::string() : log.front().second), reason);
  } catch (const cl::Error& e) {
    const cl_int err = e.err();
    if (err == CL_OUT_OF_RESOURCES || err == CL_OUT_OF_HOST_MEMORY || err == CL_MEM_OBJECT_ALLOCATION_FAILURE)
      return ProbeResult::Transient;
    // no inline PTX, no mma.sync, a failed build: the portable path it is
    return probe_failed(what, concat(e.what(), ": ", cl_error_name(err)), reason);
  } catch (const Error& e) {  // the library's own checks (the retarget, check_cl_result)
    if (e.status() == Status::OutOfResources) return ProbeResult::Transient;
    return probe_failed(what, e.what(), reason);
  } catch (const std::exception& e) {
    return probe_failed(what, e.what(), reason);
  }
}

// Probe results per `Key` (the device and whatever changes the kernel built), for the life of the
// process; a Transient result is not kept, so the next call asks again. The lock is held while a
// probe runs, so concurrent first calls run it once. `run` is run() or, where the caller wants a
// failure's reason in *why, run(std::string* reason), which fills it (probe_failed's `reason`).
template <typename Key>
class ProbeMemo {
 public:
  template <typename Run>
  ProbeResult result(const Key& key, Run&& run, std::string* why = nullptr) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = results_.find(key);
    if (it == results_.end()) {
      std::string reason;
      ProbeResult r;
      if constexpr (std::is_invocable_v<Run, std::string*>) r = run(&reason);
      else r = run();
      if (r == ProbeResult::Transient) {
        if (why != nullptr) *why = "the probe ran out of resources (asked again by the next call)";
        return r;
      }
      it = results_.emplace(key, Outcome{r, reason}).first;
    }
    if (why != nullptr) *why = it->second.why;
    return it->second.result;
  }
  template <typename Run>
  bool passes(const Key& key, Run&& run, std::string* why = nullptr) {
    return result(key, std::forward<Run>(run), why) == ProbeResult::Pass;
  }

 private:
  struct Outcome {
    ProbeResult result;  // Pass or Fail
    std::string why;     // a failure's reason, where run reported it
  };
  std::mutex mutex_;
  std::map<Key, Outcome> results_;
};

}  // namespace flashcl::detail
