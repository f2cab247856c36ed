"""Shared pieces of the Python tests: a float64 numpy reference of flashcl's attention with every
variant (GQA, causal and window aligned to the bottom-right, softcap, ALiBi, boolean mask, bias,
varlen), fresh random inputs, and the tolerance rule (fp32 storage: a small multiple of fp32
rounding; fp16: the reference run on the fp16-rounded inputs, within fp16 output rounding).
The tests run on the default device (PoCL's CPU device in CI) with the caches CTest sets;
test_cuda_tensors.py only where torch.cuda is available (bench/gpu/python.sh on the GPU machine).
"""

import zlib

import numpy as np
import pytest

try:  # test_cuda_tensors.py needs a CUDA device: not collected (rather than skipped, which CTest fails) without one
    import torch

    collect_ignore = [] if torch.cuda.is_available() else ["test_cuda_tensors.py"]
except ImportError:
    collect_ignore = ["test_cuda_tensors.py"]


def _forward_parts(q, k, v, causal=False, window=(-1, -1), softcap=0.0, alibi=None, mask=None, scale=None):
    """The float64 forward of dense q (B, Nq, H, d), k, v (B, Nk, H_kv, d), keeping what the backward needs."""
    q, k, v = (np.asarray(a, dtype=np.float64) for a in (q, k, v))
    batch, nq, heads, d = q.shape
    nk, heads_kv = k.shape[1], k.shape[2]
    k, v = np.repeat(k, heads // heads_kv, axis=2), np.repeat(v, heads // heads_kv, axis=2)
    scale = 1.0 / np.sqrt(d) if scale is None else scale
    s = np.einsum("bqhd,bkhd->bhqk", q, k) * scale
    tanh = None
    if softcap:
        tanh = np.tanh(s / softcap)
        s = softcap * tanh
    i = np.arange(nq)[:, None] + nk - nq  # the key position a query is aligned with (bottom-right)
    j = np.arange(nk)[None, :]
    if alibi is not None:
        slopes = np.asarray(alibi, dtype=np.float64)
        slopes = slopes[None, :] if slopes.ndim == 1 else slopes
        s = s - slopes[:, :, None, None] * np.abs(i - j)
    if mask is not None:
        mask = np.asarray(mask)
        if mask.dtype == np.bool_:
            s = np.where(mask, s, -np.inf)
        else:
            s = s + mask.astype(np.float64)
    visible = np.ones((nq, nk), dtype=bool)
    if causal:
        visible &= j <= i
    if window[0] >= 0:
        visible &= j >= i - window[0]
    if window[1] >= 0:
        visible &= j <= i + window[1]
    s = np.where(visible, s, -np.inf)
    m = s.max(axis=-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    total = np.exp(s - m).sum(axis=-1, keepdims=True)
    with np.errstate(divide="ignore"):
        lse = (np.log(total) + m)[..., 0]
    p = np.where(total > 0, np.exp(s - m) / np.where(total > 0, total, 1.0), 0.0)
    o = np.einsum("bhqk,bkhd->bqhd", p, v)
    return dict(q=q, k=k, v=v, p=p, o=o, lse=lse, tanh=tanh, scale=scale, heads_kv=heads_kv)


def reference(q, k, v, **options):
    """O (B, Nq, H, d) and LSE (B, H, Nq) in float64; options: causal, window, softcap, alibi, mask, scale."""
    f = _forward_parts(q, k, v, **options)
    return f["o"], f["lse"]


def reference_backward(q, k, v, d_o, **options):
    """dQ, dK, dV and the gradient of an additive bias (the scores' gradient, summed over the bias's
    broadcast dimensions; None without a float mask), in float64, by the chain rule through the
    softmax, the softcap's tanh and GQA's repeated heads."""
    f = _forward_parts(q, k, v, **options)
    d_o = np.asarray(d_o, dtype=np.float64)
    p, o = f["p"], f["o"]
    d_v = np.einsum("bhqk,bqhd->bkhd", p, d_o)
    d_p = np.einsum("bqhd,bkhd->bhqk", d_o, f["v"])
    d_s = p * (d_p - (d_o * o).sum(-1).transpose(0, 2, 1)[..., None])
    d_bias = None
    mask = options.get("mask")
    if mask is not None and np.asarray(mask).dtype != np.bool_:
        shape = np.asarray(mask).shape
        d_bias = d_s.sum(axis=tuple(a for a in range(2) if shape[a] == 1), keepdims=True)
    d_raw = d_s * (1 - f["tanh"] ** 2) if f["tanh"] is not None else d_s
    d_q = np.einsum("bhqk,bkhd->bqhd", d_raw, f["k"]) * f["scale"]
    d_k = np.einsum("bhqk,bqhd->bkhd", d_raw, f["q"]) * f["scale"]
    group = q.shape[2] // f["heads_kv"]
    fold = lambda g: g.reshape(*g.shape[:2], f["heads_kv"], group, g.shape[-1]).sum(3)
    return d_q, fold(d_k), fold(d_v), d_bias


def reference_varlen(q, k, v, cu_q, cu_k, **options):
    """Packed q (total_q, H, d), k, v (total_k, H_kv, d): O (total_q, H, d), LSE (H, total_q)."""
    out = np.zeros(q.shape, dtype=np.float64)
    lse = np.full((q.shape[1], q.shape[0]), -np.inf)
    for b in range(len(cu_q) - 1):
        qs, ks = slice(cu_q[b], cu_q[b + 1]), slice(cu_k[b], cu_k[b + 1])
        if cu_q[b + 1] == cu_q[b]:
            continue
        if cu_k[b + 1] == cu_k[b]:
            continue  # no keys: O = 0, LSE = -inf
        o, l = reference(q[None, qs], k[None, ks], v[None, ks], **options)
        out[qs], lse[:, qs] = o[0], l[0]
    return out, lse


def assert_close(actual, expected, atol, name="O"):
    actual = np.asarray(actual, dtype=np.float64)
    assert actual.shape == expected.shape, f"{name}: shape {actual.shape} != {expected.shape}"
    assert not np.isnan(actual).any(), f"{name}: NaN"
    finite = np.isfinite(expected)
    assert (np.isfinite(actual) == finite).all(), f"{name}: infinities differ"
    err = np.abs(actual[finite] - expected[finite]).max(initial=0.0)
    assert err <= atol, f"{name}: max error {err:.3g} > {atol:.3g}"


FP32_ATOL = 2e-5  # unit-variance inputs: fp32 arithmetic over a few hundred keys stays well inside
FP16_ATOL = 2e-3  # fp16 output rounding (2^-11 relative) around values of magnitude ~1


@pytest.fixture
def rng(request):
    # Fresh inputs per test, reproducible by test name.
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


def randn(rng, *shape, dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)


def round_bf16(a):
    """float32 values rounded to bfloat16 (nearest even), as float32."""
    bits = np.asarray(a, dtype=np.float32).view(np.uint32)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    return rounded.astype(np.uint32).view(np.float32)


# (B, Nq, Nk, H, H_kv, d, options) for every forward variant the API exposes; odd sizes throughout.
def variant_cases(rng_seed=1):
    g = np.random.default_rng(rng_seed)
    return {
        "plain": (2, 37, 37, 3, 3, 40, {}),
        "causal_gqa_nq_lt_nk": (2, 33, 50, 4, 2, 24, dict(causal=True)),
        "causal_nq_gt_nk_empty_rows": (1, 40, 17, 2, 2, 16, dict(causal=True)),
        "window_mqa": (2, 45, 45, 2, 1, 32, dict(window=(7, 3))),
        "causal_window": (1, 64, 64, 2, 2, 64, dict(causal=True, window=(16, -1))),
        "softcap_scale": (2, 30, 41, 2, 2, 48, dict(softcap=3.0, scale=0.8)),
        "alibi": (2, 30, 30, 4, 4, 32, dict(alibi=g.uniform(0.05, 0.5, 4).astype(np.float32))),
        "alibi_per_batch_causal": (2, 29, 35, 2, 2, 20, dict(causal=True, alibi=g.uniform(0.05, 0.5, (2, 2)).astype(np.float32))),
        "bool_mask": (2, 25, 31, 2, 2, 16, dict(mask=g.random((2, 1, 25, 31)) > 0.3)),
        "bias": (2, 25, 31, 3, 3, 16, dict(mask=g.standard_normal((1, 3, 25, 31)).astype(np.float32))),
        "odd_head_dim": (1, 97, 97, 2, 2, 111, {}),
    }
