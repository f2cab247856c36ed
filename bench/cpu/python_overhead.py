#!/usr/bin/env python3
"""python_overhead.py: issue 21's last PoCL bar, "Python-side overhead of one call on PoCL at
N = 2048, d = 64: within 5% of the C++ bench's time", measured in one run. Rounds alternate (the
order flips every round, so drift hits both sides) between
  - flashcl-bench (fa2, fp32, B 1, H 8, N, d, causal off and on) in a subprocess: its per-call
    time is device time from profiling events (first kernel's start to last kernel's end; no
    enqueue, allocation or copies), on buffers it made once. The bench has no host clock for its
    timed runs, but it times each row's first call on the wall clock (enqueue + run + wait; build
    time when it compiled or loaded the program): the shape is listed three times, so two rows a
    round find the program in memory and their first call is one C++ host wall-clock sample;
  - the Python forms in this process on the same device (the library's default, PoCL's CPU device
    here) and shape, by host clock (time.perf_counter) per call after a warm-up: flashcl.torch's
    flash_attn_func on CPU torch fp32 tensors (B, S, H, d), flashcl.attention on numpy arrays, and
    flashcl.attention on pyopencl Arrays on the Session's own context (device-resident inputs,
    a new output Array each call, timed to the end of the kernel).
Then one table: medians and minimums (PoCL's timings on 2 cores are bimodal: one of its two
worker threads sometimes does all the work), each form's ratio to the bench's device time (the
bar) and to its host wall-clock, and the same on two shapes where the kernel is next to nothing,
so the per-call cost shows apart from kernel time (and apart from the main shape's +-10% noise):
"tiny" (B 1, H 1, N 32, d 64: the fixed cost of a call) and "bytes" (the main shape with window
(0, 0): every query sees one key, so Q, K, V and O are as large as the main shape's but the
kernel only streams them: the cost of the main shape's data on each path). Finally the host
path's parts on the bytes shape: Session.forward alone on numpy's own arrays and on page-aligned
copies (the same cost once misaligned inputs are used in place), copied buffers made by pyopencl,
USE_HOST_PTR buffers over the host arrays, and resident Arrays. The load average is printed
before and after: on a loaded machine the figures are upper bounds. stdlib + numpy/torch/pyopencl
only.
--backward measures forward+backward instead: flashcl-bench --backward's fwd+bwd device time (the
sum of one forward's and one backward's kernels, medians of its runs) against, in this process,
flash_attn_func with loss.backward on CPU torch tensors (autograd: the custom ops' CPU path),
attention + attention_backward on numpy arrays, and the same on pyopencl Arrays; then the same
forms on the "bytes" shape (window (0, 0): the data of the main shape, next to no compute), where
the host forms' cost over the resident pyopencl Arrays is what host arrays cost a training step.
Usage: [BUILD=build] .venv/bin/python bench/cpu/python_overhead.py [--rounds 4] [--calls 10]
       [--threads 2] [--seqlen 2048] [--head-dim 64] [--json FILE] [--backward]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def load():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def bench_round(bench, n, d, heads, window, repeat, out_json):
    """One flashcl-bench run: the shape three times, causal off and on. Returns {causal: (device
    runs ms, host wall ms of in-memory first calls)}."""
    cmd = [bench, "-b", "1", "--heads", str(heads), "-n", f"{n},{n},{n}", "--head-dim", str(d), "--causal", "both",
           "--algo", "fa2", "--dtype", "f32", "-r", str(repeat), "-w", "1", "--no-check", "--no-roofline", "-q",
           "-f", "json", "-o", out_json] + (["--window", f"{window[0]},{window[1]}"] if window else [])
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    rows = {False: ([], []), True: ([], [])}
    for r in json.load(open(out_json))["results"]:
        if r["status"] != "ok":
            raise SystemExit(f"flashcl-bench row not ok: {r['note']}")
        dev, wall = rows[bool(r["causal"])]
        dev += r["runs_ms"]
        if r["build_kind"] == "in memory":
            wall.append(r["first_call_wall_ms"])
    return rows


def timed(call, count, sink):
    for _ in range(count):
        t0 = time.perf_counter()
        call()
        sink.append((time.perf_counter() - t0) * 1e3)


def python_forms(flashcl, fcl_torch, torch, np, cl, cla, queue, n, d, heads, window, causal, seed):
    """{form: zero-argument callable running one blocking call} on fresh random inputs."""
    rng = np.random.default_rng(seed)
    qn, kn, vn = (rng.uniform(-1, 1, (1, n, heads, d)).astype(np.float32) for _ in range(3))
    qt, kt, vt = (torch.from_numpy(a.copy()) for a in (qn, kn, vn))
    qa, ka, va = (cla.to_device(queue, a) for a in (qn, kn, vn))
    queue.finish()
    window = window or (-1, -1)

    def on_device():
        out = flashcl.attention(qa, ka, va, causal=causal, window=window)
        out.finish()  # waits for the call's last event (the kernel)

    return {
        "torch flash_attn_func": lambda: fcl_torch.flash_attn_func(qt, kt, vt, causal=causal, window_size=window),
        "numpy attention": lambda: flashcl.attention(qn, kn, vn, causal=causal, window=window),
        "pyopencl attention": on_device,
    }


def bench_backward_round(bench, n, d, heads, repeat):
    """One flashcl-bench --backward run, causal off and on: {causal: fwd+bwd device ms} (the median
    of its runs; the backward mode prints a table, no JSON)."""
    cmd = [bench, "--backward", "-b", "1", "--heads", str(heads), "-n", str(n), "--head-dim", str(d), "--causal", "both",
           "--algo", "fa2", "--dtype", "f32", "-r", str(repeat), "-w", "1"]
    text = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    rows = {}
    for line in text.splitlines():
        cells = line.split()
        if len(cells) >= 11 and cells[0] == str(n) and cells[4] == "fa2":
            rows[cells[2] == "yes"] = float(cells[9])
    if set(rows) != {False, True}:
        raise SystemExit(f"flashcl-bench --backward: no rows in\n{text}")
    return rows


def backward_forms(flashcl, fcl_torch, torch, np, cla, queue, n, d, heads, window, causal, seed):
    """{form: zero-argument callable running one forward and its backward, blocking}."""
    rng = np.random.default_rng(seed)
    qn, kn, vn, don = (rng.uniform(-1, 1, (1, n, heads, d)).astype(np.float32) for _ in range(4))
    qt, kt, vt = (torch.from_numpy(a.copy()).requires_grad_() for a in (qn, kn, vn))
    dot = torch.from_numpy(don.copy())
    qa, ka, va, doa = (cla.to_device(queue, a) for a in (qn, kn, vn, don))
    queue.finish()
    window = window or (-1, -1)

    def on_torch():
        for t in (qt, kt, vt):
            t.grad = None
        fcl_torch.flash_attn_func(qt, kt, vt, causal=causal, window_size=window).backward(dot)

    def on_numpy():
        o, lse = flashcl.attention(qn, kn, vn, causal=causal, window=window, return_lse=True)
        flashcl.attention_backward(don, qn, kn, vn, o, lse, causal=causal, window=window)

    def on_device():
        o, lse = flashcl.attention(qa, ka, va, causal=causal, window=window, return_lse=True)
        grads = flashcl.attention_backward(doa, qa, ka, va, o, lse, causal=causal, window=window)
        grads[-1].finish()

    return {"torch fwd+bwd (autograd)": on_torch, "numpy fwd+bwd": on_numpy, "pyopencl fwd+bwd": on_device}


def page_aligned(np, x):
    """A copy of x at a page boundary (a view into a larger array)."""
    room = np.empty(x.size + 4096 // 4, np.float32)
    start = (-room.ctypes.data % 4096) // 4
    out = room[start:start + x.size].reshape(x.shape)
    out[...] = x
    return out


def backward_main(a, bench, flashcl, fcl_torch, torch, np, cla, queue):
    shapes = [("main", a.seqlen, None), ("bytes", a.seqlen, (0, 0))]
    forms, samples, ref = {}, {}, {False: [], True: []}
    for tag, n, window in shapes:
        for causal in (False, True):
            forms[(tag, causal)] = backward_forms(flashcl, fcl_torch, torch, np, cla, queue, n, a.head_dim, a.heads,
                                                  window, causal, seed=n + causal)
            for name, call in forms[(tag, causal)].items():
                call()  # warm-up: builds or loads the programs
                samples[(tag, causal, name)] = []
    for rnd in range(a.rounds):
        def run_bench():
            for causal, ms in bench_backward_round(bench, a.seqlen, a.head_dim, a.heads, a.bench_repeat).items():
                ref[causal].append(ms)

        def run_python():
            for tag, *_ in shapes:
                for causal in (False, True):
                    for name, call in forms[(tag, causal)].items():
                        timed(call, a.calls if tag == "main" else a.bytes_calls, samples[(tag, causal, name)])

        for step in ((run_bench, run_python) if rnd % 2 == 0 else (run_python, run_bench)):
            step()
        print(f"round {rnd + 1}/{a.rounds} done, load {load()}", flush=True)
    # The backward alone on the bytes shape, interleaved: numpy arrays as numpy allocates them
    # (large ones 16 bytes past a page: copied), the same at a page boundary (buffers over them
    # where the build has that path), and the resident Arrays. O and LSE are the forward's.
    parts = {}
    shape = (1, a.seqlen, a.heads, a.head_dim)
    for causal in (False, True):
        rng = np.random.default_rng(7)
        plain = [rng.uniform(-1, 1, shape).astype(np.float32) for _ in range(4)]  # d_o, q, k, v
        o, lse = flashcl.attention(*plain[1:], causal=causal, window=(0, 0), return_lse=True)
        plain += [o, lse]
        aligned = [page_aligned(np, x) for x in plain]
        resident = [cla.to_device(queue, x) for x in plain]
        calls = {"numpy, as allocated": lambda: flashcl.attention_backward(*plain, causal=causal, window=(0, 0)),
                 "numpy, page-aligned": lambda: flashcl.attention_backward(*aligned, causal=causal, window=(0, 0)),
                 "pyopencl, resident Arrays": lambda: flashcl.attention_backward(*resident, causal=causal,
                                                                                 window=(0, 0))[-1].finish()}
        time_parts(calls, parts, causal, a.bytes_calls)
    print(f"load after: {load()}")
    print()
    print_parts("attention_backward alone on the bytes shape", parts, 28)
    print()
    print(f"forward+backward, B 1, H {a.heads}, N {a.seqlen}, d {a.head_dim}, fp32, fa2; ms per call (median / min)")
    for causal in (False, True):
        ref_med = statistics.median(ref[causal])
        print(f"  causal {'on' if causal else 'off'}: C++ bench fwd+bwd device {ref_med:.2f} (medians of "
              f"{len(ref[causal])} runs {min(ref[causal]):.2f}-{max(ref[causal]):.2f})")
        res_med, res_min = stats(samples[("bytes", causal, "pyopencl fwd+bwd")])
        for name in forms[("main", causal)]:
            med, mn = stats(samples[("main", causal, name)])
            bmed, bmin = stats(samples[("bytes", causal, name)])
            print(f"    {name:<26} main {med:9.2f} / {mn:9.2f}  vs device {med / ref_med:6.3f} | bytes {bmed:7.2f} / "
                  f"{bmin:7.2f}  over pyopencl {bmed - res_med:+6.2f} / {bmin - res_min:+6.2f} ms = "
                  f"{100 * (bmed - res_med) / ref_med:+.2f}% of the device fwd+bwd")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"load_after": load(), "bench_fwd_bwd": {str(k): v for k, v in ref.items()}, "samples": [
                {"shape": k[0], "causal": k[1], "form": k[2], "ms": v} for k, v in samples.items()]}, f)


def time_parts(calls, parts, causal, count):
    """Each of `calls` warmed up once, then all timed in turn, three times count / 3 calls each
    (interleaved, so drift hits every one), into parts[(causal, name)]."""
    for name, call in calls.items():
        call()
        parts[(causal, name)] = []
    for _ in range(3):
        for name, call in calls.items():
            timed(call, max(count // 3, 1), parts[(causal, name)])


def print_parts(title, parts, width):
    """Each part's median / min and its cost over the resident Arrays' ("pyopencl, resident Arrays")."""
    print(f"{title} (ms per call, median / min), and over resident Arrays:")
    for causal in (False, True):
        res_med, res_min = stats(parts[(causal, "pyopencl, resident Arrays")])
        for name, xs in ((k[1], v) for k, v in parts.items() if k[0] == causal):
            med, mn = stats(xs)
            print(f"  causal {'on' if causal else 'off':>3}: {name:<{width}} {med:7.3f} / {mn:7.3f}  "
                  f"{med - res_med:+7.3f} / {mn - res_min:+7.3f}")


def stats(xs):
    return (statistics.median(xs), min(xs)) if xs else (float("nan"), float("nan"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--calls", type=int, default=10, help="timed Python calls per form, causal mode and round")
    ap.add_argument("--bench-repeat", type=int, default=5, help="flashcl-bench -r (device-timed runs per row)")
    ap.add_argument("--tiny-calls", type=int, default=200)
    ap.add_argument("--bytes-calls", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2, help="POCL_MAX_PTHREAD_COUNT (and torch's threads)")
    ap.add_argument("--seqlen", type=int, default=2048)
    ap.add_argument("--head-dim", type=int, default=64)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--json", help="write every sample here")
    ap.add_argument("--backward", action="store_true", help="forward+backward forms against flashcl-bench --backward")
    a = ap.parse_args()

    build = os.environ.get("BUILD", "build")
    build = build if os.path.isabs(build) else os.path.join(ROOT, build)
    bench = os.path.join(build, "bench", "flashcl-bench")
    # Before PoCL starts, in this process and the bench's.
    os.environ["POCL_MAX_PTHREAD_COUNT"] = str(a.threads)
    os.environ["OMP_NUM_THREADS"] = str(a.threads)
    sys.path.insert(0, os.path.join(build, "python"))
    import numpy as np
    import pyopencl as cl
    import pyopencl.array as cla
    import torch

    import flashcl
    import flashcl.torch as fcl_torch

    torch.set_num_threads(a.threads)
    sess = flashcl.session()
    # pyopencl on the Session's context: the same device, and flashcl's programs cached for it.
    ctx = cl.Context.from_int_ptr(sess.context, retain=True)
    queue = cl.CommandQueue(ctx)
    print(f"load before: {load()}; device: {sess.info.name}; PoCL threads {a.threads}; torch {torch.__version__}; "
          f"bench {os.path.relpath(bench, ROOT)}")
    if a.backward:
        return backward_main(a, bench, flashcl, fcl_torch, torch, np, cla, queue)

    shapes = [("main", a.seqlen, a.head_dim, a.heads, None), ("tiny", 32, a.head_dim, 1, None),
              ("bytes", a.seqlen, a.head_dim, a.heads, (0, 0))]
    samples = {}  # (shape, causal, form) -> [ms]
    forms = {}
    for tag, n, d, h, window in shapes:
        for causal in (False, True):
            forms[(tag, causal)] = python_forms(flashcl, fcl_torch, torch, np, cl, cla, queue, n, d, h, window,
                                                causal, seed=n + causal)
            for name, call in forms[(tag, causal)].items():
                for _ in range(3):  # warm-up: builds or loads the program, first allocations
                    call()
                samples[(tag, causal, name)] = []
            samples[(tag, causal, "C++ bench device")] = []
            samples[(tag, causal, "C++ bench host wall")] = []

    with tempfile.TemporaryDirectory() as tmp:
        out_json = os.path.join(tmp, "bench.json")
        for rnd in range(a.rounds):
            def run_bench():
                for tag, n, d, h, window in shapes:
                    rep = a.bench_repeat if tag == "main" else max(a.bench_repeat, 50)
                    for causal, (dev, wall) in bench_round(bench, n, d, h, window, rep, out_json).items():
                        samples[(tag, causal, "C++ bench device")] += dev
                        samples[(tag, causal, "C++ bench host wall")] += wall

            def run_python():
                for tag, *_ in shapes:
                    count = a.calls if tag == "main" else a.tiny_calls if tag == "tiny" else a.bytes_calls
                    for causal in (False, True):
                        for name, call in forms[(tag, causal)].items():
                            timed(call, count, samples[(tag, causal, name)])

            steps = (run_bench, run_python) if rnd % 2 == 0 else (run_python, run_bench)
            for step in steps:
                step()
            print(f"round {rnd + 1}/{a.rounds} done, load {load()}", flush=True)

        # The host path's parts on the bytes shape, interleaved: Session.forward alone on numpy's own
        # arrays (16 bytes past a page: copied before issue 21's widened inputs, used in place
        # after) and on page-aligned copies; the buffers of a copying path made by pyopencl; buffers
        # over the host memory (USE_HOST_PTR, O included); the resident Arrays.
        parts = {}
        mf = cl.mem_flags
        shape = (1, a.seqlen, a.heads, a.head_dim)
        for causal in (False, True):
            rng = np.random.default_rng(7)
            qn, kn, vn = (rng.uniform(-1, 1, shape).astype(np.float32) for _ in range(3))
            args = flashcl.functional._shape_args(qn, kn, vn, varlen=False, causal=causal, window=(0, 0), softcap=0.0,
                                                  scale=None, algorithm="auto", max_seqlen_q=None, max_seqlen_k=None,
                                                  batch_from_cu=0)
            args.dtype = flashcl.DType.F32
            flat = [x.reshape(-1) for x in (qn, kn, vn)]  # as numpy allocates them: 16 bytes past a page
            flat_aligned = [page_aligned(np, x).reshape(-1) for x in (qn, kn, vn)]
            resident = [cla.to_device(queue, x) for x in (qn, kn, vn)]

            def copied():
                arrs = [cla.Array(queue, shape, np.float32,
                                  data=cl.Buffer(ctx, mf.READ_WRITE | mf.COPY_HOST_PTR, hostbuf=x)) for x in (qn, kn, vn)]
                o = flashcl.attention(*arrs, causal=causal, window=(0, 0))
                cl.enqueue_copy(queue, np.empty(shape, np.float32), o.data)

            def host_ptr():
                arrs = [cla.Array(queue, shape, np.float32,
                                  data=cl.Buffer(ctx, mf.READ_ONLY | mf.USE_HOST_PTR, hostbuf=x)) for x in (qn, kn, vn)]
                out = np.empty(shape, np.float32)
                o = cla.Array(queue, shape, np.float32, data=cl.Buffer(ctx, mf.WRITE_ONLY | mf.USE_HOST_PTR, hostbuf=out))
                flashcl.attention(*arrs, causal=causal, window=(0, 0), out=o)
                mapped, _ = cl.enqueue_map_buffer(queue, o.data, cl.map_flags.READ, 0, shape, np.float32)
                mapped.base.release(queue)  # unmap: O is in `out`

            calls = {"Session.forward (binding)": lambda: sess.forward(args, *flat),
                     "Session.forward, page-aligned Q, K, V": lambda: sess.forward(args, *flat_aligned),
                     "pyopencl, COPY_HOST_PTR buffers + read O": copied,
                     "pyopencl, USE_HOST_PTR buffers (O too)": host_ptr,
                     "pyopencl, resident Arrays": lambda: flashcl.attention(*resident, causal=causal,
                                                                           window=(0, 0)).finish()}
            time_parts(calls, parts, causal, a.bytes_calls)

    print(f"load after: {load()}")
    print()
    ref_name, wall_name = "C++ bench device", "C++ bench host wall"
    for tag, n, d, h, window in shapes:
        print(f"{tag}: B 1, H {h}, N {n}, d {d}{', window ' + str(window) if window else ''}, fp32, fa2; ms per call (median / min); ratio = median over the "
              f"bench's device median (min over min)")
        print(f"  {'form':<26} {'causal':>6} | {'median':>9} {'min':>9} {'n':>4} | {'vs device':>9} {'(min)':>7} | "
              f"{'vs C++ wall':>11} | {'overhead ms':>11}")
        for causal in (False, True):
            ref_med, ref_min = stats(samples[(tag, causal, ref_name)])
            wall_med, _ = stats(samples[(tag, causal, wall_name)])
            names = [ref_name, wall_name] + list(forms[(tag, causal)])
            for name in names:
                xs = samples[(tag, causal, name)]
                med, mn = stats(xs)
                print(f"  {name:<26} {'on' if causal else 'off':>6} | {med:9.3f} {mn:9.3f} {len(xs):4d} | "
                      f"{med / ref_med:9.3f} {mn / ref_min:7.3f} | {med / wall_med:11.3f} | {med - ref_med:11.3f}")
        print()
    print("the bar from the low-noise shapes: a form's cost over the bench's device time on 'bytes' (the main shape's"
          " data, no compute), as a share of the bench's main-shape device time (median; min over min):")
    for causal in (False, True):
        main_med, main_min = stats(samples[("main", causal, ref_name)])
        dev_med, dev_min = stats(samples[("bytes", causal, ref_name)])
        cells = []
        for name in [wall_name] + list(forms[("bytes", causal)]):
            med, mn = stats(samples[("bytes", causal, name)])
            cells.append(f"{name} {100 * (med - dev_med) / main_med:+.1f}% ({100 * (mn - dev_min) / main_min:+.1f}%)")
        print(f"  causal {'on' if causal else 'off':>3}: " + "; ".join(cells))
    print()
    print_parts("parts of the host path on the bytes shape", parts, 42)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"load_after": load(), "samples": [
                {"shape": k[0], "causal": k[1], "form": k[2], "ms": v} for k, v in samples.items()]}, f)


if __name__ == "__main__":
    main()
