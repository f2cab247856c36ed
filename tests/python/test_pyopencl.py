"""flashcl.attention on pyopencl Arrays: the caller's context and queue, buffers passed by int_ptr
with element strides and offsets (no copies), checked against the float64 reference for every
forward variant and the backward (with a bias gradient); views ((B, H, S, d) transposed, offset
slices) and the errors only the device path has (non-contiguous head dim, a buffer of another
context).
"""

import numpy as np
import pytest

import flashcl
from conftest import (FP16_ATOL, FP32_ATOL, assert_close, randn, reference, reference_backward, reference_varlen,
                      variant_cases)

cl = pytest.importorskip("pyopencl")
cla = pytest.importorskip("pyopencl.array")

CASES = variant_cases()  # the numpy tests' shapes and switches: the same kernels, compiled once


def _device():
    """The pyopencl device that flashcl's default Session uses."""
    info = flashcl.session().info
    return cl.get_platforms()[info.platform_index].get_devices()[info.device_index]


@pytest.fixture(scope="module")
def queue():
    return cl.CommandQueue(cl.Context([_device()]))


def to_dev(queue, a):
    return cla.to_device(queue, np.ascontiguousarray(a))


@pytest.mark.parametrize("name", list(CASES))
def test_variant(rng, queue, name):
    b, nq, nk, h, hkv, d, options = CASES[name]
    q, k, v = randn(rng, b, nq, h, d), randn(rng, b, nk, hkv, d), randn(rng, b, nk, hkv, d)
    api = dict(options)
    if "alibi" in api:
        api["alibi_slopes"] = to_dev(queue, api.pop("alibi"))
    if "mask" in api:
        mask = api["mask"]
        api["mask"] = to_dev(queue, mask.astype(np.uint8) if mask.dtype == np.bool_ else mask)
    o, lse = flashcl.attention(to_dev(queue, q), to_dev(queue, k), to_dev(queue, v), return_lse=True, **api)
    assert isinstance(o, cla.Array) and o.queue is queue
    ref_o, ref_lse = reference(q, k, v, **options)
    assert_close(o.get(), ref_o, FP32_ATOL)
    assert_close(lse.get(), ref_lse, FP32_ATOL, "LSE")


def test_numpy_variant_data(rng, queue):
    # Masks, slopes given as numpy arrays are copied to the device; Q, K, V stay where they are.
    b, nq, nk, h, hkv, d, options = CASES["bool_mask"]
    q, k, v = randn(rng, b, nq, h, d), randn(rng, b, nk, hkv, d), randn(rng, b, nk, hkv, d)
    o = flashcl.attention(to_dev(queue, q), to_dev(queue, k), to_dev(queue, v), mask=options["mask"])
    assert_close(o.get(), reference(q, k, v, **options)[0], FP32_ATOL)


def test_views_without_copies(rng, queue):
    # (B, H, S, d) storage read as (B, S, H, d) through strides, Q as an offset slice of a larger
    # array, and O written into a caller's (B, H, S, d) buffer through its transposed view.
    qh, kh, vh = randn(rng, 3, 2, 19, 16), randn(rng, 2, 2, 23, 16), randn(rng, 2, 2, 23, 16)
    q = to_dev(queue, qh)[1:].transpose((0, 2, 1, 3))
    k, v = to_dev(queue, kh).transpose((0, 2, 1, 3)), to_dev(queue, vh).transpose((0, 2, 1, 3))
    assert q.offset > 0 and not q.flags.c_contiguous
    out_bhsd = cla.zeros(queue, (2, 2, 19, 16), np.float32)
    out = out_bhsd.transpose((0, 2, 1, 3))
    result = flashcl.attention(q, k, v, causal=True, out=out)
    assert result is out
    ref = reference(*(a.transpose(0, 2, 1, 3) for a in (qh[1:], kh, vh)), causal=True)[0]
    assert_close(out_bhsd.get().transpose(0, 2, 1, 3), ref, FP32_ATOL)


def test_fp16(rng, queue):
    q, k, v = (randn(rng, 1, 40, 2, 64, dtype=np.float16) for _ in range(3))
    o = flashcl.attention(to_dev(queue, q), to_dev(queue, k), to_dev(queue, v), causal=True)
    assert o.dtype == np.float16
    assert_close(o.get(), reference(q, k, v, causal=True)[0], FP16_ATOL)


def test_varlen(rng, queue):
    cu_q = np.array([0, 7, 30], dtype=np.int32)
    cu_k = np.array([0, 12, 33], dtype=np.int32)
    q, k, v = randn(rng, 30, 4, 24), randn(rng, 33, 2, 24), randn(rng, 33, 2, 24)
    o, lse = flashcl.attention(to_dev(queue, q), to_dev(queue, k), to_dev(queue, v), cu_seqlens_q=to_dev(queue, cu_q),
                               cu_seqlens_k=to_dev(queue, cu_k), causal=True, return_lse=True)
    ref_o, ref_lse = reference_varlen(q, k, v, cu_q, cu_k, causal=True)
    assert_close(o.get(), ref_o, FP32_ATOL)
    assert_close(lse.get(), ref_lse, FP32_ATOL, "LSE")


def test_orders_after_pending_work(rng, queue):
    # The call waits for the inputs' pending events and O carries the kernel's event.
    q, k, v = randn(rng, 1, 16, 1, 40), randn(rng, 1, 16, 1, 40), randn(rng, 1, 16, 1, 40)
    qd = to_dev(queue, q)
    qd *= 2.0  # an enqueued kernel on q
    o = flashcl.attention(qd, to_dev(queue, k), to_dev(queue, v))
    assert o.events
    assert_close(o.get(), reference(2 * q, k, v)[0], FP32_ATOL)


def test_errors(rng, queue):
    S = flashcl.Status
    q = to_dev(queue, randn(rng, 1, 8, 2, 16))
    with pytest.raises(flashcl.Error, match="q: the last dimension must be contiguous") as info:
        flashcl.attention(to_dev(queue, randn(rng, 1, 8, 16, 2)).transpose((0, 1, 3, 2)), q, q)
    assert info.value.status == S.InvalidArgument
    other = cl.CommandQueue(cl.Context([_device()]))
    with pytest.raises(flashcl.Error, match="another cl_context") as info:
        flashcl.attention(q, q, q, queue=other)
    assert info.value.status == S.InvalidHandle
    with pytest.raises(flashcl.Error, match="k: expected a pyopencl Array"):
        flashcl.attention(q, q.get(), q)
    with pytest.raises(flashcl.Error, match="out: expected a pyopencl Array of shape"):
        flashcl.attention(q, q, q, out=cla.empty(queue, (1, 8, 2, 8), np.float32))
    assert_close(flashcl.attention(q, q, q).get(), reference(q.get(), q.get(), q.get())[0], FP32_ATOL)


@pytest.mark.parametrize("name", ["causal_gqa_nq_lt_nk", "bias"])
def test_backward(rng, queue, name):
    b, nq, nk, h, hkv, d, options = CASES[name]
    q, k, v = randn(rng, b, nq, h, d), randn(rng, b, nk, hkv, d), randn(rng, b, nk, hkv, d)
    d_o = randn(rng, b, nq, h, d)
    dev = [to_dev(queue, a) for a in (q, k, v, d_o)]
    api = dict(options)
    if "mask" in api:
        api["mask"] = to_dev(queue, api["mask"])
    o, lse = flashcl.attention(*dev[:3], return_lse=True, **api)
    grads = flashcl.attention_backward(dev[3], *dev[:3], o, lse, return_dbias="mask" in api, **api)
    assert all(isinstance(g, cla.Array) for g in grads)
    for got, want, label in zip(grads, reference_backward(q, k, v, d_o, **options), ("dQ", "dK", "dV", "dBias")):
        assert_close(got.get(), want, 5 * FP32_ATOL, label)


def test_second_review(rng, queue):
    """A backward given d_o or out in another dtype than q read their bytes as q's (NaN gradients); a
    varlen call without max_seqlen read its offsets before the events in wait_for had filled them."""
    q16 = to_dev(queue, randn(rng, 1, 8, 2, 16).astype(np.float16))
    o16, lse = flashcl.attention(q16, q16, q16, return_lse=True)
    with pytest.raises(flashcl.Error, match="d_o: dtype float32 differs from q's float16"):
        flashcl.attention_backward(to_dev(queue, randn(rng, 1, 8, 2, 16)), q16, q16, q16, o16, lse)
    x = randn(rng, 13, 2, 16)
    xd = to_dev(queue, x)
    cu_true = np.array([0, 6, 13], dtype=np.int32)
    cu = to_dev(queue, np.array([0, 1, 2], dtype=np.int32))
    gate = cl.UserEvent(queue.context)
    other = cl.CommandQueue(queue.context)
    fill = cl.enqueue_copy(other, cu.data, cu_true, wait_for=[gate], is_blocking=False)
    threading = pytest.importorskip("threading")
    threading.Timer(0.2, lambda: gate.set_status(cl.command_execution_status.COMPLETE)).start()
    o = flashcl.attention(xd, xd, xd, cu_seqlens_q=cu, cu_seqlens_k=cu, wait_for=[fill])
    assert_close(o.get(), reference_varlen(x, x, x, cu_true, cu_true)[0], FP32_ATOL)
