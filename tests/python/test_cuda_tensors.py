"""flashcl.torch on CUDA tensors (NVIDIA's OpenCL device of the same GPU, flashcl.cuda's bridge):
the bridge opens; the pool's memory is one memory for both drivers (an OpenCL fill seen by
PyTorch) and its tensors pass without staging copies while others are staged device to device;
flash_attn_func and flash_attn_varlen_func in fp16/bf16 against the float64 reference, forward and
gradients, for pool tensors, plain tensors and strided views; and a tiny Llama trained through
attn_implementation="flashcl" against "sdpa" in fp16 and bf16. The ordering with PyTorch's stream,
under every ordering the driver offers (semaphores, the flag, host waits; one the driver lacks is
skipped with the reason): a late producer kernel writing the inputs right before the call and a
consumer right after it, with the inputs overwritten at once, without any synchronize; a chain of
large calls, each fed by a CUDA op and read by the next at once; calls alternating between two
streams; the sub-buffer cache; a segment handed back while a call may still run. Collected only where torch.cuda is available (conftest.py);
bench/gpu/python.sh runs it on the GPU machine."""

import copy
import ctypes
import os

import numpy as np
import pytest
import torch

from conftest import assert_close, reference, reference_backward, reference_varlen  # noqa: E402

import flashcl  # noqa: E402
import flashcl.cuda  # noqa: E402
import flashcl.transformers  # noqa: E402,F401  (registers "flashcl")
from flashcl import _flashcl as ext  # noqa: E402
from flashcl.torch import flash_attn_func, flash_attn_varlen_func  # noqa: E402

# Storage rounding of O (and of the reference's rounded inputs): 2^-11 relative for fp16, 2^-8 for
# bf16, around values of magnitude ~1; gradients accumulate over the keys, so four times that.
ATOL = {torch.float16: 2e-3, torch.bfloat16: 1.6e-2}
GRAD_ATOL = {torch.float16: 8e-3, torch.bfloat16: 6.4e-2}
DTYPES = [torch.float16, torch.bfloat16]


def np64(t):
    return t.detach().to("cpu", torch.float64).numpy()


def inputs(shapes, dtype, in_pool, seed=0, requires_grad=False):
    g = torch.Generator(device="cuda").manual_seed(seed)

    def make():
        return [torch.randn(s, generator=g, device="cuda", dtype=torch.float32).to(dtype).requires_grad_(requires_grad)
                for s in shapes]

    if in_pool:
        with flashcl.cuda.use_pool():
            return make()
    return make()


def test_bridge_opens():
    b = flashcl.cuda.bridge()
    o = flashcl.cuda.ordering()
    print(f"bridge: {b.device_name}, granularity {b.granularity}, sub-buffer alignment {b.base_align}, "
          f"acquire/release {b.acquire_release} {b.note}; ordering {o['ordering']} {o['note']}")
    assert b.granularity > 0 and b.base_align > 0 and b.device_name


def test_gpu_side_ordering_in_use():
    o = flashcl.cuda.ordering()
    requested = os.environ.get("FLASHCL_CUDA_ORDER", "auto").strip().lower() or "auto"
    if requested != "auto":
        assert o["ordering"] == requested
        return
    if o["ordering"] == "semaphore":
        assert o["semaphores"] and not o["note"]
        return
    # The NVIDIA driver this suite runs on (docs: ../shared/GPU.md) lists cl_khr_external_semaphore
    # with opaque fds, but its 580.159.04 refuses to create a binary semaphore exportable as one
    # (CL_INVALID_PROPERTY, with and without a device list; docs/perf/nvidia-h200.md): that refusal
    # is the one reason accepted for not using them. Any other failure (entry points, extensions, a
    # round trip that does not order) is a finding. The flag must then order the calls: its driver
    # calls (cuStreamWaitValue32) are in every CUDA 11.7+ driver.
    assert "clCreateSemaphoreWithPropertiesKHR" in o["note"] and "failed with -64" in o["note"], o
    assert o["ordering"] == "flag" and o["flag"], o


@pytest.fixture(params=["semaphore", "flag", "host"])
def ordering(request):
    """The test's calls ordered as the parameter says (skipped, with the reason, where the driver
    does not offer it); the ordering before it restored after."""
    before = flashcl.cuda.ordering()["ordering"]
    try:
        flashcl.cuda.set_ordering(request.param)  # probes it once; DeviceNotFound where it does not work
    except flashcl.Error as e:
        if e.status != flashcl.Status.DeviceNotFound:
            raise
        pytest.skip(f"{request.param} ordering unavailable here: {e}")
    yield request.param
    flashcl.cuda.set_ordering(before)


def _counted(ordering):
    return {"semaphore": "semaphore_calls", "flag": "flag_calls", "host": "host_wait_calls"}[ordering]


def test_late_producer_and_early_consumer(ordering):
    # The stream sleeps, then a producer writes the inputs, flashcl runs, and a consumer reads the
    # output and overwrites the inputs at once, all without a synchronize: the call must read what
    # the producer wrote and finish reading before the inputs change, and the consumer must see the
    # finished output (reading early, or late, gives other values).
    b, n, h, d = 2, 1024, 8, 64
    src = inputs([(b, n, h, d)] * 3 + [(b, n, h, d)], torch.float16, in_pool=False, seed=5, requires_grad=False)
    with flashcl.cuda.use_pool():
        q, k, v = (torch.zeros_like(t).requires_grad_() for t in src[:3])
    d_o = src[3]
    torch.cuda.synchronize()
    flashcl.cuda.reset_stats()
    torch.cuda._sleep(50_000_000)  # ~25 ms of GPU time before the producer
    with torch.no_grad():
        for dst, t in zip((q, k, v), src):
            dst.copy_(t)
    out = flash_attn_func(q, k, v, causal=True)
    got = out.detach().clone()
    out.backward(d_o)  # the backward reads q, k, v, out and d_o; then they are overwritten
    grads = [t.grad.clone() for t in (q, k, v)]
    with torch.no_grad():
        for t in (q, k, v, out):
            t.zero_()
    torch.cuda.synchronize()
    ref_o, _ = reference(*(np64(t) for t in src[:3]), causal=True)
    assert_close(np64(got), ref_o, ATOL[torch.float16])
    ref = reference_backward(*(np64(t) for t in src[:3]), np64(d_o), causal=True)
    for name, g, r in zip(("dQ", "dK", "dV"), grads, ref[:3]):
        assert_close(np64(g), r, GRAD_ATOL[torch.float16], name)
    stats = flashcl.cuda.stats()
    assert stats["calls"] == 2 and stats[_counted(ordering)] == 2
    assert stats["ordering"] == ordering


def test_producer_consumer_chain(ordering):
    # Each step: a CUDA op writes q (from the previous step's output), flashcl reads it, and a CUDA
    # op reads O at once, then q, k and v are overwritten with NaN, all on one stream with no
    # synchronize, on tensors large enough (B 4, N 2048, H 16, d 128: ~0.5 ms a call) that a call
    # started before its producer finished reads NaN or the last step's q, and a consumer that ran
    # before the call finished reads a block of O that the caching allocator handed over from the
    # last step. Checked afterwards against float64 attention on the GPU, step by step, from what
    # each step should have read.
    b, n, h, d, steps = 4, 2048, 16, 128, 6
    g = torch.Generator(device="cuda").manual_seed(40)
    with flashcl.cuda.use_pool():
        q, k, v = (torch.empty(b, n, h, d, device="cuda", dtype=torch.float16) for _ in range(3))
    seed = torch.randn(b, n, h, d, generator=g, device="cuda", dtype=torch.float32).to(torch.float16)
    kv = [torch.randn(b, n, h, d, generator=g, device="cuda", dtype=torch.float32).to(torch.float16)
          for _ in range(2 * steps)]
    torch.cuda.synchronize()
    flashcl.cuda.reset_stats()
    outs, prev = [], seed
    torch.cuda._sleep(20_000_000)  # ~10 ms: the first producer runs late
    with torch.no_grad():
        for i in range(steps):
            q.copy_(prev * 0.5 + 0.25)  # producer: depends on the previous step's consumer
            k.copy_(kv[2 * i])
            v.copy_(kv[2 * i + 1])
            out = flash_attn_func(q, k, v, causal=i % 2 == 1)
            prev = out * 2.0 - 1.0  # consumer: reads O right after the call
            outs.append(prev)
            for t in (q, k, v):
                t.fill_(float("nan"))  # a call still reading its inputs would see these
            del out  # its block goes back to the allocator: the next call's O may land on it
    torch.cuda.synchronize()
    stats = flashcl.cuda.stats()
    assert stats["calls"] == steps and stats[_counted(ordering)] == steps, stats
    prev = seed
    for i in range(steps):
        qi = (prev * 0.5 + 0.25).to(torch.float16)  # what step i's producer wrote
        ref = torch.nn.functional.scaled_dot_product_attention(
            *(t.transpose(1, 2).double() for t in (qi, kv[2 * i], kv[2 * i + 1])), is_causal=i % 2 == 1)
        ref = ref.transpose(1, 2) * 2.0 - 1.0
        got = outs[i]
        assert torch.isfinite(got).all(), f"step {i}: non-finite output (the call read inputs overwritten with NaN)"
        err = (got.double() - ref).abs().max().item()
        assert err <= 2 * 2 * ATOL[torch.float16], f"step {i}: max error {err:.3g} (the order between the ops broke)"
        prev = got  # the next step's producer read this


def test_calls_alternating_between_streams(ordering):
    # Binary semaphores pair one signal with one wait: a call on another stream must not signal
    # before the previous call's wait has run (the bridge chains them through an event). The flag
    # is one for every stream: each stream waits for its own call's number, which the queue writes
    # in call order.
    srcs = [inputs([(1, 256, 4, 64)] * 3, torch.float16, in_pool=True, seed=10 + i) for i in range(6)]
    torch.cuda.synchronize()
    streams = [torch.cuda.Stream(), torch.cuda.Stream()]
    outs = []
    for i, (q, k, v) in enumerate(srcs):
        with torch.cuda.stream(streams[i % 2]):
            if i % 3:
                torch.cuda._sleep(2_000_000 * (i % 3))  # ~1-2 ms: the streams' calls overtake each other
            outs.append(flash_attn_func(q, k, v).clone())
    torch.cuda.synchronize()
    for (q, k, v), out in zip(srcs, outs):
        ref_o, _ = reference(np64(q), np64(k), np64(v))
        assert_close(np64(out), ref_o, ATOL[torch.float16])


def test_segments_handed_back_while_calls_run(ordering):
    # A segment handed back (flashcl_cuda_free, as PyTorch's allocator calls it) while an OpenCL
    # command on it may still wait for the stream: the release finishes the bridge's queue first.
    library = ctypes.CDLL(ext.__file__)
    alloc = getattr(library, ext.cuda_alloc_symbol)
    alloc.restype, alloc.argtypes = ctypes.c_void_p, [ctypes.c_ssize_t, ctypes.c_int, ctypes.c_void_p]
    free = getattr(library, ext.cuda_free_symbol)
    free.restype, free.argtypes = None, [ctypes.c_void_p, ctypes.c_ssize_t, ctypes.c_int, ctypes.c_void_p]
    device = torch.cuda.current_device()
    address = alloc(1 << 21, device, None)
    torch.cuda._sleep(20_000_000)  # ~10 ms: the fill below is still pending when the segment goes
    ext.cuda_fill(address, 1 << 21, 0x5A, torch.cuda.current_stream().cuda_stream)
    free(address, 1 << 21, device, None)
    assert ext.cuda_locate(address, 16) is None
    # And through PyTorch: plain tensors' staged copies are freed when the call returns, possibly
    # before its kernels have run; empty_cache then hands back what it can.
    q, k, v = inputs([(2, 2048, 8, 64)] * 3, torch.float16, in_pool=False, seed=20)
    torch.cuda.synchronize()
    torch.cuda._sleep(20_000_000)
    out = flash_attn_func(q, k, v)
    torch.cuda.empty_cache()
    torch.cuda.synchronize()
    ref_o, _ = reference(np64(q), np64(k), np64(v))
    assert_close(np64(out), ref_o, ATOL[torch.float16])


def test_sub_buffers_are_cached():
    q, k, v = inputs([(1, 64, 2, 32)] * 3, torch.float16, in_pool=True, seed=30)
    flash_attn_func(q, k, v)
    before = flashcl.cuda.stats()
    flash_attn_func(q, k, v)
    after = flashcl.cuda.stats()
    # q, k, v at least come from the cache; O and LSE may land on the blocks the first call's had.
    assert after["views_reused"] - before["views_reused"] >= 3
    assert after["views_created"] - before["views_created"] <= 2


def test_pool_memory_is_shared():
    with flashcl.cuda.use_pool():
        t = torch.zeros(4096, dtype=torch.uint8, device="cuda")
    assert ext.cuda_locate(t.data_ptr(), t.numel()) is not None
    torch.cuda.current_stream().synchronize()
    ext.cuda_fill(t.data_ptr() + 512, 1000, 0x5A, torch.cuda.current_stream().cuda_stream)  # through OpenCL
    host = t.cpu()
    assert (host[512:1512] == 0x5A).all() and (host[:512] == 0).all() and (host[1512:] == 0).all()
    plain = torch.zeros(16, device="cuda")
    assert ext.cuda_locate(plain.data_ptr(), 64) is None


@pytest.mark.parametrize("in_pool", [True, False])
def test_staging_counts(in_pool):
    q, k, v = inputs([(2, 64, 4, 64)] * 3, torch.float16, in_pool)
    flash_attn_func(q, k, v)  # compiles, so the counted call below is a plain one
    flashcl.cuda.reset_stats()
    out = flash_attn_func(q, k, v, causal=True)
    s = flashcl.cuda.stats()
    assert s["calls"] == 1 and out.is_cuda
    assert s["staged_tensors"] == (0 if in_pool else 3), s
    assert ext.cuda_locate(out.data_ptr(), out.numel() * 2) is not None  # outputs live in the pool


def test_backward_reads_the_forwards_copies():
    # Plain tensors are staged once, before the forward, and the copies are what the backward
    # reads: a forward+backward stages q, k, v and the incoming gradient, not q, k, v twice.
    q, k, v, d_o = inputs([(2, 64, 4, 64)] * 4, torch.float16, in_pool=False, seed=4, requires_grad=True)
    d_o = d_o.detach()
    flash_attn_func(q, k, v).backward(d_o)
    flashcl.cuda.reset_stats()
    flash_attn_func(q, k, v).backward(d_o)
    s = flashcl.cuda.stats()
    assert s["calls"] == 2 and s["staged_tensors"] == 4, s


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("in_pool", [True, False])
@pytest.mark.parametrize("causal", [False, True])
def test_forward_and_gradients(dtype, in_pool, causal):
    b, nq, nk, h, hkv, d = 2, 77, 130, 4, 2, 64  # partial blocks, Nq != Nk, GQA
    q, k, v, d_o = inputs([(b, nq, h, d), (b, nk, hkv, d), (b, nk, hkv, d), (b, nq, h, d)], dtype, in_pool,
                          seed=1, requires_grad=True)
    out = flash_attn_func(q, k, v, causal=causal)
    assert out.dtype == dtype and out.device == q.device
    ref_o, _ = reference(np64(q), np64(k), np64(v), causal=causal)
    assert_close(np64(out), ref_o, ATOL[dtype])
    out.backward(d_o.detach())
    ref = reference_backward(np64(q), np64(k), np64(v), np64(d_o), causal=causal)
    for name, t, r in zip(("dQ", "dK", "dV"), (q, k, v), ref[:3]):
        assert t.grad.dtype == dtype
        assert_close(np64(t.grad), r, GRAD_ATOL[dtype], name)


def test_strided_views_and_lse():
    # (B, H, S, d) tensors transposed to (B, S, H, d): strided, not copied to a dense layout.
    q, k, v = inputs([(2, 4, 50, 32)] * 3, torch.float16, in_pool=False, seed=2)
    qt, kt, vt = (t.transpose(1, 2) for t in (q, k, v))
    out, lse, _ = flash_attn_func(qt, kt, vt, causal=True, return_attn_probs=True)
    ref_o, ref_lse = reference(np64(qt), np64(kt), np64(vt), causal=True)
    assert_close(np64(out), ref_o, ATOL[torch.float16])
    assert_close(np64(lse), ref_lse, 1e-3, "LSE")


@pytest.mark.parametrize("dtype", DTYPES)
def test_varlen_forward_and_gradients(dtype):
    lengths_q, lengths_k = [5, 40, 17], [9, 40, 33]
    cu_q = torch.tensor(np.concatenate([[0], np.cumsum(lengths_q)]), dtype=torch.int32, device="cuda")
    cu_k = torch.tensor(np.concatenate([[0], np.cumsum(lengths_k)]), dtype=torch.int32, device="cuda")
    q, k, v, d_o = inputs([(sum(lengths_q), 4, 48), (sum(lengths_k), 2, 48), (sum(lengths_k), 2, 48),
                           (sum(lengths_q), 4, 48)], dtype, in_pool=True, seed=3, requires_grad=True)
    out, lse, _ = flash_attn_varlen_func(q, k, v, cu_q, cu_k, max(lengths_q), max(lengths_k), causal=True,
                                         return_attn_probs=True)
    cq, ck = cu_q.cpu().numpy(), cu_k.cpu().numpy()
    ref_o, ref_lse = reference_varlen(np64(q), np64(k), np64(v), cq, ck, causal=True)
    assert_close(np64(out), ref_o, ATOL[dtype])
    assert_close(np64(lse), ref_lse, 1e-2, "LSE")
    out.backward(d_o.detach())
    for b in range(3):  # each sequence's gradients against its own float64 backward
        qs, ks = slice(cq[b], cq[b + 1]), slice(ck[b], ck[b + 1])
        ref = reference_backward(np64(q)[None, qs], np64(k)[None, ks], np64(v)[None, ks], np64(d_o)[None, qs],
                                 causal=True)
        for name, g, r, rows in zip(("dQ", "dK", "dV"), (q.grad, k.grad, v.grad), ref[:3], (qs, ks, ks)):
            assert_close(np64(g)[rows], r[0], GRAD_ATOL[dtype], f"{name} of sequence {b}")


def test_mismatched_devices_and_dtypes_are_named():
    q = torch.randn(1, 8, 2, 16, device="cuda", dtype=torch.float16)
    with pytest.raises(flashcl.Error) as e:
        flash_attn_func(q, q.cpu(), q.cpu())
    assert e.value.status == flashcl.Status.InvalidArgument
    with pytest.raises(flashcl.Error) as e:
        flash_attn_func(q.double(), q.double(), q.double())
    assert e.value.status == flashcl.Status.UnsupportedDType


@pytest.mark.parametrize("dtype", DTYPES)
def test_tiny_llama_trains_like_sdpa(dtype):
    # The same weights and batch, 10 AdamW steps, the whole model in `dtype`, through "sdpa" and
    # "flashcl", and through "sdpa" in fp32 as the yardstick of what `dtype` itself does to the
    # run: flashcl's losses must stay within twice sdpa's own distance from fp32 (plus 0.01).
    transformers = pytest.importorskip("transformers")
    config = transformers.LlamaConfig(vocab_size=512, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)
    torch.manual_seed(0)
    base = transformers.AutoModelForCausalLM.from_config(copy.deepcopy(config), attn_implementation="sdpa")
    ids = torch.randint(0, config.vocab_size, (4, 128), generator=torch.Generator().manual_seed(1)).cuda()
    losses = {}
    for name, run_dtype in (("sdpa", dtype), ("flashcl", dtype), ("sdpa", torch.float32)):
        model = transformers.AutoModelForCausalLM.from_config(copy.deepcopy(config), attn_implementation=name)
        model.load_state_dict(base.state_dict())
        model = model.to("cuda", run_dtype).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, eps=1e-4)  # eps above fp16's smallest normal
        run = losses[(name, run_dtype)] = []
        for _ in range(10):
            optimizer.zero_grad()
            loss = model(ids, labels=ids).loss
            loss.backward()
            optimizer.step()
            run.append(loss.item())
    ours, theirs, fp32 = losses[("flashcl", dtype)], losses[("sdpa", dtype)], losses[("sdpa", torch.float32)]
    for label, run in (("sdpa", theirs), ("flashcl", ours), ("sdpa fp32", fp32)):
        print(f"{dtype} {label:9s} {' '.join('%.4f' % x for x in run)}")
    assert theirs[-1] < theirs[0] - 0.3 and ours[-1] < ours[0] - 0.3  # both train
    drift = max(abs(a - b) for a, b in zip(theirs, fp32))
    worst = max(abs(a - b) for a, b in zip(theirs, ours))
    assert worst <= 2 * drift + 0.01, f"losses differ from sdpa by {worst:.3g}; sdpa's own fp32 distance {drift:.3g}"
