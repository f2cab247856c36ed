"""Times flashcl.torch.flash_attn_func on CUDA tensors (forward, and forward+backward through
autograd) with CUDA events on PyTorch's stream, for tensors of flashcl's CUDA pool (no copies) and
plain PyTorch tensors (staged device to device), and prints each next to flashcl-bench's device
time for the same shape, read from the files bench/gpu/python.sh wrote (the forward's CSV and the
backward's table), with the ratio the bar caps at 1.15. Usage: python_bench.py FWD_CSV BWD_TXT
[--batch 8 --heads 16 --seqlen 4096 --head-dim 128 --repeat 10]."""

import argparse
import csv
import re
import statistics

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


def timed(fn, repeat):
    """Milliseconds per call of fn between CUDA events on the current stream (after two untimed
    runs): the median of single calls, and the mean over `repeat` calls back to back (as a
    training loop makes them)."""
    for _ in range(2):
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


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("fwd_csv")
    p.add_argument("bwd_txt")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--heads", type=int, default=16)
    p.add_argument("--seqlen", type=int, default=4096)
    p.add_argument("--head-dim", type=int, default=128)
    p.add_argument("--repeat", type=int, default=10)
    a = p.parse_args()
    cpp = cpp_times(a.fwd_csv, a.bwd_txt)
    shape = (a.batch, a.seqlen, a.heads, a.head_dim)
    b = flashcl.cuda.bridge()
    print(f"flash_attn_func on CUDA fp16 {shape} through {b.device_name}; acquire/release {b.acquire_release} "
          f"{b.note}")
    print("ms per call: a single call / calls back to back (CUDA events), flashcl-bench's kernel time, their ratios")
    print(f"{'tensors':8s} {'causal':6s} | {'fwd ms':>15s} {'C++ ms':>7s} {'ratio':>13s} | {'fwd+bwd ms':>15s} "
          f"{'C++ ms':>7s} {'ratio':>13s} | staged per fwd+bwd")
    for in_pool in (True, False):
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
            staged = flashcl.cuda.stats()["staged_tensors"]
            cpp_fwd, cpp_both = cpp[causal]
            def cells(ours, theirs):
                ratios = " / ".join(f"{t / theirs:5.3f}" for t in ours) if theirs else "-"
                return f"{ours[0]:7.3f} / {ours[1]:5.3f} {theirs or float('nan'):7.3f} {ratios:>13s}"

            print(f"{'pool' if in_pool else 'plain':8s} {'yes' if causal else 'no':6s} | {cells(fwd_ms, cpp_fwd)} | "
                  f"{cells(both_ms, cpp_both)} | {staged}", flush=True)
            del q, k, v, d_o
    print("bar: ratio <= 1.15 (forward and forward+backward, fp16, pool tensors: no copies; plain tensors add the "
          "device-to-device staging of their inputs)")


if __name__ == "__main__":
    main()
