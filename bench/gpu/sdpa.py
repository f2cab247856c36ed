#!/usr/bin/env python3
"""PyTorch SDPA forward timings on the same shapes flashcl-bench runs, for side-by-side ratios.

Times each available backend (flash, efficient, cudnn; math with --backends, PyTorch's plain
unfused attention, the baseline flashcl's `standard` is held against) with CUDA events: warm-up, then the median
of --repeat runs, on random inputs (never zeros). Writes one JSON list of rows."""
import argparse
import json
import statistics

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

BACKENDS = {"flash": SDPBackend.FLASH_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION,
            "cudnn": SDPBackend.CUDNN_ATTENTION, "math": SDPBackend.MATH}
DTYPES = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}


def time_ms(fn, warmup, repeat):
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
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tokens", type=int, default=32768, help="B*N per shape (batch = tokens / seqlen)")
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--seqlen", default="1024,2048,4096,8192")
    ap.add_argument("--head-dim", default="64,128")
    ap.add_argument("--dtype", default="f32,f16")
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--backends", default="flash,efficient,cudnn", help="of " + ",".join(BACKENDS))
    ap.add_argument("--json", required=True)
    args = ap.parse_args()
    rows = []
    for dtype in args.dtype.split(","):
        for d in map(int, args.head_dim.split(",")):
            for n in map(int, args.seqlen.split(",")):
                for causal in (False, True):
                    b = max(1, args.tokens // n)
                    gen = torch.Generator(device="cuda").manual_seed(n * 7 + d)
                    q, k, v = (torch.rand(b, args.heads, n, d, device="cuda", dtype=DTYPES[dtype], generator=gen) * 2 - 1
                               for _ in range(3))
                    flops = 4.0 * b * args.heads * n * n * d / (2 if causal else 1)
                    for name in args.backends.split(","):
                        backend = BACKENDS[name]
                        row = dict(backend=name, dtype=dtype, batch=b, heads=args.heads, seqlen=n, head_dim=d,
                                   causal=causal)
                        try:
                            with sdpa_kernel(backend):
                                fn = lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)
                                ms = time_ms(fn, 3, args.repeat)
                            row.update(median_ms=ms, tflops=flops / ms / 1e9)
                        except RuntimeError as e:  # backend does not support this dtype/shape
                            row.update(median_ms=None, tflops=None, note=str(e).splitlines()[0][:120])
                        rows.append(row)
                    del q, k, v
    with open(args.json, "w") as f:
        json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
