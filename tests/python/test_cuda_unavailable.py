"""flashcl.cuda where CUDA memory cannot reach OpenCL (no NVIDIA driver, as in CI): named errors
from every entry point, the pluggable allocator's C function returning nullptr with the reason
instead of crashing (on a CUDA machine: giving out and taking back registered memory), the
ordering setting (FLASHCL_CUDA_ORDER, set_ordering) checked before any driver is needed, the
fallback from the flag ordering when the loader is told cuStreamWaitValue32 is missing
(FLASHCL_CUDA_HIDE), and flashcl.torch still running CPU tensors. On a machine with a CUDA device the same calls must
succeed instead (test_cuda_tensors.py checks the rest there)."""

import ctypes
import os

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


def test_ordering_setting_is_checked(monkeypatch):
    for value, expected in (("", "auto"), ("auto", "auto"), ("HOST", "host"), (" semaphore ", "semaphore"),
                            ("Flag", "flag")):
        monkeypatch.setenv("FLASHCL_CUDA_ORDER", value)
        assert flashcl.cuda._requested_ordering() == expected
    monkeypatch.delenv("FLASHCL_CUDA_ORDER")
    assert flashcl.cuda._requested_ordering() == "auto"
    monkeypatch.setenv("FLASHCL_CUDA_ORDER", "sync")
    with pytest.raises(flashcl.Error) as e:
        flashcl.cuda._requested_ordering()
    assert e.value.status == flashcl.Status.InvalidArgument and "FLASHCL_CUDA_ORDER" in str(e.value)
    with pytest.raises(flashcl.Error) as e:
        flashcl.cuda.set_ordering("fast")
    assert e.value.status == flashcl.Status.InvalidArgument
    # The binding checks the name before it needs a driver or a bridge.
    for call in (lambda: ext.cuda_open(0, "fast"), lambda: ext.cuda_set_ordering(0, "fast")):
        with pytest.raises(flashcl.Error) as e:
            call()
        assert e.value.status == flashcl.Status.InvalidArgument and "auto, semaphore, flag or host" in str(e.value)


def test_ordering_and_views_without_a_bridge():
    s = flashcl.cuda.stats()
    for key in ("calls", "semaphore_calls", "flag_calls", "host_wait_calls", "views_created", "views_reused",
                "ordering"):
        assert key in s, key
    if torch.cuda.is_available() and flashcl.cuda.available():
        assert flashcl.cuda.ordering()["ordering"] in ("semaphore", "flag", "host")
        return
    assert s["ordering"] is None
    info = ext.cuda_ordering(0)
    assert info.ordering == "" and "not open" in info.note and not info.semaphores and not info.flag
    created = ext.cuda_view_counts()[0]
    assert ext.CudaView(4096, 16).handle == 0  # no allocation holds it: the caller stages
    assert ext.cuda_view_counts()[0] == created


def test_flag_fallback_when_the_entry_point_is_missing():
    # FLASHCL_CUDA_HIDE makes the loader treat cuStreamWaitValue32 as missing (read once per
    # process, hence a child interpreter): "auto" must then order by host waits (or by the
    # semaphores, where they work), name the missing entry point, and warn once; "flag" must be a
    # named error. Without a CUDA bridge (as in CI) the child checks that the setting changes
    # nothing: the bridge fails to open for the same reason as before.
    import subprocess
    import sys
    import textwrap

    child = textwrap.dedent("""
        import warnings
        import torch, flashcl, flashcl.cuda
        if not (torch.cuda.is_available() and flashcl.cuda.available()):
            try:
                flashcl.cuda.bridge()
            except flashcl.Error as e:
                assert e.status == flashcl.Status.DeviceNotFound, e
            print("no bridge")
            raise SystemExit(0)
        o = flashcl.cuda.ordering()
        assert not o["flag"], o
        if o["ordering"] != "semaphore":
            assert o["ordering"] == "host" and "cuStreamWaitValue32" in o["note"], o
        try:
            flashcl.cuda.set_ordering("flag")
        except flashcl.Error as e:
            assert e.status == flashcl.Status.DeviceNotFound and "cuStreamWaitValue32" in str(e), e
        else:
            raise AssertionError("flag ordering was taken without cuStreamWaitValue32")
        print("fallback:", o["ordering"], o["note"])
    """)
    env = dict(os.environ, FLASHCL_CUDA_HIDE="cuStreamWaitValue32", FLASHCL_CUDA_ORDER="auto")
    done = subprocess.run([sys.executable, "-W", "always", "-c", child], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    if "fallback: host" in done.stdout:
        assert "ordered by host waits" in done.stderr, done.stderr  # the one-time warning
