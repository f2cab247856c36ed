"""Plain PyTorch CUDA tensors without a staging copy (flashcl.cuda's imports of PyTorch's own
memory, python/src/cuda_import.cpp). On a CUDA machine each case runs cuda_import_child.py in a
fresh interpreter, since PyTorch reads PYTORCH_CUDA_ALLOC_CONF once when it starts CUDA: under
expandable_segments:True plain tensors are imported (forward and backward against float64, none
staged), a tensor straddling two of PyTorch's physical chunks and set_imports(False) fall back to
staging, and two empty_cache + release_imports cycles leave no import, fd or device memory behind;
with the default allocator they are staged with the one-time warning naming the reason, and
enable_expandable_segments() makes later ones importable. Without CUDA (CI on PoCL) the binding's
entry points answer with named reasons and never crash. bench/gpu/python_ab.sh runs it on the card."""

import json
import os
import subprocess
import sys

import pytest

import flashcl
from flashcl import _flashcl as ext

torch = pytest.importorskip("torch")
import flashcl.cuda  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def child(mode, **env):
    e = dict(os.environ)
    e.pop("PYTORCH_CUDA_ALLOC_CONF", None)
    e.pop("PYTORCH_ALLOC_CONF", None)
    e.update(env)
    r = subprocess.run([sys.executable, os.path.join(HERE, "cuda_import_child.py"), mode], env=e, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, f"{mode}: exit {r.returncode}\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
    found = json.loads(r.stdout.strip().splitlines()[-1])
    print(f"{mode}: {found}")
    return found


def test_plain_tensors_imported_under_expandable_segments():
    if not torch.cuda.is_available():
        return  # test_binding_without_cuda covers this machine
    found = child("expandable", PYTORCH_CUDA_ALLOC_CONF="expandable_segments:True")
    assert found["chunk_bytes"] > 0 and found["straddle_staged"] == 1 and found["off_staged"] == 4
    assert found["fds_after_cycles"][0] == found["fds_after_cycles"][1]


def test_default_allocator_stages_with_a_named_reason():
    if not torch.cuda.is_available():
        return
    found = child("default")
    assert found["default_staged"] == 4 and found["runtime_imported"] >= 7


def test_binding_without_cuda():
    counts = flashcl.cuda.imports()
    assert set(counts) >= {"created", "reused", "refused", "dropped", "live", "bytes", "enabled"}
    assert counts["enabled"] == (os.environ.get("FLASHCL_CUDA_IMPORT", "1") != "0")
    previous = flashcl.cuda.set_imports(False)
    try:
        v = ext.CudaView(4096, 16)
        assert v.handle == 0 and v.kind == "" and "off" in v.why
    finally:
        flashcl.cuda.set_imports(previous)
    if torch.cuda.is_available():
        return  # the children above check the driver's side
    v = ext.CudaView(4096, 16)  # no libcuda here: refused with the loader's reason, no crash
    assert v.handle == 0 and v.kind == "" and "libcuda.so.1" in v.why
    assert ext.cuda_mapping_range(4096) is None
    assert flashcl.cuda.release_imports() == 0 and flashcl.cuda.release_imports(all=True) == 0
    assert flashcl.cuda.imports()["live"] == 0
