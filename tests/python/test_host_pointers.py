"""numpy arrays and CPU torch tensors without copies (issue 21): on a CPU device (PoCL)
flashcl.attention's and attention_backward's Session runs on buffers over the arrays' own memory
(CL_MEM_USE_HOST_PTR) when they sit at the device's base address alignment, O and LSE (dQ, dK, dV
and dBias) written straight into the returned (page-aligned) arrays. Inputs off the alignment by
whole floats (numpy's own large arrays start 16 bytes past a page) are used in place too, at an
element offset (the backward's LSE, without one, is copied). All give the same results bit for bit,
and match the float64 reference; so does the autograd Function's CPU path, whose backward runs on
the saved tensors' memory.
"""

import os

import numpy as np
import pytest
import torch

import flashcl
import flashcl.torch as fcl_torch
from conftest import FP32_ATOL, assert_close, reference, reference_backward


def at_offset(values, shift):
    """A C-contiguous float32 copy of `values` starting `shift` floats past a page boundary."""
    room = np.empty(values.size + 4096 // 4 + shift, np.float32)
    start = (-room.ctypes.data % 4096) // 4 + shift
    out = room[start:start + values.size].reshape(values.shape)
    out[...] = values
    return out


class HostFacts:
    """What Session uses in place on its device, read from the device through pyopencl as
    src/api/host_buffers.cpp reads it (tests/support.hpp's HostMemoryFacts): f32 arrays at
    CL_DEVICE_MEM_BASE_ADDR_ALIGN on a host-unified device, and inputs off it by whole floats where
    the page size is a multiple of the alignment (used at an offset; LSE, without one, is not)."""

    def __init__(self, sess):
        cl = pytest.importorskip("pyopencl")
        device = cl.Device.from_int_ptr(sess.device)
        self.unified = bool(device.host_unified_memory)
        self.align = max(device.mem_base_addr_align // 8, 1)
        self.widen = self.unified and os.sysconf("SC_PAGE_SIZE") % self.align == 0

    def aligned(self, x):
        return self.unified and x.ctypes.data % self.align == 0

    def in_place(self, x, at_offset=True):
        """Whether input array x lies over host memory (at an offset where at_offset allows it)."""
        return self.aligned(x) or (at_offset and self.widen and x.ctypes.data % 4 == 0)


def test_aligned_and_misaligned_arrays(rng):
    shape = (1, 96, 2, 32)
    q, k, v = (rng.standard_normal(shape).astype(np.float32) for _ in range(3))
    sess = flashcl.functional.session()
    facts = HostFacts(sess)
    results = {}
    for shift in (0, 1):
        inputs = [at_offset(x, shift) for x in (q, k, v)]
        o, lse = flashcl.attention(*inputs, causal=True, return_lse=True)
        # Q, K, V (one float off: at an offset), the binding's aligned O and LSE
        want = sum(map(facts.in_place, inputs)) + facts.aligned(o) + facts.aligned(lse)
        assert sess.last_forward_host_buffers == want, shift
        assert o.ctypes.data % 4096 == 0 and lse.ctypes.data % 4096 == 0  # the binding's aligned outputs
        results[shift] = (o, lse)
    ref_o, ref_lse = reference(q, k, v, causal=True)
    assert_close(results[0][0], ref_o, FP32_ATOL)
    assert_close(results[0][1], ref_lse, FP32_ATOL, "LSE")
    assert np.array_equal(results[0][0], results[1][0]) and np.array_equal(results[0][1], results[1][1])


def test_backward_aligned_and_misaligned_arrays(rng):
    # GQA, causal, a bias with its gradient: the ten arrays of Session::backward
    q = rng.standard_normal((2, 48, 4, 16)).astype(np.float32)
    k, v = (rng.standard_normal((2, 64, 2, 16)).astype(np.float32) for _ in range(2))
    bias = rng.uniform(-1, 1, (1, 4, 48, 64)).astype(np.float32)
    d_o = rng.standard_normal(q.shape).astype(np.float32)
    options = dict(causal=True, mask=bias)
    o, lse = flashcl.attention(q, k, v, return_lse=True, **options)
    sess = flashcl.functional.session()
    facts = HostFacts(sess)
    results = {}
    for shift in (0, 1):
        inputs = [at_offset(x, shift) for x in (d_o, q, k, v, o, lse)]
        grads = flashcl.attention_backward(*inputs, return_dbias=True, deterministic=True, **options)
        # every array over host memory; one float off, all but LSE (no offset field)
        want = sum(map(facts.in_place, inputs[:5])) + facts.in_place(inputs[5], at_offset=False)
        assert sess.last_backward_host_buffers == want + sum(map(facts.aligned, grads)), shift
        assert all(g.ctypes.data % 4096 == 0 for g in grads)  # the binding's aligned outputs
        results[shift] = grads
    want = reference_backward(q, k, v, d_o, causal=True, mask=bias)
    for got, ref, label in zip(results[0], want, ("dQ", "dK", "dV", "dBias")):
        assert_close(got, ref, 5 * FP32_ATOL, label)
    for a, b in zip(results[0], results[1]):
        assert np.array_equal(a, b)


def test_numpy_allocated_inputs_in_place(rng):
    """Arrays as numpy allocates them (no manual alignment; the large ones mmap'd, 16 bytes past a
    page): every input is used in place on a CPU device, forward and backward, and the results are
    those of page-aligned copies bit for bit and within the float64 bounds."""
    for shape in ((1, 33, 3, 16), (1, 512, 4, 64)):  # 6 KiB and 512 KiB per array
        q, k, v, d_o = (rng.standard_normal(shape).astype(np.float32) for _ in range(4))
        sess = flashcl.functional.session()
        facts = HostFacts(sess)
        o, lse = flashcl.attention(q, k, v, causal=True, return_lse=True)
        # Q, K, V in place (aligned or at an offset), the binding's O and LSE
        want = sum(map(facts.in_place, (q, k, v))) + facts.aligned(o) + facts.aligned(lse)
        assert sess.last_forward_host_buffers == want, [x.ctypes.data % 128 for x in (q, k, v)]
        grads = flashcl.attention_backward(d_o, q, k, v, o, lse, causal=True, deterministic=True)
        # Q, K, V, O, dO and the binding's LSE, dQ, dK, dV
        want = sum(map(facts.in_place, (d_o, q, k, v, o))) + facts.aligned(lse) + sum(map(facts.aligned, grads))
        assert sess.last_backward_host_buffers == want, [x.ctypes.data % 128 for x in (d_o, q, k, v)]
        o_al, lse_al = flashcl.attention(*(at_offset(x, 0) for x in (q, k, v)), causal=True, return_lse=True)
        assert np.array_equal(o, o_al) and np.array_equal(lse, lse_al)
        grads_al = flashcl.attention_backward(*(at_offset(x, 0) for x in (d_o, q, k, v, o, lse)), causal=True,
                                              deterministic=True)
        assert all(np.array_equal(a, b) for a, b in zip(grads, grads_al))
        ref_o, ref_lse = reference(q, k, v, causal=True)
        assert_close(o, ref_o, FP32_ATOL)
        assert_close(lse, ref_lse, FP32_ATOL, "LSE")
        for got, ref, label in zip(grads, reference_backward(q, k, v, d_o, causal=True), ("dQ", "dK", "dV")):
            assert_close(got, ref, 5 * FP32_ATOL, label)


def test_torch_backward_on_tensor_memory(rng):
    """flash_attn_func's autograd on CPU tensors: q, k, v at the alignment (numpy memory shared by
    torch.from_numpy), O and LSE the binding's aligned arrays, so the backward wraps them all."""
    shape = (1, 40, 2, 32)
    q, k, v, d_o = (rng.standard_normal(shape).astype(np.float32) for _ in range(4))
    qt, kt, vt = (torch.from_numpy(at_offset(x, 0)).requires_grad_() for x in (q, k, v))
    out = fcl_torch.flash_attn_func(qt, kt, vt, causal=True, deterministic=True)
    out.backward(torch.from_numpy(d_o))
    sess = flashcl.functional.session()
    facts = HostFacts(sess)
    if facts.aligned(at_offset(q, 0)):  # page-aligned arrays lie over host memory on this device
        # at least Q, K, V, O, LSE and the three gradients; dO is torch's own memory
        assert sess.last_backward_host_buffers >= 8
    want = reference_backward(q, k, v, d_o, causal=True)
    for t, ref, label in zip((qt, kt, vt), want, ("dQ", "dK", "dV")):
        assert_close(t.grad.numpy(), ref, 5 * FP32_ATOL, label)
