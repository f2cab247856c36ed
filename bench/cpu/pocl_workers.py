#!/usr/bin/env python3
"""pocl_workers.py: which of PoCL's pthread worker threads run a short kernel call, and where the
others were meanwhile. Tells whether a run on a CPU device is in the "slow mode" of short calls
(docs/perf/pocl-cpu.md, "PoCL's slow mode on short calls"): one worker does all the work-groups
while another sits runnable on the same CPU.

A synthetic kernel (no flashcl code, so the effect is PoCL's and the OS's alone): G work-groups of
16 work-items, each a chain of ITERS dependent FMAs, the same work in every group. Each group
records two things:
  - the address of a __local array: PoCL's pthread device gives each worker thread its own local
    memory block (pthread_scheduler.c, pool_thread_data.local_mem), so distinct addresses are
    distinct workers, with no clock or thread id needed inside the kernel;
  - a ticket from an atomic counter, taken when the group ends: a worker's smallest ticket is how
    many groups had ended before its first one, i.e. how late it joined.
Around each call the threads' /proc/self/task/*/schedstat (ns on a CPU, ns runnable on a run queue
but not running, time slices) and the CPU each last ran on are read, and the call's time is its
event's profiling start to end (as flashcl-bench times calls).

Usage: pocl_workers.py [--groups 64] [--iters 25000] [--calls 40] [--show 10]
(--iters 25000 is ~1.75 ms of one-thread work for 64 groups on the 2-core EPYC of the notes.)
Try it with POCL_AFFINITY=1 (PoCL pins worker i to CPU i) or POCL_MAX_PTHREAD_COUNT=1 to compare."""
import argparse
import os
import statistics

import numpy as np
import pyopencl as cl

SRC = r"""
__kernel void spin(__global float* out, __global ulong* who, __global int* ticket, int iters) {
  __local float scratch[16];
  float a = get_group_id(0) * 1e-3f;
  for (int i = 0; i < iters; ++i) a = fma(a, 1.0001f, 1e-7f);  // dependent: the time is ITERS x FMA latency
  scratch[get_local_id(0)] = a;
  barrier(CLK_LOCAL_MEM_FENCE);
  if (get_local_id(0) == 0) {
    const int t = atomic_inc(ticket);
    who[get_group_id(0)] = ((ulong)(uintptr_t)scratch) | ((ulong)t << 56);  // worker's local block | ticket
    out[get_group_id(0)] = scratch[0];  // keeps the chain live
  }
}
"""


def threads():
    """tid -> [ns on CPU, ns waiting on a run queue, slices, CPU last run on]."""
    r = {}
    for t in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{t}/schedstat") as f:
                v = [int(x) for x in f.read().split()]
            with open(f"/proc/self/task/{t}/stat") as f:
                v.append(int(f.read().rsplit(")", 1)[1].split()[36]))  # field 39, "processor"
        except OSError:  # a thread that ended meanwhile
            continue
        r[t] = v
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--groups", type=int, default=64)
    ap.add_argument("--iters", type=int, default=25000)
    ap.add_argument("--calls", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--show", type=int, default=10, help="calls printed one by one")
    a = ap.parse_args()

    dev = next(d for p in cl.get_platforms() for d in p.get_devices() if d.type & cl.device_type.CPU)
    ctx = cl.Context([dev])
    q = cl.CommandQueue(ctx, properties=cl.command_queue_properties.PROFILING_ENABLE)
    kernel = cl.Program(ctx, SRC).build().spin
    G = a.groups
    out = cl.Buffer(ctx, cl.mem_flags.READ_WRITE, 4 * G)
    who = cl.Buffer(ctx, cl.mem_flags.READ_WRITE, 8 * G)
    ticket = cl.Buffer(ctx, cl.mem_flags.READ_WRITE, 4)

    rows = []
    for c in range(a.warmup + a.calls):
        cl.enqueue_fill_buffer(q, ticket, np.int32(0), 0, 4)
        q.finish()
        before = threads()
        ev = kernel(q, (G * 16,), (16,), out, who, ticket, np.int32(a.iters))
        ev.wait()
        after = threads()
        w = np.empty(G, np.uint64)
        cl.enqueue_copy(q, w, who)
        q.finish()
        if c < a.warmup:
            continue
        addr = (w & np.uint64((1 << 56) - 1)).tolist()
        tick = (w >> np.uint64(56)).astype(int).tolist()
        first = {}
        for ad, t in zip(addr, tick):
            first[ad] = min(first.get(ad, G), t)
        workers = sorted(first, key=first.get)
        per = [addr.count(ad) for ad in workers]
        moved = []  # threads that ran or waited during the call: (CPU ms, run-queue ms, slices, last CPU)
        for t, v in after.items():
            if t in before and (v[0] != before[t][0] or v[2] != before[t][2]):
                moved.append(((v[0] - before[t][0]) * 1e-6, (v[1] - before[t][1]) * 1e-6, v[2] - before[t][2], v[3]))
        moved.sort(reverse=True)
        rows.append(((ev.profile.end - ev.profile.start) * 1e-6, per, [first[ad] for ad in workers], moved))

    ms = [r[0] for r in rows]
    alone = sum(1 for r in rows if len(r[1]) == 1)
    print(f"{dev.name}, {dev.max_compute_units} compute units; {G} groups x {a.iters} FMAs; POCL_AFFINITY="
          f"{os.environ.get('POCL_AFFINITY', 'unset')}, POCL_MAX_PTHREAD_COUNT={os.environ.get('POCL_MAX_PTHREAD_COUNT', 'unset')}")
    print(f"call ms: median {statistics.median(ms):.3f}, min {min(ms):.3f}, max {max(ms):.3f}; "
          f"calls done by one worker alone: {alone}/{len(rows)}")
    for r in rows[:a.show]:
        threads_txt = ", ".join(f"({x[0]:.3f} cpu, {x[1]:.3f} runq, {x[2]} sl, cpu{x[3]})" for x in r[3])
        print(f"  {r[0]:7.3f} ms  groups per worker {r[1]}  first tickets {r[2]}  threads (ms): {threads_txt}")


if __name__ == "__main__":
    main()
