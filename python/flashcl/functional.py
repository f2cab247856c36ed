"""flashcl's functional API: ``attention`` on numpy arrays (host memory, run through a cached
``Session`` on the default or a chosen device) and on pyopencl ``Array``s (run on the caller's own
context and queue without copies: the binding receives the buffers' and the queue's ``int_ptr``,
offsets and strides in elements); torch tensors go to ``flashcl.torch`` (differentiable, on the
device they live on). It turns array shapes into the C++ API's ``ForwardArgs`` and
leaves every range and consistency check it can to the library, whose named messages arrive as
``flashcl.Error``; what only Python sees (number of dimensions, array dtype, byte strides that are
not whole elements) is raised here as the same exception with the same kind of message.
"""

from __future__ import annotations

import numbers
import operator
import threading
from typing import Any, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

from . import _flashcl as _ext
from ._flashcl import Algorithm, DType, Error, MaskKind, QuantGranularity, Status

__all__ = ["attention", "attention_backward", "devices", "session", "Error", "Status"]

_DTYPES = {"f32": DType.F32, "f16": DType.F16, "bf16": DType.BF16, "e4m3": DType.E4M3, "e5m2": DType.E5M2}
# fp8 calls' O storage: the library's dtype and the pyopencl Array dtype that holds it (bf16 as bits)
_OUT_DTYPES = {"f32": (DType.F32, np.float32), "f16": (DType.F16, np.float16), "bf16": (DType.BF16, np.uint16)}

_GRANULARITIES = {"tensor": QuantGranularity.Tensor, "head": QuantGranularity.Head, "block": QuantGranularity.Block}
_ALGORITHMS = {"auto": Algorithm.Auto, "standard": Algorithm.Standard, "fa1": Algorithm.FA1, "fa2": Algorithm.FA2}


class _Fp8Inputs(NamedTuple):
    """An fp8 call's options beside its arrays (``attention``'s keywords of the same names)."""
    descales: Optional[Sequence[Any]]
    quant_block: int
    out_dtype: str
    v_transposed: bool


def _fail(status: Status, message: str) -> None:
    error = Error(message)
    error.status = status
    raise error


def _check_slopes_shape(shape, batch: int, heads: int) -> None:
    """ALiBi slopes are (H,) or (B, H): the one shape check of every entry point (numpy, pyopencl,
    torch, the KV cache)."""
    if tuple(shape) not in ((heads,), (batch, heads)):
        _fail(Status.InvalidArgument, f"alibi_slopes: expected shape ({heads},) (H) or ({batch}, {heads}) (B, H), "
                                      f"got {tuple(shape)}")


def _check_int32_values(a, name: str) -> None:
    """Host index values (numpy arrays or CPU tensors) that are converted to int32 must fit it, or
    the conversion would wrap them into other, valid-looking indices."""
    count = a.numel() if hasattr(a, "numel") else a.size
    if count and (int(a.min()) < -2**31 or int(a.max()) >= 2**31):
        _fail(Status.InvalidArgument, f"{name}: values past the int32 range")


def _check_lse(lse, q) -> None:
    """The LSE a backward on host arrays or torch tensors is given: the forward's shape, (H, total_q)
    packed or (B, H, Nq), in any float dtype (converted to float32); one of the same size in another
    shape was read as if it were that one, and gave wrong gradients. A q of other dimensions is
    left to the shape checks, which name it."""
    if len(q.shape) not in (3, 4):
        return
    want = (q.shape[1], q.shape[0]) if len(q.shape) == 3 else (q.shape[0], q.shape[2], q.shape[1])
    if tuple(lse.shape) != tuple(want):
        _fail(Status.InvalidArgument, f"lse: expected shape {tuple(want)} (the forward's), got {tuple(lse.shape)}")
    floating = lse.dtype.is_floating_point if _is_torch(lse) else np.dtype(lse.dtype).kind == "f"
    if not floating:
        _fail(Status.UnsupportedDType, f"lse: dtype {lse.dtype} is not a float (the forward's is float32)")


def _host_offsets(cu, name: str) -> np.ndarray:
    """Host varlen offsets (numpy or a sequence) as int32, checked as the torch path checks them:
    integers (a float offset was truncated), 1-d with B + 1 >= 2 entries, within int32 (int64
    values past it wrapped to other, valid-looking offsets)."""
    a = np.asarray(cu)
    if a.dtype.kind not in "iu" or a.ndim != 1 or a.shape[0] < 2:
        _fail(Status.InvalidArgument, f"{name}: expected a 1-d integer array of B + 1 offsets, got {a.dtype} of "
                                      f"shape {a.shape}")
    _check_int32_values(a, name)
    return np.ascontiguousarray(a, dtype=np.int32)


def _int32_size(value, name: str) -> int:
    """A size the library takes as int32 (a dimension, max_seqlen): named here when it does not fit,
    instead of nanobind's unnamed 'incompatible function arguments'."""
    if not isinstance(value, numbers.Integral):
        _fail(Status.InvalidArgument, f"{name}: expected an integer, got {type(value).__name__}")
    if not -2**31 <= int(value) < 2**31:
        _fail(Status.InvalidArgument, f"{name}: {int(value)} does not fit int32")
    return int(value)


def _window_pair(window, name: str = "window") -> Tuple[int, int]:
    """flash-attn's window (left, right) as the library takes it: two integers, each -1 (unbounded)
    or >= 0; a side past int32 reaches past any sequence, so it becomes int32's largest. The one
    check of every entry point (numpy, pyopencl, torch, the KV cache, fp8), naming the value given."""
    try:
        sides = tuple(window)
    except TypeError:
        sides = ()
    if len(sides) != 2 or not all(_integral(s) for s in sides):
        _fail(Status.InvalidArgument, f"{name}: expected (left, right) integers, got {window!r}")
    for side, value in zip(("left", "right"), sides):
        if int(value) < -1:
            _fail(Status.InvalidArgument, f"{name}.{side}: must be >= -1 (-1: unbounded), got {int(value)}")
    return tuple(min(int(s), 2**31 - 1) for s in sides)


def _integral(value) -> bool:
    """An integer in any form a caller may hold one: int, numpy's, a 0-d integer tensor or array
    (__index__), or a float with no fraction (from config arithmetic, numpy's included); not 2.5,
    not a string, not a boolean, not an array of one element."""
    if isinstance(value, (bool, np.bool_)) or str(getattr(value, "dtype", "")) in ("bool", "torch.bool"):
        return False
    if getattr(value, "ndim", 0) != 0:
        return False
    if isinstance(value, numbers.Integral):
        return True
    if isinstance(value, (float, np.floating)):
        return float(value).is_integer()
    try:
        operator.index(value)
        return True
    except TypeError:
        return False


def devices() -> list:
    """Every OpenCL device, in the order the C++ library numbers them (platform, device)."""
    return _ext.list_devices()


_sessions: dict = {}
_sessions_lock = threading.Lock()


def session(platform: str = "", device: str = "") -> "_ext.Session":
    """The cached Session for a platform/device selector (an index or a name substring; empty
    means $FLASHCL_PLATFORM / $FLASHCL_DEVICE, else the first GPU, else the first device). Host
    arrays run through it; one context per selection keeps compiled programs cached."""
    key = (platform, device)
    with _sessions_lock:
        if key not in _sessions:
            _sessions[key] = _ext.Session(platform, device)
        return _sessions[key]


def _algorithm(name: Union[str, Algorithm]) -> Algorithm:
    if isinstance(name, Algorithm):
        return name
    if name not in _ALGORITHMS:
        _fail(Status.InvalidArgument, f"algorithm: unknown '{name}' (expected one of {', '.join(_ALGORITHMS)})")
    return _ALGORITHMS[name]


# The array dtypes whose bytes are each storage type's, for device arrays (read as they are)
_DEVICE_HOLDERS = {"f32": (np.float32,), "f16": (np.float16, np.uint16), "bf16": (np.uint16,), "e4m3": (np.uint8,),
                   "e5m2": (np.uint8,)}


def _storage(dtype: Any, name: str, override: Optional[str], device: bool = False) -> DType:
    """The library's storage type for an array dtype; `override` ('f32', 'f16', 'bf16') picks it
    when the array holds bit patterns (uint16 for bf16) or should be rounded on the way in (host
    arrays only: a `device` array's bytes are read as they are, so its dtype must hold them)."""
    dt = np.dtype(dtype)
    if override is not None:
        if override not in _DTYPES:
            _fail(Status.UnsupportedDType, f"dtype: unknown '{override}' (expected f32, f16, bf16, e4m3 or e5m2)")
        bits = dt == np.uint16 and override in ("f16", "bf16")
        if dt.kind != "f" and not bits and not (dt == np.uint8 and override in ("e4m3", "e5m2")):
            _fail(Status.UnsupportedDType, f"{name}: dtype {dt} cannot hold {override} (float arrays, or "
                                           f"{override}'s bit patterns as uint16 for f16/bf16, uint8 for fp8)")
        if device and dt not in [np.dtype(t) for t in _DEVICE_HOLDERS[override]]:
            holders = " or ".join(np.dtype(t).name for t in _DEVICE_HOLDERS[override])
            _fail(Status.UnsupportedDType, f"{name}: a device array of {dt} does not hold {override} values (its bytes "
                                           f"are read as they are: {holders})")
        return _DTYPES[override]
    if dt == np.float32:
        return DType.F32
    if dt == np.float16:
        return DType.F16
    _fail(Status.UnsupportedDType, f"{name}: dtype {dt} is not supported (float32 or float16; bf16 through dtype='bf16')")


def _shape_args(q, k, v, *, varlen: bool, causal, window, softcap, scale, algorithm, max_seqlen_q, max_seqlen_k,
                batch_from_cu: int) -> _ext.ForwardArgs:
    """ForwardArgs from the arrays' shapes: (B, S, H, d), or packed (total, H, d) with varlen."""
    dims = 3 if varlen else 4
    layout = "(total, H, d) with cu_seqlens" if varlen else "(B, S, H, d)"
    for name, a in (("q", q), ("k", k), ("v", v)):
        if len(a.shape) != dims:
            _fail(Status.InvalidArgument, f"{name}: expected {dims} dimensions {layout}, got shape {tuple(a.shape)}")
    if tuple(k.shape) != tuple(v.shape):
        _fail(Status.InvalidArgument, f"v: shape {tuple(v.shape)} differs from k's {tuple(k.shape)}")
    if q.shape[-1] != k.shape[-1]:
        _fail(Status.InvalidArgument, f"k: head dim {k.shape[-1]} differs from q's {q.shape[-1]}")
    if not varlen and q.shape[0] != k.shape[0]:
        _fail(Status.InvalidArgument, f"k: batch {k.shape[0]} differs from q's {q.shape[0]}")
    a = _ext.ForwardArgs()
    a.heads, a.heads_kv, a.head_dim = (_int32_size(n, f"{name}: {dim}") for n, name, dim in
                                       ((q.shape[-2], "q", "heads"), (k.shape[-2], "k", "heads"),
                                        (q.shape[-1], "q", "head dim")))
    if varlen:
        a.batch = batch_from_cu
        a.seqlen_q, a.seqlen_k = _int32_size(max_seqlen_q, "max_seqlen_q"), _int32_size(max_seqlen_k, "max_seqlen_k")
    else:
        a.batch, a.seqlen_q, a.seqlen_k = (_int32_size(n, f"{name}: {dim}") for n, name, dim in
                                           ((q.shape[0], "q", "batch"), (q.shape[1], "q", "sequence length"),
                                            (k.shape[1], "k", "sequence length")))
    a.causal = bool(causal)
    w = _ext.Window()
    w.left, w.right = _window_pair(window) if window is not None else (-1, -1)
    a.window = w
    a.softcap = float(softcap or 0.0)
    a.scale = None if scale is None else float(scale)
    a.algorithm = _algorithm(algorithm)
    return a


def _mask_shape(mask, args: _ext.ForwardArgs) -> Tuple[int, int]:
    """(batch, heads) of a mask of shape (Nq, Nk) or (B or 1, H or 1, Nq, Nk)."""
    shape = tuple(mask.shape)
    if len(shape) == 2:
        shape = (1, 1) + shape
    if len(shape) != 4 or shape[2:] != (args.seqlen_q, args.seqlen_k):
        _fail(Status.InvalidArgument,
              f"mask: expected shape (B or 1, H or 1, {args.seqlen_q}, {args.seqlen_k}) or ({args.seqlen_q}, "
              f"{args.seqlen_k}), got {tuple(mask.shape)}")
    return int(shape[0]), int(shape[1])


def _mask_kind(dtype, name: str = "mask") -> MaskKind:
    dt = np.dtype(dtype)
    if dt == np.bool_ or dt == np.uint8:
        return MaskKind.Bool
    if dt.kind == "f":
        return MaskKind.Bias
    _fail(Status.InvalidArgument, f"{name}: dtype {dt} is neither boolean (bool/uint8: 0 hides a key) nor a float bias")


def _max_seqlen(cu: np.ndarray, given: Optional[int], name: str = "max_seqlen") -> int:
    if given is not None:
        return _int32_size(given, name)
    return int(np.diff(cu).max()) if len(cu) > 1 else 0


def _is_pyopencl(a) -> bool:
    return type(a).__module__.startswith("pyopencl")


def _is_torch(a) -> bool:
    return type(a).__module__.startswith("torch")


def _torch_module(**unused):
    """flashcl.torch, for torch tensors, after checking that the arguments only numpy and pyopencl
    arrays take are left at their defaults (a torch tensor runs where it lives: flashcl.torch)."""
    for name, value in unused.items():
        default = value is None or (isinstance(value, (str, int, float, Algorithm)) and
                                    value in ("", "auto", 0, Algorithm.Auto))
        if not default:
            _fail(Status.InvalidArgument, f"{name}: not taken with torch tensors (flashcl.torch runs them where they "
                  "live, on the default algorithm and their dtype)")
    from . import torch as flashcl_torch

    return flashcl_torch


def attention(q, k, v, *, causal: bool = False, window: Sequence[int] = (-1, -1), softcap: float = 0.0,
              alibi_slopes=None, mask=None, scale: Optional[float] = None, cu_seqlens_q=None, cu_seqlens_k=None,
              max_seqlen_q: Optional[int] = None, max_seqlen_k: Optional[int] = None,
              algorithm: Union[str, Algorithm] = "auto", return_lse: bool = False, dtype: Optional[str] = None,
              out=None, queue=None, wait_for=None, platform: str = "", device: str = "", descales=None,
              quant_block: int = 0, out_dtype: Optional[str] = None, v_transposed: bool = False):
    """Exact attention ``O = softmax(scale·QKᵀ [+ bias, masks])·V``.

    Shapes as flash-attn: q (B, Nq, H, d), k and v (B, Nk, H_kv, d) with H % H_kv == 0 (GQA/MQA);
    with ``cu_seqlens_q``/``cu_seqlens_k`` (int32, B + 1 offsets) q is packed (total_q, H, d) and
    k, v (total_k, H_kv, d), ``max_seqlen_*`` default to the longest sequence. Other layouts pass
    through strides (the head dim must be contiguous).

    - ``causal``: bottom-right aligned when Nq ≠ Nk (query i sees keys j ≤ i + Nk − Nq).
    - ``window``: (left, right) sliding window as flash-attn's window_size; -1 is unbounded.
    - ``softcap``: scores s ← c·tanh(s/c) before the softmax (0 = off).
    - ``alibi_slopes``: float32 (H,) or (B, H); bias −slope·|i + Nk − Nq − j|.
    - ``mask``: boolean (False/0 hides a key) or float additive bias, shape (Nq, Nk) or
      (B or 1, H or 1, Nq, Nk) as SDPA's attn_mask.
    - ``scale``: default 1/√d. ``algorithm``: "auto", "standard", "fa1" or "fa2".
    - ``dtype``: storage "f32", "f16" or "bf16"; default from the arrays (float32, float16).
      "e4m3"/"e5m2" (pyopencl uint8 Arrays, e.g. from ``quantize_fp8``): fp8 inputs with
      ``descales`` = (q_descale, k_descale, v_descale), float32 Arrays of (B, H_kv) entries (numpy
      ones are copied, read back and checked: finite and > 0), or with
      ``quant_block`` = n one per n rows (docs/FP8.md); O is stored as ``out_dtype`` ("bf16"
      (default, returned as uint16 bits), "f16" or "f32"). ``v_transposed``: fp8 V is
      (B, H_kv, d, Nk), as ``quantize_fp8(..., transposed=True)`` writes it (the layout Hopper's
      FP8 tensor cores read as stored); not with varlen.

    numpy arrays run on the Session chosen by ``platform``/``device`` (default: as the C++ library
    chooses) and return numpy arrays of q's dtype. pyopencl Arrays run on ``queue`` (default q's)
    after ``wait_for`` and the arrays' own events; the result is a new Array (or ``out``) whose
    event is the kernel's. Returns O, or (O, LSE) with ``return_lse``: LSE is float32 (B, H, Nq),
    or (H, total_q) with varlen; rows that see no key have O = 0 and LSE = -inf.
    """
    varlen = cu_seqlens_q is not None or cu_seqlens_k is not None
    if varlen and (cu_seqlens_q is None or cu_seqlens_k is None):
        _fail(Status.InvalidArgument, "cu_seqlens_q, cu_seqlens_k: give both or neither")
    if _is_torch(q):
        return _torch_module(algorithm=algorithm, dtype=dtype, out=out, queue=queue, wait_for=wait_for,
                             platform=platform, device=device, descales=descales, quant_block=quant_block,
                             out_dtype=out_dtype, v_transposed=v_transposed).attention(
            q, k, v, causal=causal, window=window, softcap=softcap, alibi_slopes=alibi_slopes, mask=mask,
            scale=scale, cu_seqlens_q=cu_seqlens_q, cu_seqlens_k=cu_seqlens_k, max_seqlen_q=max_seqlen_q,
            max_seqlen_k=max_seqlen_k, return_lse=return_lse)
    options = dict(causal=causal, window=window, softcap=softcap, scale=scale, algorithm=algorithm)
    fp8 = None
    if dtype in ("e4m3", "e5m2") or descales is not None:
        if not _is_pyopencl(q):
            _fail(Status.UnsupportedDType, f"dtype: fp8 inputs ({dtype}) take pyopencl Arrays (quantize_fp8 makes them)")
        fp8 = _Fp8Inputs(descales, quant_block, out_dtype if out_dtype is not None else "bf16", bool(v_transposed))
    elif v_transposed:
        _fail(Status.InvalidArgument, "v_transposed: a transposed V is for fp8 inputs (dtype e4m3 or e5m2)")
    if _is_pyopencl(q):
        return _device_attention(q, k, v, options, alibi_slopes, mask, cu_seqlens_q, cu_seqlens_k, max_seqlen_q,
                                 max_seqlen_k, return_lse, dtype, out, queue, wait_for, fp8)
    if not isinstance(q, np.ndarray):
        _fail(Status.InvalidArgument,
              f"q: expected a numpy array, a pyopencl Array or a torch tensor, got {type(q).__name__}")
    if out is not None:
        _fail(Status.InvalidArgument, "out: numpy calls return a new array (out takes a pyopencl Array)")
    return _host_attention(q, k, v, options, alibi_slopes, mask, cu_seqlens_q, cu_seqlens_k, max_seqlen_q,
                           max_seqlen_k, return_lse, _storage(q.dtype, "q", dtype), session(platform, device))


def _host_args(q, k, v, options, alibi_slopes, mask, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
               storage: DType):
    """ForwardArgs and the Session's variant arrays for host arrays (the forward's and the backward's)."""
    for name, a in (("k", k), ("v", v)):
        if a.dtype != q.dtype:
            _fail(Status.UnsupportedDType, f"{name}: dtype {a.dtype} differs from q's {q.dtype}")
    varlen = cu_seqlens_q is not None
    variants = {}
    batch = 0
    if varlen:
        cu_q = variants["cu_seqlens_q"] = _host_offsets(cu_seqlens_q, "cu_seqlens_q")
        cu_k = variants["cu_seqlens_k"] = _host_offsets(cu_seqlens_k, "cu_seqlens_k")
        batch = len(cu_q) - 1
        max_seqlen_q, max_seqlen_k = (_max_seqlen(cu_q, max_seqlen_q, "max_seqlen_q"),
                                      _max_seqlen(cu_k, max_seqlen_k, "max_seqlen_k"))
    args = _shape_args(q, k, v, varlen=varlen, max_seqlen_q=max_seqlen_q, max_seqlen_k=max_seqlen_k,
                       batch_from_cu=batch, **options)
    args.dtype = storage
    if alibi_slopes is not None:
        slopes = np.ascontiguousarray(alibi_slopes, dtype=np.float32)
        _check_slopes_shape(slopes.shape, args.batch, args.heads)
        args.alibi_per_batch = slopes.ndim == 2
        variants["alibi_slopes"] = slopes.reshape(-1)
    if mask is not None:
        mask = np.asarray(mask)
        m = _ext.Mask()
        m.kind = _mask_kind(mask.dtype)
        m.batch, m.heads = _mask_shape(mask, args)
        args.mask = m
        if m.kind == MaskKind.Bool:
            variants["mask"] = np.ascontiguousarray(mask, dtype=np.uint8).reshape(-1)
        else:
            variants["bias"] = np.ascontiguousarray(mask, dtype=np.float32).reshape(-1)
    return args, variants


def _dense(a) -> np.ndarray:
    """A host array's values as dense float32 (uint16 bit patterns go through _host_values)."""
    return np.ascontiguousarray(a, dtype=np.float32).reshape(-1)


def _host_values(a, storage: DType) -> np.ndarray:
    """_dense, reading uint16 arrays as the bit patterns of `storage` (bf16 or f16: the dtype override
    said which, and _storage refused any other pairing), never as numbers to convert."""
    a = np.asarray(a)
    if a.dtype != np.uint16:
        return _dense(a)
    if storage == DType.BF16:
        return (np.ascontiguousarray(a).astype(np.uint32) << 16).view(np.float32).reshape(-1)
    return np.ascontiguousarray(a).view(np.float16).astype(np.float32).reshape(-1)


def _as_input_dtype(a: np.ndarray, like: np.ndarray, storage: DType) -> np.ndarray:
    """A float32 result in the inputs' dtype: bf16/f16 bit patterns for uint16 inputs (bf16 rounded
    to nearest even), the float dtype otherwise."""
    if like.dtype == np.uint16 and storage == DType.BF16:
        u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)
        rounded = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
        return np.where(np.isnan(a), np.uint16(0x7FC0), rounded).astype(np.uint16)
    if like.dtype == np.uint16:
        return a.astype(np.float16).view(np.uint16)
    return a.astype(like.dtype) if like.dtype != np.float32 and like.dtype.kind == "f" else a


def _lse_shape(args: _ext.ForwardArgs, q) -> Tuple[int, ...]:
    """(H, total_q) for packed (varlen) q, else (B, H, Nq)."""
    return (args.heads, q.shape[0]) if len(q.shape) == 3 else (args.batch, args.heads, args.seqlen_q)


def _used_rows(cu, a, cu_name: str = "cu_seqlens", name: str = "the array") -> int:
    """The packed rows a varlen call reads: cu[-1] where the array holds more (a padded buffer, as
    flash-attn accepts); a last offset past the array's rows is named here, as the offsets'."""
    last = int(np.asarray(cu).reshape(-1)[-1]) if np.size(cu) else 0
    if a.shape[0] < last < 2**31:  # (past int32: the offsets' own check names that)
        _fail(Status.InvalidArgument, f"{cu_name}: its last offset {last} is past the {a.shape[0]} rows of {name}")
    return last if 0 <= last < a.shape[0] else a.shape[0]


def _cleared_outside(a, cu, fill, axis: int = 0):
    """a with its rows before cu[0] and from cu[-1] on set to `fill`: a varlen call's offsets may
    start past row 0 and end before the buffer does (a padded buffer), and those rows belong to no
    sequence (O 0, LSE -inf, gradients 0)."""
    if cu is None or not np.size(cu):
        return a
    cu = np.asarray(cu).reshape(-1)
    for rows in (slice(0, max(int(cu[0]), 0)), slice(max(int(cu[-1]), 0), None)):
        a[(slice(None),) * axis + (rows,)] = fill
    return a


def _padded(a: np.ndarray, rows: int, fill, axis: int = 0) -> np.ndarray:
    """a with `rows` along `axis`, the rows past its own set to `fill` (a padded buffer's rows)."""
    if a.shape[axis] == rows:
        return a
    shape = list(a.shape)
    shape[axis] = rows
    full = np.full(shape, fill, dtype=a.dtype)
    full[(slice(None),) * axis + (slice(0, a.shape[axis]),)] = a
    return full


def _host_attention(q, k, v, options, alibi_slopes, mask, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
                    return_lse, storage: DType, sess) -> Any:
    """numpy arrays through Session::forward (dense float32 in, used in place on CPU devices, numpy's
    own alignment included; float32 out, written in place). Packed (varlen) buffers may hold rows
    past cu_seqlens[-1] or before cu_seqlens[0]: those get O = 0 and LSE = -inf."""
    q, k, v = np.asarray(q), np.asarray(k), np.asarray(v)
    rows = q.shape[0]
    if v.shape != k.shape:  # (before the rows past the offsets are cut, which would hide it)
        _fail(Status.InvalidArgument, f"v: shape {v.shape} differs from k's {k.shape}")
    if cu_seqlens_q is not None and cu_seqlens_k is not None:
        q = q[:_used_rows(cu_seqlens_q, q, "cu_seqlens_q", "q")]
        k = k[:_used_rows(cu_seqlens_k, k, "cu_seqlens_k", "k")]
        v = v[:_used_rows(cu_seqlens_k, v, "cu_seqlens_k", "v")]
    args, variants = _host_args(q, k, v, options, alibi_slopes, mask, cu_seqlens_q, cu_seqlens_k, max_seqlen_q,
                                max_seqlen_k, storage)
    o, lse = sess.forward(args, _host_values(q, storage), _host_values(k, storage), _host_values(v, storage),
                          return_lse=return_lse, **variants)
    o = _as_input_dtype(o.reshape(q.shape), q, storage)
    if len(q.shape) == 3:
        o = _cleared_outside(_padded(o, rows, 0), cu_seqlens_q, 0)
        if return_lse:
            lse = _cleared_outside(_padded(lse.reshape(_lse_shape(args, q)), rows, -np.inf, axis=1), cu_seqlens_q,
                                  -np.inf, axis=1)
    return (o, lse.reshape(_lse_shape(args, o))) if return_lse else o


def _device_args(q, k, v, options, alibi_slopes, mask, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
                 dtype, queue, wait_for=None):
    """ForwardArgs for pyopencl Arrays (Q, K, V and the variants' buffers; O and LSE are the
    caller's), the queue, and the arrays whose pending events the call must wait for. Offsets read
    on the host (for a missing max_seqlen) are read after ``wait_for``."""
    import pyopencl.array as cla

    queue = queue if queue is not None else q.queue
    if queue is None:
        _fail(Status.InvalidHandle, "queue: q has no queue and none was given")
    storage = _storage(q.dtype, "q", dtype, device=True)
    for name, a in (("k", k), ("v", v)):
        if not _is_pyopencl(a):
            _fail(Status.InvalidArgument, f"{name}: expected a pyopencl Array like q, got {type(a).__name__}")
        if a.dtype != q.dtype:
            _fail(Status.UnsupportedDType, f"{name}: dtype {a.dtype} differs from q's {q.dtype}")
    inputs = [q, k, v]

    def on_device(a, dtype_):
        # Variant data given as numpy (offsets, slopes, masks) is copied to the device.
        d = a if _is_pyopencl(a) else cla.to_device(queue, np.ascontiguousarray(a, dtype=dtype_))
        inputs.append(d)
        return d

    def offsets_on_device(cu, name):
        return on_device(cu if _is_pyopencl(cu) else _host_offsets(cu, name), np.int32)

    varlen = cu_seqlens_q is not None
    batch = 0
    if varlen:
        cu_q, cu_k = offsets_on_device(cu_seqlens_q, "cu_seqlens_q"), offsets_on_device(cu_seqlens_k, "cu_seqlens_k")
        for name, cu in (("cu_seqlens_q", cu_q), ("cu_seqlens_k", cu_k)):
            if cu.dtype != np.int32 or cu.ndim != 1 or not cu.flags.c_contiguous:
                _fail(Status.InvalidArgument, f"{name}: expected a contiguous 1-d int32 array of B + 1 offsets")
        batch = cu_q.shape[0] - 1
        if (max_seqlen_q is None or max_seqlen_k is None) and wait_for:
            import pyopencl as cl
            cl.wait_for_events(list(wait_for))  # the offsets are read here, after what fills them
        if max_seqlen_q is None:
            max_seqlen_q = _max_seqlen(cu_q.get(queue=queue), None)
        if max_seqlen_k is None:
            max_seqlen_k = _max_seqlen(cu_k.get(queue=queue), None)
    args = _shape_args(q, k, v, varlen=varlen, max_seqlen_q=max_seqlen_q, max_seqlen_k=max_seqlen_k,
                       batch_from_cu=batch, **options)
    args.dtype = storage
    args.q, args.k, args.v = (_tensor(a, n, varlen) for a, n in ((q, "q"), (k, "k"), (v, "v")))
    if varlen:
        args.cu_seqlens_q, args.cu_seqlens_k = _buffer(cu_q, "cu_seqlens_q"), _buffer(cu_k, "cu_seqlens_k")
        args.total_q = int(q.shape[0])  # LSE is (H, total_q)
        # offsets that came as host arrays are the caller's values, not device data still being
        # made: the library reads them back and names what the kernels would otherwise clamp
        args.check_device_data = not (_is_pyopencl(cu_seqlens_q) and _is_pyopencl(cu_seqlens_k))
    if alibi_slopes is not None:
        slopes = on_device(alibi_slopes, np.float32)
        if slopes.dtype != np.float32:
            _fail(Status.UnsupportedDType, f"alibi_slopes: expected float32, got {slopes.dtype}")
        _check_slopes_shape(slopes.shape, args.batch, args.heads)
        args.alibi_per_batch = slopes.ndim == 2
        args.alibi_slopes = _buffer(slopes, "alibi_slopes")
    if mask is not None:
        if not _is_pyopencl(mask):
            mask = np.asarray(mask)
            mask = on_device(mask, np.uint8 if _mask_kind(mask.dtype) == MaskKind.Bool else np.float32)
        else:
            inputs.append(mask)
        args.mask = _device_mask(mask, args)
    return args, queue, inputs


def _wait_list(inputs, wait_for) -> list:
    wait = [e.int_ptr for e in (wait_for or [])]
    for a in inputs:
        wait += [e.int_ptr for e in a.events]
    return wait


def _mark_done(launch, outputs) -> None:
    """Gives each output array the call's last event, as pyopencl's own kernels do."""
    import pyopencl as cl

    if launch.events:
        done = cl.Event.from_int_ptr(launch.events[-1], retain=True)
        for a in outputs:
            if a is not None:
                a.add_event(done)


def _output(a, like, name: str, queue):
    import pyopencl.array as cla

    if a is None:
        return cla.empty(queue, like.shape, like.dtype)
    if not _is_pyopencl(a) or tuple(a.shape) != tuple(like.shape) or a.dtype != like.dtype:
        _fail(Status.InvalidArgument, f"{name}: expected a pyopencl Array of shape {tuple(like.shape)} and dtype "
                                      f"{like.dtype}")
    return a


def _device_attention(q, k, v, options, alibi_slopes, mask, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
                      return_lse, dtype, out, queue, wait_for, fp8: Optional[_Fp8Inputs] = None) -> Any:
    """pyopencl Arrays through flashcl::forward on the caller's queue: no copies of Q, K, V, O."""
    import pyopencl.array as cla

    v_transposed = fp8 is not None and fp8.v_transposed
    vt = v
    if v_transposed:  # V (B, H_kv, d, Nk): the shapes are checked on K's, V's view set below
        if cu_seqlens_q is not None:
            _fail(Status.InvalidArgument, "v_transposed: not with varlen (cu_seqlens); store V (total_k, H_kv, d)")
        if not _is_pyopencl(v) or len(v.shape) != 4 or len(k.shape) != 4 or \
                tuple(v.shape) != (k.shape[0], k.shape[2], k.shape[3], k.shape[1]):
            _fail(Status.InvalidArgument, f"v: with v_transposed expected a pyopencl Array (B, H_kv, d, Nk) matching "
                                          f"k's (B, Nk, H_kv, d) {tuple(k.shape)}, got "
                                          f"{tuple(v.shape) if hasattr(v, 'shape') else type(v).__name__}")
        if v.dtype != q.dtype:
            _fail(Status.UnsupportedDType, f"v: dtype {v.dtype} differs from q's {q.dtype}")
        v = k
    args, queue, inputs = _device_args(q, k, v, options, alibi_slopes, mask, cu_seqlens_q, cu_seqlens_k, max_seqlen_q,
                                       max_seqlen_k, dtype, queue, wait_for)
    if v_transposed:
        if vt.base_data is None:
            _fail(Status.InvalidArgument, "v: the array has no buffer (empty arrays are not supported)")
        t = _ext.Tensor()
        t.buffer, t.offset = vt.base_data.int_ptr, vt.offset // vt.dtype.itemsize
        t.batch_stride, t.head_stride, t.seq_stride = _element_strides(vt, "v")[:3]  # seq_stride: a d-row's pitch
        args.v = t
        inputs.append(vt)
    like = q
    if fp8 is not None:  # fp8 inputs: the descales and O's own storage
        descales, quant_block, out_name = fp8.descales, fp8.quant_block, fp8.out_dtype
        if out_name not in _OUT_DTYPES:
            _fail(Status.UnsupportedDType, f"out_dtype: unknown '{out_name}' (expected bf16, f16 or f32)")
        args.out_dtype, out_np = _OUT_DTYPES[out_name]
        scales = _ext.Fp8Scales()
        scales.quant_block = quant_block
        if descales is not None:
            if len(descales) != 3:
                _fail(Status.InvalidArgument, "descales: expected (q_descale, k_descale, v_descale)")
            for name, d in zip(("q_descale", "k_descale", "v_descale"), descales):
                if isinstance(d, np.ndarray) and d.dtype.kind == "f":
                    # the caller's values, not device data still being made: the library reads
                    # them back and names a descale that is not finite and > 0
                    d = cla.to_device(queue, np.ascontiguousarray(d, dtype=np.float32))
                    args.check_device_data = True
                if not _is_pyopencl(d) or d.dtype != np.float32:
                    _fail(Status.InvalidArgument, f"fp8.{name}: expected a float32 pyopencl Array or numpy array")
                setattr(scales, name, _buffer(d, "fp8." + name))
                inputs.append(d)
        scales.v_transposed = v_transposed
        args.fp8 = scales
        like = cla.empty(queue, q.shape, out_np)  # O's shape and dtype
    out = _output(out, like, "out", queue)
    args.o = _tensor(out, "out", cu_seqlens_q is not None)
    lse = None
    if return_lse:
        lse = cla.empty(queue, _lse_shape(args, q), np.float32)
        args.lse = _buffer(lse, "lse")
    launch = _ext.forward(queue.int_ptr, args, _wait_list(inputs, wait_for))
    _mark_done(launch, [out, lse])
    return (out, lse) if return_lse else out


def _element_strides(a, name: str) -> Tuple[int, ...]:
    item = a.dtype.itemsize
    if any(s % item for s in a.strides) or a.offset % item:
        _fail(Status.InvalidArgument, f"{name}: strides {a.strides} and offset {a.offset} (bytes) must be whole elements")
    if a.shape[-1] > 1 and a.strides[-1] != item:
        _fail(Status.InvalidArgument, f"{name}: the last dimension must be contiguous (stride 1), got stride "
                                      f"{a.strides[-1] // item}")
    return tuple(s // item for s in a.strides)


def _buffer(a, name: str) -> int:
    """The cl_mem of an array the library reads whole from its start (offsets, slopes, descales, LSE):
    one that starts elsewhere or skips elements (a strided view) would be read as something else."""
    if a.base_data is None:
        _fail(Status.InvalidArgument, f"{name}: the array has no buffer (empty arrays are not supported)")
    if a.offset:
        _fail(Status.InvalidArgument, f"{name}: must start at its buffer's beginning (offset {a.offset} bytes)")
    if not a.flags.c_contiguous:
        _fail(Status.InvalidArgument, f"{name}: must be contiguous (strides {a.strides} bytes)")
    return a.base_data.int_ptr


def _tensor(a, name: str, varlen: bool) -> _ext.Tensor:
    """A Tensor view of a (B, S, H, d) or packed (total, H, d) pyopencl Array, in elements."""
    if a.base_data is None:
        _fail(Status.InvalidArgument, f"{name}: the array has no buffer (empty arrays are not supported)")
    strides = _element_strides(a, name)
    t = _ext.Tensor()
    t.buffer = a.base_data.int_ptr
    t.offset = a.offset // a.dtype.itemsize
    if varlen:
        t.seq_stride, t.head_stride = strides[0], strides[1]
    else:
        t.batch_stride, t.seq_stride, t.head_stride = strides[0], strides[1], strides[2]
    return t


def _device_mask(mask, args: _ext.ForwardArgs) -> _ext.Mask:
    m = _ext.Mask()
    m.kind = _mask_kind(mask.dtype)
    if m.kind == MaskKind.Bias and mask.dtype != np.float32:
        _fail(Status.UnsupportedDType, f"mask: an additive bias must be float32 on the device, got {mask.dtype}")
    m.batch, m.heads = _mask_shape(mask, args)
    strides = _element_strides(mask, "mask")
    if mask.ndim == 2:
        strides = (0, 0) + strides
    m.buffer = mask.base_data.int_ptr
    m.offset = mask.offset // mask.dtype.itemsize
    # Broadcast dimensions have no stride; the row stride keeps a mask that is a view of a wider one.
    m.batch_stride = strides[0] if m.batch > 1 else 0
    m.head_stride = strides[1] if m.heads > 1 else 0
    m.row_stride = strides[2]
    if m.batch_stride == 0 and m.head_stride == 0 and m.row_stride == args.seqlen_k:
        m.row_stride = 0  # dense: the library's default
    return m


def attention_backward(d_o, q, k, v, out, lse, *, causal: bool = False, window: Sequence[int] = (-1, -1),
                       softcap: float = 0.0, alibi_slopes=None, mask=None, scale: Optional[float] = None,
                       cu_seqlens_q=None, cu_seqlens_k=None, max_seqlen_q: Optional[int] = None,
                       max_seqlen_k: Optional[int] = None, algorithm: Union[str, Algorithm] = "auto",
                       deterministic: bool = False, return_dbias: bool = False, dtype: Optional[str] = None,
                       d_q=None, d_k=None, d_v=None, queue=None, wait_for=None, platform: str = "",
                       device: str = ""):
    """Gradients of ``attention``: (dQ, dK, dV), and the additive bias's gradient with
    ``return_dbias`` (``mask`` must then be a float bias; the gradient has its shape, summed over
    the dimensions it broadcasts over). ``d_o`` is the gradient of O; ``out`` and ``lse`` are the
    forward's O and LSE (``return_lse=True``); every other argument must be the forward's. dQ is
    shaped like q, dK and dV like k and v (GQA: summed over each K/V head's query heads).
    ``deterministic``: bit-identical results on every run (fa2 otherwise accumulates dQ with
    atomics, whose order may change the last bits). numpy arrays run on a Session and pyopencl
    Arrays on the queue as for ``attention`` (``d_q``, ``d_k``, ``d_v``: optional output Arrays).
    """
    varlen = cu_seqlens_q is not None or cu_seqlens_k is not None
    if varlen and (cu_seqlens_q is None or cu_seqlens_k is None):
        _fail(Status.InvalidArgument, "cu_seqlens_q, cu_seqlens_k: give both or neither")
    for name, a in (("d_o", d_o), ("q", q), ("k", k), ("v", v), ("out", out), ("lse", lse)):
        if not hasattr(a, "shape"):
            _fail(Status.InvalidArgument, f"{name}: expected an array like q (lse: the forward's return_lse=True "
                                          f"output), got {type(a).__name__}")
    for name, a in (("d_o", d_o), ("out", out)):
        if tuple(a.shape) != tuple(q.shape):
            _fail(Status.InvalidArgument, f"{name}: shape {tuple(a.shape)} differs from q's {tuple(q.shape)}")
    options = dict(causal=causal, window=window, softcap=softcap, scale=scale, algorithm=algorithm)
    if _is_torch(q):
        return _torch_module(algorithm=algorithm, dtype=dtype, d_q=d_q, d_k=d_k, d_v=d_v, queue=queue,
                             wait_for=wait_for, platform=platform, device=device).attention_backward(
            d_o, q, k, v, out, lse, causal=causal, window=window, softcap=softcap, alibi_slopes=alibi_slopes,
            mask=mask, scale=scale, cu_seqlens_q=cu_seqlens_q, cu_seqlens_k=cu_seqlens_k, max_seqlen_q=max_seqlen_q,
            max_seqlen_k=max_seqlen_k, deterministic=deterministic, return_dbias=return_dbias)
    variants = (alibi_slopes, mask, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k)
    # (a list too)
    mask_dtype = None if mask is None else mask.dtype if hasattr(mask, "dtype") else np.asarray(mask).dtype
    if return_dbias and (mask is None or _mask_kind(mask_dtype) != MaskKind.Bias):
        _fail(Status.InvalidArgument, "d_bias: return_dbias needs an additive float bias as mask")
    if _is_pyopencl(q):
        return _device_backward(d_o, q, k, v, out, lse, options, *variants, deterministic, return_dbias, dtype,
                                (d_q, d_k, d_v), queue, wait_for)
    if not isinstance(q, np.ndarray):
        _fail(Status.InvalidArgument,
              f"q: expected a numpy array, a pyopencl Array or a torch tensor, got {type(q).__name__}")
    for name, a in (("d_q", d_q), ("d_k", d_k), ("d_v", d_v)):
        if a is not None:
            _fail(Status.InvalidArgument, f"{name}: numpy calls return new arrays ({name} takes a pyopencl Array)")
    return _host_backward(d_o, q, k, v, out, lse, options, *variants, deterministic, return_dbias,
                          _storage(q.dtype, "q", dtype), session(platform, device))


def _host_backward(d_o, q, k, v, out, lse, options, alibi_slopes, mask, cu_seqlens_q, cu_seqlens_k, max_seqlen_q,
                   max_seqlen_k, deterministic, return_dbias, storage: DType, sess) -> Any:
    """numpy arrays through Session::backward (dense float32 copies in, float32 gradients out);
    packed buffers' rows past cu_seqlens[-1] or before cu_seqlens[0] get zero gradients."""
    q, k, v, lse = np.asarray(q), np.asarray(k), np.asarray(v), np.asarray(lse)
    rows_q, rows_k = q.shape[0], k.shape[0]
    if v.shape != k.shape:  # (before the rows past the offsets are cut, which would hide it)
        _fail(Status.InvalidArgument, f"v: shape {v.shape} differs from k's {k.shape}")
    _check_lse(lse, q)
    if cu_seqlens_q is not None and cu_seqlens_k is not None and len(q.shape) == 3:
        used_q = _used_rows(cu_seqlens_q, q, "cu_seqlens_q", "q")
        used_k = _used_rows(cu_seqlens_k, k, "cu_seqlens_k", "k")
        q, k, v = q[:used_q], k[:used_k], v[:used_k]
        d_o, out = np.asarray(d_o)[:used_q], np.asarray(out)[:used_q]
        lse = np.asarray(lse)[:, :used_q]
    args, variants = _host_args(q, k, v, options, alibi_slopes, mask, cu_seqlens_q, cu_seqlens_k, max_seqlen_q,
                                max_seqlen_k, storage)
    b = _ext.BackwardArgs()
    b.forward = args
    b.deterministic = bool(deterministic)
    if return_dbias:
        d_bias = _ext.Mask()
        d_bias.kind = MaskKind.Bias
        d_bias.batch, d_bias.heads = args.mask.batch, args.mask.heads
        b.d_bias = d_bias
    for name, a in (("d_o", d_o), ("out", out)):
        if np.asarray(a).dtype != q.dtype:
            _fail(Status.UnsupportedDType, f"{name}: dtype {np.asarray(a).dtype} differs from q's {q.dtype}")
    d_q, d_k, d_v, d_bias = sess.backward(b, *(_host_values(a, storage) for a in (q, k, v, out, d_o)), _dense(lse),
                                          **variants)
    grads = tuple(_as_input_dtype(g.reshape(a.shape), q, storage) for g, a in ((d_q, q), (d_k, k), (d_v, v)))
    if len(q.shape) == 3:
        grads = tuple(_cleared_outside(_padded(g, n, 0), cu, 0)
                      for g, n, cu in zip(grads, (rows_q, rows_k, rows_k), (cu_seqlens_q, cu_seqlens_k, cu_seqlens_k)))
    return grads + (d_bias.reshape(np.shape(mask)),) if return_dbias else grads


def _device_backward(d_o, q, k, v, out, lse, options, alibi_slopes, mask, cu_seqlens_q, cu_seqlens_k, max_seqlen_q,
                     max_seqlen_k, deterministic, return_dbias, dtype, outputs, queue, wait_for) -> Any:
    """pyopencl Arrays through flashcl::backward on the caller's queue."""
    import pyopencl.array as cla

    args, queue, inputs = _device_args(q, k, v, options, alibi_slopes, mask, cu_seqlens_q, cu_seqlens_k, max_seqlen_q,
                                       max_seqlen_k, dtype, queue, wait_for)
    varlen = cu_seqlens_q is not None
    for name, a in (("out", out), ("d_o", d_o), ("lse", lse)):
        if not _is_pyopencl(a):
            _fail(Status.InvalidArgument, f"{name}: expected a pyopencl Array like q, got {type(a).__name__}")
    for name, a in (("out", out), ("d_o", d_o)):  # read in q's storage type (shapes: attention_backward)
        if a.dtype != q.dtype:
            _fail(Status.UnsupportedDType, f"{name}: dtype {a.dtype} differs from q's {q.dtype}")
    if lse.dtype != np.float32 or tuple(lse.shape) != _lse_shape(args, q):
        _fail(Status.InvalidArgument, f"lse: expected float32 of shape {_lse_shape(args, q)} (the forward's), got "
                                      f"{lse.dtype} {tuple(lse.shape)}")
    args.o = _tensor(out, "out", varlen)
    args.lse = _buffer(lse, "lse")
    inputs += [out, d_o, lse]
    b = _ext.BackwardArgs()
    b.forward = args
    b.deterministic = bool(deterministic)
    b.d_o = _tensor(d_o, "d_o", varlen)
    grads = [_output(a, like, name, queue) for a, like, name in zip(outputs, (q, k, v), ("d_q", "d_k", "d_v"))]
    b.d_q, b.d_k, b.d_v = (_tensor(a, n, varlen) for a, n in zip(grads, ("d_q", "d_k", "d_v")))
    if return_dbias:
        d_bias = cla.empty(queue, mask.shape, np.float32)
        m = _device_mask(d_bias, args)
        b.d_bias = m
        grads.append(d_bias)
    launch = _ext.backward(queue.int_ptr, b, _wait_list(inputs, wait_for))
    _mark_done(launch, grads)
    return tuple(grads)


def quantize_fp8(x, *, dtype: str = "e4m3", granularity: str = "tensor", head_group: int = 1, block: int = 0,
                 hadamard: bool = False, seed: int = 0, transposed: bool = False, in_dtype: Optional[str] = None,
                 cu_seqlens=None, max_seqlen: Optional[int] = None, queue=None, wait_for=None):
    """fp8 quantisation of a pyopencl Array x (B, S, H, d), as ``flashcl::quantize_fp8``: returns
    (x8, descale), a uint8 Array ((B, H, d, S) when ``transposed``) and the float32 descales in the
    layout ``attention(..., dtype="e4m3", descales=...)`` takes. ``granularity``: "tensor", "head"
    (heads per scale: ``head_group``; Q under GQA: H / H_kv) or "block" (``block`` rows per scale,
    the attention's ``quant_block``). ``hadamard``: the random-sign Hadamard transform along d from
    ``seed`` first (the same seed for Q and K, never V). ``in_dtype``: "bf16" for uint16 bits.
    With ``cu_seqlens`` (int32, B + 1 offsets; numpy or pyopencl) x is packed (total, H, d) as the
    varlen attention takes it, and the scales are per sequence (``max_seqlen``: the longest
    sequence, the attention's ``max_seqlen_q``/``_k``; None: from cu_seqlens)."""
    import pyopencl.array as cla

    varlen = cu_seqlens is not None
    if not _is_pyopencl(x) or x.ndim != (3 if varlen else 4):
        _fail(Status.InvalidArgument, "x: expected a packed (total, H, d) pyopencl Array with cu_seqlens" if varlen
              else "x: expected a (B, S, H, d) pyopencl Array")
    if dtype not in ("e4m3", "e5m2"):
        _fail(Status.UnsupportedDType, f"dtype: expected e4m3 or e5m2, got '{dtype}'")
    if granularity not in _GRANULARITIES:
        _fail(Status.InvalidArgument, f"granularity: expected tensor, head or block, got '{granularity}'")
    queue = queue if queue is not None else x.queue
    if queue is None:
        _fail(Status.InvalidHandle, "queue: x has no queue and none was given")
    a = _ext.QuantizeArgs()
    inputs = [x]
    if varlen:
        host_cu = None if _is_pyopencl(cu_seqlens) else np.ascontiguousarray(cu_seqlens, np.int32)
        cu = cu_seqlens if host_cu is None else cla.to_device(queue, host_cu)
        if cu.dtype != np.int32 or cu.ndim != 1 or cu.shape[0] < 2 or not cu.flags.c_contiguous:
            _fail(Status.InvalidArgument, "cu_seqlens: expected a contiguous 1-d int32 array of B + 1 offsets")
        inputs.append(cu)
        if max_seqlen is None:  # the offsets' longest sequence, read back only when they live on the device
            if host_cu is None and wait_for:  # (Array.get waits on the array's own events, not on wait_for)
                import pyopencl as cl

                cl.wait_for_events(list(wait_for))
            max_seqlen = _max_seqlen(host_cu if host_cu is not None else cu.get(queue=queue), None)
        a.batch, a.seqlen = cu.shape[0] - 1, int(max_seqlen)
        a.total, a.heads, a.head_dim = (int(n) for n in x.shape)
        a.cu_seqlens = _buffer(cu, "cu_seqlens")
    else:
        a.batch, a.seqlen, a.heads, a.head_dim = (int(n) for n in x.shape)
    a.in_dtype = _storage(x.dtype, "x", in_dtype, device=True)
    a.out_dtype = _DTYPES[dtype]
    a.granularity = _GRANULARITIES[granularity]
    a.head_group, a.block, a.hadamard, a.hadamard_seed, a.transposed = head_group, block, hadamard, seed, transposed
    a.in_ = _tensor(x, "x", varlen)
    if varlen:
        x8 = cla.empty(queue, x.shape, np.uint8)
    else:
        b, s, h, d = x.shape
        x8 = cla.empty(queue, (b, h, d, s) if transposed else (b, s, h, d), np.uint8)
    descale = cla.empty(queue, (max(int(_ext.quantize_descale_count(a)), 1),), np.float32)
    o = _ext.Tensor()
    o.buffer = x8.base_data.int_ptr
    a.out = o
    a.descale = descale.base_data.int_ptr
    launch = _ext.quantize_fp8(queue.int_ptr, a, _wait_list(inputs, wait_for))
    _mark_done(launch, [x8, descale])
    return x8, descale
