// overrides.cpp: the one place flashcl reads its environment (see overrides.hpp).
#include "plan/overrides.hpp"

#include <cstdlib>

namespace flashcl::detail {

Overrides read_overrides(const std::function<const char*(const char*)>& lookup) {
  const auto text = [&](const char* name) -> std::string {
    const char* value = lookup(name);
    return value != nullptr ? value : "";
  };
  Overrides o;
  o.tile = text("FLASHCL_TILE");
  o.mma_tile = text("FLASHCL_MMA_TILE");
  o.mma_off = text("FLASHCL_MMA") == "0";
  o.mma_any = text("FLASHCL_MMA") == "any";
  o.fp8_cvt = text("FLASHCL_FP8_CVT") != "0";
  o.fp8_q_local = text("FLASHCL_FP8_QLOCAL") == "1";
  o.fp8_d256 = text("FLASHCL_FP8_D256") != "0";
  o.fp8_wgmma = text("FLASHCL_FP8_WGMMA");
  o.standard_mma = text("FLASHCL_STANDARD_MMA");
  o.fa2_cpu = text("FLASHCL_FA2_CPU");
  o.standard_cpu = text("FLASHCL_STANDARD_CPU");
  o.bwd_cpu = text("FLASHCL_BWD_CPU");
  o.bwd_red = text("FLASHCL_BWD_RED") != "0";
  o.decode = text("FLASHCL_DECODE");
  o.wgmma = text("FLASHCL_WGMMA");
  o.bwd_mma = text("FLASHCL_BWD_MMA");
  o.bwd_mma_tile = text("FLASHCL_BWD_MMA_TILE");
  o.bwd_mma_dq_tile = text("FLASHCL_BWD_MMA_DQ_TILE");
  o.bwd_mma_dq = text("FLASHCL_BWD_MMA_DQ");
  o.bwd_wgmma = text("FLASHCL_BWD_WGMMA");
  if (const std::string v = text("FLASHCL_TENSOR_CORE_VARIANTS"); v == "0" || v == "1")
    o.tensor_core_variants = v == "1";
  if (const std::string v = text("FLASHCL_TENSOR_CORE_TRANSFORMS"); v == "0" || v == "1")
    o.tensor_core_transforms = v == "1";
  o.fwd_softcap_ex2 = text("FLASHCL_FWD_SOFTCAP_EX2") != "0";
  if (const std::string v = text("FLASHCL_BWD_TF32"); v == "0" || v == "1") o.bwd_tf32 = v == "1";
  if (const std::string v = text("FLASHCL_BWD_TF32_SPLIT"); v == "0" || v == "1") o.bwd_tf32_split = v == "1";
  o.bwd_softcap_ex2 = text("FLASHCL_BWD_SOFTCAP_EX2") != "0";
  o.build_options = text("FLASHCL_BUILD_OPTIONS");
  o.build_log = text("FLASHCL_BUILD_LOG") == "1";
  o.kernel_dir = text("FLASHCL_KERNEL_DIR");
  o.disk_cache_off = text("FLASHCL_DISK_CACHE") == "0";
  if (const std::string dir = text("FLASHCL_CACHE_DIR"); !dir.empty())
    o.cache_dir = dir;
  else if (const std::string xdg = text("XDG_CACHE_HOME"); !xdg.empty())
    o.cache_dir = xdg + "/flashcl";
  else if (const std::string home = text("HOME"); !home.empty())
    o.cache_dir = home + "/.cache/flashcl";
  o.platform = text("FLASHCL_PLATFORM");
  o.device = text("FLASHCL_DEVICE");
  o.fault_inject = text("FLASHCL_FAULT_INJECT");
  return o;
}

const Overrides& process_overrides() {
  // A function-local static: read once, thread-safe, and no getenv races with later calls.
  static const Overrides overrides = read_overrides([](const char* name) { return std::getenv(name); });
  return overrides;
}

}  // namespace flashcl::detail
