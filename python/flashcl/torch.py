"""flashcl for PyTorch: ``flash_attn_func`` and ``flash_attn_varlen_func`` with flash-attn 2's
signatures (switch by changing the import), built as in flash-attn's flash_attn_interface.py:
``torch.library`` custom ops (``flashcl::fwd``, ``flashcl::bwd``) with fake implementations so
``torch.compile`` treats them as opaque ops, one ``torch.autograd.Function`` that saves (q, k, v,
out, lse) and calls the backward op, and the public functions. CPU tensors go through host arrays
(``functional._host_attention``/``_host_backward``: a Session on the default device, PoCL's CPU
device here). CUDA tensors run on NVIDIA's OpenCL device of the same GPU without leaving it
(``flashcl.cuda``: tensors of its memory pool without copies, others copied device to device into
it); where that path is missing (no NVIDIA driver, no OpenCL device with the CUDA device's UUID)
they go through host copies, with a one-time warning that carries the reason. ``attention`` is the
general entry point (masks, biases with their gradient) the Hugging Face integration uses."""

import math
import warnings
from typing import Optional, Sequence, Tuple

import torch
from torch import Tensor

from . import cuda as _cuda
from . import functional as _functional
from ._flashcl import DType, Status

__all__ = ["flash_attn_func", "flash_attn_varlen_func", "attention"]

_STORAGE = {torch.float32: DType.F32, torch.float16: DType.F16, torch.bfloat16: DType.BF16}
_warned_copies = False


def _numpy(t: Optional[Tensor], dtype: torch.dtype = torch.float32):
    """A host numpy view of t in `dtype` (no copy when t already is a dense CPU tensor of it)."""
    if t is None:
        return None
    return t.detach().to(device="cpu", dtype=dtype).contiguous().numpy()


def _check_inputs(q: Tensor, k: Tensor, v: Tensor) -> None:
    for name, t in (("q", q), ("k", k), ("v", v)):
        if t.dtype not in _STORAGE:
            _functional._fail(Status.UnsupportedDType,
                              f"{name}: dtype {t.dtype} is not supported (float32, float16 or bfloat16)")
        if t.dtype != q.dtype:
            _functional._fail(Status.UnsupportedDType, f"{name}: dtype {t.dtype} differs from q's {q.dtype}")
        if t.device != q.device:
            _functional._fail(Status.InvalidArgument, f"{name}: device {t.device} differs from q's {q.device}")


def _on_cuda(q: Tensor) -> bool:
    """Whether q's call runs on the CUDA bridge; False for CPU tensors, and for other devices (or
    CUDA without a bridge) after a one-time warning that they are copied through the host."""
    global _warned_copies
    if q.device.type == "cpu":
        return False
    reason = f"no OpenCL path for {q.device.type} tensors"
    if q.device.type == "cuda":
        try:
            _cuda.bridge(q.device)
            return True
        except _functional.Error as e:
            if e.status == Status.InvalidArgument:
                raise  # a setting to fix (FLASHCL_CUDA_ORDER), not a missing driver to work around
            reason = str(e)
    if not _warned_copies:
        _warned_copies = True
        warnings.warn(f"flashcl: {q.device.type} tensors are copied to the host and back for each call ({reason})",
                      RuntimeWarning, stacklevel=4)
    return False


def _compiling() -> bool:
    """Whether torch.compile is tracing (the staging in _Attention.forward is left to the op then)."""
    compiler = getattr(torch, "compiler", None)
    return bool(compiler is not None and hasattr(compiler, "is_compiling") and compiler.is_compiling())


# ---- Custom ops: what torch.compile sees --------------------------------------------------------

@torch.library.custom_op("flashcl::fwd", mutates_args=())
def _fwd(q: Tensor, k: Tensor, v: Tensor, cu_seqlens_q: Optional[Tensor], cu_seqlens_k: Optional[Tensor],
         max_seqlen_q: int, max_seqlen_k: int, softmax_scale: float, causal: bool, window_left: int,
         window_right: int, softcap: float, alibi_slopes: Optional[Tensor], mask: Optional[Tensor]
         ) -> Tuple[Tensor, Tensor]:
    """(out, lse): out like q, lse float32 (B, H, Nq), or (H, total_q) with cu_seqlens."""
    _check_inputs(q, k, v)
    varlen = cu_seqlens_q is not None
    options = dict(causal=causal, window=(window_left, window_right), softcap=softcap, scale=softmax_scale,
                   algorithm="auto")
    if _on_cuda(q):
        return _cuda.forward(q, k, v, options, alibi_slopes, mask, cu_seqlens_q, cu_seqlens_k, max_seqlen_q,
                             max_seqlen_k)
    host_mask = None
    if mask is not None:
        host_mask = _numpy(mask, torch.bool if mask.dtype == torch.bool else torch.float32)
    o, lse = _functional._host_attention(
        _numpy(q), _numpy(k), _numpy(v), options, _numpy(alibi_slopes), host_mask,
        _numpy(cu_seqlens_q, torch.int32), _numpy(cu_seqlens_k, torch.int32),
        max_seqlen_q if varlen else None, max_seqlen_k if varlen else None, True, _STORAGE[q.dtype],
        _functional.session())
    out = torch.from_numpy(o).to(device=q.device, dtype=q.dtype)
    return out, torch.from_numpy(lse).to(q.device)


@_fwd.register_fake
def _fwd_fake(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, softmax_scale, causal, window_left,
              window_right, softcap, alibi_slopes, mask):
    if cu_seqlens_q is not None:
        lse_shape = (q.shape[1], q.shape[0])
    else:
        lse_shape = (q.shape[0], q.shape[2], q.shape[1])
    return torch.empty_like(q, memory_format=torch.contiguous_format), q.new_empty(lse_shape, dtype=torch.float32)


@torch.library.custom_op("flashcl::bwd", mutates_args=())
def _bwd(d_o: Tensor, q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor, cu_seqlens_q: Optional[Tensor],
         cu_seqlens_k: Optional[Tensor], max_seqlen_q: int, max_seqlen_k: int, softmax_scale: float, causal: bool,
         window_left: int, window_right: int, softcap: float, alibi_slopes: Optional[Tensor], mask: Optional[Tensor],
         deterministic: bool, want_dbias: bool) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """(dq, dk, dv, dbias): like q, k, v, and like mask with want_dbias (else an empty tensor)."""
    _check_inputs(q, k, v)
    varlen = cu_seqlens_q is not None
    options = dict(causal=causal, window=(window_left, window_right), softcap=softcap, scale=softmax_scale,
                   algorithm="auto")
    if _on_cuda(q):
        d_q, d_k, d_v, d_bias = _cuda.backward(d_o, q, k, v, out, lse, options, alibi_slopes, mask, cu_seqlens_q,
                                               cu_seqlens_k, max_seqlen_q, max_seqlen_k, deterministic, want_dbias)
        return d_q, d_k, d_v, d_bias if want_dbias else q.new_empty(0, dtype=torch.float32)
    host_mask = None
    if mask is not None:
        host_mask = _numpy(mask, torch.bool if mask.dtype == torch.bool else torch.float32)
    grads = _functional._host_backward(
        _numpy(d_o), _numpy(q), _numpy(k), _numpy(v), _numpy(out), _numpy(lse), options, _numpy(alibi_slopes),
        host_mask, _numpy(cu_seqlens_q, torch.int32), _numpy(cu_seqlens_k, torch.int32),
        max_seqlen_q if varlen else None, max_seqlen_k if varlen else None, deterministic, want_dbias,
        _STORAGE[q.dtype], _functional.session())
    d_q, d_k, d_v = (torch.from_numpy(g).to(device=q.device, dtype=q.dtype) for g in grads[:3])
    d_bias = torch.from_numpy(grads[3]).to(mask.device) if want_dbias else q.new_empty(0, dtype=torch.float32)
    return d_q, d_k, d_v, d_bias


@_bwd.register_fake
def _bwd_fake(d_o, q, k, v, out, lse, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, softmax_scale, causal,
              window_left, window_right, softcap, alibi_slopes, mask, deterministic, want_dbias):
    d_bias = torch.empty_like(mask, dtype=torch.float32) if want_dbias else q.new_empty(0, dtype=torch.float32)
    return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v), d_bias


# ---- Autograd ----------------------------------------------------------------------------------

class _Attention(torch.autograd.Function):
    """Forward through flashcl::fwd; saves (q, k, v, out, lse) for the backward."""

    @staticmethod
    def forward(ctx, q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, softmax_scale, causal,
                window, softcap, alibi_slopes, mask, deterministic):
        if q.device.type == "cuda" and not _compiling() and _on_cuda(q):
            # CUDA tensors from outside flashcl's pool are copied into it here rather than inside
            # the op, so that the copies are what is saved and the backward does not stage q, k
            # and v again (the originals are no longer held by this node: no more memory).
            q, k, v = (_cuda.resident(t) if t.device == q.device else t for t in (q, k, v))
        out, lse = torch.ops.flashcl.fwd(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
                                         softmax_scale, causal, window[0], window[1], softcap, alibi_slopes, mask)
        ctx.save_for_backward(q, k, v, out, lse, cu_seqlens_q, cu_seqlens_k, alibi_slopes, mask)
        ctx.options = (max_seqlen_q, max_seqlen_k, softmax_scale, causal, tuple(window), softcap, deterministic)
        ctx.mark_non_differentiable(lse)
        return out, lse

    @staticmethod
    def backward(ctx, d_out, d_lse):
        q, k, v, out, lse, cu_seqlens_q, cu_seqlens_k, alibi_slopes, mask = ctx.saved_tensors
        max_seqlen_q, max_seqlen_k, softmax_scale, causal, window, softcap, deterministic = ctx.options
        # The bias gets a gradient when it asks for one (a boolean mask and ALiBi slopes never do).
        want_dbias = mask is not None and mask.dtype != torch.bool and ctx.needs_input_grad[12]
        d_q, d_k, d_v, d_bias = torch.ops.flashcl.bwd(
            d_out.contiguous(), q, k, v, out, lse, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
            softmax_scale, causal, window[0], window[1], softcap, alibi_slopes, mask, deterministic, want_dbias)
        return (d_q, d_k, d_v, None, None, None, None, None, None, None, None, None,
                d_bias if want_dbias else None, None)


def _apply(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, dropout_p, softmax_scale, causal,
           window_size, softcap, alibi_slopes, mask, deterministic, return_lse):
    if dropout_p:
        raise NotImplementedError(f"flashcl: dropout_p = {dropout_p} is not supported (flashcl's attention has no "
                                  "dropout); pass dropout_p=0.0")
    if softmax_scale is None:
        softmax_scale = 1.0 / math.sqrt(q.shape[-1])
    window = (-1, -1) if window_size is None else (int(window_size[0]), int(window_size[1]))
    out, lse = _Attention.apply(q, k, v, cu_seqlens_q, cu_seqlens_k, int(max_seqlen_q), int(max_seqlen_k),
                                float(softmax_scale), bool(causal), window, float(softcap or 0.0), alibi_slopes,
                                mask, bool(deterministic))
    return (out, lse) if return_lse else out


def flash_attn_func(q: Tensor, k: Tensor, v: Tensor, dropout_p: float = 0.0, softmax_scale: Optional[float] = None,
                    causal: bool = False, window_size: Sequence[int] = (-1, -1), softcap: float = 0.0,
                    alibi_slopes: Optional[Tensor] = None, deterministic: bool = False,
                    return_attn_probs: bool = False):
    """flash-attn 2's ``flash_attn_func`` on flashcl.

    q: (B, Nq, H, d); k, v: (B, Nk, H_kv, d), H % H_kv == 0 (GQA/MQA); float32, float16 or bfloat16
    (arithmetic in fp32). softmax_scale defaults to 1/√d. causal is aligned to the bottom-right
    when Nq ≠ Nk (query i sees keys j ≤ i + Nk − Nq). window_size (left, right), -1 unbounded:
    query i sees keys in [i + Nk − Nq − left, i + Nk − Nq + right]. softcap > 0: scores
    s ← softcap·tanh(s/softcap). alibi_slopes: float32 (H,) or (B, H), bias −slope·|i + Nk − Nq − j|.
    dropout_p must be 0 (no dropout in flashcl). deterministic applies to the backward.
    Returns out (B, Nq, H, d); with return_attn_probs (out, softmax_lse (B, H, Nq) float32, None).
    """
    out = _apply(q, k, v, None, None, q.shape[1], k.shape[1], dropout_p, softmax_scale, causal, window_size, softcap,
                 alibi_slopes, None, deterministic, return_attn_probs)
    return (out[0], out[1], None) if return_attn_probs else out


def flash_attn_varlen_func(q: Tensor, k: Tensor, v: Tensor, cu_seqlens_q: Tensor, cu_seqlens_k: Tensor,
                           max_seqlen_q: int, max_seqlen_k: int, dropout_p: float = 0.0,
                           softmax_scale: Optional[float] = None, causal: bool = False,
                           window_size: Sequence[int] = (-1, -1), softcap: float = 0.0,
                           alibi_slopes: Optional[Tensor] = None, deterministic: bool = False,
                           return_attn_probs: bool = False, block_table: Optional[Tensor] = None):
    """flash-attn 2's ``flash_attn_varlen_func`` on flashcl.

    q: (total_q, H, d), k, v: (total_k, H_kv, d), the batch's sequences packed one after another;
    cu_seqlens_q/k: int32 (B + 1) cumulative offsets; max_seqlen_q/k: the longest sequences.
    Causal, window and ALiBi are aligned to the bottom-right of each sequence. Other arguments as
    ``flash_attn_func``. Returns out (total_q, H, d); with return_attn_probs (out, softmax_lse
    (H, total_q) float32, None). A paged KV cache (block_table) is not supported.
    """
    if block_table is not None:
        raise NotImplementedError("flashcl: block_table (paged KV cache) is not supported")
    out = _apply(q, k, v, cu_seqlens_q.to(torch.int32), cu_seqlens_k.to(torch.int32), max_seqlen_q, max_seqlen_k,
                 dropout_p, softmax_scale, causal, window_size, softcap, alibi_slopes, None, deterministic,
                 return_attn_probs)
    return (out[0], out[1], None) if return_attn_probs else out


def attention(q: Tensor, k: Tensor, v: Tensor, *, causal: bool = False, window: Sequence[int] = (-1, -1),
              softcap: float = 0.0, alibi_slopes: Optional[Tensor] = None, mask: Optional[Tensor] = None,
              scale: Optional[float] = None, cu_seqlens_q: Optional[Tensor] = None,
              cu_seqlens_k: Optional[Tensor] = None, max_seqlen_q: Optional[int] = None,
              max_seqlen_k: Optional[int] = None, deterministic: bool = False, return_lse: bool = False):
    """``flashcl.attention``'s arguments on torch tensors, differentiable: everything
    ``flash_attn_func``/``flash_attn_varlen_func`` take plus ``mask``, a boolean mask (False hides a
    key) or an additive float bias of shape (Nq, Nk) or (B or 1, H or 1, Nq, Nk) as SDPA's."""
    varlen = cu_seqlens_q is not None
    if varlen:
        cu_seqlens_q, cu_seqlens_k = cu_seqlens_q.to(torch.int32), cu_seqlens_k.to(torch.int32)
        if max_seqlen_q is None:
            max_seqlen_q = int((cu_seqlens_q[1:] - cu_seqlens_q[:-1]).max())
        if max_seqlen_k is None:
            max_seqlen_k = int((cu_seqlens_k[1:] - cu_seqlens_k[:-1]).max())
    else:
        max_seqlen_q, max_seqlen_k = q.shape[1], k.shape[1]
    if mask is not None and mask.dtype != torch.bool:
        mask = mask.to(torch.float32)
    return _apply(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, 0.0, scale, causal, window, softcap,
                  alibi_slopes, mask, deterministic, return_lse)
