"""FP8 from Python (issue 23): flashcl.quantize_fp8 on pyopencl Arrays, then flashcl.attention with
dtype="e4m3" and the descales, checked against the float64 reference on the dequantised inputs
(decoded here from the e4m3 definition, independently of the library); O poisoned with NaN first.
Packed (varlen) tensors quantised per sequence the same way; V quantised transposed and attended
as such. Also the named errors: missing descales, fp8 from numpy arrays, varlen quantisation's own.
"""

import numpy as np
import pytest

import flashcl
from conftest import FP32_ATOL, assert_close, randn, reference, reference_varlen

cl = pytest.importorskip("pyopencl")
cla = pytest.importorskip("pyopencl.array")


@pytest.fixture(scope="module")
def queue():
    info = flashcl.session().info
    device = cl.get_platforms()[info.platform_index].get_devices()[info.device_index]
    return cl.CommandQueue(cl.Context([device]))


def e4m3_decode(bytes_):
    """e4m3 from its definition: sign, 4 exponent bits (bias 7), 3 mantissa bits; S.1111.111 NaN."""
    b = bytes_.astype(np.int64)
    sign = np.where(b & 0x80, -1.0, 1.0)
    e, m = (b >> 3) & 0xF, b & 7
    mag = np.where(e == 0, m * 2.0 ** -9, (8 + m) * np.exp2(e - 10.0))
    return np.where((b & 0x7F) == 0x7F, np.nan, sign * mag)


@pytest.mark.parametrize("granularity, block, hadamard, causal", [("tensor", 0, False, False),
                                                                  ("head", 0, False, True),
                                                                  ("block", 16, True, True)])
def test_quantize_and_attend(rng, queue, granularity, block, hadamard, causal):
    b, n, h, hkv, d = 2, 37, 4, 2, 32
    q, k, v = randn(rng, b, n, h, d), randn(rng, b, n, hkv, d), randn(rng, b, n, hkv, d)
    group = 1 if granularity == "block" else h // hkv  # Q's descales must be (B, H_kv) unless per block
    q8, qd = flashcl.quantize_fp8(cla.to_device(queue, q), granularity=granularity, head_group=group, block=block,
                                  hadamard=hadamard, seed=9)
    k8, kd = flashcl.quantize_fp8(cla.to_device(queue, k), granularity=granularity, block=block, hadamard=hadamard,
                                  seed=9)
    v8, vd = flashcl.quantize_fp8(cla.to_device(queue, v), granularity=granularity, block=block)
    assert q8.dtype == np.uint8 and q8.shape == q.shape
    out = cla.to_device(queue, np.full(q.shape, np.nan, dtype=np.float32))
    o = flashcl.attention(q8, k8, v8, dtype="e4m3", descales=(qd, kd, vd), quant_block=block, out_dtype="f32",
                          causal=causal, out=out)

    def dequantised(x8, descale, heads, rows_group):
        x = e4m3_decode(x8.get())
        s = descale.get().astype(np.float64)
        if block:  # (B, heads, blocks): row i of head hh takes block i // block
            idx = np.arange(n) // block
            return x * s.reshape(b, heads, -1)[:, :, idx].transpose(0, 2, 1)[..., None]
        return x * np.repeat(s.reshape(b, -1), rows_group, axis=1)[:, None, :, None]

    ref, _ = reference(dequantised(q8, qd, h, group), dequantised(k8, kd, hkv, 1), dequantised(v8, vd, hkv, 1),
                       causal=causal)
    assert_close(o.get(), ref, FP32_ATOL)
    # the quantised attention stays close to the unquantised one (Hadamard keeps Q Kᵀ)
    assert np.sqrt(np.mean((o.get() - reference(q, k, v, causal=causal)[0]) ** 2)) < 0.05


@pytest.mark.parametrize("causal", [False, True])
def test_transposed_v(rng, queue, causal):
    """V quantised into (B, H_kv, d, Nk) (transposed=True) and passed with v_transposed gives the
    result of V as stored, from the same bytes; a transposed V of the wrong shape, one with 16-bit
    inputs and one with varlen are named errors."""
    b, n, h, hkv, d = 2, 37, 4, 2, 32
    q, k, v = randn(rng, b, n, h, d), randn(rng, b, n, hkv, d), randn(rng, b, n, hkv, d)
    q8, qd = flashcl.quantize_fp8(cla.to_device(queue, q), head_group=h // hkv)
    k8, kd = flashcl.quantize_fp8(cla.to_device(queue, k))
    v8, vd = flashcl.quantize_fp8(cla.to_device(queue, v))
    vt8, vtd = flashcl.quantize_fp8(cla.to_device(queue, v), transposed=True)
    assert vt8.shape == (b, hkv, d, n)
    assert np.array_equal(vt8.get(), v8.get().transpose(0, 2, 3, 1)) and np.array_equal(vtd.get(), vd.get())
    outs = []
    for vv, flag in ((v8, False), (vt8, True)):
        out = cla.to_device(queue, np.full(q.shape, np.nan, dtype=np.float32))
        outs.append(flashcl.attention(q8, k8, vv, dtype="e4m3", descales=(qd, kd, vd), out_dtype="f32", causal=causal,
                                      out=out, v_transposed=flag).get())
    assert not np.isnan(outs[1]).any()
    assert_close(outs[1], outs[0], FP32_ATOL)
    with pytest.raises(flashcl.Error, match=r"v: with v_transposed expected a pyopencl Array \(B, H_kv, d, Nk\)"):
        flashcl.attention(q8, k8, v8, dtype="e4m3", descales=(qd, kd, vd), v_transposed=True)
    with pytest.raises(flashcl.Error, match="v_transposed: a transposed V is for fp8 inputs"):
        x = cla.to_device(queue, q)
        flashcl.attention(x, x, x, v_transposed=True)
    with pytest.raises(flashcl.Error, match="v_transposed: not with varlen"):
        p8 = q8.reshape(b * n, h, d)
        flashcl.attention(p8, p8, p8, dtype="e4m3", descales=(qd, kd, vd), v_transposed=True,
                          cu_seqlens_q=np.array([0, n, 2 * n], np.int32), cu_seqlens_k=np.array([0, n, 2 * n], np.int32))


@pytest.mark.parametrize("granularity, block", [("tensor", 0), ("head", 0), ("block", 8)])
def test_quantize_varlen_per_sequence(rng, queue, granularity, block):
    h, hkv, d = 4, 2, 32
    cu_q = np.array([0, 13, 13, 20, 21], np.int32)  # lengths 13, 0, 7, 1 (longest 13)
    cu_k = np.array([0, 20, 20, 27, 54], np.int32)  # lengths 20, 0, 7, 27 (longest 27)
    q, k, v = randn(rng, 21, h, d), randn(rng, 54, hkv, d), randn(rng, 54, hkv, d)
    group = 1 if granularity == "block" else h // hkv

    def quantised(x, cu, head_group):
        return flashcl.quantize_fp8(cla.to_device(queue, x), granularity=granularity, head_group=head_group,
                                    block=block, cu_seqlens=cu)  # the longest sequence: from cu_seqlens

    (q8, qd), (k8, kd), (v8, vd) = quantised(q, cu_q, group), quantised(k, cu_k, 1), quantised(v, cu_k, 1)
    assert q8.shape == q.shape and q8.dtype == np.uint8
    out = cla.to_device(queue, np.full(q.shape, np.nan, dtype=np.float32))
    o = flashcl.attention(q8, k8, v8, dtype="e4m3", descales=(qd, kd, vd), quant_block=block, out_dtype="f32",
                          causal=True, cu_seqlens_q=cu_q, cu_seqlens_k=cu_k, out=out)

    def dequantised(x8, descale, cu, heads, rows_group):
        """Each sequence's rows times its scales: (B, H / rows_group), or (B, H, blocks) per block."""
        x, s, batch = e4m3_decode(x8.get()), descale.get().astype(np.float64), len(cu) - 1
        longest = int(np.diff(cu).max())
        for b in range(batch):
            rows = np.arange(cu[b], cu[b + 1])
            if block:
                x[rows] *= s.reshape(batch, heads, -(-longest // block))[b][:, (rows - cu[b]) // block].T[..., None]
            else:
                x[rows] *= np.repeat(s.reshape(batch, -1)[b], rows_group)[None, :, None]
        return x

    ref, _ = reference_varlen(dequantised(q8, qd, cu_q, h, group), dequantised(k8, kd, cu_k, hkv, 1),
                              dequantised(v8, vd, cu_k, hkv, 1), cu_q, cu_k, causal=True)
    assert_close(o.get(), ref, FP32_ATOL)
    unquantised, _ = reference_varlen(q, k, v, cu_q, cu_k, causal=True)
    assert np.sqrt(np.mean((o.get() - unquantised) ** 2)) < 0.05


def test_fp8_errors(rng, queue):
    x = cla.to_device(queue, randn(rng, 1, 8, 2, 16))
    x8, xd = flashcl.quantize_fp8(x)
    with pytest.raises(flashcl.Error, match="fp8.q_descale") as info:
        flashcl.attention(x8, x8, x8, dtype="e4m3", descales=None, quant_block=0)
    assert info.value.status == flashcl.Status.InvalidArgument
    with pytest.raises(flashcl.Error, match="pyopencl"):
        flashcl.attention(np.zeros((1, 8, 2, 16), np.uint8), np.zeros((1, 8, 2, 16), np.uint8),
                          np.zeros((1, 8, 2, 16), np.uint8), dtype="e4m3")
    with pytest.raises(flashcl.Error, match="hadamard"):
        flashcl.quantize_fp8(cla.to_device(queue, randn(rng, 1, 4, 1, 12)), hadamard=True)
    packed = cla.to_device(queue, randn(rng, 10, 2, 16))
    with pytest.raises(flashcl.Error, match="transposed") as info:
        flashcl.quantize_fp8(packed, cu_seqlens=np.array([0, 4, 10], np.int32), transposed=True)
    assert info.value.status == flashcl.Status.InvalidArgument
    with pytest.raises(flashcl.Error, match="cu_seqlens"):
        flashcl.quantize_fp8(packed, cu_seqlens=np.array([[0, 10]], np.int32))
    # a device array's bytes are read as they are: float32 bytes are no f16 or bf16 values (they were
    # reinterpreted), and a strided view of offsets is not the offsets (every other one was read)
    for in_dtype in ("f16", "bf16"):
        with pytest.raises(flashcl.Error, match=f"x: a device array of float32 does not hold {in_dtype} values"):
            flashcl.quantize_fp8(x, in_dtype=in_dtype)
    strided = cla.to_device(queue, np.array([0, 99, 4, 99, 10], np.int32))[::2]
    with pytest.raises(flashcl.Error, match="cu_seqlens: expected a contiguous 1-d int32 array"):
        flashcl.quantize_fp8(packed, cu_seqlens=strided, max_seqlen=6)
