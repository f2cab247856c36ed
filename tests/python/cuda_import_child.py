"""The CUDA side of test_cuda_import.py, run in a fresh interpreter because PyTorch reads
PYTORCH_CUDA_ALLOC_CONF once, when it starts CUDA. Mode "expandable" (the parent sets
expandable_segments:True): plain tensors carved from one allocation (so in one physical chunk)
take the import path, forward and backward match float64 with no tensor staged; a tensor made to
straddle two of PyTorch's chunks is staged (and still right); set_imports(False) stages; two
identical cycles, each ended by empty_cache + release_imports (stale ones, reported; then all),
leave no import, no extra fd and no extra device memory behind. Mode "default" (no allocator
setting): plain tensors are staged with the one-time warning naming cudaMalloc, still right;
after enable_expandable_segments() new tensors are imported. Prints one JSON line of findings last; any failed check raises (exit status 1).
Usage: python cuda_import_child.py expandable|default."""

import json
import os
import sys
import warnings

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from conftest import assert_close, reference, reference_backward  # noqa: E402

import flashcl.cuda  # noqa: E402
from flashcl.torch import flash_attn_func  # noqa: E402

SHAPE = (2, 256, 4, 64)  # fp16: 256 KiB per tensor
BYTES = int(np.prod(SHAPE)) * 2
found = {}


def np64(t):
    return t.detach().to("cpu", torch.float64).numpy()


def poison_pool():
    """NaN in the memory flashcl's pool hands out next (its outputs and gradients come from there)."""
    with flashcl.cuda.use_pool():
        t = torch.full((64 << 20,), float("nan"), device="cuda", dtype=torch.float16)
    del t


def carve(buf, seed, offsets):
    """q, k, v (leaves requiring grad) and d_o as fp16 views of `buf` at byte `offsets`, random."""
    g = torch.Generator(device="cuda").manual_seed(seed)
    out = []
    for i, off in enumerate(offsets):
        t = buf[off:off + BYTES].view(torch.float16).view(SHAPE)
        with torch.no_grad():
            t.copy_(torch.randn(SHAPE, generator=g, device="cuda"))
        out.append(t.requires_grad_() if i < 3 else t)
    return out


def check(q, k, v, d_o, causal, label):
    """Forward and backward against float64; returns stats() of the two calls."""
    for t in (q, k, v):
        t.grad = None
    poison_pool()
    flashcl.cuda.reset_stats()
    out = flash_attn_func(q, k, v, causal=causal)
    out.backward(d_o)
    torch.cuda.synchronize()
    s = flashcl.cuda.stats()
    ref_o, _ = reference(np64(q), np64(k), np64(v), causal=causal)
    assert_close(np64(out), ref_o, 2e-3, f"O ({label})")
    ref = reference_backward(np64(q), np64(k), np64(v), np64(d_o), causal=causal)
    for name, t, r in zip(("dQ", "dK", "dV"), (q, k, v), ref[:3]):
        assert_close(np64(t.grad), r, 8e-3, f"{name} ({label})")
    return s


def fds():
    return len(os.listdir("/proc/self/fd"))


def expandable():
    flashcl.cuda.bridge()
    poison_pool()
    # One cycle: 4 tensors in one 12 MiB allocation (a fresh segment starts a chunk; 1 MiB apart),
    # checked causal and not, then handed back.
    def cycle(seed):
        buf = torch.empty(12 << 20, dtype=torch.uint8, device="cuda")
        base, size = flashcl._flashcl.cuda_mapping_range(buf.data_ptr())
        found["chunk_bytes"] = size
        q, k, v, d_o = carve(buf, seed, [0, 1 << 20, 2 << 20, 3 << 20])
        view = flashcl._flashcl.CudaView(q.data_ptr(), BYTES)  # the reason, should the import be refused
        assert view.kind == "import", f"q was not imported: {view.why!r} (chunk {base:#x} + {size})"
        del view
        for causal in (False, True):
            s = check(q, k, v, d_o, causal, f"imported, causal {causal}")
            assert s["staged_tensors"] == 0 and s["imported_tensors"] >= 7, s  # q, k, v; q, k, v, d_o
            found[f"imported_per_fwd_bwd_causal_{causal}"] = s["imported_tensors"]
        del q, k, v, d_o, buf
        torch.cuda.synchronize()
        torch.cuda.empty_cache()  # unmaps the chunks: their imports are stale now
        found.setdefault("stale_dropped", []).append(flashcl.cuda.release_imports())
        flashcl.cuda.release_imports(all=True)
        i = flashcl.cuda.imports()
        assert i["live"] == 0 and i["created"] == i["dropped"] and i["created"] >= 1, i
        return fds(), torch.cuda.mem_get_info()[0]

    fd1, free1 = cycle(1)
    fd2, free2 = cycle(2)
    assert fd2 == fd1, f"fds {fd1} after the first cycle, {fd2} after the second: an import leaks a descriptor"
    assert abs(free2 - free1) <= (64 << 20), f"free device memory {free1} then {free2}: an import holds memory"
    found.update(fds_after_cycles=[fd1, fd2], imports=flashcl.cuda.imports())

    # A tensor straddling two physical chunks is staged (with the reason) and still right.
    chunk = found["chunk_bytes"]
    buf = torch.empty(2 * chunk + (8 << 20), dtype=torch.uint8, device="cuda")
    base, size = flashcl._flashcl.cuda_mapping_range(buf.data_ptr())
    edge = base + size - buf.data_ptr()  # bytes into buf where its first chunk ends
    assert 0 < edge < buf.numel() - BYTES
    straddling = edge - BYTES // 2
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        q, k, v, d_o = carve(buf, 3, [straddling, edge + (1 << 20), edge + (2 << 20), edge + (3 << 20)])
        s = check(q, k, v, d_o, True, "q straddling two chunks")
    assert s["staged_tensors"] == 1 and s["imported_tensors"] >= 5, s  # k, v; k, v, d_o (q's copy is the pool's)
    assert any("straddles" in str(w.message) for w in caught), [str(w.message) for w in caught]
    found["straddle_staged"] = s["staged_tensors"]

    # Imports switched off: everything plain is staged.
    flashcl.cuda.set_imports(False)
    s = check(q, k, v, d_o, False, "imports off")
    flashcl.cuda.set_imports(True)
    assert s["imported_tensors"] == 0 and s["staged_tensors"] == 4, s  # q, k, v; d_o
    found["off_staged"] = s["staged_tensors"]


def default():
    flashcl.cuda.bridge()
    buf = torch.empty(12 << 20, dtype=torch.uint8, device="cuda")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        q, k, v, d_o = carve(buf, 4, [0, 1 << 20, 2 << 20, 3 << 20])
        s = check(q, k, v, d_o, True, "default allocator")
    # q, k, v once (the copies are saved for the backward), d_o in the backward
    assert s["imported_tensors"] == 0 and s["staged_tensors"] == 4, s
    messages = [str(w.message) for w in caught if "copied into it" in str(w.message)]
    assert messages and ("cudaMalloc" in messages[0] or "POSIX fd" in messages[0]), messages
    found["default_staged"] = s["staged_tensors"]
    found["warning"] = messages[0]
    # Turned on by the package for segments made from now on.
    flashcl.cuda.enable_expandable_segments()
    buf2 = torch.empty(12 << 20, dtype=torch.uint8, device="cuda")
    q, k, v, d_o = carve(buf2, 5, [0, 1 << 20, 2 << 20, 3 << 20])
    s = check(q, k, v, d_o, False, "after enable_expandable_segments")
    assert s["staged_tensors"] == 0 and s["imported_tensors"] >= 7, s
    found["runtime_imported"] = s["imported_tensors"]


if __name__ == "__main__":
    {"expandable": expandable, "default": default}[sys.argv[1]]()
    print(json.dumps(found))
