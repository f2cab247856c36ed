// cuda_order.hpp: the driver-free rules of how a flashcl call on CUDA tensors is ordered with the
// caller's CUDA stream (cuda_interop.cpp does the ordering): the names a caller may ask for, which
// mode a bridge takes given what its driver offers, and the flag ordering's sequence numbers. Kept
// apart from the driver code so the unit tests (tests/test_cuda_order.cpp) check them on machines
// without CUDA. The flag's values are 32-bit and compared cyclically, as CU_STREAM_WAIT_VALUE_GEQ
// does ((int32_t)(*addr - value) >= 0), so they wrap without a reset; what must hold is that no wait
// still pending lies 2^31 or more behind the flag, which a drain (every stream of the context
// synchronised) every 2^30 values guarantees. Not 64-bit: a 4-byte fill is one store, while an
// 8-byte one may land as two, and a half-written value could pass a wait early (0x1_FFFFFFFF ->
// 0x2_00000000 seen as 0x2_FFFFFFFF); with the cyclic comparison 32 bits never need a reset.
#pragma once

#include <cstdint>
#include <string>

#include "flashcl/flashcl.hpp"

namespace flashcl_py::cuda {

// What a caller asks for (FLASHCL_CUDA_ORDER, set_ordering).
enum class Order { Auto, Semaphore, Flag, Host };
// What a bridge does: external semaphores both ways, the stream waiting on the flag the queue
// writes last (a host wait before the call only), or host waits before and after.
enum class Mode { Host, Flag, Semaphore };

inline const char* mode_name(Mode m) {
  return m == Mode::Semaphore ? "semaphore" : m == Mode::Flag ? "flag" : "host";
}

inline Order parse_order(const std::string& name) {
  if (name.empty() || name == "auto") return Order::Auto;
  if (name == "semaphore") return Order::Semaphore;
  if (name == "flag") return Order::Flag;
  if (name == "host") return Order::Host;
  throw flashcl::Error(flashcl::Status::InvalidArgument,
                       "CUDA ordering '" + name +
                           "': expected auto, semaphore, flag or host (FLASHCL_CUDA_ORDER, flashcl.cuda.set_ordering)");
}

// The mode for `order` given which GPU-side orderings work here. Auto prefers the semaphores (no
// host wait at all), then the flag (one host wait, before the call), then host waits. A forced
// mode that does not work gives Host; the caller turns that into an error.
inline Mode choose(Order order, bool semaphores_ok, bool flag_ok) {
  switch (order) {
    case Order::Auto:
      return semaphores_ok ? Mode::Semaphore : flag_ok ? Mode::Flag : Mode::Host;
    case Order::Semaphore:
      return semaphores_ok ? Mode::Semaphore : Mode::Host;
    case Order::Flag:
      return flag_ok ? Mode::Flag : Mode::Host;
    case Order::Host:
      break;
  }
  return Mode::Host;
}

// Whether a flag holding `flag` satisfies a wait for `value` (the driver's GEQ, cyclic).
inline bool flag_reached(std::uint32_t flag, std::uint32_t value) {
  return static_cast<std::int32_t>(flag - value) >= 0;
}

// The values one flag's writes carry: each call's is one more than the last (the flag starts at 0),
// wrapping past 2^32 - 1 to 0. drain() says the value just issued is a multiple of 2^30: every wait
// issued before it must have passed before it is written (cuCtxSynchronize), so that no pending wait
// can fall 2^31 behind and read as ahead.
class FlagSequence {
 public:
  static constexpr std::uint32_t kDrainPeriod = 1u << 30;
  explicit FlagSequence(std::uint32_t start = 0) : last_(start) {}
  std::uint32_t next() { return ++last_; }
  std::uint32_t last() const { return last_; }
  bool drain() const { return last_ % kDrainPeriod == 0; }

 private:
  std::uint32_t last_;
};

}  // namespace flashcl_py::cuda
