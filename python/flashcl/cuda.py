"""PyTorch CUDA tensors on NVIDIA's OpenCL device of the same GPU, without host copies.

The binding's bridge (``python/src/cuda_interop.cpp``) finds the OpenCL device whose
cl_khr_device_uuid is the CUDA device's, and makes device memory both drivers address: the CUDA
driver's exportable allocations (``cuMemCreate`` with a POSIX-fd handle), imported into OpenCL
(``clCreateBufferWithProperties``) and mapped for CUDA. ``mem_pool()`` is a ``torch.cuda.MemPool``
whose segments come from there (a ``CUDAPluggableAllocator`` over the module's exported
``flashcl_cuda_alloc``/``flashcl_cuda_free``); a tensor allocated under ``use_pool()`` reaches the
kernels as a sub-buffer of its OpenCL buffer (made once per range and cached), with no copy at all.
A plain CUDA tensor (PyTorch's own caching allocator) reaches the kernels without a copy too where
its memory can be imported: under ``PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True`` PyTorch maps
its segments from physical allocations made by ``cuMemCreate`` with a POSIX-fd handle, and the
binding (``python/src/cuda_import.cpp``) imports the one that holds a tensor into OpenCL, cached per
allocation (``imports()``; an import still holds its memory after PyTorch unmaps it, until the next
new import or ``release_imports()`` drops it: call that after ``torch.cuda.empty_cache()``). Anything
else (the default cudaMalloc segments, a tensor straddling two of PyTorch's physical chunks,
``FLASHCL_CUDA_IMPORT=0`` or ``set_imports(False)``) is first copied device to device
(``Tensor.copy_`` on the current stream) into a tensor of that pool, with a one-time warning that
carries the reason; PyTorch's caching allocator keeps the copy's memory for the next call. The
allocator setting must be made before PyTorch starts CUDA (the environment variable); the package
never changes it on its own (``enable_expandable_segments()`` does, for later segments, on request).
Outputs (O, LSE, gradients) are always allocated in the pool, so nothing is copied back, except a
KV cache appended into (``forward_kvcache``) that had to be staged: its copy goes back into it.

Ordering with PyTorch's current stream, the first of these that works (each probed once):
"semaphore", on the GPU both ways where the driver makes exportable external semaphores (the stream
signals one the OpenCL queue waits for before the kernels, the queue signals another the stream
waits for after them; no host wait); "flag", where it does not (NVIDIA 580 refuses them) but the
CUDA driver has ``cuStreamWaitValue32``: the stream is synchronised on the host right before the
kernels are enqueued (OpenCL cannot wait for CUDA), and after them the queue writes the call's
number into a flag in shared memory that the stream waits for on the GPU, so a call returns while
its kernels may still run, as any CUDA kernel launch does, and the host prepares the next call
meanwhile; "host", host waits (the stream synchronised before, the queue finished after), with a
one-time warning when ``auto`` ends there. ``FLASHCL_CUDA_ORDER`` (read when a device's bridge
opens): ``auto`` (default), ``semaphore``, ``flag`` (an error where that one does not work) or
``host`` (nothing probed). ``set_ordering`` switches later; ``ordering()`` and ``stats()`` say
which is in use and why.

``torch.py`` calls ``forward``/``backward``/``forward_kvcache`` here for CUDA tensors; ``bridge()``
raises the named error (``DeviceNotFound``: no libcuda, no OpenCL device with the CUDA device's
UUID, no external memory import) that makes ``torch.py`` fall back to host copies with a one-time
warning.
"""

from __future__ import annotations

import os
import threading
import warnings
from typing import Dict, Tuple

import torch

from . import _flashcl as _ext
from . import functional as _functional
from ._flashcl import DType, MaskKind, Status

__all__ = ["available", "bridge", "mem_pool", "use_pool", "resident", "ordering", "set_ordering", "stats",
           "reset_stats", "imports", "set_imports", "release_imports", "enable_expandable_segments"]

_STORAGE = {torch.float32: DType.F32, torch.float16: DType.F16, torch.bfloat16: DType.BF16}

_lock = threading.Lock()
_bridges: Dict[int, object] = {}   # ordinal -> CudaBridge, or the Error opening it raised
_pools: Dict[int, "torch.cuda.MemPool"] = {}
_allocator = None
_stats = {"calls": 0, "semaphore_calls": 0, "flag_calls": 0, "host_wait_calls": 0, "staged_tensors": 0,
          "staged_bytes": 0, "imported_tensors": 0, "imported_bytes": 0}
_ORDERINGS = ("auto", "semaphore", "flag", "host")
_COUNTERS = {"semaphore": "semaphore_calls", "flag": "flag_calls", "host": "host_wait_calls"}
_warned_host_waits = False
_warned_staging = False


def _requested_ordering() -> str:
    """FLASHCL_CUDA_ORDER (auto, semaphore, flag or host; unset: auto), checked here so that a typo is
    an error of its own rather than a bridge that failed to open."""
    value = os.environ.get("FLASHCL_CUDA_ORDER", "").strip().lower() or "auto"
    if value not in _ORDERINGS:
        _functional._fail(Status.InvalidArgument,
                          f"FLASHCL_CUDA_ORDER: '{value}' is not one of auto, semaphore, flag, host")
    return value


def _ordinal(device) -> int:
    if not torch.cuda.is_available():
        _functional._fail(Status.DeviceNotFound, "CUDA: torch.cuda is not available (no CUDA device, or a CPU-only "
                                                 "PyTorch)")
    device = torch.device("cuda") if device is None else torch.device(device)
    if device.type != "cuda":
        _functional._fail(Status.InvalidArgument, f"device: {device} is not a CUDA device")
    return device.index if device.index is not None else torch.cuda.current_device()


def bridge(device=None):
    """The bridge of a CUDA device (default: the current one): its OpenCL device, context and queue
    (``device_name``, ``context``, ``queue``, ``granularity``, ``base_align``,
    ``acquire_release``, ``note``). Opened once, ordering calls as ``FLASHCL_CUDA_ORDER`` says then;
    raises flashcl.Error (DeviceNotFound) when CUDA memory cannot reach an OpenCL device, every time
    with the same message (InvalidArgument for a FLASHCL_CUDA_ORDER it does not know)."""
    ordinal = _ordinal(device)
    with _lock:
        if ordinal not in _bridges:
            order = _requested_ordering()
            torch.cuda.init()  # PyTorch's context first, so the bridge finds and shares it
            try:
                with torch.cuda.device(ordinal):
                    _bridges[ordinal] = _ext.cuda_open(ordinal, order)
            except _functional.Error as e:
                _bridges[ordinal] = e
            else:
                if order == "auto":
                    _warn_if_host_waits(ordinal)
        found = _bridges[ordinal]
    if isinstance(found, Exception):
        _functional._fail(found.status, str(found))
    return found


def _warn_if_host_waits(ordinal: int) -> None:
    """The one-time warning that calls wait on the host twice each (neither GPU-side ordering works)."""
    global _warned_host_waits
    info = _ext.cuda_ordering(ordinal)
    if info.ordering == "host" and not _warned_host_waits:
        _warned_host_waits = True
        warnings.warn(f"flashcl: CUDA calls are ordered by host waits (slower; {info.note})", stacklevel=3)


def available(device=None) -> bool:
    """Whether CUDA tensors of `device` run on OpenCL without host copies."""
    try:
        bridge(device)
        return True
    except _functional.Error:
        return False


def mem_pool(device=None) -> "torch.cuda.MemPool":
    """flashcl's ``torch.cuda.MemPool`` for a CUDA device: tensors allocated in it reach flashcl
    without copies. One per device, made on first use."""
    global _allocator
    ordinal = _ordinal(device)
    bridge(ordinal)
    with _lock:
        if ordinal not in _pools:
            if _allocator is None:
                from torch.cuda.memory import CUDAPluggableAllocator

                _allocator = CUDAPluggableAllocator(_ext.__file__, _ext.cuda_alloc_symbol, _ext.cuda_free_symbol)
            _pools[ordinal] = torch.cuda.MemPool(_allocator.allocator())
        return _pools[ordinal]


def use_pool(device=None):
    """A context manager: CUDA tensors allocated inside it (on `device`, default the current one)
    come from ``mem_pool(device)``, e.g. ``with flashcl.cuda.use_pool(): q = torch.randn(...,
    device="cuda")``."""
    ordinal = _ordinal(device)
    return torch.cuda.use_mem_pool(mem_pool(ordinal), device=ordinal)


def ordering(device=None) -> dict:
    """How calls on `device`'s tensors are ordered with PyTorch's stream: ``ordering`` ("semaphore",
    "flag" or "host"), ``note`` (why not the semaphores, when not), ``semaphores`` and ``flag``
    (whether that ordering works here: its probe passed and no call of it failed since; False as
    well when it was never probed, e.g. under FLASHCL_CUDA_ORDER=host, or the flag where the
    semaphores work)."""
    bridge(device)
    info = _ext.cuda_ordering(_ordinal(device))
    return {"ordering": info.ordering, "note": info.note, "semaphores": info.semaphores, "flag": info.flag}


def set_ordering(name: str, device=None) -> dict:
    """Orders later calls on `device` by "host" waits, "flag" or "semaphore" (each an error,
    DeviceNotFound, where it does not work), or "auto" (the first of semaphore, flag, host that
    works). Each GPU-side ordering is probed on first need. Returns ``ordering()``."""
    if name not in _ORDERINGS:
        _functional._fail(Status.InvalidArgument, f"ordering: '{name}' is not one of auto, semaphore, flag, host")
    bridge(device)
    with torch.cuda.device(_ordinal(device)):  # the probes run in that GPU's CUDA context
        _ext.cuda_set_ordering(_ordinal(device), name)
    return ordering(device)


def imports() -> dict:
    """Plain PyTorch memory imported into OpenCL without staging (see the module's docstring), since
    the process started: ``created`` (physical allocations imported), ``reused`` (tensors served by
    an import made before), ``refused`` (tensors that could not be imported: staged instead),
    ``dropped`` (imports released); and now: ``live`` imports and their ``bytes``, ``enabled``."""
    counts = dict(_ext.cuda_import_counts())
    counts["enabled"] = _ext.cuda_imports_enabled()
    return counts


def set_imports(enabled: bool) -> bool:
    """Turns importing plain tensors on or off for later calls (off: they are staged, as under
    ``FLASHCL_CUDA_IMPORT=0``); returns the previous setting."""
    return _ext.cuda_set_imports(bool(enabled))


def release_imports(all: bool = False) -> int:  # noqa: A002 (the binding's name)
    """Drops the imports of memory PyTorch has handed back to the driver (``torch.cuda.empty_cache()``
    unmaps it; flashcl also checks this before every new import), or every import with ``all=True``
    (after flashcl's queued work has finished), so that their device memory is freed; returns how
    many were dropped."""
    return _ext.cuda_release_imports(bool(all))


def enable_expandable_segments() -> None:
    """Asks PyTorch's caching allocator for expandable segments from now on (its private
    ``torch.cuda.memory._set_allocator_settings``): segments made later are importable, those already
    made stay as they are. The documented way is ``PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True``
    in the environment before PyTorch starts CUDA; flashcl never changes the setting by itself."""
    setter = getattr(torch.cuda.memory, "_set_allocator_settings", None)
    if setter is None:
        _functional._fail(Status.DeviceNotFound, "this PyTorch has no torch.cuda.memory._set_allocator_settings: set "
                          "PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True before starting the program")
    setter("expandable_segments:True")


def _note_staged(t: torch.Tensor, why: str) -> None:
    """The one-time warning that plain tensors are copied into the pool each call, with the reason
    their memory could not be imported."""
    global _warned_staging
    if not _warned_staging and why:
        _warned_staging = True
        warnings.warn(f"flashcl: CUDA tensors outside flashcl's pool are copied into it for each call ({why})",
                      stacklevel=4)


def stats() -> dict:
    """Counters since the last ``reset_stats``: ``calls`` (flashcl calls on CUDA tensors), of which
    ``semaphore_calls`` were ordered by the semaphores, ``flag_calls`` by the flag and
    ``host_wait_calls`` by host waits,
    ``staged_tensors``/``staged_bytes`` (tensors from outside the pool copied into it),
    ``imported_tensors``/``imported_bytes`` (plain tensors read where they are, through an import of
    PyTorch's memory: see ``imports()``); and now:
    ``segments``/``segment_bytes`` (the pool's exported allocations), ``views_created``/
    ``views_reused`` (sub-buffers made for tensor arguments, and arguments served by one made
    before; since the process started) and ``ordering`` (the current device's, as ``ordering()``
    says, or None before its bridge has opened)."""
    segments, segment_bytes = _ext.cuda_usage()
    created, reused = _ext.cuda_view_counts()
    current = None
    if torch.cuda.is_available():
        found = _bridges.get(torch.cuda.current_device())
        if found is not None and not isinstance(found, Exception):
            current = _ext.cuda_ordering(found.ordinal).ordering
    return dict(_stats, segments=segments, segment_bytes=segment_bytes, views_created=created, views_reused=reused,
                ordering=current)


def reset_stats() -> None:
    for key in _stats:
        _stats[key] = 0


# ---- One call ----------------------------------------------------------------------------------

class _Call:
    """The pool-resident views of one call's tensors: staged copies and sub-buffer references, kept
    until the call is enqueued (the kernels themselves hold the sub-buffers, and the caching
    allocator reuses a staged copy's memory only after them in stream order)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.ordinal = device.index  # a CUDA tensor's device always has one
        # The bridge and the pool of a device seen before, without bridge()'s checks and lock.
        found = _bridges.get(self.ordinal)
        self.bridge = found if found is not None and not isinstance(found, Exception) else bridge(device)
        pool = _pools.get(self.ordinal)
        self.pool = pool if pool is not None else mem_pool(device)
        self.keep = []

    def empty(self, shape, dtype) -> torch.Tensor:
        with torch.cuda.use_mem_pool(self.pool, device=self.ordinal):
            return torch.empty(shape, dtype=dtype, device=self.device)

    def _stage(self, t: torch.Tensor) -> torch.Tensor:
        staged = self.empty(t.shape, t.dtype)
        staged.copy_(t)
        _stats["staged_tensors"] += 1
        _stats["staged_bytes"] += staged.numel() * staged.element_size()
        self.keep.append(staged)
        return staged

    def _sub_buffer(self, t: torch.Tensor, name: str, output: bool = False) -> Tuple[torch.Tensor, int]:
        """t (staged when it is outside the pool, not dense in its last dimension, or at an offset
        that is not a multiple of the sub-buffer alignment) and a sub-buffer of its allocation that
        starts at its first element and ends with its last: the library's aliasing checks then
        compare exactly the bytes each tensor covers (the backward's compare whole buffers, and a
        strided or packed tensor's extent as the forward computes it can reach past its storage)."""
        if t.device != self.device:
            _functional._fail(Status.InvalidArgument, f"{name}: device {t.device} differs from q's {self.device}")
        if t.numel() == 0:
            _functional._fail(Status.InvalidArgument, f"{name}: empty tensors are not supported")
        strides = t.stride()
        if any(s < 0 for s in strides) or (t.dim() and t.shape[-1] > 1 and strides[-1] != 1):
            t = self._stage(t.contiguous())  # staged as a dense copy; counted
            strides = t.stride()
        span = (sum((n - 1) * s for n, s in zip(t.shape, strides)) + 1) * t.element_size()
        view = _ext.CudaView(t.data_ptr(), span)
        if view.handle and view.kind == "import":
            _stats["imported_tensors"] += 1
            _stats["imported_bytes"] += span
        if not view.handle and output:
            # An output is the pool's own allocation: a copy of it would take the results away.
            _functional._fail(Status.InternalError, f"{name}: an output allocated in flashcl's CUDA pool cannot be "
                                                    f"addressed ({view.why or 'not in its registry'}; was the "
                                                    "pool's allocator replaced?)")
        if not view.handle:
            _note_staged(t, view.why)
            t = self._stage(t)
            view = _ext.CudaView(t.data_ptr(), t.numel() * t.element_size())
            if not view.handle:
                _functional._fail(Status.InternalError, f"{name}: a tensor of flashcl's CUDA pool is not in its "
                                                        "registry (was the pool's allocator replaced?)")
        # the tensor too, until the call is enqueued: a temporary (the workspace, a converted index
        # array) freed before that could be handed to another allocation on the stream meanwhile
        self.keep += (view, t)
        return t, view.handle

    def tensor(self, t: torch.Tensor, name: str, varlen: bool, output: bool = False) -> "_ext.Tensor":
        """A (B, S, H, d) or packed (total, H, d) tensor as the library's Tensor (elements)."""
        t, handle = self._sub_buffer(t, name, output)
        strides = t.stride()
        view = _ext.Tensor()
        view.buffer = handle
        if varlen:
            view.seq_stride, view.head_stride = strides[0], strides[1]
        else:
            view.batch_stride, view.seq_stride, view.head_stride = strides[0], strides[1], strides[2]
        return view

    def cache(self, t: torch.Tensor, name: str) -> Tuple["_ext.Tensor", torch.Tensor]:
        """A KV cache (contiguous (B_cache, S, H_kv, d) or paged (pages, page_size, H_kv, d)) as the
        library's Tensor, and the tensor the kernels write: t itself, or its staged copy, which the
        caller copies back into t after an append."""
        where, handle = self._sub_buffer(t, name)
        strides = where.stride()
        view = _ext.Tensor()
        view.buffer = handle
        view.batch_stride, view.seq_stride, view.head_stride = strides[0], strides[1], strides[2]
        return view, where

    def whole(self, t: torch.Tensor, name: str, output: bool = False) -> int:
        """A cl_mem holding exactly dense t, for arguments the library takes without an offset."""
        return self._sub_buffer(t.contiguous(), name, output)[1]

    def mask(self, mask: torch.Tensor, args) -> "_ext.Mask":
        m = _ext.Mask()
        if mask.dtype == torch.bool:
            m.kind, mask = MaskKind.Bool, mask.view(torch.uint8)
        elif mask.dtype == torch.uint8:
            m.kind = MaskKind.Bool
        else:
            m.kind, mask = MaskKind.Bias, mask.to(torch.float32)
        m.batch, m.heads = _functional._mask_shape(mask, args)
        mask, m.buffer = self._sub_buffer(mask if mask.dim() == 4 else mask.reshape(1, 1, *mask.shape), "mask")
        strides = mask.stride()
        m.batch_stride = strides[0] if m.batch > 1 else 0
        m.head_stride = strides[1] if m.heads > 1 else 0
        m.row_stride = strides[2]
        if m.batch_stride == 0 and m.head_stride == 0 and m.row_stride == args.seqlen_k:
            m.row_stride = 0  # dense: the library's default
        return m

    def args(self, q, k, v, options, alibi_slopes, mask, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k):
        """ForwardArgs for CUDA tensors (O and LSE are the caller's to set)."""
        varlen = cu_seqlens_q is not None
        batch = int(cu_seqlens_q.shape[0]) - 1 if varlen else 0
        a = _functional._shape_args(q, k, v, varlen=varlen, max_seqlen_q=max_seqlen_q, max_seqlen_k=max_seqlen_k,
                                    batch_from_cu=batch, **options)
        a.dtype = _STORAGE[q.dtype]
        a.q, a.k, a.v = (self.tensor(t, n, varlen) for t, n in ((q, "q"), (k, "k"), (v, "v")))
        if varlen:
            a.cu_seqlens_q = self.whole(cu_seqlens_q.to(self.device, torch.int32), "cu_seqlens_q")
            a.cu_seqlens_k = self.whole(cu_seqlens_k.to(self.device, torch.int32), "cu_seqlens_k")
            a.total_q = int(q.shape[0])
        if alibi_slopes is not None:
            slopes = alibi_slopes.to(self.device, torch.float32)
            a.alibi_per_batch = slopes.dim() == 2
            a.alibi_slopes = self.whole(slopes, "alibi_slopes")
        if mask is not None:
            a.mask = self.mask(mask.to(self.device), a)
        return a

    def stream(self) -> int:
        return torch.cuda.current_stream(self.device).cuda_stream


def resident(t: torch.Tensor) -> torch.Tensor:
    """t itself when the kernels can read it where it is (a tensor of flashcl's pool or of imported
    PyTorch memory, dense in its last dimension, at an offset a sub-buffer can start at), else a
    dense copy of it in the pool, made on the current stream and counted in ``stats()``. ``flashcl.torch`` stages q, k and v this
    way before the forward, so that the backward reads the copies the autograd graph saved instead
    of staging them a second time."""
    strides = t.stride()
    if t.numel() == 0:
        return t  # the call names the error
    if not any(s < 0 for s in strides) and not (t.dim() and t.shape[-1] > 1 and strides[-1] != 1):
        span = (sum((n - 1) * s for n, s in zip(t.shape, strides)) + 1) * t.element_size()
        view = _ext.CudaView(t.data_ptr(), span)
        if view.handle:
            return t  # counted as imported when the call reads it
        _note_staged(t, view.why)
    return _Call(t.device)._stage(t)


def _count(mode: str) -> None:
    """Counts one call under the ordering the binding says ordered it."""
    _stats["calls"] += 1
    _stats[_COUNTERS[mode]] += 1


def forward(q, k, v, options, alibi_slopes, mask, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k):
    """(out, lse) of flashcl's forward on CUDA tensors, both allocated in the pool."""
    call = _Call(q.device)
    with torch.cuda.device(q.device):
        a = call.args(q, k, v, options, alibi_slopes, mask, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k)
        varlen = cu_seqlens_q is not None
        with torch.cuda.use_mem_pool(call.pool, device=call.ordinal):
            out = torch.empty(q.shape, dtype=q.dtype, device=q.device)
            lse = torch.empty(_functional._lse_shape(a, q), dtype=torch.float32, device=q.device)
        a.o = call.tensor(out, "out", varlen, output=True)
        a.lse = call.whole(lse, "lse", output=True)
        need = _ext.workspace_bytes(call.bridge.device, a)
        if need:
            a.workspace = call.whole(call.empty((need,), torch.uint8), "workspace", output=True)
        _count(_ext.cuda_forward(call.ordinal, call.stream(), a))
    return out, lse


def forward_kvcache(args, q, k_cache, v_cache, cache_seqlens, k, v, rotary_cos, rotary_sin, cache_batch_idx,
                    block_table, alibi_slopes):
    """(out, lse) of flashcl's KV-cache call on CUDA tensors, both allocated in the pool; `args` is a
    KvCacheArgs with the sizes and switches set (flashcl.torch's), the buffers are set here. k and v
    are appended into k_cache and v_cache in place: a cache outside the pool that could not be
    imported is staged, and the staged copy is copied back into it on the current stream (ordered
    after the call, whose end the stream waits for)."""
    call = _Call(q.device)
    with torch.cuda.device(q.device):
        args.q = call.tensor(q, "q", False)
        args.k_cache, k_written = call.cache(k_cache, "k_cache")
        args.v_cache, v_written = call.cache(v_cache, "v_cache")
        # Index arrays and tables in the types the kernels read (the call keeps the converted copies
        # until it is enqueued).
        def whole(t, dtype, name):
            if t is None:
                return 0
            return call.whole(t.to(q.device, dtype).contiguous(), name)

        args.cache_seqlens = whole(cache_seqlens, torch.int32, "cache_seqlens")
        args.cache_batch_idx = whole(cache_batch_idx, torch.int32, "cache_batch_idx")
        args.block_table = whole(block_table, torch.int32, "block_table")
        args.rotary_cos = whole(rotary_cos, torch.float32, "rotary_cos")
        args.rotary_sin = whole(rotary_sin, torch.float32, "rotary_sin")
        args.alibi_slopes = whole(alibi_slopes, torch.float32, "alibi_slopes")
        if k is not None:
            args.k_new = call.tensor(k, "k", False)
            args.v_new = call.tensor(v, "v", False)
        with torch.cuda.use_mem_pool(call.pool, device=call.ordinal):
            out = torch.empty(q.shape, dtype=q.dtype, device=q.device)
            lse = torch.empty((q.shape[0], q.shape[2], q.shape[1]), dtype=torch.float32, device=q.device)
        args.o = call.tensor(out, "out", False, output=True)
        args.lse = call.whole(lse, "lse", output=True)
        need = _ext.kvcache_workspace_bytes(call.bridge.device, args)
        if need:
            args.workspace = call.whole(call.empty((need,), torch.uint8), "workspace", output=True)
        _count(_ext.cuda_forward_kvcache(call.ordinal, call.stream(), args))
        if k is not None:
            for cache, written in ((k_cache, k_written), (v_cache, v_written)):
                if written is not cache:
                    cache.copy_(written)
    return out, lse


def backward(d_o, q, k, v, out, lse, options, alibi_slopes, mask, cu_seqlens_q, cu_seqlens_k, max_seqlen_q,
             max_seqlen_k, deterministic, want_dbias):
    """(d_q, d_k, d_v, d_bias or None) of flashcl's backward on CUDA tensors, in the pool."""
    call = _Call(q.device)
    with torch.cuda.device(q.device):
        a = call.args(q, k, v, options, alibi_slopes, mask, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k)
        varlen = cu_seqlens_q is not None
        a.o = call.tensor(out, "out", varlen)
        a.lse = call.whole(lse, "lse")
        b = _ext.BackwardArgs()
        b.forward = a
        b.deterministic = bool(deterministic)
        b.d_o = call.tensor(d_o, "d_o", varlen)
        with torch.cuda.use_mem_pool(call.pool, device=call.ordinal):
            grads = [torch.empty(t.shape, dtype=t.dtype, device=t.device) for t in (q, k, v)]
        b.d_q, b.d_k, b.d_v = (call.tensor(g, n, varlen, output=True) for g, n in zip(grads, ("d_q", "d_k", "d_v")))
        d_bias = None
        if want_dbias:
            d_bias = call.empty(mask.shape, torch.float32)
            m = _ext.Mask()
            m.kind, m.batch, m.heads = MaskKind.Bias, a.mask.batch, a.mask.heads
            m.buffer = call.whole(d_bias, "d_bias", output=True)
            b.d_bias = m
        need = _ext.backward_workspace_bytes(call.bridge.device, b)
        if need:
            b.workspace = call.whole(call.empty((need,), torch.uint8), "workspace", output=True)
        _count(_ext.cuda_backward(call.ordinal, call.stream(), b))
    return grads[0], grads[1], grads[2], d_bias
