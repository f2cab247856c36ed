"""Where the staged forward's time goes: flashcl.torch.flash_attn_func on plain CUDA tensors of
PyTorch's default allocator (cudaMalloc memory, which no API exports to OpenCL, so q, k and v are
copied device to device into flashcl's pool on every call) against the same call on pool tensors.
Each loop runs `--repeat` forwards back to back under torch.no_grad, timed between CUDA events on
the current stream, with the host's time per call beside it:
  pool           q, k, v in the pool: no copy (the floor)
  plain          plain tensors, staged by flash_attn_func itself (what users get)
  copies         only the three device copies into preallocated pool tensors (what staging must cost)
  pool+copies    the three copies into preallocated pool tensors, then the pool call
  stage+pool     flashcl.cuda.resident() of each (the staging flash_attn_func does, with its
                 allocations), then the call on the staged tensors
  tiny+pool      one one-element PyTorch kernel, then the pool call: what any CUDA work between two
                 calls costs beyond its own time (the GPU switching between PyTorch's context and
                 the OpenCL driver's)
Then one torch.profiler trace of `plain` (five calls), printed as the GPU timeline it records (CUPTI
sees PyTorch's copies; it may or may not see the OpenCL driver's kernels), so that the gap between
one call's kernels and the next call's copies can be read off. Usage: python_stage_probe.py
[--batch 8 --heads 16 --seqlen 4096 --head-dim 128 --repeat 20 --causal --requires-grad] (the
last makes the plain tensors leaves that require grad, as python_bench.py's are; the calls still
run under torch.no_grad)."""

import argparse
import time

import torch

import flashcl.cuda
from flashcl.torch import flash_attn_func


def per_call(fn, repeat):
    """(device ms, host ms) per call of fn, back to back after two warm-up calls."""
    for _ in range(2):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    host = time.perf_counter()
    start.record()
    for _ in range(repeat):
        fn()
    end.record()
    host = time.perf_counter() - host
    end.synchronize()
    return start.elapsed_time(end) / repeat, host * 1e3 / repeat


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--heads", type=int, default=16)
    p.add_argument("--seqlen", type=int, default=4096)
    p.add_argument("--head-dim", type=int, default=128)
    p.add_argument("--repeat", type=int, default=20)
    p.add_argument("--causal", action="store_true")
    p.add_argument("--requires-grad", action="store_true", help="plain tensors that require grad")
    a = p.parse_args()
    shape = (a.batch, a.seqlen, a.heads, a.head_dim)
    b = flashcl.cuda.bridge()
    print(f"{torch.cuda.get_device_name()} through {b.device_name}; ordering {flashcl.cuda.ordering()['ordering']}; "
          f"shape {shape} fp16 causal={a.causal} requires_grad={a.requires_grad}")
    plain = [torch.randn(shape, device="cuda", dtype=torch.float16).requires_grad_(a.requires_grad)
             for _ in range(3)]
    with flashcl.cuda.use_pool():
        pool = [torch.randn(shape, device="cuda", dtype=torch.float16) for _ in range(3)]
        dst = [torch.empty(shape, device="cuda", dtype=torch.float16) for _ in range(3)]

    def call(q, k, v):
        flash_attn_func(q, k, v, causal=a.causal)

    def copies():
        for d, s in zip(dst, plain):
            d.copy_(s)

    def pool_copies():
        copies()
        call(*dst)

    def stage_pool():
        call(*(flashcl.cuda.resident(t) for t in plain))

    one = torch.zeros(1, device="cuda")

    def tiny_pool():
        one.add_(1)
        call(*pool)

    loops = {"pool": lambda: call(*pool), "plain": lambda: call(*plain), "copies": copies,
             "pool+copies": pool_copies, "stage+pool": stage_pool, "tiny+pool": tiny_pool}
    with torch.no_grad():
        rows = {}
        for round_ in range(2):
            for name, fn in loops.items():
                flashcl.cuda.reset_stats()
                rows.setdefault(name, []).append(per_call(fn, a.repeat))
        base = sum(d for d, _ in rows["pool"]) / 2
        print(f"{'loop':12s} {'device ms/call (2 rounds)':>26s} {'x pool':>7s} {'host ms/call':>14s}")
        for name, got in rows.items():
            dev = sum(d for d, _ in got) / 2
            print(f"{name:12s} {got[0][0]:12.3f} {got[1][0]:12.3f} {dev / base:7.3f} "
                  f"{got[0][1]:7.3f} {got[1][1]:6.3f}")
        s = flashcl.cuda.stats()
        print(f"stats of the last loop: {s}")

        from torch.profiler import ProfilerActivity, profile
        for _ in range(2):
            call(*plain)
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            for _ in range(5):
                call(*plain)
            torch.cuda.synchronize()
    events = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    events.sort(key=lambda e: e.time_range.start)
    if not events:
        print("profiler: no GPU activity recorded")
        return
    t0 = events[0].time_range.start
    print("GPU timeline of five plain calls (us from the first activity; start, duration, gap before, name):")
    last_end = t0
    for e in events:
        start, end = e.time_range.start, e.time_range.end
        print(f"{start - t0:10.1f} {end - start:9.1f} {start - last_end:9.1f}  {e.name[:90]}")
        last_end = max(last_end, end)
    print("host functions taking over 100 us in the trace (self and total, us):")
    for e in prof.key_averages():
        if e.cpu_time_total > 100 * 5 and e.device_type != torch.autograd.DeviceType.CUDA:
            print(f"  {e.key[:60]:60s} calls {e.count:4d} total {e.cpu_time_total:10.1f} "
                  f"self {e.self_cpu_time_total:10.1f}")


if __name__ == "__main__":
    main()
