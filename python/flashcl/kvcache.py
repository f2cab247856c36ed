"""flashcl's KV-cache call for Python: ``attention_with_kvcache``, flash-attn's
``flash_attn_with_kvcache`` over ``flashcl::forward_kvcache`` (docs/DECODE.md). On pyopencl
``Array``s it runs on the caller's queue, without copies; on numpy arrays it runs on the default
Session (``Session::forward_kvcache``), appending into a float32 C-contiguous cache where it lies
and into others through float32 copies written back. The caches are contiguous (B_cache, S_cache,
H_kv, d) or paged (num_pages, page_size, H_kv, d) with an int32 block table;
``cache_dtype="e4m3"``/``"e5m2"`` makes them an fp8 KV cache (uint8 Arrays, pyopencl only, with
float32 ``k_descale``/``v_descale`` of shape (B, H_kv): value = byte x descale; appended rows are
stored as fp8(x / descale); docs/FP8.md "FP8 KV cache"). Shapes and array types are checked here;
every range and consistency rule is the library's, whose named messages arrive as
``flashcl.Error``.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

from . import _flashcl as _ext
from ._flashcl import DType, Status
from .functional import (_DTYPES, _buffer, _check_int32_values, _fail, _is_pyopencl, _mark_done, _output, _storage,
                         _tensor, _wait_list, _window_pair, session)

__all__ = ["attention_with_kvcache"]

# bytes per element of each storage type (an Array holding a cache must match its cache_dtype)
_ITEMSIZE = {DType.F32: 4, DType.F16: 2, DType.BF16: 2, DType.E4M3: 1, DType.E5M2: 1}


def attention_with_kvcache(q, k_cache, v_cache, cache_seqlens, *, k_new=None, v_new=None, block_table=None,
                           cache_batch_idx=None, rotary_cos=None, rotary_sin=None, rotary_interleaved: bool = False,
                           causal: bool = False, window: Sequence[int] = (-1, -1), softcap: float = 0.0,
                           scale: Optional[float] = None, alibi_slopes=None, num_splits: int = 0,
                           dtype: Optional[str] = None, cache_dtype: Optional[str] = None, k_descale=None,
                           v_descale=None, check_device_data: bool = False, return_lse: bool = False, out=None,
                           queue=None, wait_for=None) -> Any:
    """Attends q (B, Nq, H, d) to each sequence's cached keys after appending k_new/v_new (B,
    Nnew, H_kv, d) in place at cache_seqlens (int32, (B,)), with optional rotary tables (float32
    (S_rot, rotary_dim / 2) each), causal (bottom-right), window, softcap, ALiBi (float32 slopes,
    (H) or (B, H)). ``dtype`` ('f32', 'f16', 'bf16') names q's, O's and k_new's storage where the
    Array holds bit patterns (uint16 for bf16); ``cache_dtype`` the caches' (default: the same;
    'e4m3'/'e5m2': uint8 caches with k_descale and v_descale, float32 (B, H_kv) Arrays;
    ``check_device_data`` reads them back and rejects values that are not finite and > 0). Returns
    O (a new array like q, or ``out``), and its LSE (B, H, Nq) with ``return_lse``. cache_seqlens
    is not advanced: that is the caller's, as in flash-attn. numpy arrays (float32 or float16; every
    array numpy, no fp8 caches, no queue) take the host path described above."""
    if isinstance(q, np.ndarray):
        if queue is not None or wait_for is not None or cache_dtype is not None or dtype is not None:
            _fail(Status.InvalidArgument, "queue, wait_for, dtype, cache_dtype: only with pyopencl Arrays "
                                          "(numpy arrays run on the default Session in float32 or float16)")
        if k_descale is not None or v_descale is not None or check_device_data:
            _fail(Status.InvalidArgument, "k_descale, v_descale, check_device_data: fp8 caches take pyopencl Arrays")
        return _host_attention_with_kvcache(q, k_cache, v_cache, cache_seqlens, k_new, v_new, block_table,
                                            cache_batch_idx, rotary_cos, rotary_sin, rotary_interleaved, causal,
                                            window, softcap, scale, alibi_slopes, num_splits, return_lse, out)
    for name, a in (("q", q), ("k_cache", k_cache), ("v_cache", v_cache), ("cache_seqlens", cache_seqlens)):
        if not _is_pyopencl(a):
            _fail(Status.InvalidArgument, f"{name}: expected a pyopencl Array, got {type(a).__name__}")
    if q.ndim != 4 or k_cache.ndim != 4 or v_cache.ndim != 4:
        _fail(Status.InvalidArgument, f"q, k_cache, v_cache: expected 4 dimensions each, got {q.ndim}, {k_cache.ndim}, "
                                      f"{v_cache.ndim}")
    queue = queue or q.queue
    args = _sizes(q, k_cache, block_table, k_new, rotary_cos, rotary_interleaved, causal, window, softcap, scale,
                  alibi_slopes, num_splits)
    args.dtype = _storage(q.dtype, "q", dtype, device=True)
    if cache_dtype is not None and cache_dtype not in _DTYPES:
        _fail(Status.UnsupportedDType, f"cache_dtype: unknown '{cache_dtype}' (expected f32, f16, bf16, e4m3 or e5m2)")
    cache = _DTYPES[cache_dtype] if cache_dtype is not None else args.dtype
    if cache != args.dtype:
        args.cache_dtype = cache
    for name, a in (("k_cache", k_cache), ("v_cache", v_cache)):
        if a.dtype.itemsize != _ITEMSIZE[cache]:
            _fail(Status.InvalidArgument, f"{name}: a {cache_dtype or dtype or q.dtype} cache takes {_ITEMSIZE[cache]}-byte "
                                          f"elements (fp8: uint8), got {a.dtype}")
    batch, seqlen_q, heads, _ = q.shape
    args.check_device_data = check_device_data
    args.q = _tensor(q, "q", False)
    args.k_cache = _tensor(k_cache, "k_cache", False)
    args.v_cache = _tensor(v_cache, "v_cache", False)
    inputs = [q, k_cache, v_cache, cache_seqlens]
    args.cache_seqlens = _int32(cache_seqlens, "cache_seqlens")

    if block_table is not None:
        table = _int32(block_table, "block_table")
        if block_table.ndim != 2:
            _fail(Status.InvalidArgument, f"block_table: expected (B, max_pages), got shape {tuple(block_table.shape)}")
        args.block_table = table
        inputs.append(block_table)
    if cache_batch_idx is not None:
        args.cache_batch_idx = _int32(cache_batch_idx, "cache_batch_idx")
        inputs.append(cache_batch_idx)
    if (k_new is None) != (v_new is None):
        _fail(Status.InvalidArgument, "k_new: k_new and v_new go together")
    if k_new is not None:
        args.k_new = _tensor(k_new, "k_new", False)
        args.v_new = _tensor(v_new, "v_new", False)
        inputs += [k_new, v_new]
    if rotary_cos is not None or rotary_sin is not None:
        if rotary_cos is None or rotary_sin is None:
            _fail(Status.InvalidArgument, "rotary_cos: rotary_cos and rotary_sin go together")
        args.rotary_cos = _float32(rotary_cos, "rotary_cos")
        args.rotary_sin = _float32(rotary_sin, "rotary_sin")
        inputs += [rotary_cos, rotary_sin]
    if alibi_slopes is not None:
        args.alibi_slopes = _float32(alibi_slopes, "alibi_slopes")
        inputs.append(alibi_slopes)
    for name, d in (("k_descale", k_descale), ("v_descale", v_descale)):
        if d is not None:
            setattr(args, name, _float32(d, name))
            inputs.append(d)

    out = _output(out, q, "out", queue)
    args.o = _tensor(out, "out", False)
    lse = None
    if return_lse:
        import pyopencl.array as cla

        lse = cla.empty(queue, (batch, heads, seqlen_q), np.float32)
        args.lse = _buffer(lse, "lse")
    launch = _ext.forward_kvcache(queue.int_ptr, args, _wait_list(inputs, wait_for))
    # the caches are written in place when k_new is appended: they carry the call's event too
    _mark_done(launch, [out, lse] + ([k_cache, v_cache] if k_new is not None else []))
    return (out, lse) if return_lse else out


def _sizes(q, k_cache, block_table, k_new, rotary_cos, rotary_interleaved: bool, causal: bool, window: Sequence[int],
           softcap: float, scale: Optional[float], alibi_slopes, num_splits: int) -> "_ext.KvCacheArgs":
    """KvCacheArgs with the call's sizes and switches (both paths); buffers are set by the caller,
    which also checks the optional arrays' types afterwards: their shapes are read here through
    np.shape / np.ndim, so a list or other wrong type reaches that check instead of failing here."""
    if q.ndim != 4 or k_cache.ndim != 4:
        _fail(Status.InvalidArgument, f"q, k_cache: expected 4 dimensions each, got {q.ndim}, {k_cache.ndim}")
    args = _ext.KvCacheArgs()
    args.batch, args.seqlen_q, args.heads, args.head_dim = (int(n) for n in q.shape)
    args.heads_kv = int(k_cache.shape[2])
    args.causal = causal
    args.window = _window(window)
    args.softcap = softcap
    if scale is not None:
        args.scale = scale
    args.num_splits = num_splits
    if block_table is not None:
        args.num_pages, args.page_size = int(k_cache.shape[0]), int(k_cache.shape[1])
        args.max_pages = int(np.shape(block_table)[1]) if np.ndim(block_table) == 2 else 0
    else:
        args.cache_batch, args.cache_seqlen = int(k_cache.shape[0]), int(k_cache.shape[1])
    if k_new is not None:
        args.seqlen_new = int(np.shape(k_new)[1]) if np.ndim(k_new) == 4 else 0
    if rotary_cos is not None and np.ndim(rotary_cos) == 2:
        args.rotary_seqlen, args.rotary_dim = int(np.shape(rotary_cos)[0]), 2 * int(np.shape(rotary_cos)[1])
        args.rotary_interleaved = rotary_interleaved
    if alibi_slopes is not None:
        args.alibi_per_batch = np.ndim(alibi_slopes) == 2
    return args


def _host_attention_with_kvcache(q, k_cache, v_cache, cache_seqlens, k_new, v_new, block_table, cache_batch_idx,
                                 rotary_cos, rotary_sin, rotary_interleaved, causal, window, softcap, scale,
                                 alibi_slopes, num_splits, return_lse, out):
    """The numpy path: Session::forward_kvcache on dense float32 host arrays (int32 indices). A
    float32 C-contiguous writeable cache is passed as it is, so the append lands in it (without any
    copy where the device shares host memory and the array meets its alignment); float16 or strided
    caches are converted into float32 copies and written back after an append. O is computed into
    float32 and returned (or written into ``out``) in q's dtype; LSE (B, H, Nq) float32. Indices
    out of range (a sequence past the capacity with its append, a cache row or used page outside
    the cache or pool) are named errors (Session::forward_kvcache checks the host values), where
    device arrays' are clamped or dropped by the kernels."""
    given = dict(k_cache=k_cache, v_cache=v_cache, cache_seqlens=cache_seqlens, k_new=k_new, v_new=v_new,
                 block_table=block_table, cache_batch_idx=cache_batch_idx, rotary_cos=rotary_cos,
                 rotary_sin=rotary_sin, alibi_slopes=alibi_slopes, out=out)
    for name, a in given.items():
        if a is not None and not isinstance(a, np.ndarray):
            _fail(Status.InvalidArgument, f"{name}: expected a numpy array like q, got {type(a).__name__}")
    if q.dtype not in (np.float32, np.float16):
        _fail(Status.UnsupportedDType, f"q: numpy arrays take float32 or float16, got {q.dtype}")
    for name, a in (("k_cache", k_cache), ("v_cache", v_cache), ("k_new", k_new), ("v_new", v_new)):
        if a is not None and a.dtype != q.dtype:
            _fail(Status.UnsupportedDType, f"{name}: dtype {a.dtype} differs from q's {q.dtype}")
    if (k_new is None) != (v_new is None):
        _fail(Status.InvalidArgument, "k_new: k_new and v_new go together")
    if (rotary_cos is None) != (rotary_sin is None):
        _fail(Status.InvalidArgument, "rotary_cos: rotary_cos and rotary_sin go together")
    if rotary_cos is not None and k_new is None:
        _fail(Status.InvalidArgument, "rotary_cos: the rotary embedding applies to q and the appended k; pass k_new "
                                      "and v_new")
    for name, a in (("k_cache", k_cache), ("v_cache", v_cache)):
        if k_new is not None and not a.flags.writeable:
            _fail(Status.InvalidArgument, f"{name}: a read-only array, and k_new/v_new are appended into it")
    # (caches that are not dense float32 go through copies, whose copy-backs would write over each
    # other where the two share elements; an interleaved pool's disjoint views pass)
    if k_new is not None and np.shares_memory(k_cache, v_cache):
        _fail(Status.InvalidArgument, "v_cache: shares memory with k_cache, which k_new is appended into")
    for name, a in (("cache_seqlens", cache_seqlens), ("cache_batch_idx", cache_batch_idx),
                    ("block_table", block_table)):
        if a is None:
            continue
        if a.dtype.kind not in "iu":
            _fail(Status.InvalidArgument, f"{name}: expected integers (int32), got {a.dtype}")
        _check_int32_values(a, name)
    if out is not None and (out.shape != q.shape or out.dtype != q.dtype):
        _fail(Status.InvalidArgument, f"out: expected shape {q.shape} and dtype {q.dtype}, got {out.shape} {out.dtype}")
    args = _sizes(q, k_cache, block_table, k_new, rotary_cos, rotary_interleaved, causal, window, softcap, scale,
                  alibi_slopes, num_splits)
    args.dtype = DType.F32 if q.dtype == np.float32 else DType.F16  # O and appended rows stored as q's

    def dense(a, dtype=np.float32):
        return None if a is None else np.ascontiguousarray(a, dtype=dtype)

    def in_place(cache):  # the caller's array itself where the Session can write into it
        ok = cache.dtype == np.float32 and cache.flags.c_contiguous and cache.flags.writeable
        return cache if ok else dense(cache)

    k_host, v_host = in_place(k_cache), in_place(v_cache)
    o = np.empty(q.shape, np.float32)
    lse = np.empty((q.shape[0], q.shape[2], q.shape[1]), np.float32)
    session().forward_kvcache(args, dense(q), k_host, v_host, dense(cache_seqlens, np.int32), o, lse=lse,
                              k_new=dense(k_new), v_new=dense(v_new),
                              cache_batch_idx=dense(cache_batch_idx, np.int32),
                              block_table=dense(block_table, np.int32), rotary_cos=dense(rotary_cos),
                              rotary_sin=dense(rotary_sin), alibi_slopes=dense(alibi_slopes))
    if k_new is not None:
        for cache, written in ((k_cache, k_host), (v_cache, v_host)):
            if written is not cache:
                np.copyto(cache, written, casting="unsafe")  # float16 caches: values already float16's
    if out is None:
        out = o.astype(q.dtype)
    else:
        np.copyto(out, o, casting="unsafe")
    return (out, lse) if return_lse else out


def _window(window: Sequence[int]) -> "_ext.Window":
    w = _ext.Window()
    w.left, w.right = _window_pair(window)
    return w


def _typed(a, name: str, dtype, what: str) -> int:
    if not _is_pyopencl(a) or a.dtype != dtype or not a.flags.c_contiguous:
        _fail(Status.InvalidArgument, f"{name}: expected a contiguous {what} pyopencl Array")
    return _buffer(a, name)


def _int32(a, name: str) -> int:
    return _typed(a, name, np.int32, "int32")


def _float32(a, name: str) -> int:
    return _typed(a, name, np.float32, "float32")
