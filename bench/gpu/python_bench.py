"""Times flashcl.torch.flash_attn_func on CUDA tensors (forward, and forward+backward through
autograd) with CUDA events on PyTorch's stream, for tensors of flashcl's CUDA pool (no copies) and
plain PyTorch tensors (staged device to device), under each ordering of the calls with the stream
(flashcl.cuda.set_ordering: "semaphore", GPU-side through external semaphores; "flag", a host wait
before the call and the stream waiting on the GPU for a flag the OpenCL queue writes after it; and
"host", host waits before and after; one the driver lacks is reported and skipped), and prints each
next to flashcl-bench's device time for the same shape, read from the files
bench/gpu/python.sh wrote (the forward's CSV and the backward's table), with the ratio the bar caps
at 1.15. Then the fixed cost of a call: a tiny forward called back to back, timed on the host (how
long the loop takes to enqueue, and until the GPU has finished it). Usage: python_bench.py FWD_CSV
BWD_TXT [--batch 8 --heads 16 --seqlen 4096 --head-dim 128 --repeat 10 --orderings semaphore,flag,host
--tensors pool,plain --label NAME --summary FILE --no-fixed-cost]. "plain" tensors are staged under
PyTorch's default allocator and imported without a copy under expandable_segments (flashcl.cuda's
imports; bench/gpu/python_ab.sh runs this once per allocator setting); --summary appends one
tab-separated row per cell (label, tensors, causal, ordering, fwd and fwd+bwd back-to-back ms, C++
ms, ratios, staged and imported tensors per fwd+bwd)."""

import argparse
import csv
import os
import re
import statistics
import time

import torch

import flashcl.cuda
from flashcl.torch import flash_attn_func


def cpp_times(fwd_csv, bwd_txt):
    """{causal: (forward ms, forward+backward ms)} from flashcl-bench's outputs."""
    fwd = {r["causal"] == "true": float(r["median_ms"]) for r in csv.DictReader(open(fwd_csv)) if r["status"] == "ok"}
    both = {}
    for line in open(bwd_txt):
        m = re.match(r"\s*\d+\s+\d+\s+(yes|no)\s+\S+\s+\S+\s+\|\s+([\d.]+)\s+[\d.]+\s+\|\s+([\d.]+)", line)
        if m:
            both[m.group(1) == "yes"] = float(m.group(3))
    return {c: (fwd.get(c), both.get(c)) for c in (False, True)}


def timed(fn, repeat, warmup=2):
    """Milliseconds per call of fn between CUDA events on the current stream (after `warmup`
    untimed runs): the median of single calls, and the mean over `repeat` calls back to back (as a
    training loop makes them). python_kvcache_bench.py times its decode step with it too."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeat):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeat):
        fn()
    end.record()
    end.synchronize()
    return statistics.median(times), start.elapsed_time(end) / repeat


def fixed_cost(calls=200):
    """Microseconds per call of a tiny forward (1 x 128 x 1 x 64, pool tensors) called back to back:
    on the host until the loop has enqueued them all, and until the GPU has finished them."""
    with flashcl.cuda.use_pool():
        q, k, v = (torch.randn(1, 128, 1, 64, device="cuda", dtype=torch.float16) for _ in range(3))
    with torch.no_grad():
        for _ in range(5):
            flash_attn_func(q, k, v)
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(calls):
            flash_attn_func(q, k, v)
        enqueued = time.perf_counter()
        torch.cuda.synchronize()
        finished = time.perf_counter()
    return (enqueued - start) / calls * 1e6, (finished - start) / calls * 1e6


def table(a, cpp, shape, ordering):
    if ordering == "auto":
        ordering = flashcl.cuda.ordering()["ordering"]
    for kind in [x.strip() for x in a.tensors.split(",") if x.strip()]:
        in_pool = kind == "pool"
        for causal in (False, True):
            def make():
                return torch.randn(shape, device="cuda", dtype=torch.float16).requires_grad_()

            if in_pool:
                with flashcl.cuda.use_pool():
                    q, k, v, d_o = make(), make(), make(), make().detach()
            else:
                q, k, v, d_o = make(), make(), make(), make().detach()

            def forward():
                with torch.no_grad():
                    flash_attn_func(q, k, v, causal=causal)

            def forward_backward():
                for t in (q, k, v):
                    t.grad = None
                flash_attn_func(q, k, v, causal=causal).backward(d_o)

            fwd_ms = timed(forward, a.repeat)
            both_ms = timed(forward_backward, a.repeat)
            flashcl.cuda.reset_stats()
            forward_backward()
            s = flashcl.cuda.stats()
            counted = s[{"semaphore": "semaphore_calls", "flag": "flag_calls", "host": "host_wait_calls"}[ordering]]
            if counted != s["calls"]:
                print(f"warning: {s['calls'] - counted} of {s['calls']} calls were not ordered by {ordering}: "
                      f"{flashcl.cuda.ordering()['note']}")
            cpp_fwd, cpp_both = cpp[causal]

            def cells(ours, theirs):
                ratios = " / ".join(f"{t / theirs:5.3f}" for t in ours) if theirs else "-"
                return f"{ours[0]:7.3f} / {ours[1]:5.3f} {theirs or float('nan'):7.3f} {ratios:>13s}"

            print(f"{ordering:9s} {'pool' if in_pool else 'plain':8s} {'yes' if causal else 'no':6s} | "
                  f"{cells(fwd_ms, cpp_fwd)} | {cells(both_ms, cpp_both)} | {s['staged_tensors']} "
                  f"(imported {s['imported_tensors']})", flush=True)
            if a.summary:
                ratio = [f"{x / c:.3f}" if c else "-" for x, c in ((fwd_ms[1], cpp_fwd), (both_ms[1], cpp_both))]
                with open(a.summary, "a") as f:
                    f.write("\t".join([a.label, kind, "yes" if causal else "no", ordering, f"{fwd_ms[1]:.3f}",
                                       f"{cpp_fwd or float('nan'):.3f}", ratio[0], f"{both_ms[1]:.3f}",
                                       f"{cpp_both or float('nan'):.3f}", ratio[1], str(s["staged_tensors"]),
                                       str(s["imported_tensors"])]) + "\n")
            del q, k, v, d_o


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("fwd_csv")
    p.add_argument("bwd_txt")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--heads", type=int, default=16)
    p.add_argument("--seqlen", type=int, default=4096)
    p.add_argument("--head-dim", type=int, default=128)
    p.add_argument("--repeat", type=int, default=10)
    p.add_argument("--orderings", default="semaphore,flag,host", help="comma-separated: semaphore, flag, host, auto")
    p.add_argument("--tensors", default="pool,plain", help="comma-separated: pool, plain")
    p.add_argument("--label", default="", help="names this run's rows in --summary (e.g. the allocator setting)")
    p.add_argument("--summary", default="", help="a file to append one tab-separated row per cell to")
    p.add_argument("--no-fixed-cost", action="store_true", help="skip the tiny-call fixed cost")
    a = p.parse_args()
    cpp = cpp_times(a.fwd_csv, a.bwd_txt)
    shape = (a.batch, a.seqlen, a.heads, a.head_dim)
    b = flashcl.cuda.bridge()
    o = flashcl.cuda.ordering()
    print(f"[{a.label or 'run'}] PYTORCH_CUDA_ALLOC_CONF={os.environ.get('PYTORCH_CUDA_ALLOC_CONF', '')!r}; "
          f"imports {flashcl.cuda.imports()}")
    print(f"flash_attn_func on CUDA fp16 {shape} through {b.device_name}; acquire/release {b.acquire_release} "
          f"{b.note}; ordering at open: {o['ordering']} (semaphores work: {o['semaphores']}, flag works: "
          f"{o['flag']}) {o['note']}")
    orderings = [x.strip() for x in a.orderings.split(",") if x.strip()]
    costs = {}
    print("ms per call: a single call / calls back to back (CUDA events), flashcl-bench's kernel time, their ratios")
    print(f"{'ordering':9s} {'tensors':8s} {'causal':6s} | {'fwd ms':>15s} {'C++ ms':>7s} {'ratio':>13s} | "
          f"{'fwd+bwd ms':>15s} {'C++ ms':>7s} {'ratio':>13s} | staged per fwd+bwd")
    for ordering in orderings:
        try:
            flashcl.cuda.set_ordering(ordering)
        except flashcl.Error as e:
            print(f"{ordering:9s} unavailable: {e}")
            continue
        table(a, cpp, shape, ordering)
        if not a.no_fixed_cost:
            costs[ordering] = fixed_cost()
    print("bar: ratio <= 1.15 (forward and forward+backward, fp16, pool tensors: no copies; plain tensors add the "
          "device-to-device staging of their inputs)")
    print("fixed cost per call (tiny forward, 1 x 128 x 1 x 64, pool, 200 calls back to back; host clock):")
    for ordering, (enqueued, finished) in costs.items():
        print(f"{ordering:9s} {enqueued:8.1f} us enqueued, {finished:8.1f} us until finished")
    flashcl.cuda.set_ordering("auto")
    i = flashcl.cuda.imports()
    print(f"imports at the end: {i}")


if __name__ == "__main__":
    main()
