#!/usr/bin/env python3
"""host_alignment.py: issue 21's misaligned host inputs. Host-array cost on the 'bytes' shape
(B 1, H 8, N 2048, d 64, window (0, 0): 4 MiB per array, next to no compute): flashcl.attention and attention_backward on numpy arrays as numpy allocates
them (16 bytes past a page) against page-aligned copies of the same, interleaved, CALLS calls each
per round (the order flips every round); prints medians/mins (ms) and the host-buffer counts
(Session.last_forward/backward_host_buffers). Before widened inputs, numpy's own arrays were copied
(1 and 5 host buffers, against 4 and 9 page-aligned); after, both are used in place.
Usage: [BUILD=build] .venv/bin/python bench/cpu/host_alignment.py [CALLS 20] [ROUNDS 4]
"""
import os
import statistics
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
os.environ.setdefault("POCL_MAX_PTHREAD_COUNT", "2")
build = os.environ.get("BUILD", "build")
sys.path.insert(0, os.path.join(build if os.path.isabs(build) else os.path.join(ROOT, build), "python"))
import numpy as np  # noqa: E402

import flashcl  # noqa: E402
from python_overhead import page_aligned  # noqa: E402  (this folder is on sys.path: the script's own)


calls = int(sys.argv[1]) if len(sys.argv) > 1 else 20
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 4
sess = flashcl.functional.session()
rng = np.random.default_rng(7)
shape = (1, 2048, 8, 64)
plain = [rng.uniform(-1, 1, shape).astype(np.float32) for _ in range(4)]  # d_o, q, k, v
print("offsets past a page:", [x.ctypes.data % 4096 for x in plain], "load", open("/proc/loadavg").read().split()[:3])
o, lse = flashcl.attention(*plain[1:], window=(0, 0), return_lse=True)
plain += [o, lse]
aligned = [page_aligned(np, x) for x in plain]
forms = {
    "fwd as allocated": lambda: flashcl.attention(*plain[1:4], window=(0, 0)),
    "fwd page-aligned": lambda: flashcl.attention(*aligned[1:4], window=(0, 0)),
    "bwd as allocated": lambda: flashcl.attention_backward(*plain, window=(0, 0)),
    "bwd page-aligned": lambda: flashcl.attention_backward(*aligned, window=(0, 0)),
}
counts = {}
for name, f in forms.items():
    for _ in range(3):  # warm-up: programs built or loaded
        f()
    counts[name] = sess.last_forward_host_buffers if name.startswith("fwd") else sess.last_backward_host_buffers
t = {n: [] for n in forms}
for r in range(rounds):
    for name, f in (forms.items() if r % 2 == 0 else reversed(list(forms.items()))):
        for _ in range(calls):
            start = time.perf_counter()
            f()
            t[name].append((time.perf_counter() - start) * 1e3)
for name in forms:
    print(f"  {name:18s} median {statistics.median(t[name]):7.3f}  min {min(t[name]):7.3f}  host buffers {counts[name]}")
print("load after", open("/proc/loadavg").read().split()[:3])
