#!/usr/bin/env python3
"""torch_kvcache_step.py: one decode step through flashcl.torch.flash_attn_with_kvcache on CPU
tensors (issues 21/22): B 8, H 32/8, d 128, a cache of 4096 keys per sequence, fp32, one new token
appended at position 4095 (every call writes the same rows), Nq 1. Wall clock per call
(time.perf_counter, the call returning with O and both caches in the caller's tensors), median and
minimum of CALLS calls after WARMUP, for the caches as torch allocates them and for page-aligned
caches (the Session then writes them in place where the device shares host memory and the page
meets CL_DEVICE_MEM_BASE_ADDR_ALIGN); prints the Session's host-buffer count where it has one
and the load average before and after (on a loaded machine the figures are upper bounds).
Compare with `flashcl-bench --decode --cache 4096 -b 8 --heads 32 --heads-kv 8 --head-dim 128`.
Usage: [BUILD=build] .venv/bin/python bench/cpu/torch_kvcache_step.py [CALLS 20] [WARMUP 3]
"""
import os
import statistics
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
build = os.environ.get("BUILD", "build")
sys.path.insert(0, os.path.join(build if os.path.isabs(build) else os.path.join(ROOT, build), "python"))
import torch  # noqa: E402

import flashcl  # noqa: E402
import flashcl.torch as fcl_torch  # noqa: E402

B, H, HKV, D, KEYS = 8, 32, 8, 128, 4096
PAGE = 4096


def page_aligned(shape):
    """A zeroed contiguous fp32 tensor whose data starts on a page boundary (a slice of a larger one)."""
    n = 1
    for s in shape:
        n *= s
    room = torch.zeros(n + PAGE // 4)
    start = (-room.data_ptr() % PAGE) // 4
    return room[start:start + n].view(shape)


def step_times(k_cache, v_cache, calls, warmup):
    g = torch.Generator().manual_seed(0)
    q = torch.randn((B, 1, H, D), generator=g)
    k, v = (torch.randn((B, 1, HKV, D), generator=g) for _ in range(2))
    seqlens = torch.full((B,), KEYS - 1, dtype=torch.int32)
    times = []
    for i in range(warmup + calls):
        t0 = time.perf_counter()
        fcl_torch.flash_attn_with_kvcache(q, k_cache, v_cache, k, v, cache_seqlens=seqlens)
        if i >= warmup:
            times.append((time.perf_counter() - t0) * 1e3)
    assert torch.equal(k_cache[:, KEYS - 1], k[:, 0]) and torch.equal(v_cache[:, KEYS - 1], v[:, 0])
    return times


def main():
    calls = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    warmup = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    sess = flashcl.functional.session()
    print(f"device: {sess.info.name}; B {B}, H {H}/{HKV}, d {D}, {KEYS} keys fp32, 1 appended, Nq 1; "
          f"{calls} calls after {warmup}; load {os.getloadavg()}")
    shape = (B, KEYS, HKV, D)
    g = torch.Generator().manual_seed(1)
    for name, make in (("torch's allocation", lambda: torch.randn(shape, generator=g)),
                       ("page-aligned", lambda: page_aligned(shape).normal_(generator=g))):
        k_cache, v_cache = make(), make()
        times = step_times(k_cache, v_cache, calls, warmup)
        buffers = getattr(sess, "last_kvcache_host_buffers", None)
        print(f"{name:20s} (k_cache at page + {k_cache.data_ptr() % PAGE}): median {statistics.median(times):.2f} ms, "
              f"min {min(times):.2f} ms, host buffers {buffers}")
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
