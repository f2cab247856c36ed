"""PyTorch CUDA tensors on NVIDIA's OpenCL device of the same GPU, without host copies.

The binding's bridge (``python/src/cuda_interop.cpp``) finds the OpenCL device whose
cl_khr_device_uuid is the CUDA device's, and makes device memory both drivers address: the CUDA
driver's exportable allocations (``cuMemCreate`` with a POSIX-fd handle), imported into OpenCL
(``clCreateBufferWithProperties``) and mapped for CUDA. ``mem_pool()`` is a ``torch.cuda.MemPool``
whose segments come from there (a ``CUDAPluggableAllocator`` over the module's exported
``flashcl_cuda_alloc``/``flashcl_cuda_free``); a tensor allocated under ``use_pool()`` reaches the
kernels as its OpenCL buffer and offset, with no copy at all. A CUDA tensor from anywhere else is
first copied device to device (``Tensor.copy_`` on the current stream) into a tensor of that pool,
which PyTorch's caching allocator keeps for the next call. Outputs (O, LSE, gradients) are always
allocated in the pool, so nothing is copied back. Ordering: the current CUDA stream is synchronised
before the OpenCL kernels are enqueued and the OpenCL queue finished before the tensors are
returned (the bridge's .cpp says why that is enough).

``torch.py`` calls ``forward``/``backward`` here for CUDA tensors; ``bridge()`` raises the named
error (``DeviceNotFound``: no libcuda, no OpenCL device with the CUDA device's UUID, no external
memory import) that makes ``torch.py`` fall back to host copies with a one-time warning.
"""

from __future__ import annotations

import threading
from typing import Dict, Tuple

import torch

from . import _flashcl as _ext
from . import functional as _functional
from ._flashcl import DType, MaskKind, Status

__all__ = ["available", "bridge", "mem_pool", "use_pool", "stats", "reset_stats"]

_STORAGE = {torch.float32: DType.F32, torch.float16: DType.F16, torch.bfloat16: DType.BF16}

_lock = threading.Lock()
_bridges: Dict[int, object] = {}   # ordinal -> CudaBridge, or the Error opening it raised
_pools: Dict[int, "torch.cuda.MemPool"] = {}
_allocator = None
_stats = {"calls": 0, "staged_tensors": 0, "staged_bytes": 0}


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
    ``acquire_release``, ``note``). Opened once; raises flashcl.Error (DeviceNotFound) when CUDA
    memory cannot reach an OpenCL device, every time with the same message."""
    ordinal = _ordinal(device)
    with _lock:
        if ordinal not in _bridges:
            torch.cuda.init()  # PyTorch's context first, so the bridge finds and shares it
            try:
                with torch.cuda.device(ordinal):
                    _bridges[ordinal] = _ext.cuda_open(ordinal)
            except _functional.Error as e:
                _bridges[ordinal] = e
        found = _bridges[ordinal]
    if isinstance(found, Exception):
        _functional._fail(found.status, str(found))
    return found


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


def stats() -> dict:
    """Counters since the last ``reset_stats``: ``calls`` (flashcl calls on CUDA tensors),
    ``staged_tensors``/``staged_bytes`` (tensors from outside the pool copied into it), and now:
    ``segments``/``segment_bytes`` (the pool's exported allocations)."""
    segments, segment_bytes = _ext.cuda_usage()
    return dict(_stats, segments=segments, segment_bytes=segment_bytes)


def reset_stats() -> None:
    for key in _stats:
        _stats[key] = 0


# ---- One call ----------------------------------------------------------------------------------

class _Call:
    """The pool-resident views of one call's tensors, kept alive (with their sub-buffers) until
    the call has finished."""

    def __init__(self, device: torch.device):
        self.device = device
        self.ordinal = device.index
        self.bridge = bridge(device)
        self.pool = mem_pool(device)
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

    def _locate(self, t: torch.Tensor, name: str, align: int):
        """(tensor, cl_mem, byte offset) of t in the pool, staging it when it is elsewhere, not
        dense in its last dimension, or its offset is not a multiple of `align`."""
        if t.device != self.device:
            _functional._fail(Status.InvalidArgument, f"{name}: device {t.device} differs from q's {self.device}")
        if t.numel() == 0:
            _functional._fail(Status.InvalidArgument, f"{name}: empty tensors are not supported")
        if any(s < 0 for s in t.stride()) or (t.dim() and t.shape[-1] > 1 and t.stride(-1) != 1):
            t = self._stage(t.contiguous())  # staged as a dense copy; counted
        span = (sum((n - 1) * s for n, s in zip(t.shape, t.stride())) + 1) * t.element_size()
        at = _ext.cuda_locate(t.data_ptr(), span)
        if at is None or at[1] % align:
            t = self._stage(t)
            at = _ext.cuda_locate(t.data_ptr(), t.numel() * t.element_size())
            if at is None:
                _functional._fail(Status.InternalError, f"{name}: a tensor of flashcl's CUDA pool is not in its "
                                                        "registry (was the pool's allocator replaced?)")
        return t, at[0], at[1]

    def _sub_buffer(self, t: torch.Tensor, name: str) -> Tuple[torch.Tensor, int]:
        """t (staged when it must be) and a sub-buffer of its allocation that starts at its first
        element and ends with its last: the library's aliasing checks then compare exactly the
        bytes each tensor covers (the backward's compare whole buffers, and a strided or packed
        tensor's extent as the forward computes it can reach past its storage)."""
        t, mem, offset = self._locate(t, name, self.bridge.base_align)
        span = (sum((n - 1) * s for n, s in zip(t.shape, t.stride())) + 1) * t.element_size()
        sub = _ext.CudaSubBuffer(mem, offset, span)
        self.keep.append(sub)
        return t, sub.handle

    def tensor(self, t: torch.Tensor, name: str, varlen: bool) -> "_ext.Tensor":
        """A (B, S, H, d) or packed (total, H, d) tensor as the library's Tensor (elements)."""
        t, handle = self._sub_buffer(t, name)
        strides = t.stride()
        view = _ext.Tensor()
        view.buffer = handle
        if varlen:
            view.seq_stride, view.head_stride = strides[0], strides[1]
        else:
            view.batch_stride, view.seq_stride, view.head_stride = strides[0], strides[1], strides[2]
        return view

    def whole(self, t: torch.Tensor, name: str) -> int:
        """A cl_mem holding exactly dense t, for arguments the library takes without an offset."""
        return self._sub_buffer(t.contiguous(), name)[1]

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


def forward(q, k, v, options, alibi_slopes, mask, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k):
    """(out, lse) of flashcl's forward on CUDA tensors, both allocated in the pool."""
    call = _Call(q.device)
    with torch.cuda.device(q.device):
        a = call.args(q, k, v, options, alibi_slopes, mask, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k)
        varlen = cu_seqlens_q is not None
        with torch.cuda.use_mem_pool(call.pool, device=call.ordinal):
            out = torch.empty(q.shape, dtype=q.dtype, device=q.device)
            lse = torch.empty(_functional._lse_shape(a, q), dtype=torch.float32, device=q.device)
        a.o = call.tensor(out, "out", varlen)
        a.lse = call.whole(lse, "lse")
        need = _ext.workspace_bytes(call.bridge.device, a)
        if need:
            a.workspace = call.whole(call.empty((need,), torch.uint8), "workspace")
        _ext.cuda_forward(call.ordinal, call.stream(), a)
        _stats["calls"] += 1
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
        b.d_q, b.d_k, b.d_v = (call.tensor(g, n, varlen) for g, n in zip(grads, ("d_q", "d_k", "d_v")))
        d_bias = None
        if want_dbias:
            d_bias = call.empty(mask.shape, torch.float32)
            m = _ext.Mask()
            m.kind, m.batch, m.heads = MaskKind.Bias, a.mask.batch, a.mask.heads
            m.buffer = call.whole(d_bias, "d_bias")
            b.d_bias = m
        need = _ext.backward_workspace_bytes(call.bridge.device, b)
        if need:
            b.workspace = call.whole(call.empty((need,), torch.uint8), "workspace")
        _ext.cuda_backward(call.ordinal, call.stream(), b)
        _stats["calls"] += 1
    return grads[0], grads[1], grads[2], d_bias
