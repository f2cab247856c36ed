#!/usr/bin/env python3
"""sdpa_cpu.py: PyTorch's CPU scaled_dot_product_attention on the shapes bench/cpu/run.sh gives
flashcl-bench (B, H, N, d, causal; fp32), timed as a median of wall-clock runs after a warm-up, on
a fixed thread count (or, with --cpu-time, per CPU-second of the process times the threads: the
rate on a loaded machine; it charges PyTorch its threads' spin-waits too). Prints one JSON list
(GFLOP/s counted as flashcl-bench does: 4*B*H*N*N*d, halved when causal; forward+backward 3.5x).
Usage: sdpa_cpu.py --threads 2 --seqlen 1024,2048 --head-dim 64,128 [--backward] [--cpu-time]"""
import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--seqlen", default="1024,2048,4096")
    ap.add_argument("--head-dim", default="64,128")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--backward", action="store_true", help="also time forward+backward")
    ap.add_argument("--cpu-time", action="store_true",
                    help="rate per process CPU-second times --threads (time.process_time over the repeats), the "
                         "docs/perf/pocl-cpu.md method for a loaded machine, instead of the wall-clock median")
    ap.add_argument("--json", required=True)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    rows = []
    for n in map(int, a.seqlen.split(",")):
        for d in map(int, a.head_dim.split(",")):
            for causal in (False, True):
                g = torch.Generator().manual_seed(n * 1000 + d)
                q, k, v = (torch.rand(a.batch, a.heads, n, d, generator=g) * 2 - 1 for _ in range(3))
                flops = 4.0 * a.batch * a.heads * n * n * d / (2 if causal else 1)
                passes = [("fwd", False)] + ([("fwd+bwd", True)] if a.backward else [])
                for mode, grad in passes:
                    for t in (q, k, v):
                        t.requires_grad_(grad)

                    def step():
                        o = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
                        if grad:
                            o.sum().backward()

                    with torch.inference_mode(not grad):
                        step()  # warm-up
                        times = []
                        c0 = time.process_time()
                        for _ in range(a.repeat):
                            t0 = time.perf_counter()
                            step()
                            times.append((time.perf_counter() - t0) * 1e3)
                        cpu_ms = (time.process_time() - c0) * 1e3 / a.repeat / a.threads
                    ms = cpu_ms if a.cpu_time else statistics.median(times)
                    total = flops * (3.5 if grad else 1.0)  # FA2's count: backward = 2.5x forward
                    rows.append({"seqlen": n, "head_dim": d, "causal": causal, "mode": mode, "median_ms": ms,
                                 "gflops": total / ms / 1e6, "threads": a.threads, "torch": torch.__version__,
                                 "clock": "cpu" if a.cpu_time else "wall"})
    json.dump(rows, open(a.json, "w"), indent=1)


if __name__ == "__main__":
    main()
