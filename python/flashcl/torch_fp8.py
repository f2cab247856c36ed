"""FP8 attention on PyTorch tensors with FlashAttention-3's descale keywords (on flash-attn 2's
signature): ``float8_e4m3fn`` (or ``float8_e5m2``) q, k, v with float32 ``q_descale``/``k_descale``/
``v_descale`` of shape (B, H_kv) (dequantised value = element x descale; None: 1), O returned in
bfloat16, forward only (FA3 has no fp8 backward either). ``flashcl.torch.flash_attn_func`` and
``flash_attn_varlen_func`` come here when q is fp8; as in FA3, descales given with 16- or 32-bit
q are ignored. CPU tensors run on the default Session's own context through pyopencl (one copy in
of the bytes and descales, one copy out of O), on the fp8 paths of docs/FP8.md; CUDA tensors are
not supported yet (the CUDA bridge carries no fp8 call) and raise ``NotImplementedError``.
"""

import threading
from typing import Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from . import functional as _functional
from ._flashcl import Status
from ._torch_host import numpy_of

# torch's fp8 dtypes and flashcl's names for them (older torch builds may lack one)
FP8_DTYPES = {getattr(torch, name): fp8 for name, fp8 in (("float8_e4m3fn", "e4m3"), ("float8_e5m2", "e5m2"))
              if hasattr(torch, name)}

_queue = None  # a pyopencl queue on the default Session's own context, made on first use
_queue_lock = threading.Lock()


def _default_queue():
    """A pyopencl queue on the default Session's context (its device and compiled programs; not a
    device found again by index, which pyopencl's own ICD loader may order differently)."""
    global _queue
    with _queue_lock:
        if _queue is None:
            import pyopencl as cl

            _queue = cl.CommandQueue(cl.Context.from_int_ptr(_functional.session().context))
        return _queue


def is_fp8(q: Tensor) -> bool:
    """Whether a call takes the fp8 path: q fp8 (descales alone do not make one, as in FA3)."""
    return q.dtype in FP8_DTYPES


def fp8_attention(q: Tensor, k: Tensor, v: Tensor, descales: Sequence[Optional[Tensor]], cu_seqlens_q, cu_seqlens_k,
                  max_seqlen_q: Optional[int], max_seqlen_k: Optional[int], dropout_p: float,
                  softmax_scale: Optional[float], causal: bool, window_size: Sequence[int], softcap: float,
                  alibi_slopes: Optional[Tensor], return_lse: bool):
    """O (bfloat16, q's shape), and with return_lse the float32 LSE ((B, H, Nq), varlen (H, total_q))."""
    import pyopencl.array as cla

    if dropout_p:
        raise NotImplementedError(f"flashcl: dropout_p = {dropout_p} is not supported (flashcl's attention has no "
                                  "dropout); pass dropout_p=0.0")
    for name, t in (("q", q), ("k", k), ("v", v)):
        if t.dtype not in FP8_DTYPES:
            _functional._fail(Status.UnsupportedDType, f"{name}: fp8 attention takes float8_e4m3fn or float8_e5m2 "
                                                       f"tensors (with descales), got {t.dtype}")
        if t.dtype != q.dtype:
            _functional._fail(Status.UnsupportedDType, f"{name}: dtype {t.dtype} differs from q's {q.dtype}")
        if t.device.type != "cpu":
            raise NotImplementedError(f"flashcl: fp8 {t.device.type} tensors are not supported yet ({name}); "
                                      "CPU tensors run on the OpenCL device")
        if t.requires_grad and torch.is_grad_enabled():
            raise NotImplementedError(f"flashcl: fp8 attention has no backward ({name} requires grad)")
    others = zip(("q_descale", "k_descale", "v_descale", "alibi_slopes", "cu_seqlens_q", "cu_seqlens_k"),
                 (*descales, alibi_slopes, cu_seqlens_q, cu_seqlens_k))
    for name, t in others:
        if t is not None and t.device.type != "cpu":
            raise NotImplementedError(f"flashcl: fp8 attention takes CPU tensors; {name} is on {t.device}")
        if t is not None and t.requires_grad and torch.is_grad_enabled():
            raise NotImplementedError(f"flashcl: fp8 attention has no backward ({name} requires grad)")
    varlen = cu_seqlens_q is not None
    batch = (cu_seqlens_q.shape[0] - 1) if varlen else q.shape[0]
    heads_kv = k.shape[-2]
    queue = _default_queue()

    def device_bytes(t: Tensor):
        return cla.to_device(queue, t.detach().contiguous().view(torch.uint8).numpy())

    def descale(d: Optional[Tensor], name: str):
        """The host values (the library reads them back and checks them: finite and > 0)."""
        if d is None:  # FA3's default: no scaling
            return np.ones((batch, heads_kv), np.float32)
        if tuple(d.shape) != (batch, heads_kv):
            _functional._fail(Status.InvalidArgument, f"fp8.{name}: expected shape ({batch}, {heads_kv}) (B, H_kv), "
                                                      f"got {tuple(d.shape)}")
        return numpy_of(d, torch.float32)

    window = _functional._window_pair(window_size, "window_size")
    result = _functional.attention(
        device_bytes(q), device_bytes(k), device_bytes(v), dtype=FP8_DTYPES[q.dtype],
        descales=tuple(descale(d, n) for d, n in zip(descales, ("q_descale", "k_descale", "v_descale"))),
        out_dtype="bf16", causal=bool(causal), window=window, softcap=float(softcap or 0.0),
        alibi_slopes=numpy_of(alibi_slopes, torch.float32), scale=softmax_scale,
        cu_seqlens_q=numpy_of(cu_seqlens_q if varlen else None, torch.int32),
        cu_seqlens_k=numpy_of(cu_seqlens_k if varlen else None, torch.int32),
        max_seqlen_q=max_seqlen_q if varlen else None, max_seqlen_k=max_seqlen_k if varlen else None,
        return_lse=return_lse, queue=queue)
    o, lse = result if return_lse else (result, None)
    cu = numpy_of(cu_seqlens_q if varlen else None, torch.int32)  # rows of no sequence: O 0, LSE -inf
    out = torch.from_numpy(_functional._cleared_outside(o.get(), cu, 0)).view(torch.bfloat16).to(q.device)
    if not return_lse:
        return out  # (bf16 O arrives as its uint16 bits)
    return out, torch.from_numpy(_functional._cleared_outside(lse.get(), cu, -np.inf, axis=1)).to(q.device)
