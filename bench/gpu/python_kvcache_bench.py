"""Times flashcl.torch.flash_attn_with_kvcache on CUDA tensors against flashcl-bench --decode's
device time for the same shape (read from the CSV bench/gpu/python_kvcache.sh wrote): fp16, one
query, B 8, H 32 over H_kv 8, d 128, a 32k-key cache with one new row appended per call. CUDA
events on PyTorch's stream around each call (the median of single calls, and the mean of calls back
to back), for caches in flashcl's CUDA pool (no copies) and plain PyTorch tensors (under the
default allocator staged: each 512 MiB cache copied into the pool and back every call, device to
device; the cost a pool or imported cache avoids). flashcl.cuda.stats() counts the staged tensors per
call. A ratio near 1 means the call adds only its fixed cost to the kernels' time.
Usage: python_kvcache_bench.py CPP_CSV [--repeat 20]."""

import argparse
import csv

import torch

import flashcl.cuda
from flashcl.torch import flash_attn_with_kvcache
from python_bench import timed  # CUDA events: the median of single calls, the mean back to back


def cpp_row(path):
    """(median ms, the planner's split count) of a flashcl-bench --decode CSV; (None, None) if it has no row."""
    rows = [r for r in csv.DictReader(open(path)) if r.get("median_ms")]
    return (float(rows[0]["median_ms"]), rows[0].get("splits")) if rows else (None, None)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("cpp_csv")
    p.add_argument("--repeat", type=int, default=20)
    p.add_argument("--cache", type=int, default=32768)
    a = p.parse_args()
    batch, heads, heads_kv, d, length = 8, 32, 8, 128, a.cache
    reference = cpp_row(a.cpp_csv)[0]
    print(f"flashcl-bench --decode (B {batch}, H {heads}/{heads_kv}, d {d}, {length} keys + 1 appended, fp16): "
          f"{reference} ms device time")
    print(f"{'tensors':8} {'ordering':9} {'single ms':>10} {'b2b ms':>8} {'/ C++':>6} {'staged/call':>11}")
    for kind in ("pool", "plain"):
        def make():
            shapes = [(batch, 1, heads, d)] + [(batch, length + 1, heads_kv, d)] * 2 + [(batch, 1, heads_kv, d)] * 2
            return [torch.randn(*s, device="cuda", dtype=torch.float16) for s in shapes]

        if kind == "pool":
            with flashcl.cuda.use_pool():
                tensors = make()
        else:
            tensors = make()
        q, k_cache, v_cache, k, v = tensors
        seqlens = torch.full((batch,), length, dtype=torch.int32, device="cuda")

        def call():
            return flash_attn_with_kvcache(q, k_cache, v_cache, k=k, v=v, cache_seqlens=seqlens, causal=True)

        flashcl.cuda.reset_stats()
        single, b2b = timed(call, a.repeat, warmup=3)
        stats = flashcl.cuda.stats()
        staged = stats["staged_tensors"] / max(stats["calls"], 1)
        ratio = f"{b2b / reference:6.2f}" if reference else "     -"
        print(f"{kind:8} {stats['ordering'] or '-':9} {single:10.3f} {b2b:8.3f} {ratio} {staged:11.1f}")
        del tensors, q, k_cache, v_cache, k, v
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
