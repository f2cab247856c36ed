#!/usr/bin/env python3
"""PyTorch SDPA decode timings (one query per sequence over a K/V cache, GQA) for side-by-side
ratios with `flashcl-bench --decode` in the same device call. Each backend (flash, efficient,
cudnn) is timed with CUDA events: warm-up, then the median of --repeat runs on random inputs.
Reports the K/V bytes read per second, the figure of merit of a memory-bound decode step, and a
device copy's read + write bytes per second (backend "copy")."""
import argparse
import json

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from sdpa import BACKENDS, DTYPES, time_ms


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--batch", default="8", help="batch sizes (list: 8,1)")
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--heads-kv", type=int, default=8)
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--cache", default="4096,32768")
    ap.add_argument("--dtype", default="f16")
    ap.add_argument("--repeat", type=int, default=50)
    ap.add_argument("--json", required=True)
    args = ap.parse_args()
    rows = []
    shapes = [(b, n) for b in map(int, args.batch.split(",")) for n in map(int, args.cache.split(","))]
    for batch, n in shapes:
        gen = torch.Generator(device="cuda").manual_seed(n)
        shape_kv = (batch, args.heads_kv, n, args.head_dim)
        q = torch.rand(batch, args.heads, 1, args.head_dim, device="cuda", generator=gen).to(DTYPES[args.dtype])
        k, v = (torch.rand(shape_kv, device="cuda", generator=gen).to(DTYPES[args.dtype]) * 2 - 1 for _ in range(2))
        kv_bytes = 2 * k.numel() * k.element_size()
        for name, backend in BACKENDS.items():
            row = dict(backend=name, dtype=args.dtype, batch=batch, heads=args.heads, heads_kv=args.heads_kv,
                       cache=n, head_dim=args.head_dim)
            try:
                with sdpa_kernel(backend):
                    fn = lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v, enable_gqa=True)
                    ms = time_ms(fn, 5, args.repeat)
                row.update(median_ms=ms, kv_tb_per_s=kv_bytes / ms / 1e9)
            except RuntimeError as e:
                row.update(median_ms=None, kv_tb_per_s=None, note=str(e).splitlines()[0][:120])
            rows.append(row)
            print(row)
        del q, k, v
        torch.cuda.empty_cache()
    # The device copy ceiling PyTorch sees (read + write bytes per second of a 2 GiB copy), the
    # other reference the decode bars use next to flashcl-bench's own copy ceiling.
    src = torch.rand(1 << 29, device="cuda")
    dst = torch.empty_like(src)
    ms = time_ms(lambda: dst.copy_(src), 5, args.repeat)
    rows.append(dict(backend="copy", dtype="f32", batch=0, cache=0, median_ms=ms,
                     kv_tb_per_s=2 * src.numel() * 4 / ms / 1e9))
    print(rows[-1])
    with open(args.json, "w") as f:
        json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
