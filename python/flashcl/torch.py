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
general entry point (masks, biases with their gradient) the Hugging Face integration uses.
``flash_attn_with_kvcache`` is flash-attn 2's decode step (the ``flashcl::fwd_kvcache`` custom op,
mutating the caches, inference only as flash-attn's): CPU tensors through ``Session::forward_kvcache``
on host arrays (float32 caches appended into in place), CUDA tensors through ``flashcl.cuda`` in
place. fp8 tensors with FlashAttention-3's ``q_descale``/``k_descale``/``v_descale`` take the
forward-only path of ``flashcl.torch_fp8``."""

import math
import numbers
import warnings
from typing import Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from . import _flashcl as _ext
from . import cuda as _cuda
from . import functional as _functional
from . import torch_fp8 as _fp8
from ._torch_host import numpy_of as _numpy
from ._flashcl import DType, Status

__all__ = ["flash_attn_func", "flash_attn_varlen_func", "flash_attn_with_kvcache", "attention"]

_STORAGE = {torch.float32: DType.F32, torch.float16: DType.F16, torch.bfloat16: DType.BF16}
_warned_copies = False


def _check_inputs(q: Tensor, k: Tensor, v: Tensor) -> None:
    for name, t in (("q", q), ("k", k), ("v", v)):
        if t.dtype not in _STORAGE:
            _functional._fail(Status.UnsupportedDType,
                              f"{name}: dtype {t.dtype} is not supported (float32, float16 or bfloat16)")
        if t.dtype != q.dtype:
            _functional._fail(Status.UnsupportedDType, f"{name}: dtype {t.dtype} differs from q's {q.dtype}")
        if t.device != q.device:
            _functional._fail(Status.InvalidArgument, f"{name}: device {t.device} differs from q's {q.device}")


def _check_call(q, k, v, cu_seqlens_q, cu_seqlens_k, alibi_slopes, mask, window_size) -> None:
    """The public functions' checks before the custom op: torch tensors, a head dim, every tensor
    argument on q's device (PyTorch sends a call with any meta tensor to the op's fake, which would
    hand back uninitialised memory), a (left, right) window, integer offsets and ALiBi slopes of
    (H,) or (B, H)."""
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, Tensor):
            _functional._fail(Status.InvalidArgument, f"{name}: expected a torch tensor, got {type(t).__name__} "
                                                      "(flashcl.attention takes numpy arrays and pyopencl Arrays)")
    if q.dim() == 0 or q.shape[-1] < 1:
        _functional._fail(Status.InvalidArgument, f"q: shape {tuple(q.shape)} has no head dim (expected (B, S, H, d) "
                                                  "or packed (total, H, d), d >= 1)")
    others = (("k", k), ("v", v), ("cu_seqlens_q", cu_seqlens_q), ("cu_seqlens_k", cu_seqlens_k),
              ("alibi_slopes", alibi_slopes), ("mask", mask))
    for name, t in others:
        if t is not None and not isinstance(t, Tensor):
            _functional._fail(Status.InvalidArgument, f"{name}: expected a torch tensor, got {type(t).__name__}")
        if t is not None and t.device != q.device:
            _functional._fail(Status.InvalidArgument, f"{name}: device {t.device} differs from q's {q.device}")
    if window_size is not None:
        _functional._window_pair(window_size, "window_size")
    if alibi_slopes is not None and not alibi_slopes.is_floating_point():
        _functional._fail(Status.InvalidArgument, f"alibi_slopes: expected floats, got {alibi_slopes.dtype}")
    if (cu_seqlens_q is None) != (cu_seqlens_k is None):
        _functional._fail(Status.InvalidArgument, "cu_seqlens_q, cu_seqlens_k: give both or neither")
    for name, cu in (("cu_seqlens_q", cu_seqlens_q), ("cu_seqlens_k", cu_seqlens_k)):
        if cu is None:
            continue
        if cu.dtype not in (torch.int32, torch.int64) or cu.dim() != 1 or cu.shape[0] < 2:
            _functional._fail(Status.InvalidArgument, f"{name}: expected a 1-d int32 tensor of B + 1 offsets, got "
                                                      f"{cu.dtype} of shape {tuple(cu.shape)}")
        if cu.dtype == torch.int64 and cu.device.type == "cpu" and not _compiling():  # (values: not while tracing)
            _functional._check_int32_values(cu, name)
    if alibi_slopes is not None:
        batch = cu_seqlens_q.shape[0] - 1 if cu_seqlens_q is not None else q.shape[0]
        _functional._check_slopes_shape(alibi_slopes.shape, batch, q.shape[-2] if q.dim() >= 2 else 0)


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
    # dense, as the real op returns them whatever the inputs' strides (transposed views included)
    dense = torch.contiguous_format
    d_bias = (torch.empty_like(mask, dtype=torch.float32, memory_format=dense) if want_dbias
              else q.new_empty(0, dtype=torch.float32))
    return (torch.empty_like(q, memory_format=dense), torch.empty_like(k, memory_format=dense),
            torch.empty_like(v, memory_format=dense), d_bias)


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


def _described(t) -> str:
    return f"shape {tuple(t.shape)}" if isinstance(t, Tensor) else type(t).__name__


def _scale_and_window(q: Tensor, softmax_scale: Optional[float], window_size) -> Tuple[float, Tuple[int, int]]:
    """The forward's and the backward's defaults: scale 1/sqrt(d), window (-1, -1) (unbounded)."""
    scale = 1.0 / math.sqrt(q.shape[-1]) if softmax_scale is None else float(softmax_scale)
    window = (-1, -1) if window_size is None else _functional._window_pair(window_size, "window_size")
    return scale, window


def _distinct(*tensors):
    """The tensors, each one that already came earlier in the list replaced by a view of it."""
    seen = []
    out = []
    for t in tensors:
        if t is not None and any(t is s for s in seen):
            t = t.view_as(t)
        seen.append(t)
        out.append(t)
    return out


def _apply(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, dropout_p, softmax_scale, causal,
           window_size, softcap, alibi_slopes, mask, deterministic, return_lse):
    if dropout_p:
        raise NotImplementedError(f"flashcl: dropout_p = {dropout_p} is not supported (flashcl's attention has no "
                                  "dropout); pass dropout_p=0.0")
    _check_call(q, k, v, cu_seqlens_q, cu_seqlens_k, alibi_slopes, mask, window_size)
    softmax_scale, window = _scale_and_window(q, softmax_scale, window_size)
    for name, n in (("max_seqlen_q", max_seqlen_q), ("max_seqlen_k", max_seqlen_k)):
        if isinstance(n, torch.SymInt):  # (under torch.compile: the shape's own)
            continue
        if isinstance(n, bool) or not isinstance(n, numbers.Integral):
            _functional._fail(Status.InvalidArgument, f"{name}: expected an integer, got {type(n).__name__}")
        if not 0 <= n < 2**31:
            _functional._fail(Status.InvalidArgument, f"{name}: {n} does not fit int32")
    # a tensor passed twice (flash_attn_func(q, kv, kv); cu_seqlens_q is cu_seqlens_k, as
    # self-attention and transformers pass them) goes in as a view the second time: an
    # autograd.Function given one tensor twice breaks torch.compile's graph ("duplicate tensor
    # input"); the values and gradients are the same
    q, k, v, cu_seqlens_q, cu_seqlens_k, alibi_slopes, mask = _distinct(q, k, v, cu_seqlens_q, cu_seqlens_k,
                                                                         alibi_slopes, mask)
    out, lse = _Attention.apply(q, k, v, cu_seqlens_q, cu_seqlens_k, int(max_seqlen_q), int(max_seqlen_k),
                                float(softmax_scale), bool(causal), window, float(softcap or 0.0), alibi_slopes,
                                mask, bool(deterministic))
    return (out, lse) if return_lse else out


def flash_attn_func(q: Tensor, k: Tensor, v: Tensor, dropout_p: float = 0.0, softmax_scale: Optional[float] = None,
                    causal: bool = False, window_size: Sequence[int] = (-1, -1), softcap: float = 0.0,
                    alibi_slopes: Optional[Tensor] = None, deterministic: bool = False,
                    return_attn_probs: bool = False, *, q_descale: Optional[Tensor] = None,
                    k_descale: Optional[Tensor] = None, v_descale: Optional[Tensor] = None):
    """flash-attn 2's ``flash_attn_func`` on flashcl.

    q: (B, Nq, H, d); k, v: (B, Nk, H_kv, d), H % H_kv == 0 (GQA/MQA); float32, float16 or bfloat16
    (arithmetic in fp32). softmax_scale defaults to 1/√d. causal is aligned to the bottom-right
    when Nq ≠ Nk (query i sees keys j ≤ i + Nk − Nq). window_size (left, right), -1 unbounded:
    query i sees keys in [i + Nk − Nq − left, i + Nk − Nq + right]. softcap > 0: scores
    s ← softcap·tanh(s/softcap). alibi_slopes: float32 (H,) or (B, H), bias −slope·|i + Nk − Nq − j|.
    dropout_p must be 0 (no dropout in flashcl). deterministic applies to the backward.
    Returns out (B, Nq, H, d); with return_attn_probs (out, softmax_lse (B, H, Nq) float32, None).
    FP8 with FlashAttention-3's descale keywords: float8_e4m3fn/float8_e5m2 q, k, v with float32
    q_descale, k_descale, v_descale of shape (B, H_kv) (None: 1); O in bfloat16; forward only, CPU
    tensors (``flashcl.torch_fp8``). As in FA3, descales are ignored when q is not fp8.
    """
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, Tensor) or t.dim() != 4:
            _functional._fail(Status.InvalidArgument, f"{name}: expected a torch tensor of 4 dimensions (B, S, H, d), "
                                                      f"got {_described(t)}")
    _check_call(q, k, v, None, None, alibi_slopes, None, window_size)
    if _fp8.is_fp8(q):
        out = _fp8.fp8_attention(q, k, v, (q_descale, k_descale, v_descale), None, None, None, None, dropout_p, softmax_scale, causal,
                                 window_size, softcap, alibi_slopes, return_attn_probs)
        return (out[0], out[1], None) if return_attn_probs else out
    out = _apply(q, k, v, None, None, q.shape[1], k.shape[1], dropout_p, softmax_scale, causal, window_size, softcap,
                 alibi_slopes, None, deterministic, return_attn_probs)
    return (out[0], out[1], None) if return_attn_probs else out


def flash_attn_varlen_func(q: Tensor, k: Tensor, v: Tensor, cu_seqlens_q: Tensor, cu_seqlens_k: Tensor,
                           max_seqlen_q: int, max_seqlen_k: int, dropout_p: float = 0.0,
                           softmax_scale: Optional[float] = None, causal: bool = False,
                           window_size: Sequence[int] = (-1, -1), softcap: float = 0.0,
                           alibi_slopes: Optional[Tensor] = None, deterministic: bool = False,
                           return_attn_probs: bool = False, block_table: Optional[Tensor] = None, *,
                           q_descale: Optional[Tensor] = None, k_descale: Optional[Tensor] = None,
                           v_descale: Optional[Tensor] = None):
    """flash-attn 2's ``flash_attn_varlen_func`` on flashcl.

    q: (total_q, H, d), k, v: (total_k, H_kv, d), the batch's sequences packed one after another;
    cu_seqlens_q/k: int32 (B + 1) cumulative offsets; max_seqlen_q/k: the longest sequences.
    Causal, window and ALiBi are aligned to the bottom-right of each sequence. Other arguments as
    ``flash_attn_func``. Returns out (total_q, H, d); with return_attn_probs (out, softmax_lse
    (H, total_q) float32, None). Buffers may hold rows past cu_seqlens[-1] (padded, as flash-attn
    allows) and before cu_seqlens[0]: they are not read, and their O, LSE and gradients are 0, -inf
    and 0 on CPU tensors, fp8 included
    (left as allocated on CUDA tensors, as flash-attn leaves them). A paged KV cache (block_table)
    is not supported. FP8 as
    ``flash_attn_func`` (descales (B, H_kv), B the number of sequences).
    """
    if block_table is not None:
        raise NotImplementedError("flashcl: block_table (paged KV cache) is not supported")
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, Tensor) or t.dim() != 3:
            _functional._fail(Status.InvalidArgument, f"{name}: expected a torch tensor of 3 dimensions (total, H, d), "
                                                      f"got {_described(t)}")
    for name, cu in (("cu_seqlens_q", cu_seqlens_q), ("cu_seqlens_k", cu_seqlens_k)):
        if not isinstance(cu, Tensor):
            _functional._fail(Status.InvalidArgument, f"{name}: expected an int32 tensor of B + 1 offsets, got "
                                                      f"{type(cu).__name__}")
    _check_call(q, k, v, cu_seqlens_q, cu_seqlens_k, alibi_slopes, None, window_size)
    if _fp8.is_fp8(q):
        out = _fp8.fp8_attention(q, k, v, (q_descale, k_descale, v_descale), cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, dropout_p,
                                 softmax_scale, causal, window_size, softcap, alibi_slopes, return_attn_probs)
        return (out[0], out[1], None) if return_attn_probs else out
    out = _apply(q, k, v, cu_seqlens_q.to(torch.int32), cu_seqlens_k.to(torch.int32), max_seqlen_q, max_seqlen_k,
                 dropout_p, softmax_scale, causal, window_size, softcap, alibi_slopes, None, deterministic,
                 return_attn_probs)
    return (out[0], out[1], None) if return_attn_probs else out


def _lengths_and_mask(q: Tensor, k: Tensor, cu_seqlens_q: Optional[Tensor], cu_seqlens_k: Optional[Tensor],
                      max_seqlen_q: Optional[int], max_seqlen_k: Optional[int], mask: Optional[Tensor]):
    """attention's and attention_backward's defaults: int32 offsets, the longest sequences, a float
    bias as float32."""
    if cu_seqlens_q is not None:
        cu_seqlens_q, cu_seqlens_k = cu_seqlens_q.to(torch.int32), cu_seqlens_k.to(torch.int32)
        if max_seqlen_q is None:
            max_seqlen_q = int((cu_seqlens_q[1:] - cu_seqlens_q[:-1]).max())
        if max_seqlen_k is None:
            max_seqlen_k = int((cu_seqlens_k[1:] - cu_seqlens_k[:-1]).max())
    else:
        max_seqlen_q, max_seqlen_k = q.shape[1], k.shape[1]
    if mask is not None and mask.dtype == torch.uint8:
        mask = mask.bool()  # 0 hides a key, as numpy's uint8 masks and the C API's
    elif mask is not None and mask.dtype != torch.bool:
        if not mask.is_floating_point():
            _functional._fail(Status.InvalidArgument, f"mask: dtype {mask.dtype} is neither boolean (bool/uint8: 0 "
                                                      "hides a key) nor a float bias")
        mask = mask.to(torch.float32)
    return cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, mask


def attention(q: Tensor, k: Tensor, v: Tensor, *, causal: bool = False, window: Sequence[int] = (-1, -1),
              softcap: float = 0.0, alibi_slopes: Optional[Tensor] = None, mask: Optional[Tensor] = None,
              scale: Optional[float] = None, cu_seqlens_q: Optional[Tensor] = None,
              cu_seqlens_k: Optional[Tensor] = None, max_seqlen_q: Optional[int] = None,
              max_seqlen_k: Optional[int] = None, deterministic: bool = False, return_lse: bool = False):
    """``flashcl.attention``'s arguments on torch tensors, differentiable: everything
    ``flash_attn_func``/``flash_attn_varlen_func`` take plus ``mask``, a boolean mask (False hides a
    key) or an additive float bias of shape (Nq, Nk) or (B or 1, H or 1, Nq, Nk) as SDPA's.
    ``flashcl.attention`` comes here for torch tensors."""
    _check_call(q, k, v, cu_seqlens_q, cu_seqlens_k, alibi_slopes, mask, window)
    cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, mask = _lengths_and_mask(
        q, k, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, mask)
    return _apply(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, 0.0, scale, causal, window, softcap,
                  alibi_slopes, mask, deterministic, return_lse)


def attention_backward(d_o: Tensor, q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor, *,
                       causal: bool = False, window: Sequence[int] = (-1, -1), softcap: float = 0.0,
                       alibi_slopes: Optional[Tensor] = None, mask: Optional[Tensor] = None,
                       scale: Optional[float] = None, cu_seqlens_q: Optional[Tensor] = None,
                       cu_seqlens_k: Optional[Tensor] = None, max_seqlen_q: Optional[int] = None,
                       max_seqlen_k: Optional[int] = None, deterministic: bool = False, return_dbias: bool = False):
    """``flashcl.attention_backward``'s arguments on torch tensors (``flashcl.attention_backward``
    comes here for them): (dq, dk, dv), and the float bias's gradient with ``return_dbias``, through
    the op the autograd Function's backward calls. ``out`` and ``lse`` are the forward's
    (``attention(..., return_lse=True)``); every other argument must be the forward's."""
    if return_dbias and (mask is None or mask.dtype in (torch.bool, torch.uint8)):
        _functional._fail(Status.InvalidArgument, "d_bias: return_dbias needs an additive float bias as mask")
    _check_call(q, k, v, cu_seqlens_q, cu_seqlens_k, alibi_slopes, mask, window)
    for name, t in (("d_o", d_o), ("out", out), ("lse", lse)):
        if not isinstance(t, Tensor) or t.device != q.device:
            _functional._fail(Status.InvalidArgument, f"{name}: expected a torch tensor on q's device {q.device}, got "
                                                      f"{t.device if isinstance(t, Tensor) else type(t).__name__}")
    for name, t in (("d_o", d_o), ("out", out)):  # read as q's layout and type: anything else is wrong gradients
        if tuple(t.shape) != tuple(q.shape) or t.dtype != q.dtype:
            _functional._fail(Status.InvalidArgument, f"{name}: {t.dtype} of shape {tuple(t.shape)} differs from q's "
                                                      f"{q.dtype} {tuple(q.shape)}")
    _functional._check_lse(lse, q)
    lse = lse.float()
    cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, mask = _lengths_and_mask(
        q, k, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, mask)
    softmax_scale, window = _scale_and_window(q, scale, window)
    d_q, d_k, d_v, d_bias = torch.ops.flashcl.bwd(
        d_o.contiguous(), q, k, v, out, lse, cu_seqlens_q, cu_seqlens_k, int(max_seqlen_q), int(max_seqlen_k),
        softmax_scale, bool(causal), window[0], window[1], float(softcap or 0.0), alibi_slopes, mask,
        bool(deterministic), bool(return_dbias))
    return (d_q, d_k, d_v, d_bias) if return_dbias else (d_q, d_k, d_v)


# ---- KV cache (decode): flash_attn_with_kvcache ------------------------------------------------

def _kvcache_args(q: Tensor, k_cache: Tensor, k: Optional[Tensor], rotary_cos: Optional[Tensor],
                  block_table: Optional[Tensor], softmax_scale: float, causal: bool, window_left: int,
                  window_right: int, softcap: float, rotary_interleaved: bool, alibi_slopes: Optional[Tensor],
                  num_splits: int) -> "_ext.KvCacheArgs":
    """KvCacheArgs with the call's sizes and switches; tensors dense unless flashcl.cuda sets strides."""
    a = _ext.KvCacheArgs()
    a.batch, a.seqlen_q, a.heads, a.head_dim = (int(n) for n in q.shape)
    a.heads_kv = int(k_cache.shape[2])
    a.dtype = _STORAGE[q.dtype]
    a.scale = float(softmax_scale)
    a.causal = bool(causal)
    window = _ext.Window()
    window.left, window.right = int(window_left), int(window_right)
    a.window = window
    a.softcap = float(softcap)
    if block_table is not None:
        a.num_pages, a.page_size = int(k_cache.shape[0]), int(k_cache.shape[1])
        a.max_pages = int(block_table.shape[1])
    else:
        a.cache_batch, a.cache_seqlen = int(k_cache.shape[0]), int(k_cache.shape[1])
    if k is not None:
        a.seqlen_new = int(k.shape[1])
    if rotary_cos is not None:
        a.rotary_seqlen, a.rotary_dim = int(rotary_cos.shape[0]), 2 * int(rotary_cos.shape[1])
        a.rotary_interleaved = bool(rotary_interleaved)
    if alibi_slopes is not None:
        a.alibi_per_batch = alibi_slopes.dim() == 2
    a.num_splits = _functional._int32_size(num_splits, "num_splits")
    return a


def _share_elements(a: Tensor, b: Tensor) -> bool:
    """Whether two tensors have an element in common: exactly on the CPU (numpy's shares_memory over
    same-width integer views, so an interleaved pool's disjoint views pass), by byte extents
    elsewhere."""
    if a.untyped_storage().data_ptr() != b.untyped_storage().data_ptr():
        return False
    if a.device.type == "cpu":
        import numpy as np
        ints = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
        return bool(np.shares_memory(a.detach().view(ints[a.element_size()]).numpy(),
                                     b.detach().view(ints[b.element_size()]).numpy()))

    def extent(t: Tensor) -> Tuple[int, int]:
        lo = t.storage_offset() * t.element_size()
        span = sum((n - 1) * s for n, s in zip(t.shape, t.stride())) + 1 if t.numel() else 0
        return lo, lo + span * t.element_size()
    (a_lo, a_hi), (b_lo, b_hi) = extent(a), extent(b)
    return a_lo < b_hi and b_lo < a_hi


def _host_kvcache(args, q, k_cache, v_cache, cache_seqlens, k, v, rotary_cos, rotary_sin, cache_batch_idx,
                  block_table, alibi_slopes) -> Tuple[Tensor, Tensor]:
    """The call on the default Session (PoCL's CPU device here) through Session.forward_kvcache, on
    dense float32 CPU tensors (int32 for the indices): the caller's own tensors where they are such,
    so that a float32 cache is appended into in place (no copy at all where the device shares host
    memory and the cache meets its base address alignment; else the Session copies it in and only
    the appended rows back); other caches (float16/bfloat16, strided views) are converted into dense
    float32 copies, stored by the Session in q's dtype, and copied back into the caller's tensors
    after an append. O and LSE are written into fresh float32 tensors."""
    def host(t: Optional[Tensor], dtype: torch.dtype = torch.float32) -> Optional[Tensor]:
        return None if t is None else t.to(device="cpu", dtype=dtype).contiguous()

    if k is not None and _share_elements(k_cache, v_cache):  # (copies' write-backs would meet)
        _functional._fail(Status.InvalidArgument, "v_cache: shares memory with k_cache, which k is appended into")
    k_host, v_host = host(k_cache), host(v_cache)
    out = torch.empty(q.shape, dtype=torch.float32)
    lse = torch.empty((q.shape[0], q.shape[2], q.shape[1]), dtype=torch.float32)
    _functional.session().forward_kvcache(
        args, host(q), k_host, v_host, host(cache_seqlens, torch.int32), out, lse=lse, k_new=host(k), v_new=host(v),
        cache_batch_idx=host(cache_batch_idx, torch.int32), block_table=host(block_table, torch.int32),
        rotary_cos=host(rotary_cos), rotary_sin=host(rotary_sin), alibi_slopes=host(alibi_slopes))
    if k is not None:
        for cache, written in ((k_cache, k_host), (v_cache, v_host)):
            if written is not cache:
                cache.copy_(written)
    return out.to(device=q.device, dtype=q.dtype), lse.to(q.device)


@torch.library.custom_op("flashcl::fwd_kvcache", mutates_args=("k_cache", "v_cache"))
def _fwd_kvcache(q: Tensor, k_cache: Tensor, v_cache: Tensor, cache_seqlens: Tensor, k: Optional[Tensor],
                 v: Optional[Tensor], rotary_cos: Optional[Tensor], rotary_sin: Optional[Tensor],
                 cache_batch_idx: Optional[Tensor], block_table: Optional[Tensor], softmax_scale: float, causal: bool,
                 window_left: int, window_right: int, softcap: float, rotary_interleaved: bool,
                 alibi_slopes: Optional[Tensor], num_splits: int) -> Tuple[Tensor, Tensor]:
    """(out like q, lse float32 (B, H, Nq)); k and v appended into k_cache and v_cache in place."""
    args = _kvcache_args(q, k_cache, k, rotary_cos, block_table, softmax_scale, causal, window_left, window_right,
                         softcap, rotary_interleaved, alibi_slopes, num_splits)
    tensors = (q, k_cache, v_cache, cache_seqlens, k, v, rotary_cos, rotary_sin, cache_batch_idx, block_table,
               alibi_slopes)
    if _on_cuda(q):
        return _cuda.forward_kvcache(args, *tensors)
    return _host_kvcache(args, *tensors)


@_fwd_kvcache.register_fake
def _fwd_kvcache_fake(q, k_cache, v_cache, cache_seqlens, k, v, rotary_cos, rotary_sin, cache_batch_idx, block_table,
                      softmax_scale, causal, window_left, window_right, softcap, rotary_interleaved, alibi_slopes,
                      num_splits):
    lse = q.new_empty((q.shape[0], q.shape[2], q.shape[1]), dtype=torch.float32)
    return torch.empty_like(q, memory_format=torch.contiguous_format), lse


def _is_integer(t: Tensor) -> bool:
    return not t.is_floating_point() and not t.is_complex() and t.dtype != torch.bool


def _check_kvcache(q: Tensor, k_cache: Tensor, v_cache: Tensor, k: Optional[Tensor], v: Optional[Tensor],
                   rotary_cos: Optional[Tensor], rotary_sin: Optional[Tensor], cache_batch_idx: Optional[Tensor],
                   block_table: Optional[Tensor], alibi_slopes: Optional[Tensor]) -> None:
    """What only the tensors show (dimensions, dtypes, devices, the caches' last stride, emptiness),
    named as the library names its arguments; ranges and consistency are the library's to check."""
    fail = _functional._fail
    if not isinstance(q, Tensor) or q.dim() != 4:
        fail(Status.InvalidArgument, f"q: expected a 4-dimensional tensor (B, Nq, H, d), got "
                                     f"{tuple(q.shape) if isinstance(q, Tensor) else type(q).__name__}")
    if q.dtype not in _STORAGE:
        fail(Status.UnsupportedDType, f"q: dtype {q.dtype} is not supported (float32, float16 or bfloat16)")
    batch, _, heads, head_dim = q.shape
    given = {name: t for name, t in (("k_cache", k_cache), ("v_cache", v_cache), ("k", k), ("v", v),
                                     ("rotary_cos", rotary_cos), ("rotary_sin", rotary_sin),
                                     ("cache_batch_idx", cache_batch_idx), ("block_table", block_table),
                                     ("alibi_slopes", alibi_slopes)) if t is not None}
    for name, t in given.items():
        if not isinstance(t, Tensor):
            fail(Status.InvalidArgument, f"{name}: expected a tensor, got {type(t).__name__}")
        if t.device != q.device:
            fail(Status.InvalidArgument, f"{name}: device {t.device} differs from q's {q.device}")
    for name, t in (("q", q), *given.items()):
        if t.numel() == 0:
            fail(Status.InvalidArgument, f"{name}: empty tensors are not supported (shape {tuple(t.shape)})")
    paged = block_table is not None
    layout = "(num_blocks, page_block_size, H_kv, d)" if paged else "(B_cache, S_cache, H_kv, d)"
    for name, t in (("k_cache", k_cache), ("v_cache", v_cache)):
        if t.dim() != 4 or t.shape[3] != head_dim:
            fail(Status.InvalidArgument, f"{name}: expected {layout} with d = {head_dim} (q's), got shape "
                                         f"{tuple(t.shape)}")
        if t.dtype != q.dtype:
            fail(Status.UnsupportedDType, f"{name}: dtype {t.dtype} differs from q's {q.dtype} (the caches are "
                                          "stored as q's dtype)")
        if t.stride(-1) != 1:
            fail(Status.InvalidArgument, f"{name}: the last dimension must be contiguous (stride 1), got stride "
                                         f"{t.stride(-1)}")
    if v_cache.shape != k_cache.shape:
        fail(Status.InvalidArgument, f"v_cache: shape {tuple(v_cache.shape)} differs from k_cache's "
                                     f"{tuple(k_cache.shape)}")
    if (k is None) != (v is None):
        fail(Status.InvalidArgument, f"{'k' if k is None else 'v'}: k and v go together (both appended, or neither)")
    if k is not None:
        for name, t in (("k", k), ("v", v)):
            if t.dim() != 4 or t.shape[0] != batch or tuple(t.shape[2:]) != tuple(k_cache.shape[2:]):
                fail(Status.InvalidArgument, f"{name}: expected (B, seqlen_new, H_kv, d) = ({batch}, n, "
                                             f"{k_cache.shape[2]}, {head_dim}), got shape {tuple(t.shape)}")
            if t.dtype != q.dtype:
                fail(Status.UnsupportedDType, f"{name}: dtype {t.dtype} differs from q's {q.dtype}")
        if v.shape != k.shape:
            fail(Status.InvalidArgument, f"v: shape {tuple(v.shape)} differs from k's {tuple(k.shape)}")
        for name, t in (("k_cache", k_cache), ("v_cache", v_cache)):
            if 0 in t.stride()[:3] and t.numel() > t.shape[-1]:  # (PyTorch refused it only after the kernels)
                fail(Status.InvalidArgument, f"{name}: an expanded tensor (a stride of 0, strides "
                                             f"{tuple(t.stride())}) cannot be appended into")
    if (rotary_cos is None) != (rotary_sin is None):
        fail(Status.InvalidArgument, f"{'rotary_cos' if rotary_cos is None else 'rotary_sin'}: rotary_cos and "
                                     "rotary_sin go together")
    if rotary_cos is not None:
        if k is None:
            fail(Status.InvalidArgument, "rotary_cos: the rotary embedding applies to q and the appended k; pass k "
                                         "and v with it (as flash-attn requires)")
        for name, t in (("rotary_cos", rotary_cos), ("rotary_sin", rotary_sin)):
            if t.dim() != 2 or not t.is_floating_point():
                fail(Status.InvalidArgument, f"{name}: expected a floating (seqlen_ro, rotary_dim / 2) tensor, got "
                                             f"{t.dtype} {tuple(t.shape)}")
        if rotary_sin.shape != rotary_cos.shape:
            fail(Status.InvalidArgument, f"rotary_sin: shape {tuple(rotary_sin.shape)} differs from rotary_cos's "
                                         f"{tuple(rotary_cos.shape)}")
    if cache_batch_idx is not None and (cache_batch_idx.shape != (batch,) or not _is_integer(cache_batch_idx)):
        fail(Status.InvalidArgument, f"cache_batch_idx: expected an int32 tensor of shape ({batch},), got "
                                     f"{cache_batch_idx.dtype} {tuple(cache_batch_idx.shape)}")
    if paged and (block_table.dim() != 2 or block_table.shape[0] != batch or not _is_integer(block_table)):
        fail(Status.InvalidArgument, f"block_table: expected an int32 tensor of shape ({batch}, max_blocks), got "
                                     f"{block_table.dtype} {tuple(block_table.shape)}")
    # int64 host indices are converted to int32: a value past its range would wrap to a valid-looking one
    for name, index in (("cache_batch_idx", cache_batch_idx), ("block_table", block_table)):
        if index is not None and index.dtype == torch.int64 and index.device.type == "cpu" and not _compiling():
            _functional._check_int32_values(index, name)
    if alibi_slopes is not None:
        if not alibi_slopes.is_floating_point():
            fail(Status.UnsupportedDType, f"alibi_slopes: expected float32, got {alibi_slopes.dtype}")
        _functional._check_slopes_shape(alibi_slopes.shape, batch, heads)


def _cache_seqlens(cache_seqlens, q: Tensor, k_cache: Tensor, k: Optional[Tensor],
                   block_table: Optional[Tensor]) -> Tensor:
    """cache_seqlens as an int32 (B,) tensor on q's device: an int for every sequence, or, when
    None (nothing appended), the whole capacity, as flash-attn reads it."""
    batch = q.shape[0]
    if cache_seqlens is None:
        if k is not None:
            _functional._fail(Status.InvalidArgument, "cache_seqlens: required when k and v are appended (it says "
                                                       "where they go)")
        capacity = k_cache.shape[1] * (block_table.shape[1] if block_table is not None else 1)
        return torch.full((batch,), int(capacity), dtype=torch.int32, device=q.device)
    if isinstance(cache_seqlens, int) and not isinstance(cache_seqlens, bool):
        return torch.full((batch,), _functional._int32_size(cache_seqlens, "cache_seqlens"), dtype=torch.int32,
                          device=q.device)
    if not isinstance(cache_seqlens, Tensor) or cache_seqlens.shape != (batch,) or not _is_integer(cache_seqlens):
        what = (f"{cache_seqlens.dtype} {tuple(cache_seqlens.shape)}" if isinstance(cache_seqlens, Tensor)
                else type(cache_seqlens).__name__)
        _functional._fail(Status.InvalidArgument, f"cache_seqlens: expected an int or an int32 tensor of shape "
                                                  f"({batch},), got {what}")
    if cache_seqlens.device != q.device:
        _functional._fail(Status.InvalidArgument, f"cache_seqlens: device {cache_seqlens.device} differs from q's "
                                                  f"{q.device}")
    if cache_seqlens.dtype == torch.int64 and cache_seqlens.device.type == "cpu" and not _compiling():
        _functional._check_int32_values(cache_seqlens, "cache_seqlens")
    return cache_seqlens.to(torch.int32)


def flash_attn_with_kvcache(q: Tensor, k_cache: Tensor, v_cache: Tensor, k: Optional[Tensor] = None,
                            v: Optional[Tensor] = None, rotary_cos: Optional[Tensor] = None,
                            rotary_sin: Optional[Tensor] = None,
                            cache_seqlens: Optional[Union[int, Tensor]] = None,
                            cache_batch_idx: Optional[Tensor] = None, cache_leftpad: Optional[Tensor] = None,
                            block_table: Optional[Tensor] = None, softmax_scale: Optional[float] = None,
                            causal: bool = False, window_size: Sequence[int] = (-1, -1), softcap: float = 0.0,
                            rotary_interleaved: bool = True, alibi_slopes: Optional[Tensor] = None,
                            num_splits: int = 0, return_softmax_lse: bool = False):
    """flash-attn 2's ``flash_attn_with_kvcache`` on flashcl (``flashcl::forward_kvcache``,
    docs/DECODE.md). Inference only (no gradient), as flash-attn's.

    q: (B, Nq, H, d). k_cache, v_cache: (B_cache, S_cache, H_kv, d), or with ``block_table``
    (int32 (B, max_blocks)) a paged cache (num_blocks, page_block_size, H_kv, d), any page size;
    float32, float16 or bfloat16, the caches and k, v of q's dtype, the caches' last dimension
    contiguous. k, v [optional]: (B, Nnew, H_kv, d), written into the caches IN PLACE at positions
    cache_seqlens[b] ... + Nnew - 1 before the queries attend to the L = cache_seqlens[b] + Nnew
    keys; cache_seqlens is not advanced (the caller's, as in flash-attn). cache_seqlens: an int or
    int32 (B,) (None: the whole capacity, only without k). cache_batch_idx: int32 (B,), the cache
    row of each sequence (contiguous caches). rotary_cos, rotary_sin [with k]: (seqlen_ro,
    rotary_dim / 2), a row per cache position; k rotated at positions cache_seqlens + t, q at
    cache_seqlens + i when causal or windowed, else at cache_seqlens; ``rotary_interleaved`` pairs
    (2j, 2j+1), else (j, j + rotary_dim/2) (GPT-NeoX). causal: bottom-right (query i sees keys
    j <= i + L - Nq); window_size, softcap, alibi_slopes (float32 (H,) or (B, H)) and softmax_scale
    (default 1/sqrt(d)) as ``flash_attn_func``; num_splits: 0 lets the planner choose, else 1..1024
    key splits. Returns out (B, Nq, H, d), and with return_softmax_lse (out, lse float32 (B, H,
    Nq)); a row that sees no key has out = 0, lse = -inf. ``cache_leftpad`` is not supported (the
    library has no left padding): anything but None raises NotImplementedError.

    CPU tensors run on the default device through the Session's host-array call: dense float32
    caches are appended into where they are (on a device that shares host memory, such as PoCL's
    CPU device, with no copy when the cache's address meets the device's base address alignment
    or misses it by whole floats, as torch's 64-byte aligned tensors do; else copied in, with only
    the appended rows copied back); float16/bfloat16 caches and strided
    views are converted to float32 copies and copied back whole after an append. CUDA tensors stay
    on the GPU (``flashcl.cuda``): the caches are written where they are, or, when their memory
    cannot be imported, staged into flashcl's pool and copied back device to device.
    """
    if cache_leftpad is not None:
        raise NotImplementedError("flashcl: cache_leftpad is not supported (flashcl's KV-cache call has no left "
                                  "padding; docs/DECODE.md); pass cache_leftpad=None")
    _check_kvcache(q, k_cache, v_cache, k, v, rotary_cos, rotary_sin, cache_batch_idx, block_table, alibi_slopes)
    window = _functional._window_pair(window_size, "window_size")
    seqlens = _cache_seqlens(cache_seqlens, q, k_cache, k, block_table)
    if softmax_scale is None:
        softmax_scale = 1.0 / math.sqrt(q.shape[-1])
    out, lse = torch.ops.flashcl.fwd_kvcache(
        q, k_cache, v_cache, seqlens, k, v, rotary_cos, rotary_sin, cache_batch_idx, block_table, float(softmax_scale),
        bool(causal), window[0], window[1], float(softcap or 0.0), bool(rotary_interleaved),
        alibi_slopes, int(num_splits))
    return (out, lse) if return_softmax_lse else out
