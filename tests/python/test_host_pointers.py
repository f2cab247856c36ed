"""numpy arrays without copies (issue 21): on a CPU device (PoCL) flashcl.attention's Session runs
on buffers over the arrays' own memory (CL_MEM_USE_HOST_PTR) when they sit at the device's base
address alignment, O and LSE written straight into the returned (page-aligned) arrays;
misaligned inputs are copied. Both give the same results bit for bit, and match the float64 reference.
"""

import numpy as np

import flashcl
from conftest import FP32_ATOL, assert_close, reference


def at_offset(values, shift):
    """A C-contiguous float32 copy of `values` starting `shift` floats past a page boundary."""
    room = np.empty(values.size + 4096 // 4 + shift, np.float32)
    start = (-room.ctypes.data % 4096) // 4 + shift
    out = room[start:start + values.size].reshape(values.shape)
    out[...] = values
    return out


def test_aligned_and_misaligned_arrays(rng):
    shape = (1, 96, 2, 32)
    q, k, v = (rng.standard_normal(shape).astype(np.float32) for _ in range(3))
    sess = flashcl.functional.session()
    results = {}
    for shift in (0, 1):
        o, lse = flashcl.attention(*(at_offset(x, shift) for x in (q, k, v)), causal=True, return_lse=True)
        if sess.info.is_cpu:  # Q, K, V, O and LSE over host memory, or only the binding's (aligned) O and LSE
            assert sess.last_forward_host_buffers == (5 if shift == 0 else 2), shift
        assert o.ctypes.data % 4096 == 0 and lse.ctypes.data % 4096 == 0  # the binding's aligned outputs
        results[shift] = (o, lse)
    ref_o, ref_lse = reference(q, k, v, causal=True)
    assert_close(results[0][0], ref_o, FP32_ATOL)
    assert_close(results[0][1], ref_lse, FP32_ATOL, "LSE")
    assert np.array_equal(results[0][0], results[1][0]) and np.array_equal(results[0][1], results[1][1])
