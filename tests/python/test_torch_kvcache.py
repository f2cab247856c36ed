"""flashcl.torch.flash_attn_with_kvcache (issues 21 and 22): flash-attn 2's decode step on PyTorch
tensors against a float64 reference written here from flash-attn's documented semantics (append
at cache_seqlens, rotary on q and k in both styles, paged caches through the block table,
cache_batch_idx, causal bottom-right, window, softcap, ALiBi), on fresh random inputs: contiguous
and paged caches (page size 5, shuffled block table, appends crossing page boundaries),
cache_seqlens of 0, 1, full and per-sequence different, GQA 4 and 1, Nq 1 and 3, LSE. The rows an
append writes are poisoned with NaN first and must then hold the (rotated) inputs; every other
cache element must be bit-identical to before. float32 CPU caches at the device's base address
alignment are appended into in place (counted by the Session), others through its copies. Also
the custom op under torch.compile and opcheck, and the named errors. Runs on CPU tensors (PoCL's
device here); where torch.cuda is available the same checks run on CUDA tensors in fp16 too
(bench/gpu/python_kvcache.sh: -k cuda).
"""

import numpy as np
import pytest

from conftest import FP16_ATOL, FP32_ATOL, assert_close, reference

torch = pytest.importorskip("torch")
import flashcl  # noqa: E402
from flashcl.torch import flash_attn_with_kvcache  # noqa: E402

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
# The main checks' storage: fp32 on the CPU (tight tolerance), fp16 on CUDA (what serving uses).
MAIN_DTYPE = {"cpu": torch.float32, "cuda": torch.float16}
ATOL = {torch.float32: FP32_ATOL, torch.float16: FP16_ATOL, torch.bfloat16: 1.6e-2}
# A stored element's rounding relative to its magnitude (rotated rows are computed in fp32)
ROUNDING = {torch.float32: 2e-7, torch.float16: 2.0 ** -11, torch.bfloat16: 2.0 ** -8}


def f64(t):
    """A tensor as a float64 numpy array on the host (the reference's inputs)."""
    return t.to("cpu", torch.float64).numpy()


@pytest.fixture
def gen(rng):
    return torch.Generator().manual_seed(int(rng.integers(2**31)))


def randn(gen, *shape):
    return torch.randn(*shape, generator=gen, dtype=torch.float64)


def rotate(x, cos, sin, positions, interleaved):
    """x (n, heads, d) rotated at `positions` (n,) by tables (S, rotary_dim / 2), float64."""
    half = cos.shape[1]
    c, s = cos[positions][:, None, :], sin[positions][:, None, :]
    out = x.copy()
    if interleaved:
        x1, x2 = x[..., 0:2 * half:2], x[..., 1:2 * half:2]
        out[..., 0:2 * half:2], out[..., 1:2 * half:2] = x1 * c - x2 * s, x1 * s + x2 * c
    else:
        x1, x2 = x[..., :half], x[..., half:2 * half]
        out[..., :half], out[..., half:2 * half] = x1 * c - x2 * s, x1 * s + x2 * c
    return out


class Problem:
    """One call's inputs (float64 masters, stored in `dtype` on `device`) and the reference."""

    def __init__(self, gen, device, dtype, *, batch, heads, heads_kv, nq, nnew, d, seqlens, page_size=0,
                 capacity=35, rotary=None, cache_rows=None, batch_idx=None, causal=False, window=(-1, -1),
                 softcap=0.0, alibi=None):
        self.device, self.dtype, self.page_size = device, dtype, page_size
        self.nq, self.nnew, self.causal, self.window, self.softcap = nq, nnew, causal, window, softcap
        self.seqlens = np.asarray(seqlens, dtype=np.int64)
        self.q = randn(gen, batch, nq, heads, d)
        if page_size:
            self.max_pages = -(-capacity // page_size)
            pool = batch * self.max_pages + 3  # pages no sequence uses stay untouched too
            perm = torch.randperm(pool, generator=gen)[: batch * self.max_pages]
            self.table = perm.reshape(batch, self.max_pages).to(torch.int32)
            shape = (pool, page_size, heads_kv, d)
        else:
            self.table = None
            shape = (cache_rows or batch, capacity, heads_kv, d)
        self.capacity = self.max_pages * page_size if page_size else capacity
        self.batch_idx = None if batch_idx is None else torch.tensor(batch_idx, dtype=torch.int32)
        self.k_cache, self.v_cache = randn(gen, *shape), randn(gen, *shape)
        self.k_new = randn(gen, batch, nnew, heads_kv, d) if nnew else None
        self.v_new = randn(gen, batch, nnew, heads_kv, d) if nnew else None
        self.rotary = rotary
        if rotary is not None:
            rotary_dim = rotary[1]
            angles = randn(gen, self.capacity, rotary_dim // 2) * 3
            # tables exactly representable in float32, the type the kernels read them in
            self.cos, self.sin = torch.cos(angles).float().double(), torch.sin(angles).float().double()
        self.alibi = None if alibi is None else torch.tensor(alibi, dtype=torch.float32)

    def where(self, b, p):
        """(slot, row) of key position p of sequence b in the cache tensors."""
        if self.page_size:
            return int(self.table[b, p // self.page_size]), p % self.page_size
        return (int(self.batch_idx[b]) if self.batch_idx is not None else b), p

    def stored(self, t):
        return None if t is None else t.to(self.dtype).to(self.device)

    def run(self, place=lambda t: t, **extra):
        """Calls flash_attn_with_kvcache on q, the caches, k and v as `place` puts them; returns (out,
        lse, (k_cache_before, v_cache_before), (k_cache, v_cache))."""
        stored = lambda t: None if t is None else place(self.stored(t))  # noqa: E731
        k_cache, v_cache = stored(self.k_cache), stored(self.v_cache)
        if self.nnew:  # poison the rows the append must write
            for b, l0 in enumerate(self.seqlens):
                for t in range(self.nnew):
                    slot, row = self.where(b, int(l0) + t)
                    k_cache[slot, row] = float("nan")
                    v_cache[slot, row] = float("nan")
        before = (k_cache.clone(), v_cache.clone())
        kwargs = dict(k=stored(self.k_new), v=stored(self.v_new),
                      cache_seqlens=torch.tensor(self.seqlens, dtype=torch.int32, device=self.device),
                      causal=self.causal, window_size=self.window, softcap=self.softcap, return_softmax_lse=True)
        if self.table is not None:
            kwargs["block_table"] = self.table.to(self.device)
        if self.batch_idx is not None:
            kwargs["cache_batch_idx"] = self.batch_idx.to(self.device)
        if self.rotary is not None:
            kwargs.update(rotary_cos=self.cos.float().to(self.device), rotary_sin=self.sin.float().to(self.device),
                          rotary_interleaved=self.rotary[0])
        if self.alibi is not None:
            kwargs["alibi_slopes"] = self.alibi.to(self.device)
        kwargs.update(extra)
        out, lse = flash_attn_with_kvcache(stored(self.q), k_cache, v_cache, **kwargs)
        return out, lse, before, (k_cache, v_cache)

    def check(self, out, lse, before, after):
        """The appended rows hold the (rotated) inputs, every other element is unchanged, and O and
        LSE match the float64 attention over the keys the call saw (the caches as the device left
        them, so that half-precision storage of the rotated rows is not counted twice)."""
        dtype = self.dtype
        cos = self.cos.numpy() if self.rotary is not None else None
        sin = self.sin.numpy() if self.rotary is not None else None
        caches = [f64(c) for c in after]
        written = np.zeros(caches[0].shape[:2], dtype=bool)
        rounded_inputs = [f64(self.stored(t)) if t is not None else None for t in (self.k_new, self.v_new)]
        for b, l0 in enumerate(self.seqlens):
            if not self.nnew:
                break
            positions = l0 + np.arange(self.nnew)
            expected_k = rounded_inputs[0][b]
            if self.rotary is not None:
                expected_k = rotate(expected_k, cos, sin, positions, self.rotary[0])
            for t, p in enumerate(positions):
                slot, row = self.where(b, int(p))
                written[slot, row] = True
                for name, cache, want in (("k", caches[0], expected_k[t]), ("v", caches[1], rounded_inputs[1][b, t])):
                    got = cache[slot, row]
                    tol = ROUNDING[dtype] * np.abs(want) + 1e-6 if (name == "k" and self.rotary) else 0.0
                    assert np.all(np.abs(got - want) <= tol), f"{name} appended row (seq {b}, pos {p})"
        for name, old, new in (("k_cache", before[0], after[0]), ("v_cache", before[1], after[1])):
            keep = torch.from_numpy(~written).to(old.device)
            assert torch.equal(old[keep], new[keep]), f"{name}: rows outside the append changed"

        q = f64(self.stored(self.q))
        ref_o = np.zeros(q.shape)
        ref_lse = np.full((q.shape[0], q.shape[2], q.shape[1]), -np.inf)
        windowed = self.window != (-1, -1)
        for b, l0 in enumerate(self.seqlens):
            length = int(l0) + self.nnew
            if length == 0:
                continue  # no key: O = 0, LSE = -inf
            rows = [self.where(b, p) for p in range(length)]
            keys = np.stack([caches[0][s, r] for s, r in rows])
            values = np.stack([caches[1][s, r] for s, r in rows])
            q_b = q[b]
            if self.rotary is not None:
                # flash-attn's q positions: its own rows when causal or windowed, else all at l0
                positions = l0 + (np.arange(self.nq) if (self.causal or windowed) else np.zeros(self.nq, np.int64))
                q_b = rotate(q_b, cos, sin, positions, self.rotary[0])
            alibi = None
            if self.alibi is not None:
                alibi = self.alibi.numpy()[b] if self.alibi.dim() == 2 else self.alibi.numpy()
            o, l = reference(q_b[None], keys[None], values[None], causal=self.causal, window=self.window,
                             softcap=self.softcap, alibi=alibi)
            ref_o[b], ref_lse[b] = o[0], l[0]
        assert out.dtype == dtype and out.device.type == self.device and lse.dtype == torch.float32
        assert_close(f64(out), ref_o, ATOL[dtype])
        assert_close(f64(lse), ref_lse, 1e-4 if dtype != torch.float32 else FP32_ATOL, "LSE")


# (heads, heads_kv, nq, nnew, rotary (interleaved, rotary_dim) or None, causal, window, seqlens for B = 4 at
# capacity 35): appends crossing the page boundary (page 5) at 3..5 and 9..11; 0, 1 and full lengths.
CASES = {
    "gqa4_decode_rotary_interleaved": (8, 2, 1, 1, (True, 32), True, (-1, -1), [0, 1, 34, 19]),
    "group1_chunk_rotary_neox_partial": (2, 2, 3, 3, (False, 16), True, (-1, -1), [3, 0, 32, 9]),
    "gqa4_no_append_noncausal": (8, 2, 2, 0, None, False, (-1, -1), [0, 1, 35, 17]),
    "gqa4_append_noncausal_window": (8, 2, 2, 2, (True, 32), False, (6, 0), [4, 1, 33, 0]),
}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("page_size", [0, 5])
@pytest.mark.parametrize("name", list(CASES))
def test_decode(gen, device, page_size, name):
    heads, heads_kv, nq, nnew, rotary, causal, window, seqlens = CASES[name]
    p = Problem(gen, device, MAIN_DTYPE[device], batch=4, heads=heads, heads_kv=heads_kv, nq=nq, nnew=nnew, d=32,
                seqlens=seqlens, page_size=page_size, rotary=rotary, causal=causal, window=window)
    p.check(*p.run())


@pytest.mark.parametrize("device", DEVICES)
def test_cache_batch_idx_softcap_alibi_splits(gen, device):
    # Cache rows picked per sequence from a larger cache (the others must stay untouched).
    p = Problem(gen, device, MAIN_DTYPE[device], batch=3, heads=8, heads_kv=2, nq=1, nnew=1, d=32,
                seqlens=[7, 0, 30], cache_rows=5, batch_idx=[4, 0, 2], causal=True, softcap=2.5,
                alibi=torch.rand(3, 8, generator=gen, dtype=torch.float64).numpy() * 0.45 + 0.05)
    p.check(*p.run(num_splits=3))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precisions(gen, device, dtype):
    p = Problem(gen, device, dtype, batch=2, heads=8, heads_kv=2, nq=1, nnew=2, d=32, seqlens=[4, 21], page_size=5,
                rotary=(True, 32), causal=True)
    p.check(*p.run())


@pytest.mark.parametrize("device", DEVICES)
def test_cache_seqlens_int_none_and_scale(gen, device):
    dtype = MAIN_DTYPE[device]
    q = randn(gen, 2, 1, 4, 16).to(dtype).to(device)
    k_cache, v_cache = (randn(gen, 2, 9, 4, 16).to(dtype).to(device) for _ in range(2))
    ref_o, ref_lse = reference(f64(q), f64(k_cache[:, :6]), f64(v_cache[:, :6]), scale=0.3)
    out, lse = flash_attn_with_kvcache(q, k_cache, v_cache, cache_seqlens=6, softmax_scale=0.3,
                                       return_softmax_lse=True)
    assert_close(f64(out), ref_o, ATOL[dtype])
    assert_close(f64(lse), ref_lse, 1e-4, "LSE")
    # None: the whole cache, as flash-attn reads it
    out = flash_attn_with_kvcache(q, k_cache, v_cache)
    assert_close(f64(out), reference(f64(q), f64(k_cache), f64(v_cache))[0], ATOL[dtype])


@pytest.mark.parametrize("device", DEVICES)
def test_interleaved_caches_are_written_in_place(gen, device):
    # K and V interleaved in one (B, S, 2, H_kv, d) tensor, as some serving engines keep them: the
    # caches are strided views (not contiguous), written through the copy back (CPU; CUDA when
    # their memory is staged) or where they are (CUDA, imported memory).
    dtype = MAIN_DTYPE[device]
    kv = randn(gen, 2, 12, 2, 2, 16).to(dtype).to(device)
    k_cache, v_cache = kv[:, :, 0], kv[:, :, 1]
    assert not k_cache.is_contiguous()
    q, k, v = (randn(gen, 2, 1, n, 16).to(dtype).to(device) for n in (4, 2, 2))
    before = kv.clone()
    seqlens = torch.tensor([3, 11], dtype=torch.int32, device=device)
    out = flash_attn_with_kvcache(q, k_cache, v_cache, k=k, v=v, cache_seqlens=seqlens, causal=True)
    for b, l0 in enumerate((3, 11)):
        before[b, l0, 0], before[b, l0, 1] = k[b, 0], v[b, 0]
    assert torch.equal(kv, before)  # the appended rows, and nothing else
    for b, l0 in enumerate((3, 11)):
        ref = reference(f64(q[b:b + 1]), f64(k_cache[b:b + 1, :l0 + 1]), f64(v_cache[b:b + 1, :l0 + 1]), causal=True)[0]
        assert_close(f64(out[b:b + 1]), ref, ATOL[dtype])


def at_alignment(t, shift):
    """A contiguous copy of CPU tensor t starting `shift` floats past a page boundary."""
    room = torch.empty(t.numel() + 4096 // 4 + shift, dtype=t.dtype)
    start = (-room.data_ptr() % 4096) // room.element_size() + shift
    return room[start:start + t.numel()].view(t.shape).copy_(t)


def test_cpu_float32_caches_appended_in_place(gen):
    # float32 CPU caches are appended into where they lie, with no copy, on a device that shares
    # host memory (the Session's buffers over host memory count them): at the device's base
    # address alignment, and one float past it through a buffer widened down to the alignment
    # (torch's own CPU tensors start 64 bytes into their allocation, short of PoCL's 128). q, k
    # and v are placed alike; O and LSE are torch.py's. Both placements must give the reference's
    # caches, O and LSE.
    from test_host_pointers import HostFacts
    sess = flashcl.functional.session()
    facts = HostFacts(sess)
    for page_size, shift in ((0, 0), (0, 1), (5, 0), (5, 1)):
        p = Problem(gen, "cpu", torch.float32, batch=3, heads=8, heads_kv=2, nq=1, nnew=1, d=32, seqlens=[0, 17, 34],
                    page_size=page_size, causal=True)
        out, lse, before, after = p.run(place=lambda t: at_alignment(t, shift))
        p.check(out, lse, before, after)
        at_shift = facts.in_place(at_alignment(torch.zeros(1), shift).numpy())  # the device's rule at this shift
        caches = sum(facts.in_place(c.numpy()) for c in after)
        assert caches == 2 * at_shift, (page_size, shift)
        inputs = 3 * at_shift  # q, k, v
        outputs = facts.aligned(out.numpy()) + facts.aligned(lse.numpy())
        assert sess.last_kvcache_host_buffers == inputs + caches + outputs, (page_size, shift)


def test_torch_compile_and_opcheck(gen):
    q = randn(gen, 2, 1, 4, 16).float()
    k, v = randn(gen, 2, 1, 2, 16).float(), randn(gen, 2, 1, 2, 16).float()
    caches = [randn(gen, 2, 8, 2, 16).float() for _ in range(2)]
    seqlens = torch.tensor([2, 5], dtype=torch.int32)

    def step(q, k_cache, v_cache, k, v):
        return flash_attn_with_kvcache(q, k_cache, v_cache, k=k, v=v, cache_seqlens=seqlens, causal=True)

    eager_caches = [c.clone() for c in caches]
    expected = step(q, *eager_caches, k, v)
    compiled = torch.compile(step, backend="aot_eager", fullgraph=True)
    got = compiled(q, *caches, k, v)
    assert torch.equal(got, expected)
    assert all(torch.equal(a, b) for a, b in zip(caches, eager_caches))  # the mutation survives compilation
    args = (q, caches[0].clone(), caches[1].clone(), seqlens, k, v, None, None, None, None, 0.25, True, -1, -1, 0.0,
            True, None, 0)
    torch.library.opcheck(torch.ops.flashcl.fwd_kvcache.default, args,
                          test_utils=("test_schema", "test_faketensor", "test_aot_dispatch_static"))


def _error_cases():
    """(name, call kwargs changes, exception, message) over a valid base call."""
    i32 = torch.int32
    return [
        ("leftpad", dict(cache_leftpad=torch.zeros(2, dtype=i32)), NotImplementedError, "cache_leftpad"),
        ("q_dims", dict(q=torch.zeros(2, 4, 16)), flashcl.Error, "q: expected a 4-dimensional"),
        ("q_dtype", dict(q=torch.zeros(2, 1, 4, 16, dtype=torch.float64)), flashcl.Error,
         "q: dtype torch.float64 is not supported"),
        ("cache_dtype", dict(k_cache=torch.zeros(2, 8, 2, 16, dtype=torch.float16)), flashcl.Error,
         "k_cache: dtype torch.float16 differs from q's"),
        ("cache_last_stride", dict(v_cache=torch.zeros(2, 8, 16, 2).transpose(2, 3)), flashcl.Error,
         "v_cache: the last dimension must be contiguous"),
        ("cache_head_dim", dict(k_cache=torch.zeros(2, 8, 2, 8), v_cache=torch.zeros(2, 8, 2, 8)), flashcl.Error,
         "k_cache: expected \\(B_cache, S_cache, H_kv, d\\) with d = 16"),
        ("cache_shapes", dict(v_cache=torch.zeros(2, 9, 2, 16)), flashcl.Error, "v_cache: shape"),
        ("k_without_v", dict(k=torch.zeros(2, 1, 2, 16), v=None), flashcl.Error, "v: k and v go together"),
        ("k_shape", dict(k=torch.zeros(2, 1, 3, 16), v=torch.zeros(2, 1, 3, 16)), flashcl.Error,
         "k: expected \\(B, seqlen_new, H_kv, d\\)"),
        ("k_dtype", dict(k=torch.zeros(2, 1, 2, 16, dtype=torch.bfloat16), v=torch.zeros(2, 1, 2, 16)),
         flashcl.Error, "k: dtype torch.bfloat16 differs"),
        ("seqlens_missing", dict(cache_seqlens=None), flashcl.Error, "cache_seqlens: required when k and v"),
        ("seqlens_shape", dict(cache_seqlens=torch.zeros(3, dtype=i32)), flashcl.Error,
         "cache_seqlens: expected an int or an int32 tensor of shape \\(2,\\)"),
        ("seqlens_float", dict(cache_seqlens=torch.zeros(2)), flashcl.Error, "cache_seqlens: expected"),
        ("rotary_alone", dict(rotary_cos=torch.zeros(8, 8)), flashcl.Error, "rotary_sin: rotary_cos and rotary_sin"),
        ("rotary_without_k", dict(k=None, v=None, rotary_cos=torch.zeros(8, 8), rotary_sin=torch.zeros(8, 8)),
         flashcl.Error, "rotary_cos: the rotary embedding applies to q and the appended k"),
        ("rotary_short", dict(rotary_cos=torch.zeros(5, 8), rotary_sin=torch.zeros(5, 8)), flashcl.Error,
         "rotary_seqlen: the tables need a row per cache position"),
        ("table_dtype", dict(block_table=torch.zeros(2, 2)), flashcl.Error, "block_table: expected an int32 tensor"),
        ("table_with_batch_idx", dict(block_table=torch.zeros(2, 2, dtype=i32),
                                      cache_batch_idx=torch.zeros(2, dtype=i32)), flashcl.Error, "cache_batch_idx: not supported with a paged cache"),
        ("batch_idx_shape", dict(cache_batch_idx=torch.zeros(2, 1, dtype=i32)), flashcl.Error,
         "cache_batch_idx: expected an int32 tensor of shape \\(2,\\)"),
        ("alibi_shape", dict(alibi_slopes=torch.zeros(3)), flashcl.Error, "alibi_slopes: expected float32 of shape"),
        ("gqa", dict(k_cache=torch.zeros(2, 8, 3, 16), v_cache=torch.zeros(2, 8, 3, 16), k=None, v=None), flashcl.Error,
         "heads_kv: heads \\(4\\) must be a multiple of heads_kv \\(3\\)"),
        ("window", dict(window_size=(-2, 0)), flashcl.Error, "window.left: must be >= -1"),
        ("window_len", dict(window_size=(1,)), flashcl.Error, "window_size: expected \\(left, right\\)"),
        ("splits", dict(num_splits=2000), flashcl.Error, "num_splits: must be 0"),
        ("capacity", dict(cache_seqlens=torch.tensor([0, 0], dtype=i32), k=torch.zeros(2, 9, 2, 16),
                          v=torch.zeros(2, 9, 2, 16)), flashcl.Error, "seqlen_new: must be in 1..8"),
        ("empty", dict(q=torch.zeros(2, 0, 4, 16)), flashcl.Error, "q: empty tensors are not supported"),
        ("device", dict(k=torch.zeros(2, 1, 2, 16, device="meta"), v=torch.zeros(2, 1, 2, 16, device="meta")),
         flashcl.Error, "k: device meta differs from q's cpu"),
    ]


@pytest.mark.parametrize("case", _error_cases(), ids=lambda c: c[0])
def test_errors(case):
    _, changes, error, message = case
    call = dict(q=torch.zeros(2, 1, 4, 16), k_cache=torch.zeros(2, 8, 2, 16), v_cache=torch.zeros(2, 8, 2, 16),
                k=torch.zeros(2, 1, 2, 16), v=torch.zeros(2, 1, 2, 16), cache_seqlens=torch.zeros(2, dtype=torch.int32))
    call.update(changes)
    caches = (call["k_cache"].clone(), call["v_cache"].clone())
    with pytest.raises(error, match=message):
        flash_attn_with_kvcache(**call)
    # a refused call writes nothing
    assert torch.equal(caches[0], call["k_cache"]) and torch.equal(caches[1], call["v_cache"])
