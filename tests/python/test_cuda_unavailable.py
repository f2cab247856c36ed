"""flashcl.cuda where CUDA memory cannot reach OpenCL (no NVIDIA driver, as in CI): named errors
from every entry point, the pluggable allocator's C function returning nullptr with the reason
instead of crashing (on a CUDA machine: giving out and taking back registered memory), and flashcl.torch still running CPU tensors. On a machine with a CUDA device
the same calls must succeed instead (tests/python/cuda checks the rest there)."""

import ctypes

import pytest

import flashcl
from flashcl import _flashcl as ext

torch = pytest.importorskip("torch")
import flashcl.cuda  # noqa: E402
import flashcl.torch  # noqa: E402


def test_bridge_status_is_named():
    if torch.cuda.is_available():
        assert flashcl.cuda.available() and flashcl.cuda.bridge().device_name
        return
    assert not flashcl.cuda.available()
    for entry in (flashcl.cuda.bridge, flashcl.cuda.mem_pool, flashcl.cuda.use_pool):
        with pytest.raises(flashcl.Error) as e:
            entry()
        assert e.value.status == flashcl.Status.DeviceNotFound and "torch.cuda is not available" in str(e.value)


def test_driver_missing_is_named():
    # The binding itself, past PyTorch: loading libcuda.so.1 fails here with the loader's reason.
    try:
        info = ext.cuda_open(0)
    except flashcl.Error as e:
        assert e.status == flashcl.Status.DeviceNotFound
        assert "CUDA" in str(e) and ("libcuda.so.1" in str(e) or "OpenCL" in str(e) or "cuInit" in str(e))
        assert ext.cuda_usage() == (0, 0)
        return
    assert torch.cuda.is_available() and info.granularity > 0


def test_allocator_c_functions():
    library = ctypes.CDLL(ext.__file__)
    alloc = getattr(library, ext.cuda_alloc_symbol)
    alloc.restype, alloc.argtypes = ctypes.c_void_p, [ctypes.c_ssize_t, ctypes.c_int, ctypes.c_void_p]
    free = getattr(library, ext.cuda_free_symbol)
    free.restype, free.argtypes = None, [ctypes.c_void_p, ctypes.c_ssize_t, ctypes.c_int, ctypes.c_void_p]
    if torch.cuda.is_available() and flashcl.cuda.available():
        address = alloc(1 << 20, 0, None)  # registered until freed
        assert address and ext.cuda_locate(address + 100, 1000) is not None
        free(address, 1 << 20, 0, None)
        assert ext.cuda_locate(address + 100, 1000) is None
        return
    assert alloc(1 << 20, 0, None) is None
    assert "CUDA" in ext.cuda_last_alloc_error()
    free(ctypes.c_void_p(4096), 1 << 20, 0, None)  # an address it never gave out: ignored
    assert ext.cuda_locate(4096, 16) is None


def test_cpu_tensors_unaffected():
    calls = flashcl.cuda.stats()["calls"]
    q = torch.randn(1, 9, 2, 8)
    out = flashcl.torch.flash_attn_func(q, q, q, causal=True)
    assert out.shape == q.shape and out.device.type == "cpu" and flashcl.cuda.stats()["calls"] == calls
