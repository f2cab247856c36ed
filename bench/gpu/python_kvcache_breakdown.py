"""Where flashcl.torch.flash_attn_with_kvcache's time on CUDA tensors goes beyond flashcl-bench
--decode's kernels (docs/perf/nvidia-h100.md, "flash_attn_with_kvcache on CUDA: where the 1.45x
goes"): pool tensors, B 8, H 32/8, d 128, fp16, causal, one query, 32k keys, in one process.
Rows: (1) the C++ bench's device time for the variants bench/gpu/python_kvcache.sh wrote (with and
without the append, causal or not, an even capacity); (2) the Python call back to back and single
(CUDA events), with and without the append (k, v; three kernels or two), and under host-wait
ordering; (3) the host split of a call, single on an idle stream and back to back: the Python layer
before the binding, and the binding itself (flashcl._flashcl.cuda_forward_kvcache, wrapped with a
host clock: cuStreamSynchronize, then the library's checks, plan, kernel creation and enqueues, the
release and the flag), whose idle-stream figure is the host work the GPU waits for between calls;
(4) the bridge's floor: one clEnqueueFillBuffer ordered the same way (cuda_fill), host time and
period back to back; (5) a tiny flash_attn_func (one kernel) split the same way. Under a second
of device time after the tensors are made. Usage: python_kvcache_breakdown.py LABEL=CPP_CSV ...
[--repeat 20] (the first CSV is the reference for the ratios)."""

import argparse
import statistics
import time

import torch

import flashcl.cuda
from flashcl import _flashcl as ext
from flashcl.torch import flash_attn_func, flash_attn_with_kvcache
from python_bench import timed  # CUDA events: the median of single calls, the mean back to back
from python_kvcache_bench import cpp_row


def host_split(call, binding, repeat, idle):
    """(ms per call on the host, ms of it inside ext.<binding>), medians: each call after the stream
    has drained (idle) or back to back (the binding then also waits for the previous call's kernels)."""
    original = getattr(ext, binding)
    inside = []

    def clocked(*args, **kwargs):
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            inside.append(time.perf_counter() - start)

    setattr(ext, binding, clocked)  # flashcl.cuda looks the binding up on the module at each call
    totals = []
    try:
        call()
        torch.cuda.synchronize()
        inside.clear()
        for _ in range(repeat):
            if idle:
                torch.cuda.synchronize()
            start = time.perf_counter()
            call()
            totals.append(time.perf_counter() - start)
        torch.cuda.synchronize()
    finally:
        setattr(ext, binding, original)
    return statistics.median(totals) * 1e3, statistics.median(inside) * 1e3


def main():
    p = argparse.ArgumentParser()
    p.add_argument("cpp", nargs="+", help="LABEL=CSV from flashcl-bench --decode --csv")
    p.add_argument("--repeat", type=int, default=20)
    p.add_argument("--cache", type=int, default=32768)
    a = p.parse_args()
    batch, heads, heads_kv, d, length = 8, 32, 8, 128, a.cache

    print("== flashcl-bench --decode, device time (first kernel's start to the merge's end)")
    cpp = {}
    for item in a.cpp:
        label, _, path = item.partition("=")
        try:
            cpp[label], splits = cpp_row(path)
        except OSError:  # a variant the script could not run
            cpp[label], splits = None, None
        print(f"{label:34} {cpp[label] if cpp[label] is not None else '-':>9} ms  {splits or '-'} splits")
    reference = cpp[a.cpp[0].partition("=")[0]]

    with flashcl.cuda.use_pool():
        q = torch.randn(batch, 1, heads, d, device="cuda", dtype=torch.float16)
        k_cache, v_cache = (torch.randn(batch, length + 1, heads_kv, d, device="cuda", dtype=torch.float16)
                            for _ in range(2))
        k, v = (torch.randn(batch, 1, heads_kv, d, device="cuda", dtype=torch.float16) for _ in range(2))
        flag = torch.zeros(64, device="cuda", dtype=torch.uint8)
    seqlens = torch.full((batch,), length, dtype=torch.int32, device="cuda")
    whole = torch.full((batch,), length + 1, dtype=torch.int32, device="cuda")  # the same keys, nothing appended

    def append():
        return flash_attn_with_kvcache(q, k_cache, v_cache, k=k, v=v, cache_seqlens=seqlens, causal=True)

    def read_only():
        return flash_attn_with_kvcache(q, k_cache, v_cache, cache_seqlens=whole, causal=True)

    stream = torch.cuda.current_stream().cuda_stream

    def fill():
        ext.cuda_fill(flag.data_ptr(), 4, 0, stream)

    print(f"\n== Python, pool tensors, ordering {flashcl.cuda.ordering()['ordering']} "
          f"(ms per call; gap = back to back - the first C++ row)")
    print(f"{'call':34} {'single':>8} {'b2b':>8} {'/ C++':>6} {'gap':>7}")

    def row(label, fn, against_cpp=True):
        single, b2b = timed(fn, a.repeat, warmup=3)
        ratio = f"{b2b / reference:6.2f}" if reference and against_cpp else "     -"
        gap = f"{b2b - reference:7.3f}" if reference and against_cpp else "      -"
        print(f"{label:34} {single:8.3f} {b2b:8.3f} {ratio} {gap}")

    row("append (k, v): 3 kernels", append)
    row("no append: 2 kernels", read_only)
    row("cuda_fill: 1 fill, the floor", fill, against_cpp=False)
    try:
        flashcl.cuda.set_ordering("host")
        row("append, host-wait ordering", append)
    except flashcl.Error as e:
        print(f"host-wait ordering: {e}")
    finally:
        flashcl.cuda.set_ordering("auto")

    print("\n== host split, ms per call (medians): the whole call, and inside the binding")
    print(f"{'call':34} {'stream':>8} {'host':>8} {'binding':>8} {'Python':>8}")
    with flashcl.cuda.use_pool():
        tq, tk, tv = (torch.randn(1, 128, 1, 64, device="cuda", dtype=torch.float16) for _ in range(3))

    def tiny_forward():
        with torch.no_grad():
            flash_attn_func(tq, tk, tv)

    for label, fn, binding in (("append (k, v)", append, "cuda_forward_kvcache"),
                               ("no append", read_only, "cuda_forward_kvcache"),
                               ("cuda_fill", fill, "cuda_fill"),
                               ("tiny flash_attn_func", tiny_forward, "cuda_forward")):
        for idle in (True, False):
            total, inside = host_split(fn, binding, a.repeat, idle)
            print(f"{label:34} {'idle' if idle else 'b2b':>8} {total:8.3f} {inside:8.3f} {total - inside:8.3f}")
    print("(idle: the binding's time is the host work after its cuStreamSynchronize, which the GPU waits "
          "for between calls under the flag; b2b: the binding also waits there for the previous call)")


if __name__ == "__main__":
    main()
