"""flashcl.attention on numpy arrays (host memory, through a Session): every forward variant,
the three algorithms, fp16/bf16 storage and varlen against the float64 reference; errors raised as
flashcl.Error with the library's (or the Python layer's) named message and status.
"""

import numpy as np
import pytest

import flashcl
from conftest import (FP16_ATOL, FP32_ATOL, assert_close, randn, reference, reference_backward, reference_varlen,
                      round_bf16, variant_cases)

CASES = variant_cases()


def api_options(options):
    out = dict(options)
    if "alibi" in out:
        out["alibi_slopes"] = out.pop("alibi")
    return out


@pytest.mark.parametrize("name", list(CASES))
def test_variant(rng, name):
    b, nq, nk, h, hkv, d, options = CASES[name]
    q, k, v = randn(rng, b, nq, h, d), randn(rng, b, nk, hkv, d), randn(rng, b, nk, hkv, d)
    o, lse = flashcl.attention(q, k, v, return_lse=True, **api_options(options))
    ref_o, ref_lse = reference(q, k, v, **options)
    assert o.dtype == np.float32 and o.shape == q.shape
    assert_close(o, ref_o, FP32_ATOL)
    assert_close(lse, ref_lse, FP32_ATOL, "LSE")


@pytest.mark.parametrize("algorithm", ["standard", "fa1", "fa2"])
def test_algorithms(rng, algorithm):
    # Causal and GQA are in the backward's algorithm test below; each case here compiles new kernels.
    b, nq, nk, h, hkv, d, options = CASES["bool_mask"]
    q, k, v = randn(rng, b, nq, h, d), randn(rng, b, nk, hkv, d), randn(rng, b, nk, hkv, d)
    o = flashcl.attention(q, k, v, algorithm=algorithm, **api_options(options))
    assert_close(o, reference(q, k, v, **options)[0], FP32_ATOL)


def test_fp16(rng):
    q, k, v = (randn(rng, 2, 37, 2, 64, dtype=np.float16) for _ in range(3))
    o = flashcl.attention(q, k, v, causal=True)
    assert o.dtype == np.float16
    assert_close(o, reference(q, k, v, causal=True)[0], FP16_ATOL)


def test_bf16_storage(rng):
    q, k, v = (randn(rng, 1, 29, 2, 32) for _ in range(3))
    o = flashcl.attention(q, k, v, dtype="bf16")
    ref = reference(round_bf16(q), round_bf16(k), round_bf16(v))[0]
    assert_close(o, ref, 8e-3)  # bf16 output rounding (2^-9 relative) around values of magnitude ~1


def test_bf16_and_f16_bit_patterns(rng):
    """uint16 arrays with dtype='bf16' or 'f16' are those types' bit patterns in and out (they were
    converted as numbers, 16256 for 1.0); integers of any other kind are refused."""
    q, k, v = (round_bf16(randn(rng, 1, 21, 2, 16)) for _ in range(3))
    bits = [(a.view(np.uint32) >> 16).astype(np.uint16) for a in (q, k, v)]
    o = flashcl.attention(*bits, dtype="bf16")
    assert o.dtype == np.uint16 and o.shape == q.shape
    assert_close((o.astype(np.uint32) << 16).view(np.float32), reference(q, k, v)[0], 8e-3)
    half = [a.astype(np.float16) for a in (q, k, v)]
    o16 = flashcl.attention(*(a.view(np.uint16) for a in half), dtype="f16")
    assert o16.dtype == np.uint16
    assert_close(o16.view(np.float16).astype(np.float32), reference(*half)[0], FP16_ATOL)
    S = flashcl.Status
    expect_error(S.UnsupportedDType, "q: dtype uint16 is not supported", flashcl.attention, *bits)
    ints = [a.astype(np.int32) for a in (q, k, v)]
    expect_error(S.UnsupportedDType, "q: dtype int32 cannot hold f32", flashcl.attention, *ints, dtype="f32")


def test_careless_arguments_get_named_errors(rng):
    """An out array the numpy call used to ignore, ALiBi slopes of the wrong shape (the first H were
    used), gradients' out arrays."""
    q = randn(rng, 1, 8, 2, 16)
    S = flashcl.Status
    expect_error(S.InvalidArgument, "out: numpy calls return a new array", flashcl.attention, q, q, q,
                 out=np.zeros_like(q))
    expect_error(S.InvalidArgument, "alibi_slopes: expected shape (2,) (H) or (1, 2) (B, H), got (7,)",
                 flashcl.attention, q, q, q, alibi_slopes=np.ones(7, np.float32))
    o, lse = flashcl.attention(q, q, q, return_lse=True)
    expect_error(S.InvalidArgument, "d_k: numpy calls return new arrays", flashcl.attention_backward, o, q, q, q, o,
                 lse, d_k=np.zeros_like(q))
    expect_error(S.UnsupportedDType, "d_o: dtype int32 differs", flashcl.attention_backward, o.astype(np.int32), q,
                 q, q, o, lse)


def test_varlen_padded_buffers(rng):
    """Packed arrays with rows past cu_seqlens[-1] (flash-attn's padded buffers): O 0 and LSE -inf
    there, the sequences' rows as the reference; the backward's gradients 0 on the padding."""
    cu_q, cu_k = np.array([0, 6, 10], np.int32), np.array([0, 3, 11], np.int32)
    q, k, v = randn(rng, 13, 2, 8), randn(rng, 12, 2, 8), randn(rng, 12, 2, 8)
    o, lse = flashcl.attention(q, k, v, cu_seqlens_q=cu_q, cu_seqlens_k=cu_k, return_lse=True)
    ref_o, ref_lse = reference_varlen(q[:10], k[:11], v[:11], cu_q, cu_k)
    assert o.shape == q.shape and lse.shape == (2, 13)
    assert_close(o[:10], ref_o, FP32_ATOL)
    assert_close(lse[:, :10], ref_lse, FP32_ATOL, "LSE")
    assert np.all(o[10:] == 0) and np.all(lse[:, 10:] == -np.inf)
    d_q, d_k, d_v = flashcl.attention_backward(randn(rng, 13, 2, 8), q, k, v, o, lse, cu_seqlens_q=cu_q,
                                               cu_seqlens_k=cu_k)
    assert d_q.shape == q.shape and d_k.shape == k.shape
    assert np.all(d_q[10:] == 0) and np.all(d_k[11:] == 0) and np.all(d_v[11:] == 0)


@pytest.mark.parametrize("causal", [False, True])
def test_varlen(rng, causal):
    # Sequences of different lengths, one without queries and one without keys (its rows: O = 0, LSE = -inf).
    cu_q = np.array([0, 13, 13, 40, 45], dtype=np.int32)
    cu_k = np.array([0, 20, 31, 58, 58], dtype=np.int32)
    h, hkv, d = 4, 2, 24
    q, k, v = randn(rng, 45, h, d), randn(rng, 58, hkv, d), randn(rng, 58, hkv, d)
    o, lse = flashcl.attention(q, k, v, cu_seqlens_q=cu_q, cu_seqlens_k=cu_k, causal=causal, return_lse=True)
    ref_o, ref_lse = reference_varlen(q, k, v, cu_q, cu_k, causal=causal)
    assert lse.shape == (h, 45)
    assert_close(o, ref_o, FP32_ATOL)
    assert_close(lse, ref_lse, FP32_ATOL, "LSE")


def test_strided_input_layout(rng):
    # (B, H, S, d) arrays seen as (B, S, H, d): the host path takes any numpy layout.
    q, k, v = (randn(rng, 2, 3, 21, 16).transpose(0, 2, 1, 3) for _ in range(3))
    assert_close(flashcl.attention(q, k, v), reference(q, k, v)[0], FP32_ATOL)


def test_devices_and_version():
    devices = flashcl.devices()
    assert devices and all(d.name for d in devices)
    assert flashcl.__version__.count(".") == 2


def expect_error(status, text, fn, *args, **kwargs):
    with pytest.raises(flashcl.Error) as info:
        fn(*args, **kwargs)
    assert isinstance(info.value, RuntimeError)
    assert info.value.status == status, info.value
    assert text in str(info.value), str(info.value)


def test_errors(rng):
    q, k, v = randn(rng, 1, 8, 3, 16), randn(rng, 1, 8, 3, 16), randn(rng, 1, 8, 3, 16)
    S = flashcl.Status
    expect_error(S.InvalidArgument, "q: expected 4 dimensions", flashcl.attention, q[0], k, v)
    expect_error(S.UnsupportedDType, "q: dtype float64", flashcl.attention, q.astype(np.float64), k, v)
    expect_error(S.UnsupportedDType, "k: dtype float16 differs", flashcl.attention, q, k.astype(np.float16), v)
    expect_error(S.InvalidArgument, "k: head dim 8 differs", flashcl.attention, q, k[..., :8], v[..., :8])
    expect_error(S.InvalidArgument, "v: shape", flashcl.attention, q, k, v[:, :4])
    # The library's own checks, with its messages.
    expect_error(S.InvalidArgument, "heads_kv: heads (3) must be a multiple of heads_kv (2)", flashcl.attention, q,
                 k[:, :, :2], v[:, :, :2])
    big = randn(rng, 1, 4, 1, 300)
    expect_error(S.InvalidArgument, "head_dim: must be in 1..", flashcl.attention, big, big, big)
    expect_error(S.InvalidArgument, "window.left: must be >= -1", flashcl.attention, q, k, v, window=(-5, 0))
    expect_error(S.InvalidArgument, "softcap: must be finite and >= 0", flashcl.attention, q, k, v, softcap=-1.0)
    expect_error(S.InvalidArgument, "mask.batch: 2 does not broadcast", flashcl.attention, q, k, v,
                 mask=np.ones((2, 1, 8, 8), dtype=bool))
    expect_error(S.InvalidArgument, "mask: expected shape", flashcl.attention, q, k, v, mask=np.ones((8, 9), bool))
    expect_error(S.InvalidArgument, "mask: dtype int64", flashcl.attention, q, k, v, mask=np.ones((8, 8), np.int64))
    expect_error(S.InvalidArgument, "algorithm: unknown 'fa3'", flashcl.attention, q, k, v, algorithm="fa3")
    expect_error(S.InvalidArgument, "cu_seqlens_q, cu_seqlens_k: give both", flashcl.attention, q[0], k[0], v[0],
                 cu_seqlens_q=np.array([0, 8], np.int32))
    expect_error(S.InvalidArgument, "cu_seqlens_q, cu_seqlens_k: expected batch + 1", flashcl.attention, q[0], k[0],
                 v[0], cu_seqlens_q=np.array([0, 8], np.int32), cu_seqlens_k=np.array([0, 4, 8], np.int32))
    expect_error(S.DeviceNotFound, "nothing matches", flashcl.attention, q, k, v, platform="no-such-platform")
    # Still usable after every error.
    assert_close(flashcl.attention(q, k, v), reference(q, k, v)[0], FP32_ATOL)


# Each case compiles its own kernels on PoCL (seconds each): the variants in few calls.
BACKWARD_CASES = dict(CASES, softcap_bool_mask_gqa=(2, 21, 26, 4, 2, 24, dict(
    softcap=2.5, mask=np.random.default_rng(2).random((1, 4, 21, 26)) > 0.25)))


@pytest.mark.parametrize("name", ["causal_gqa_nq_lt_nk", "causal_nq_gt_nk_empty_rows", "window_mqa",
                                  "alibi_per_batch_causal", "bias", "softcap_bool_mask_gqa"])
def test_backward_variant(rng, name):
    b, nq, nk, h, hkv, d, options = BACKWARD_CASES[name]
    q, k, v = randn(rng, b, nq, h, d), randn(rng, b, nk, hkv, d), randn(rng, b, nk, hkv, d)
    d_o = randn(rng, b, nq, h, d)
    api = api_options(options)
    bias = name == "bias"
    o, lse = flashcl.attention(q, k, v, return_lse=True, **api)
    grads = flashcl.attention_backward(d_o, q, k, v, o, lse, return_dbias=bias, **api)
    expected = reference_backward(q, k, v, d_o, **options)
    for got, want, label in zip(grads, expected, ("dQ", "dK", "dV", "dBias")):
        assert_close(got, want, 5 * FP32_ATOL, label)
    assert len(grads) == (4 if bias else 3)


@pytest.mark.parametrize("algorithm", ["standard", "fa1", "fa2"])
def test_backward_algorithms_and_determinism(rng, algorithm):
    b, nq, nk, h, hkv, d, options = CASES["causal_gqa_nq_lt_nk"]
    q, k, v = randn(rng, b, nq, h, d), randn(rng, b, nk, hkv, d), randn(rng, b, nk, hkv, d)
    d_o = randn(rng, b, nq, h, d)
    o, lse = flashcl.attention(q, k, v, return_lse=True, algorithm=algorithm, **options)
    runs = [flashcl.attention_backward(d_o, q, k, v, o, lse, algorithm=algorithm, deterministic=True, **options)
            for _ in range(2)]
    for got, want, label in zip(runs[0], reference_backward(q, k, v, d_o, **options), ("dQ", "dK", "dV")):
        assert_close(got, want, 5 * FP32_ATOL, label)
    assert all(np.array_equal(a, b) for a, b in zip(*runs)), "deterministic backward differs between runs"


def test_backward_varlen(rng):
    cu_q = np.array([0, 9, 9, 31], dtype=np.int32)
    cu_k = np.array([0, 14, 20, 41], dtype=np.int32)
    q, k, v = randn(rng, 31, 4, 16), randn(rng, 41, 2, 16), randn(rng, 41, 2, 16)
    d_o = randn(rng, 31, 4, 16)
    o, lse = flashcl.attention(q, k, v, cu_seqlens_q=cu_q, cu_seqlens_k=cu_k, causal=True, return_lse=True)
    grads = flashcl.attention_backward(d_o, q, k, v, o, lse, cu_seqlens_q=cu_q, cu_seqlens_k=cu_k, causal=True)
    expected = [np.zeros(a.shape) for a in (q, k, v)]
    for i in range(len(cu_q) - 1):
        qs, ks = slice(cu_q[i], cu_q[i + 1]), slice(cu_k[i], cu_k[i + 1])
        if cu_q[i + 1] > cu_q[i] and cu_k[i + 1] > cu_k[i]:
            g = reference_backward(q[None, qs], k[None, ks], v[None, ks], d_o[None, qs], causal=True)
            expected[0][qs], expected[1][ks], expected[2][ks] = g[0][0], g[1][0], g[2][0]
    for got, want, label in zip(grads, expected, ("dQ", "dK", "dV")):
        assert_close(got, want, 5 * FP32_ATOL, label)


def test_backward_errors(rng):
    q = randn(rng, 1, 8, 2, 16)
    o, lse = flashcl.attention(q, q, q, return_lse=True)
    expect_error(flashcl.Status.InvalidArgument, "d_o: shape", flashcl.attention_backward, q[:, :4], q, q, q, o, lse)
    expect_error(flashcl.Status.InvalidArgument, "d_bias: return_dbias needs an additive float bias",
                 flashcl.attention_backward, q, q, q, q, o, lse, return_dbias=True)
    # a review's finds: an LSE of the right size in another shape gave wrong gradients; None arrays
    # failed in Python's own words
    expect_error(flashcl.Status.InvalidArgument, "lse: expected shape (1, 2, 8) (the forward's), got (1, 8, 2)",
                 flashcl.attention_backward, q, q, q, q, o, np.ascontiguousarray(lse.transpose(0, 2, 1)))
    expect_error(flashcl.Status.UnsupportedDType, "lse: dtype int32 is not a float", flashcl.attention_backward, q, q,
                 q, q, o, lse.astype(np.int32))
    expect_error(flashcl.Status.InvalidArgument, "d_o: expected an array like q", flashcl.attention_backward, None, q, q,
                 q, o, lse)
    expect_error(flashcl.Status.InvalidArgument, "lse: expected an array like q", flashcl.attention_backward, q, q, q,
                 q, o, None)
    packed = q[0]
    cu = np.array([0, 8], np.int32)
    o, lse = flashcl.attention(packed, packed, packed, cu_seqlens_q=cu, cu_seqlens_k=cu, return_lse=True)
    expect_error(flashcl.Status.InvalidArgument, "lse: expected shape (2, 8)", flashcl.attention_backward,
                 packed, packed, packed, packed, o, lse.T.copy(), cu_seqlens_q=cu, cu_seqlens_k=cu)


def test_offsets_windows_and_sizes_get_named_errors(rng):
    """A review's finds: varlen offsets cast to int32 unchecked (int64 past it wrapped to valid-looking
    ones, floats were truncated), windows of other lengths than two (Python's own errors, or a
    third entry ignored), sizes past int32 (nanobind's unnamed 'incompatible function arguments')."""
    q = randn(rng, 1, 8, 2, 16)
    packed = q[0]
    S = flashcl.Status
    for cu, says in ((np.array([0, 2, 2**32 + 5]), "cu_seqlens_q: values past the int32 range"),
                     (np.array([0, 2.7, 8.0]), "cu_seqlens_q: expected a 1-d integer array of B + 1 offsets, got float64"),
                     (np.array([[0, 8]]), "cu_seqlens_q: expected a 1-d integer array of B + 1 offsets, got int64 of "
                                          "shape (1, 2)")):
        expect_error(S.InvalidArgument, says, flashcl.attention, packed, packed, packed, cu_seqlens_q=cu,
                     cu_seqlens_k=np.array([0, 8]))
    for window, says in ((3, "window: expected (left, right) integers, got 3"),
                         ((3,), "window: expected (left, right) integers, got (3,)"),
                         ((3, 1, 2), "window: expected (left, right) integers, got (3, 1, 2)"),
                         ((2.5, 0), "window: expected (left, right) integers"),
                         ((-5, 0), "window.left: must be >= -1 (-1: unbounded), got -5")):
        expect_error(S.InvalidArgument, says, flashcl.attention, q, q, q, window=window)
    cu = np.array([0, 8], np.int32)
    expect_error(S.InvalidArgument, "max_seqlen_q: 1099511627776 does not fit int32", flashcl.attention, packed,
                 packed, packed, cu_seqlens_q=cu, cu_seqlens_k=cu, max_seqlen_q=2**40)
    assert flashcl.attention(q, q, q, window=(2**40, 0)).shape == q.shape  # past int32: unbounded
    # integers in the other forms callers hold them in still pass
    want = flashcl.attention(q, q, q, window=(3, 0))
    for window in ((np.int64(3), np.int64(0)), np.array([3, 0]), [3, 0], (3.0, 0.0)):
        assert np.array_equal(flashcl.attention(q, q, q, window=window), want)


def test_planning_queries():
    # The binding's device queries, on the default Session's device (an integer cl_device_id).
    from flashcl import _flashcl

    args = _flashcl.ForwardArgs()
    args.batch, args.heads, args.seqlen_q, args.seqlen_k, args.head_dim = 1, 2, 64, 48, 32
    device = flashcl.session().device
    args.algorithm = flashcl.Algorithm.Standard
    assert _flashcl.workspace_bytes(device, args) >= 1 * 2 * 64 * 48 * 4  # S: B·H·Nq·Nk floats
    args.algorithm = flashcl.Algorithm.FA2
    assert _flashcl.workspace_bytes(device, args) == 0
    info = _flashcl.tile_info(device, args)
    assert info.algorithm == flashcl.Algorithm.FA2 and info.block_rows > 0 and info.reason
    # and the KV-cache call's split kernel on the Session's queue
    kv = _flashcl.KvCacheArgs()
    kv.batch, kv.heads, kv.heads_kv, kv.seqlen_q, kv.head_dim, kv.cache_seqlen = 2, 4, 2, 1, 32, 4096
    kinfo = _flashcl.kvcache_info(flashcl.session().queue, kv)
    assert kinfo.kernel.startswith("decode_") and 1 <= kinfo.num_splits <= 1024 and kinfo.work_group_size >= 1
    assert "splits" in kinfo.reason
    assert _flashcl.kvcache_workspace_bytes(device, kv) >= 2 * 4 * kinfo.num_splits * 33 * 4  # B·H·Nq·splits·(d+1) floats


def test_second_review_named_errors(rng):
    """Varlen V with other rows than K was cut to K's offsets before the shapes were compared, so it
    passed; a backward with a bias given as a list and return_dbias failed without a name; a cache
    given as both caches on the copy path lost the appended key."""
    cu = np.array([0, 5, 12], dtype=np.int32)
    q, k = randn(rng, 12, 2, 16), randn(rng, 12, 2, 16)
    with pytest.raises(flashcl.Error, match=r"v: shape \(20, 2, 16\) differs from k's \(12, 2, 16\)"):
        flashcl.attention(q, k, randn(rng, 20, 2, 16), cu_seqlens_q=cu, cu_seqlens_k=cu)
    q, k, v, d_o = (randn(rng, 1, 6, 2, 8) for _ in range(4))
    bias = (0.1 * randn(rng, 6, 6)).tolist()
    o, lse = flashcl.attention(q, k, v, mask=bias, return_lse=True)
    grads = flashcl.attention_backward(d_o, q, k, v, o, lse, mask=bias, return_dbias=True)
    assert grads[3].shape == (6, 6) and np.isfinite(grads[3]).all()
    cache = randn(rng, 1, 8, 2, 16).astype(np.float16)
    step = randn(rng, 1, 1, 2, 16).astype(np.float16)
    with pytest.raises(flashcl.Error, match="v_cache: shares memory with k_cache"):
        flashcl.attention_with_kvcache(step, cache, cache, np.array([3], np.int32), k_new=step, v_new=step)


def test_offsets_past_the_rows_are_named():
    """A last offset past the packed rows was reported as "q: expected N floats", never naming the
    offsets."""
    x = np.ones((10, 2, 8), np.float32)
    with pytest.raises(flashcl.Error, match="cu_seqlens_q: its last offset 12 is past the 10 rows of q"):
        flashcl.attention(x, x, x, cu_seqlens_q=np.array([0, 5, 12], np.int32),
                          cu_seqlens_k=np.array([0, 5, 10], np.int32))
