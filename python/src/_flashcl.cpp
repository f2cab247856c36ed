// _flashcl.cpp: the nanobind module under the flashcl Python package. It only binds the C++ API of
// include/flashcl/flashcl.hpp: the enums, the argument structs (OpenCL handles as integers, so
// pyopencl's int_ptr values pass straight through), flashcl::forward and flashcl::backward on the
// caller's queue, forward_kvcache (KvCacheArgs), Session (forward, backward and forward_kvcache on
// host arrays, the last for flashcl.torch's CPU tensors), device listing and cache control.
// flashcl::Error becomes one Python exception class, flashcl._flashcl.Error (a RuntimeError),
// carrying `status` and the library's message. Shapes, dtypes and array types are the Python
// layer's job (python/flashcl/functional.py). The cuda_* functions bind cuda_interop.hpp (CUDA
// memory shared with NVIDIA's OpenCL driver) for python/flashcl/cuda.py.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include <cstdint>
#include <algorithm>
#include <cstring>
#include <new>
#include <vector>

#include "cuda_import.hpp"
#include "cuda_interop.hpp"
#include "flashcl/flashcl.hpp"

namespace nb = nanobind;
using namespace nb::literals;
using namespace flashcl;

namespace {

// Host arrays arrive as C-contiguous CPU ndarrays of the element type the C++ API stores.
template <typename T>
using HostArray = nb::ndarray<const T, nb::c_contig, nb::device::cpu>;

template <typename T>
std::vector<T> to_vector(const HostArray<T>& a) {
  return std::vector<T>(a.data(), a.data() + a.size());
}

template <typename T>
std::vector<T> to_vector(const std::optional<HostArray<T>>& a) {
  return a ? to_vector(*a) : std::vector<T>{};
}

using OptionalF32 = std::optional<HostArray<float>>;
using OptionalU8 = std::optional<HostArray<std::uint8_t>>;
using OptionalI32 = std::optional<HostArray<std::int32_t>>;

HostVariants host_variants(const OptionalF32& alibi_slopes, const OptionalU8& mask, const OptionalF32& bias,
                           const OptionalI32& cu_seqlens_q, const OptionalI32& cu_seqlens_k) {
  HostVariants variants;
  variants.alibi_slopes = to_vector(alibi_slopes);
  variants.mask = to_vector(mask);
  variants.bias = to_vector(bias);
  variants.cu_seqlens_q = to_vector<std::int32_t>(cu_seqlens_q);
  variants.cu_seqlens_k = to_vector<std::int32_t>(cu_seqlens_k);
  return variants;
}

// A float32 numpy array of n elements on a page-aligned allocation that the array owns, so that
// Session::forward (backward) can write O (the gradients) into it through a buffer over that
// memory (CL_MEM_USE_HOST_PTR needs CL_DEVICE_MEM_BASE_ADDR_ALIGN, a page at most in practice).
constexpr std::size_t kHostAlign = 4096;
nb::ndarray<nb::numpy, float> aligned_numpy(std::size_t n, float** data) {
  const std::size_t bytes = ((std::max<std::size_t>(n, 1) * sizeof(float) + kHostAlign - 1) / kHostAlign) * kHostAlign;
  void* p = ::operator new(bytes, std::align_val_t{kHostAlign});
  nb::capsule owner(p, [](void* q) noexcept { ::operator delete(q, std::align_val_t{kHostAlign}); });
  *data = static_cast<float*>(p);
  return nb::ndarray<nb::numpy, float>(p, {n}, owner);
}

template <typename T>
HostView<const T> view_of(const HostArray<T>& a) {
  return HostView<const T>{a.data(), a.size()};
}

// A host array the call writes (Session::forward_kvcache's caches, O and LSE).
template <typename T>
using HostOut = nb::ndarray<T, nb::c_contig, nb::device::cpu>;

template <typename T>
HostView<T> view_of(const HostOut<T>& a) {
  return HostView<T>{a.data(), a.size()};
}

// An optional array as a view; absent: no data.
template <typename Array>
auto view_of(const std::optional<Array>& a) -> decltype(view_of(*a)) {
  return a ? view_of(*a) : decltype(view_of(*a)){};
}

template <typename Handle>
std::uintptr_t as_int(Handle h) {
  return reinterpret_cast<std::uintptr_t>(h);
}

template <typename Handle>
Handle as_handle(std::uintptr_t p) {
  return reinterpret_cast<Handle>(p);
}

// A cl_mem member read and written as an integer: the getter and the setter for def_prop_rw.
template <typename Class>
auto mem_get(cl_mem Class::*member) {
  return [member](const Class& s) { return as_int(s.*member); };
}
template <typename Class>
auto mem_set(cl_mem Class::*member) {
  return [member](Class& s, std::uintptr_t p) { s.*member = as_handle<cl_mem>(p); };
}

}  // namespace

NB_MODULE(_flashcl, m) {
  m.doc() = "flashcl's C++ API, bound as is (the flashcl package builds its functions on it).";

  nb::enum_<Status>(m, "Status")
      .value("Success", Status::Success)
      .value("InvalidArgument", Status::InvalidArgument)
      .value("InvalidHandle", Status::InvalidHandle)
      .value("UnsupportedDType", Status::UnsupportedDType)
      .value("OutOfResources", Status::OutOfResources)
      .value("BuildFailure", Status::BuildFailure)
      .value("DeviceNotFound", Status::DeviceNotFound)
      .value("OpenCLError", Status::OpenCLError)
      .value("InternalError", Status::InternalError);
  nb::enum_<Algorithm>(m, "Algorithm")
      .value("Auto", Algorithm::Auto)
      .value("Standard", Algorithm::Standard)
      .value("FA1", Algorithm::FA1)
      .value("FA2", Algorithm::FA2);
  nb::enum_<DType>(m, "DType")
      .value("F32", DType::F32)
      .value("F16", DType::F16)
      .value("BF16", DType::BF16)
      .value("E4M3", DType::E4M3)
      .value("E5M2", DType::E5M2);
  nb::enum_<QuantGranularity>(m, "QuantGranularity")
      .value("Tensor", QuantGranularity::Tensor)
      .value("Head", QuantGranularity::Head)
      .value("Block", QuantGranularity::Block);
  nb::enum_<MaskKind>(m, "MaskKind")
      .value("Off", MaskKind::None)
      .value("Bool", MaskKind::Bool)
      .value("Bias", MaskKind::Bias);

  // One exception class for every library error; `status` says which kind it is.
  static nb::handle error_type = PyErr_NewExceptionWithDoc(
      "flashcl._flashcl.Error", "An error raised by flashcl: `status` (a Status) and the library's message.",
      PyExc_RuntimeError, nullptr);
  m.attr("Error") = error_type;
  nb::register_exception_translator([](const std::exception_ptr& p, void*) {
    try {
      std::rethrow_exception(p);
    } catch (const Error& e) {
      nb::object instance = error_type(e.what());
      instance.attr("status") = nb::cast(e.status());
      PyErr_SetObject(error_type.ptr(), instance.ptr());
    }
  });

  m.def("version", &version);
  m.def("parse_algorithm", &parse_algorithm, "name"_a);
  m.def("parse_dtype", &parse_dtype, "name"_a);

  nb::class_<Tensor>(m, "Tensor")
      .def(nb::init<>())
      .def_prop_rw("buffer", mem_get(&Tensor::buffer), mem_set(&Tensor::buffer))
      .def_rw("offset", &Tensor::offset)
      .def_rw("batch_stride", &Tensor::batch_stride)
      .def_rw("seq_stride", &Tensor::seq_stride)
      .def_rw("head_stride", &Tensor::head_stride);

  nb::class_<TileOverride>(m, "TileOverride")
      .def(nb::init<>())
      .def_rw("block_rows", &TileOverride::block_rows)
      .def_rw("block_cols", &TileOverride::block_cols)
      .def_rw("team_size", &TileOverride::team_size)
      .def_rw("rows_per_team", &TileOverride::rows_per_team);

  nb::class_<Mask>(m, "Mask")
      .def(nb::init<>())
      .def_rw("kind", &Mask::kind)
      .def_prop_rw("buffer", mem_get(&Mask::buffer), mem_set(&Mask::buffer))
      .def_rw("batch", &Mask::batch)
      .def_rw("heads", &Mask::heads)
      .def_rw("offset", &Mask::offset)
      .def_rw("batch_stride", &Mask::batch_stride)
      .def_rw("head_stride", &Mask::head_stride)
      .def_rw("row_stride", &Mask::row_stride);

  nb::class_<Window>(m, "Window").def(nb::init<>()).def_rw("left", &Window::left).def_rw("right", &Window::right);

  nb::class_<Fp8Scales>(m, "Fp8Scales")
      .def(nb::init<>())
      .def_prop_rw("q_descale", mem_get(&Fp8Scales::q_descale), mem_set(&Fp8Scales::q_descale))
      .def_prop_rw("k_descale", mem_get(&Fp8Scales::k_descale), mem_set(&Fp8Scales::k_descale))
      .def_prop_rw("v_descale", mem_get(&Fp8Scales::v_descale), mem_set(&Fp8Scales::v_descale))
      .def_rw("quant_block", &Fp8Scales::quant_block)
      .def_rw("v_transposed", &Fp8Scales::v_transposed);

  nb::class_<ForwardArgs>(m, "ForwardArgs")
      .def(nb::init<>())
      .def_rw("batch", &ForwardArgs::batch)
      .def_rw("heads", &ForwardArgs::heads)
      .def_rw("seqlen_q", &ForwardArgs::seqlen_q)
      .def_rw("seqlen_k", &ForwardArgs::seqlen_k)
      .def_rw("head_dim", &ForwardArgs::head_dim)
      .def_rw("scale", &ForwardArgs::scale)
      .def_rw("causal", &ForwardArgs::causal)
      .def_rw("dtype", &ForwardArgs::dtype)
      .def_rw("algorithm", &ForwardArgs::algorithm)
      .def_rw("q", &ForwardArgs::q)
      .def_rw("k", &ForwardArgs::k)
      .def_rw("v", &ForwardArgs::v)
      .def_rw("o", &ForwardArgs::o)
      .def_prop_rw("lse", mem_get(&ForwardArgs::lse), mem_set(&ForwardArgs::lse))
      .def_prop_rw("workspace", mem_get(&ForwardArgs::workspace), mem_set(&ForwardArgs::workspace))
      .def_rw("tile", &ForwardArgs::tile)
      .def_rw("heads_kv", &ForwardArgs::heads_kv)
      .def_rw("window", &ForwardArgs::window)
      .def_rw("softcap", &ForwardArgs::softcap)
      .def_prop_rw("alibi_slopes", mem_get(&ForwardArgs::alibi_slopes), mem_set(&ForwardArgs::alibi_slopes))
      .def_rw("alibi_per_batch", &ForwardArgs::alibi_per_batch)
      .def_rw("mask", &ForwardArgs::mask)
      .def_prop_rw("cu_seqlens_q", mem_get(&ForwardArgs::cu_seqlens_q), mem_set(&ForwardArgs::cu_seqlens_q))
      .def_prop_rw("cu_seqlens_k", mem_get(&ForwardArgs::cu_seqlens_k), mem_set(&ForwardArgs::cu_seqlens_k))
      .def_rw("total_q", &ForwardArgs::total_q)
      .def_rw("check_device_data", &ForwardArgs::check_device_data)
      .def_rw("out_dtype", &ForwardArgs::out_dtype)
      .def_rw("fp8", &ForwardArgs::fp8);

  nb::class_<QuantizeArgs>(m, "QuantizeArgs")
      .def(nb::init<>())
      .def_rw("batch", &QuantizeArgs::batch)
      .def_rw("seqlen", &QuantizeArgs::seqlen)
      .def_rw("heads", &QuantizeArgs::heads)
      .def_rw("head_dim", &QuantizeArgs::head_dim)
      .def_rw("in_dtype", &QuantizeArgs::in_dtype)
      .def_rw("out_dtype", &QuantizeArgs::out_dtype)
      .def_rw("in_", &QuantizeArgs::in)
      .def_rw("out", &QuantizeArgs::out)
      .def_prop_rw("descale", mem_get(&QuantizeArgs::descale), mem_set(&QuantizeArgs::descale))
      .def_rw("granularity", &QuantizeArgs::granularity)
      .def_rw("head_group", &QuantizeArgs::head_group)
      .def_rw("block", &QuantizeArgs::block)
      .def_rw("hadamard", &QuantizeArgs::hadamard)
      .def_rw("hadamard_seed", &QuantizeArgs::hadamard_seed)
      .def_rw("transposed", &QuantizeArgs::transposed)
      .def_prop_rw("cu_seqlens", mem_get(&QuantizeArgs::cu_seqlens), mem_set(&QuantizeArgs::cu_seqlens))
      .def_rw("total", &QuantizeArgs::total);
  m.def("quantize_descale_count", &quantize_descale_count, "args"_a);
  m.def("hadamard_signs", &hadamard_signs, "head_dim"_a, "seed"_a);

  nb::class_<TileInfo>(m, "TileInfo")
      .def_ro("algorithm", &TileInfo::algorithm)
      .def_ro("block_rows", &TileInfo::block_rows)
      .def_ro("block_cols", &TileInfo::block_cols)
      .def_ro("work_group_size", &TileInfo::work_group_size)
      .def_ro("local_bytes", &TileInfo::local_bytes)
      .def_ro("reason", &TileInfo::reason);

  // Retained events of one call's kernels, as integers (pyopencl: Event.from_int_ptr(p, retain=True)).
  nb::class_<Launch>(m, "Launch")
      .def_prop_ro("events",
                   [](const Launch& l) {
                     std::vector<std::uintptr_t> out;
                     for (cl_event e : l.events()) out.push_back(as_int(e));
                     return out;
                   })
      .def("wait", &Launch::wait, nb::call_guard<nb::gil_scoped_release>())
      .def("device_ms", &Launch::device_ms);

  m.def(
      "forward",
      [](std::uintptr_t queue, const ForwardArgs& args, const std::vector<std::uintptr_t>& wait_list) {
        std::vector<cl_event> events;
        for (auto e : wait_list) events.push_back(as_handle<cl_event>(e));
        nb::gil_scoped_release released;
        return forward(as_handle<cl_command_queue>(queue), args, events);
      },
      "queue"_a, "args"_a, "wait_list"_a = std::vector<std::uintptr_t>{});
  m.def(
      "quantize_fp8",
      [](std::uintptr_t queue, const QuantizeArgs& args, const std::vector<std::uintptr_t>& wait_list) {
        std::vector<cl_event> events;
        for (auto e : wait_list) events.push_back(as_handle<cl_event>(e));
        nb::gil_scoped_release released;
        return quantize_fp8(as_handle<cl_command_queue>(queue), args, events);
      },
      "queue"_a, "args"_a, "wait_list"_a = std::vector<std::uintptr_t>{});
  // Planning queries on a device (cl_device_id as an integer) for a call's arguments.
  m.def(
      "resolve_algorithm",
      [](std::uintptr_t device, const ForwardArgs& a) { return resolve_algorithm(as_handle<cl_device_id>(device), a); },
      "device"_a, "args"_a);
  m.def(
      "workspace_bytes",
      [](std::uintptr_t device, const ForwardArgs& a) { return workspace_bytes(as_handle<cl_device_id>(device), a); },
      "device"_a, "args"_a);
  m.def(
      "device_bytes",
      [](std::uintptr_t device, const ForwardArgs& a) { return device_bytes(as_handle<cl_device_id>(device), a); },
      "device"_a, "args"_a);
  m.def(
      "tile_info",
      [](std::uintptr_t device, const ForwardArgs& a) { return tile_info(as_handle<cl_device_id>(device), a); },
      "device"_a, "args"_a);

  // The KV-cache (decode) call, flashcl::forward_kvcache (docs/DECODE.md; fp8 caches: docs/FP8.md)
  nb::class_<KvCacheArgs>(m, "KvCacheArgs")
      .def(nb::init<>())
      .def_rw("batch", &KvCacheArgs::batch)
      .def_rw("heads", &KvCacheArgs::heads)
      .def_rw("heads_kv", &KvCacheArgs::heads_kv)
      .def_rw("seqlen_q", &KvCacheArgs::seqlen_q)
      .def_rw("head_dim", &KvCacheArgs::head_dim)
      .def_rw("scale", &KvCacheArgs::scale)
      .def_rw("causal", &KvCacheArgs::causal)
      .def_rw("dtype", &KvCacheArgs::dtype)
      .def_rw("cache_dtype", &KvCacheArgs::cache_dtype)
      .def_prop_rw("k_descale", mem_get(&KvCacheArgs::k_descale), mem_set(&KvCacheArgs::k_descale))
      .def_prop_rw("v_descale", mem_get(&KvCacheArgs::v_descale), mem_set(&KvCacheArgs::v_descale))
      .def_rw("check_device_data", &KvCacheArgs::check_device_data)
      .def_rw("q", &KvCacheArgs::q)
      .def_rw("o", &KvCacheArgs::o)
      .def_prop_rw("lse", mem_get(&KvCacheArgs::lse), mem_set(&KvCacheArgs::lse))
      .def_rw("k_cache", &KvCacheArgs::k_cache)
      .def_rw("v_cache", &KvCacheArgs::v_cache)
      .def_rw("cache_seqlen", &KvCacheArgs::cache_seqlen)
      .def_rw("cache_batch", &KvCacheArgs::cache_batch)
      .def_prop_rw("cache_batch_idx", mem_get(&KvCacheArgs::cache_batch_idx), mem_set(&KvCacheArgs::cache_batch_idx))
      .def_prop_rw("block_table", mem_get(&KvCacheArgs::block_table), mem_set(&KvCacheArgs::block_table))
      .def_rw("num_pages", &KvCacheArgs::num_pages)
      .def_rw("page_size", &KvCacheArgs::page_size)
      .def_rw("max_pages", &KvCacheArgs::max_pages)
      .def_rw("block_table_stride", &KvCacheArgs::block_table_stride)
      .def_prop_rw("cache_seqlens", mem_get(&KvCacheArgs::cache_seqlens), mem_set(&KvCacheArgs::cache_seqlens))
      .def_rw("k_new", &KvCacheArgs::k_new)
      .def_rw("v_new", &KvCacheArgs::v_new)
      .def_rw("seqlen_new", &KvCacheArgs::seqlen_new)
      .def_prop_rw("rotary_cos", mem_get(&KvCacheArgs::rotary_cos), mem_set(&KvCacheArgs::rotary_cos))
      .def_prop_rw("rotary_sin", mem_get(&KvCacheArgs::rotary_sin), mem_set(&KvCacheArgs::rotary_sin))
      .def_rw("rotary_dim", &KvCacheArgs::rotary_dim)
      .def_rw("rotary_seqlen", &KvCacheArgs::rotary_seqlen)
      .def_rw("rotary_interleaved", &KvCacheArgs::rotary_interleaved)
      .def_rw("window", &KvCacheArgs::window)
      .def_rw("softcap", &KvCacheArgs::softcap)
      .def_prop_rw("alibi_slopes", mem_get(&KvCacheArgs::alibi_slopes), mem_set(&KvCacheArgs::alibi_slopes))
      .def_rw("alibi_per_batch", &KvCacheArgs::alibi_per_batch)
      .def_prop_rw("workspace", mem_get(&KvCacheArgs::workspace), mem_set(&KvCacheArgs::workspace))
      .def_rw("num_splits", &KvCacheArgs::num_splits);
  m.def(
      "forward_kvcache",
      [](std::uintptr_t queue, const KvCacheArgs& args, const std::vector<std::uintptr_t>& wait_list) {
        std::vector<cl_event> events;
        for (auto e : wait_list) events.push_back(as_handle<cl_event>(e));
        nb::gil_scoped_release released;
        return forward_kvcache(as_handle<cl_command_queue>(queue), args, events);
      },
      "queue"_a, "args"_a, "wait_list"_a = std::vector<std::uintptr_t>{});
  m.def(
      "kvcache_workspace_bytes",
      [](std::uintptr_t device, const KvCacheArgs& a) { return kvcache_workspace_bytes(as_handle<cl_device_id>(device), a); },
      "device"_a, "args"_a);
  // The split kernel a call would run on `queue` (builds its program, enqueues nothing).
  nb::class_<KvCacheInfo>(m, "KvCacheInfo")
      .def_ro("kernel", &KvCacheInfo::kernel)
      .def_ro("num_splits", &KvCacheInfo::num_splits)
      .def_ro("work_group_size", &KvCacheInfo::work_group_size)
      .def_ro("reason", &KvCacheInfo::reason);
  m.def(
      "kvcache_info",
      [](std::uintptr_t queue, const KvCacheArgs& a) { return kvcache_info(as_handle<cl_command_queue>(queue), a); },
      "queue"_a, "args"_a);

  nb::class_<BackwardArgs>(m, "BackwardArgs")
      .def(nb::init<>())
      .def_rw("forward", &BackwardArgs::forward)
      .def_rw("d_o", &BackwardArgs::d_o)
      .def_rw("d_q", &BackwardArgs::d_q)
      .def_rw("d_k", &BackwardArgs::d_k)
      .def_rw("d_v", &BackwardArgs::d_v)
      .def_rw("d_bias", &BackwardArgs::d_bias)
      .def_rw("deterministic", &BackwardArgs::deterministic)
      .def_prop_rw("workspace", mem_get(&BackwardArgs::workspace), mem_set(&BackwardArgs::workspace));
  m.def(
      "backward",
      [](std::uintptr_t queue, const BackwardArgs& args, const std::vector<std::uintptr_t>& wait_list) {
        std::vector<cl_event> events;
        for (auto e : wait_list) events.push_back(as_handle<cl_event>(e));
        nb::gil_scoped_release released;
        return backward(as_handle<cl_command_queue>(queue), args, events);
      },
      "queue"_a, "args"_a, "wait_list"_a = std::vector<std::uintptr_t>{});
  m.def(
      "backward_workspace_bytes",
      [](std::uintptr_t device, const BackwardArgs& a) {
        return backward_workspace_bytes(as_handle<cl_device_id>(device), a);
      },
      "device"_a, "args"_a);

  nb::class_<CacheStats>(m, "CacheStats")
      .def_ro("memory_hits", &CacheStats::memory_hits)
      .def_ro("disk_hits", &CacheStats::disk_hits)
      .def_ro("builds", &CacheStats::builds)
      .def_ro("disk_writes", &CacheStats::disk_writes)
      .def_ro("disk_rejects", &CacheStats::disk_rejects);
  m.def("set_disk_cache_enabled", &set_disk_cache_enabled, "enabled"_a);
  m.def("set_disk_cache_dir", &set_disk_cache_dir, "dir"_a);
  m.def("disk_cache_dir", &disk_cache_dir);
  m.def("clear_memory_cache", &clear_memory_cache);
  m.def("cache_stats", &cache_stats);

  nb::class_<DeviceInfo>(m, "DeviceInfo")
      .def_ro("platform_index", &DeviceInfo::platform_index)
      .def_ro("device_index", &DeviceInfo::device_index)
      .def_ro("platform", &DeviceInfo::platform)
      .def_ro("name", &DeviceInfo::name)
      .def_ro("vendor", &DeviceInfo::vendor)
      .def_ro("driver", &DeviceInfo::driver)
      .def_ro("version", &DeviceInfo::version)
      .def_ro("is_gpu", &DeviceInfo::is_gpu)
      .def_ro("is_cpu", &DeviceInfo::is_cpu)
      .def_ro("compute_units", &DeviceInfo::compute_units)
      .def_ro("local_mem_bytes", &DeviceInfo::local_mem_bytes)
      .def_ro("global_mem_bytes", &DeviceInfo::global_mem_bytes)
      .def("__repr__", [](const DeviceInfo& d) {
        return "DeviceInfo(" + std::to_string(d.platform_index) + ":" + std::to_string(d.device_index) + " '" + d.name +
               "' on '" + d.platform + "')";
      });
  m.def("list_devices", &list_devices);

  nb::class_<Session>(m, "Session")
      .def(nb::init<const std::string&, const std::string&>(), "platform"_a = "", "device"_a = "")
      .def_prop_ro("context", [](const Session& s) { return as_int(s.context()); })
      .def_prop_ro("queue", [](const Session& s) { return as_int(s.queue()); })
      .def_prop_ro("device", [](const Session& s) { return as_int(s.device()); })
      .def_prop_ro("info", &Session::info)
      .def_prop_ro("last_forward_host_buffers", &Session::last_forward_host_buffers)
      // Session::forward with its HostVariants spelt out as optional arrays; returns (o, lse or
      // None), both flat float32 (the caller reshapes).
      .def(
          "forward",
          [](Session& s, const ForwardArgs& shape, const HostArray<float>& q, const HostArray<float>& k,
             const HostArray<float>& v, const OptionalF32& alibi_slopes, const OptionalU8& mask,
             const OptionalF32& bias, const OptionalI32& cu_seqlens_q, const OptionalI32& cu_seqlens_k,
             bool return_lse) {
            // q, k, v in place and O (LSE) straight into fresh aligned arrays: on CPU devices the
            // buffers lie over this memory, no copies (Session::forward's HostView overload).
            const HostVariants variants = host_variants(alibi_slopes, mask, bias, cu_seqlens_q, cu_seqlens_k);
            // O is q's size and LSE one float per row and head: when q's size is wrong, Session::forward
            // says so (q is checked before o and lse), as it does for a bad shape.
            const std::size_t nq = q.size();
            const std::size_t nlse = shape.head_dim > 0 ? nq / static_cast<std::size_t>(shape.head_dim) : 0;
            float *o_data = nullptr, *lse_data = nullptr;
            nb::object out = nb::cast(aligned_numpy(nq, &o_data));
            nb::object lse_out = return_lse ? nb::cast(aligned_numpy(nlse, &lse_data)) : nb::none();
            {
              nb::gil_scoped_release released;
              s.forward(shape, view_of(q), view_of(k), view_of(v), HostView<float>{o_data, nq}, variants,
                        return_lse ? HostView<float>{lse_data, nlse} : HostView<float>{});
            }
            return nb::make_tuple(out, lse_out);
          },
          "shape"_a, "q"_a, "k"_a, "v"_a, nb::kw_only(), "alibi_slopes"_a = nb::none(), "mask"_a = nb::none(),
          "bias"_a = nb::none(), "cu_seqlens_q"_a = nb::none(), "cu_seqlens_k"_a = nb::none(), "return_lse"_a = false)
      .def_prop_ro("last_backward_host_buffers", &Session::last_backward_host_buffers)
      // Session::backward: returns (d_q, d_k, d_v, d_bias or None), flat float32. The inputs in
      // place and the gradients straight into fresh aligned arrays, as forward does (on CPU
      // devices buffers over this memory: Session::backward's HostView overload).
      .def(
          "backward",
          [](Session& s, const BackwardArgs& shape, const HostArray<float>& q, const HostArray<float>& k,
             const HostArray<float>& v, const HostArray<float>& o, const HostArray<float>& d_o,
             const HostArray<float>& lse, const OptionalF32& alibi_slopes, const OptionalU8& mask,
             const OptionalF32& bias, const OptionalI32& cu_seqlens_q, const OptionalI32& cu_seqlens_k) {
            const HostVariants variants = host_variants(alibi_slopes, mask, bias, cu_seqlens_q, cu_seqlens_k);
            // dQ is q's size, dK and dV k's: wrong input sizes are Session::backward's to name.
            const std::size_t nq = q.size(), nk = k.size(), nbias = Session::d_bias_size(shape);
            float *dq = nullptr, *dk = nullptr, *dv = nullptr, *dbias = nullptr;
            nb::object d_q = nb::cast(aligned_numpy(nq, &dq)), d_k = nb::cast(aligned_numpy(nk, &dk)),
                       d_v = nb::cast(aligned_numpy(nk, &dv));
            nb::object d_bias = nbias > 0 ? nb::cast(aligned_numpy(nbias, &dbias)) : nb::none();
            {
              nb::gil_scoped_release released;
              s.backward(shape, view_of(q), view_of(k), view_of(v), view_of(o), view_of(d_o), view_of(lse),
                         Session::GradientViews{{dq, nq}, {dk, nk}, {dv, nk}, {dbias, nbias}}, variants);
            }
            return nb::make_tuple(d_q, d_k, d_v, d_bias);
          },
          "shape"_a, "q"_a, "k"_a, "v"_a, "o"_a, "d_o"_a, "lse"_a, nb::kw_only(), "alibi_slopes"_a = nb::none(),
          "mask"_a = nb::none(), "bias"_a = nb::none(), "cu_seqlens_q"_a = nb::none(), "cu_seqlens_k"_a = nb::none())
      .def_prop_ro("last_kvcache_host_buffers", &Session::last_kvcache_host_buffers)
      // Session::forward_kvcache on dense host arrays: O (and LSE) written into `o` (`lse`), and
      // k_new/v_new appended into the caches in place; `shape` holds the sizes and switches (its
      // cl_mem fields are ignored). The arrays the call writes are taken as they are (noconvert:
      // a converted copy would take the writes), float32 and C-contiguous.
      .def(
          "forward_kvcache",
          [](Session& s, const KvCacheArgs& shape, const HostArray<float>& q, const HostOut<float>& k_cache,
             const HostOut<float>& v_cache, const HostArray<std::int32_t>& cache_seqlens, const HostOut<float>& o,
             const std::optional<HostOut<float>>& lse, const OptionalF32& k_new, const OptionalF32& v_new,
             const OptionalI32& cache_batch_idx, const OptionalI32& block_table, const OptionalF32& rotary_cos,
             const OptionalF32& rotary_sin, const OptionalF32& alibi_slopes) {
            KvCacheHostArrays x;
            x.q = view_of(q);
            x.o = view_of(o);
            x.lse = view_of(lse);
            x.k_cache = view_of(k_cache);
            x.v_cache = view_of(v_cache);
            x.cache_seqlens = view_of(cache_seqlens);
            x.k_new = view_of(k_new);
            x.v_new = view_of(v_new);
            x.cache_batch_idx = view_of(cache_batch_idx);
            x.block_table = view_of(block_table);
            x.rotary_cos = view_of(rotary_cos);
            x.rotary_sin = view_of(rotary_sin);
            x.alibi_slopes = view_of(alibi_slopes);
            nb::gil_scoped_release released;
            s.forward_kvcache(shape, x);
          },
          "shape"_a, "q"_a, "k_cache"_a.noconvert(), "v_cache"_a.noconvert(), "cache_seqlens"_a, "o"_a.noconvert(),
          nb::kw_only(), "lse"_a.noconvert() = nb::none(), "k_new"_a = nb::none(), "v_new"_a = nb::none(),
          "cache_batch_idx"_a = nb::none(), "block_table"_a = nb::none(), "rotary_cos"_a = nb::none(),
          "rotary_sin"_a = nb::none(), "alibi_slopes"_a = nb::none());

  // CUDA tensors (cuda_interop.hpp): the bridge to the OpenCL device of a CUDA device, the
  // registry of exportable allocations and their cached sub-buffers (views), the ordering of calls
  // (semaphores, a flag or host waits) and the calls, and the allocator's exported symbols.
  namespace cu = flashcl_py::cuda;
  nb::class_<cu::BridgeInfo>(m, "CudaBridge")
      .def_ro("ordinal", &cu::BridgeInfo::ordinal)
      .def_ro("device_name", &cu::BridgeInfo::device_name)
      .def_ro("device", &cu::BridgeInfo::device)
      .def_ro("context", &cu::BridgeInfo::context)
      .def_ro("queue", &cu::BridgeInfo::queue)
      .def_ro("granularity", &cu::BridgeInfo::granularity)
      .def_ro("base_align", &cu::BridgeInfo::base_align)
      .def_ro("acquire_release", &cu::BridgeInfo::acquire_release)
      .def_ro("note", &cu::BridgeInfo::note);
  m.def("cuda_open", &cu::open_bridge, "ordinal"_a, "ordering"_a = "auto", nb::rv_policy::reference,
        nb::call_guard<nb::gil_scoped_release>());
  nb::class_<cu::OrderingInfo>(m, "CudaOrdering")
      .def_ro("ordering", &cu::OrderingInfo::ordering)
      .def_ro("note", &cu::OrderingInfo::note)
      .def_ro("semaphores", &cu::OrderingInfo::semaphores)
      .def_ro("flag", &cu::OrderingInfo::flag);
  m.def("cuda_ordering", &cu::ordering, "ordinal"_a, nb::call_guard<nb::gil_scoped_release>());
  m.def("cuda_set_ordering", &cu::set_ordering, "ordinal"_a, "ordering"_a, nb::call_guard<nb::gil_scoped_release>());
  m.def(
      "cuda_locate",
      [](std::uintptr_t address, std::size_t bytes) -> std::optional<std::tuple<std::uintptr_t, std::size_t>> {
        const cu::Located at = cu::locate(address, bytes);
        if (at.mem == 0) return std::nullopt;
        return std::make_tuple(at.mem, at.offset);
      },
      "address"_a, "bytes"_a);
  m.def("cuda_usage", []() {
    const cu::Usage u = cu::usage();
    return nb::make_tuple(u.allocations, u.bytes);
  });
  nb::class_<cu::View>(m, "CudaView")
      // (without the GIL: an import may first wait for the bridge's queue to drop an old one)
      .def(nb::init<std::uintptr_t, std::size_t, bool>(), nb::call_guard<nb::gil_scoped_release>(), "address"_a,
           "bytes"_a, "imported"_a = true)
      .def_prop_ro("handle", &cu::View::handle)
      .def_prop_ro("kind", &cu::View::kind)
      .def_prop_ro("why", &cu::View::why);
  // Plain PyTorch memory imported without staging (cuda_import.hpp).
  m.def("cuda_import_counts", []() {
    const cu::ImportCounts c = cu::import_counts();
    nb::dict d;
    d["created"] = c.created;
    d["reused"] = c.reused;
    d["refused"] = c.refused;
    d["dropped"] = c.dropped;
    d["live"] = c.live;
    d["bytes"] = c.bytes;
    return d;
  });
  m.def("cuda_release_imports", &cu::release_imports, "all"_a = false, nb::call_guard<nb::gil_scoped_release>());
  m.def("cuda_set_imports", &cu::set_imports_enabled, "enabled"_a);
  m.def("cuda_imports_enabled", &cu::imports_enabled);
  m.def(
      "cuda_mapping_range",
      [](std::uintptr_t address) -> std::optional<std::tuple<std::uintptr_t, std::size_t>> {
        const auto r = cu::mapping_range(address);
        if (!r) return std::nullopt;
        return std::make_tuple(r->first, r->second);
      },
      "address"_a);
  m.def("cuda_view_counts", []() {
    const cu::ViewCounts c = cu::view_counts();
    return nb::make_tuple(c.created, c.reused);
  });
  m.def("cuda_forward", &cu::run_forward, "ordinal"_a, "stream"_a, "args"_a, nb::call_guard<nb::gil_scoped_release>());
  m.def("cuda_forward_kvcache", &cu::run_forward_kvcache, "ordinal"_a, "stream"_a, "args"_a,
        nb::call_guard<nb::gil_scoped_release>());
  m.def("cuda_backward", &cu::run_backward, "ordinal"_a, "stream"_a, "args"_a,
        nb::call_guard<nb::gil_scoped_release>());
  m.def("cuda_fill", &cu::fill, "address"_a, "bytes"_a, "value"_a, "stream"_a,
        nb::call_guard<nb::gil_scoped_release>());
  m.def("cuda_last_alloc_error", &cu::last_alloc_error);
  m.attr("cuda_alloc_symbol") = "flashcl_cuda_alloc";
  m.attr("cuda_free_symbol") = "flashcl_cuda_free";
}
