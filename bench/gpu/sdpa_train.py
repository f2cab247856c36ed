#!/usr/bin/env python3
"""PyTorch SDPA forward+backward timings on run.sh's shapes, for side-by-side ratios with
flashcl's backward in the same device call. Each backend (flash, efficient, cudnn) is timed with
CUDA events around one forward and one backward (dO random, never zeros): warm-up, then the median
of --repeat runs. FLOPs as the papers count them: forward 4·B·H·N²·d, backward 2.5× that, halved
when causal; the backward alone is reported as the difference of the two medians."""
import argparse
import json

import torch
from torch.nn.attention import sdpa_kernel

from sdpa import BACKENDS, DTYPES, time_ms


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tokens", type=int, default=32768)
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--seqlen", default="4096")
    ap.add_argument("--head-dim", default="64,128")
    ap.add_argument("--dtype", default="f16,bf16")
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--backends", default=",".join(BACKENDS), help="of " + ",".join(BACKENDS))
    ap.add_argument("--json", required=True)
    args = ap.parse_args()
    rows = []
    for dtype in args.dtype.split(","):
        for d in map(int, args.head_dim.split(",")):
            for n in map(int, args.seqlen.split(",")):
                for causal in (False, True):
                    b = max(1, args.tokens // n)
                    gen = torch.Generator(device="cuda").manual_seed(n * 7 + d)
                    q, k, v, do = (torch.rand(b, args.heads, n, d, device="cuda", dtype=DTYPES[dtype],
                                              generator=gen) * 2 - 1 for _ in range(4))
                    for t in (q, k, v):
                        t.requires_grad_(True)
                    fwd_flops = 4.0 * b * args.heads * n * n * d / (2 if causal else 1)
                    for name in args.backends.split(","):
                        backend = BACKENDS[name]
                        row = dict(backend=name, dtype=dtype, batch=b, heads=args.heads, seqlen=n, head_dim=d,
                                   causal=causal)
                        try:
                            with sdpa_kernel(backend):
                                sdpa = torch.nn.functional.scaled_dot_product_attention
                                fwd = lambda: sdpa(q, k, v, is_causal=causal)
                                both = lambda: torch.autograd.grad(sdpa(q, k, v, is_causal=causal), (q, k, v), do)
                                f_ms, fb_ms = time_ms(fwd, 3, args.repeat), time_ms(both, 3, args.repeat)
                            bwd_ms = max(fb_ms - f_ms, 1e-9)
                            row.update(fwd_ms=f_ms, fwd_bwd_ms=fb_ms, bwd_tflops=2.5 * fwd_flops / bwd_ms / 1e9,
                                       fwd_bwd_tflops=3.5 * fwd_flops / fb_ms / 1e9)
                        except RuntimeError as e:
                            row.update(note=str(e).splitlines()[0][:120])
                        rows.append(row)
                        print(row)
                    del q, k, v, do
    with open(args.json, "w") as f:
        json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
