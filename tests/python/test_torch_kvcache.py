"""flashcl.torch.flash_attn_with_kvcache (issues 21 and 22): flash-attn 2's decode step on PyTorch
tensors against the float64 reference of kvcache_problem.py (flash-attn's documented semantics:
append at cache_seqlens, rotary on q and k in both styles, paged caches through the block table,
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

import pytest

from conftest import assert_close, reference

torch = pytest.importorskip("torch")
import flashcl  # noqa: E402
from flashcl.torch import flash_attn_with_kvcache  # noqa: E402
from kvcache_problem import ATOL, CASES, MAIN_DTYPE, Problem, f64, randn  # noqa: E402

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture
def gen(rng):
    return torch.Generator().manual_seed(int(rng.integers(2**31)))


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
        ("alibi_shape", dict(alibi_slopes=torch.zeros(3)), flashcl.Error, "alibi_slopes: expected shape"),
        ("gqa", dict(k_cache=torch.zeros(2, 8, 3, 16), v_cache=torch.zeros(2, 8, 3, 16), k=None, v=None), flashcl.Error,
         "heads_kv: heads \\(4\\) must be a multiple of heads_kv \\(3\\)"),
        ("window", dict(window_size=(-2, 0)), flashcl.Error, "window_size.left: must be >= -1 .-1: unbounded., got -2"),
        ("window_len", dict(window_size=(1,)), flashcl.Error, "window_size: expected \\(left, right\\)"),
        ("splits", dict(num_splits=2000), flashcl.Error, "num_splits: must be 0"),
        ("capacity", dict(cache_seqlens=torch.tensor([0, 0], dtype=i32), k=torch.zeros(2, 9, 2, 16),
                          v=torch.zeros(2, 9, 2, 16)), flashcl.Error, "seqlen_new: must be in 1..8"),
        ("empty", dict(q=torch.zeros(2, 0, 4, 16)), flashcl.Error, "q: empty tensors are not supported"),
        ("device", dict(k=torch.zeros(2, 1, 2, 16, device="meta"), v=torch.zeros(2, 1, 2, 16, device="meta")),
         flashcl.Error, "k: device meta differs from q's cpu"),
        # (a review: PyTorch's own error came after the kernels had run; int64 values wrapped)
        ("expanded_cache", dict(k_cache=torch.zeros(1, 8, 2, 16).expand(2, 8, 2, 16)), flashcl.Error,
         "k_cache: an expanded tensor \\(a stride of 0"),
        ("seqlens_int64", dict(cache_seqlens=torch.tensor([2**32 + 3, 0])), flashcl.Error,
         "cache_seqlens: values past the int32 range"),
        ("batch_idx_int64", dict(cache_batch_idx=torch.tensor([2**32 + 1, 0])), flashcl.Error,
         "cache_batch_idx: values past the int32 range"),
        ("table_int64", dict(k_cache=torch.zeros(4, 4, 2, 16), v_cache=torch.zeros(4, 4, 2, 16),
                             block_table=torch.tensor([[2**32, 1], [2, 3]])), flashcl.Error,
         "block_table: values past the int32 range"),
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


def test_sizes_past_int32_get_named_errors():
    """cache_seqlens and num_splits past int32 raised torch's overflow or nanobind's unnamed error."""
    q = torch.randn(1, 1, 2, 16)
    cache = torch.randn(1, 8, 2, 16)
    with pytest.raises(flashcl.Error, match="cache_seqlens: 1099511627776 does not fit int32"):
        flash_attn_with_kvcache(q, cache, cache, cache_seqlens=2**40)
    with pytest.raises(flashcl.Error, match="num_splits: 1099511627776 does not fit int32"):
        flash_attn_with_kvcache(q, cache, cache, cache_seqlens=3, num_splits=2**40)
