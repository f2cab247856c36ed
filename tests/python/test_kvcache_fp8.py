"""The FP8 KV cache from Python (issue 23): flashcl.attention_with_kvcache with cache_dtype="e4m3" or
"e5m2" on pyopencl uint8 caches with (B, H_kv) descales, contiguous and paged (shuffled pages, a
page size that does not divide the cache), with an append. Checked against the float64 reference
on the dequantised cache the device left (bytes decoded here from the formats' definitions,
independently of the library), O poisoned with NaN first; the appended rows hold k_new / descale
rounded to the format (within half its step). Also the named errors, the optional arrays' among them.
"""

import numpy as np
import pytest

import flashcl
from conftest import FP16_ATOL, assert_close, reference

cl = pytest.importorskip("pyopencl")
cla = pytest.importorskip("pyopencl.array")


@pytest.fixture(scope="module")
def queue():
    info = flashcl.session().info
    device = cl.get_platforms()[info.platform_index].get_devices()[info.device_index]
    return cl.CommandQueue(cl.Context([device]))


def fp8_decode(bytes_, fmt):
    """e4m3 (bias 7, 3 mantissa bits, S.1111.111 NaN) or e5m2 (bias 15, 2 bits, IEEE-like) by definition."""
    b = bytes_.astype(np.int64)
    sign = np.where(b & 0x80, -1.0, 1.0)
    mbits, bias = (3, 7) if fmt == "e4m3" else (2, 15)
    e, m = (b & 0x7F) >> mbits, b & ((1 << mbits) - 1)
    mag = np.where(e == 0, m * 2.0 ** (1 - bias - mbits), ((1 << mbits) + m) * np.exp2(e - bias - mbits))
    if fmt == "e4m3":
        return np.where((b & 0x7F) == 0x7F, np.nan, sign * mag)
    return np.where(e == 31, np.where(m == 0, sign * np.inf, np.nan), sign * mag)


@pytest.mark.parametrize("fmt, page_size", [("e4m3", 0), ("e5m2", 0), ("e4m3", 5), ("e5m2", 16)])
def test_fp8_cache_append_and_attend(rng, queue, fmt, page_size):
    b, h, hkv, d, capacity = 2, 8, 2, 32, 80
    lens = np.array([61, 9], dtype=np.int32)
    q = rng.standard_normal((b, 1, h, d)).astype(np.float16)
    k_new = rng.standard_normal((b, 1, hkv, d)).astype(np.float16)
    v_new = rng.standard_normal((b, 1, hkv, d)).astype(np.float16)
    k_desc = rng.uniform(0.005, 0.02, (b, hkv)).astype(np.float32)
    v_desc = rng.uniform(0.005, 0.02, (b, hkv)).astype(np.float32)
    if page_size:
        max_pages = -(-capacity // page_size)
        pool = b * max_pages + 1
        table = rng.permutation(pool)[: b * max_pages].reshape(b, max_pages).astype(np.int32)
        cache_shape = (pool, page_size, hkv, d)
    else:
        cache_shape = (b, capacity, hkv, d)
    # random codes, NaN codes left out (the cache is data a model wrote, finite)
    codes = np.array([c for c in range(256) if not np.isnan(fp8_decode(np.array([c]), fmt)[0])
                      and np.isfinite(fp8_decode(np.array([c]), fmt)[0])], dtype=np.uint8)
    k8 = codes[rng.integers(0, len(codes), cache_shape)]
    v8 = codes[rng.integers(0, len(codes), cache_shape)]
    # the codes reach 448 (e4m3) or 57344 (e5m2): keep the dequantised cache O(1) with these descales
    if fmt == "e5m2":
        k8 = np.where((k8 & 0x7F) > 0x5B, k8 & 0x80 | 0x5B, k8).astype(np.uint8)
        v8 = np.where((v8 & 0x7F) > 0x5B, v8 & 0x80 | 0x5B, v8).astype(np.uint8)
    dk, dv = cla.to_device(queue, k8), cla.to_device(queue, v8)
    out = cla.to_device(queue, np.full(q.shape, np.nan, dtype=np.float16))
    kwargs = dict(k_new=cla.to_device(queue, k_new), v_new=cla.to_device(queue, v_new), cache_dtype=fmt,
                  k_descale=cla.to_device(queue, k_desc), v_descale=cla.to_device(queue, v_desc), out=out,
                  check_device_data=True)
    if page_size:
        kwargs["block_table"] = cla.to_device(queue, table)
    o = flashcl.attention_with_kvcache(cla.to_device(queue, q), dk, dv, cla.to_device(queue, lens), **kwargs)
    o = o.get().astype(np.float64)
    k_after, v_after = fp8_decode(dk.get(), fmt), fp8_decode(dv.get(), fmt)

    def rows(cache, seq, n):  # (n, H_kv, d) of sequence seq, dequantised by the caller
        if not page_size:
            return cache[seq, :n]
        return np.stack([cache[table[seq, p // page_size], p % page_size] for p in range(n)])

    step = 2.0 ** -3 if fmt == "e4m3" else 2.0 ** -2
    for s in range(b):
        n = int(lens[s]) + 1
        k_s = rows(k_after, s, n) * k_desc[s][None, :, None]
        v_s = rows(v_after, s, n) * v_desc[s][None, :, None]
        # the appended row: k_new rounded to the format (relative half step; tiny values absolutely)
        for new, got, desc in ((k_new, k_s, k_desc), (v_new, v_s, v_desc)):
            exact = new[s, 0].astype(np.float64)
            assert np.all(np.abs(got[-1] - exact) <= step / 2 * np.abs(exact) + 2.0 ** -9 * desc[s][:, None] * 2)
        ref, _ = reference(q[s:s + 1].astype(np.float64), k_s[None], v_s[None])
        assert_close(o[s:s + 1], ref, FP16_ATOL)


def test_fp8_cache_named_errors(queue):
    b, h, hkv, d, n = 1, 2, 1, 16, 8
    q = cla.to_device(queue, np.zeros((b, 1, h, d), dtype=np.float16))
    k8 = cla.to_device(queue, np.zeros((b, n, hkv, d), dtype=np.uint8))
    lens = cla.to_device(queue, np.array([4], dtype=np.int32))
    desc = cla.to_device(queue, np.ones((b, hkv), dtype=np.float32))
    with pytest.raises(flashcl.Error, match="k_descale"):
        flashcl.attention_with_kvcache(q, k8, k8, lens, cache_dtype="e4m3", v_descale=desc)
    with pytest.raises(flashcl.Error, match="k_cache"):  # uint8 Arrays for an f16 cache
        flashcl.attention_with_kvcache(q, k8, k8, lens)
    bad = cla.to_device(queue, np.zeros((b, hkv), dtype=np.float32))
    with pytest.raises(flashcl.Error, match="v_descale: entry 0"):
        flashcl.attention_with_kvcache(q, k8, k8, lens, cache_dtype="e4m3", k_descale=desc, v_descale=bad,
                                       check_device_data=True)
    out = flashcl.attention_with_kvcache(q, k8, k8, lens, cache_dtype="e4m3", k_descale=desc, v_descale=desc)
    assert np.all(out.get() == 0)  # zero cache, zero O


@pytest.mark.parametrize("change, message", [
    (dict(block_table=[[0]]), "block_table: expected a contiguous int32 pyopencl Array"),
    (dict(alibi_slopes=[0.5, 0.25]), "alibi_slopes: expected a contiguous float32 pyopencl Array"),
    (dict(rotary_cos=[[1.0]], rotary_sin=[[0.0]]), "rotary_cos: expected a contiguous float32 pyopencl Array"),
])
def test_pyopencl_optional_arrays_of_the_wrong_type(queue, change, message):
    # (the sizes are read before these arrays' types are checked; a list must still get the named error)
    q = cla.to_device(queue, np.zeros((1, 1, 2, 16), dtype=np.float16))
    cache = cla.to_device(queue, np.zeros((1, 8, 1, 16), dtype=np.float16))
    lens = cla.to_device(queue, np.array([4], dtype=np.int32))
    with pytest.raises(flashcl.Error, match=message):
        flashcl.attention_with_kvcache(q, cache, cache, lens, **change)
