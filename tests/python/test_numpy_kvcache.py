"""flashcl.attention_with_kvcache on numpy arrays (issues 21 and 22): the host path over
Session::forward_kvcache, checked as the torch CPU path is (kvcache_problem.py: the float64
reference from flash-attn's semantics, the appended rows poisoned with NaN and then holding the
(rotated) inputs, every other cache element bit-identical): contiguous and paged caches (page 5,
shuffled pages), rotary in both styles, GQA, Nq 1 to 3, window, softcap, ALiBi, cache_batch_idx,
splits; float32 caches appended where they lie, float16 ones and strided views through copies
written back; ``out``; and the named errors.
"""

import numpy as np
import pytest

import flashcl
from conftest import assert_close, reference

torch = pytest.importorskip("torch")  # kvcache_problem draws its inputs with torch's generator
from kvcache_problem import CASES, Problem, f64  # noqa: E402


@pytest.fixture
def gen(rng):
    return torch.Generator().manual_seed(int(rng.integers(2**31)))


def run_numpy(p, cache_view=lambda a: a, **extra):
    """p's call through flashcl.attention_with_kvcache on numpy arrays (caches as cache_view makes
    them); returns what Problem.check takes (torch tensors)."""
    array = lambda t: None if t is None else p.stored(t).numpy()  # noqa: E731
    k_cache, v_cache = cache_view(array(p.k_cache)), cache_view(array(p.v_cache))
    p.poison_appended(k_cache, v_cache)
    before = (torch.from_numpy(k_cache.copy()), torch.from_numpy(v_cache.copy()))
    kwargs = dict(k_new=array(p.k_new), v_new=array(p.v_new), causal=p.causal, window=p.window, softcap=p.softcap,
                  return_lse=True)
    if p.table is not None:
        kwargs["block_table"] = p.table.numpy()
    if p.batch_idx is not None:
        kwargs["cache_batch_idx"] = p.batch_idx.numpy()
    if p.rotary is not None:
        kwargs.update(rotary_cos=p.cos.float().numpy(), rotary_sin=p.sin.float().numpy(),
                      rotary_interleaved=p.rotary[0])
    if p.alibi is not None:
        kwargs["alibi_slopes"] = p.alibi.numpy()
    kwargs.update(extra)
    out, lse = flashcl.attention_with_kvcache(array(p.q), k_cache, v_cache, p.seqlens.astype(np.int32), **kwargs)
    assert isinstance(out, np.ndarray) and isinstance(lse, np.ndarray)
    return torch.from_numpy(out), torch.from_numpy(lse), before, (torch.from_numpy(np.ascontiguousarray(k_cache)),
                                                                  torch.from_numpy(np.ascontiguousarray(v_cache)))


@pytest.mark.parametrize("page_size", [0, 5])
@pytest.mark.parametrize("name", list(CASES))
def test_decode(gen, page_size, name):
    heads, heads_kv, nq, nnew, rotary, causal, window, seqlens = CASES[name]
    p = Problem(gen, "cpu", torch.float32, batch=4, heads=heads, heads_kv=heads_kv, nq=nq, nnew=nnew, d=32,
                seqlens=seqlens, page_size=page_size, rotary=rotary, causal=causal, window=window)
    p.check(*run_numpy(p))


def test_cache_batch_idx_softcap_alibi_splits(gen):
    p = Problem(gen, "cpu", torch.float32, batch=3, heads=8, heads_kv=2, nq=1, nnew=1, d=32, seqlens=[7, 0, 30],
                cache_rows=5, batch_idx=[4, 0, 2], causal=True, softcap=2.5,
                alibi=torch.rand(3, 8, generator=gen, dtype=torch.float64).numpy() * 0.45 + 0.05)
    p.check(*run_numpy(p, num_splits=3))


def test_float16_caches_through_copies(gen):
    p = Problem(gen, "cpu", torch.float16, batch=2, heads=8, heads_kv=2, nq=1, nnew=2, d=32, seqlens=[4, 21],
                page_size=5, rotary=(True, 32), causal=True)
    p.check(*run_numpy(p))


def test_strided_caches_written_back(gen):
    # K and V interleaved in one (B, S, 2, H_kv, d) array: the caches are strided views, appended
    # through float32 copies written back into them, and nothing else of the array changes.
    p = Problem(gen, "cpu", torch.float32, batch=2, heads=4, heads_kv=2, nq=1, nnew=1, d=16, seqlens=[3, 11],
                capacity=12, causal=True)
    parents = []

    def interleaved(cache):
        both = np.full(cache.shape[:2] + (2,) + cache.shape[2:], 7.0, dtype=cache.dtype)
        view = both[:, :, 0]
        view[...] = cache
        assert not view.flags.c_contiguous
        parents.append(both)
        return view

    p.check(*run_numpy(p, cache_view=interleaved))
    assert all((both[:, :, 1] == 7.0).all() for both in parents)  # the other half of each array untouched


def test_float32_cache_appended_where_it_lies(monkeypatch):
    # The caller's float32 C-contiguous cache is the array the Session appends into: no copy back
    # (np.copyto, the write-back of other caches, must not run), and `out` gets O.
    q = np.ones((1, 1, 2, 16), np.float32)
    k_cache, v_cache = np.zeros((1, 4, 2, 16), np.float32), np.zeros((1, 4, 2, 16), np.float32)
    k_new, v_new = np.full((1, 1, 2, 16), 2.0, np.float32), np.full((1, 1, 2, 16), 3.0, np.float32)

    def no_write_back(dst, src, **kwargs):
        raise AssertionError("a float32 C-contiguous cache was written back through a copy")

    with monkeypatch.context() as patch:
        patch.setattr(np, "copyto", no_write_back)
        o = flashcl.attention_with_kvcache(q, k_cache, v_cache, np.array([2], np.int32), k_new=k_new, v_new=v_new)
    assert np.array_equal(k_cache[0, 2], k_new[0, 0]) and np.array_equal(v_cache[0, 2], v_new[0, 0])
    assert not k_cache[0, 3].any() and not v_cache[0, 3].any()
    ref, _ = reference(f64(torch.from_numpy(q)), f64(torch.from_numpy(k_cache[:, :3])),
                       f64(torch.from_numpy(v_cache[:, :3])))
    assert_close(o, ref, 2e-5)
    out = np.full(q.shape, np.nan, np.float32)
    assert flashcl.attention_with_kvcache(q, k_cache, v_cache, np.array([3], np.int32), out=out) is out
    assert_close(out, reference(f64(torch.from_numpy(q)), f64(torch.from_numpy(k_cache[:, :3])),
                                f64(torch.from_numpy(v_cache[:, :3])))[0], 2e-5)


@pytest.mark.parametrize("change, error, message", [
    (dict(q=np.zeros((1, 1, 2, 16), np.float64)), flashcl.Error, "q: numpy arrays take float32 or float16"),
    (dict(k_cache=np.zeros((1, 4, 2, 16), np.float16)), flashcl.Error, "k_cache: dtype float16 differs"),
    (dict(v_cache=np.zeros((1, 5, 2, 16), np.float32)), flashcl.Error, "v_cache"),
    (dict(k_new=np.zeros((1, 1, 2, 16), np.float32)), flashcl.Error, "k_new: k_new and v_new go together"),
    (dict(cache_dtype="e4m3"), flashcl.Error, "cache_dtype: only with pyopencl"),
    (dict(k_descale=np.ones((1, 2), np.float32)), flashcl.Error, "k_descale"),
    (dict(block_table=[[0]]), flashcl.Error, "block_table: expected a numpy array"),
    (dict(out=np.zeros((1, 1, 2, 8), np.float32)), flashcl.Error, "out: expected shape"),
    (dict(cache_seqlens=np.array([1, 2], np.int32)), flashcl.Error, "cache_seqlens"),
    (dict(check_device_data=True), flashcl.Error, "check_device_data"),
    # indices as floats were truncated, int64 ones past int32 wrapped
    (dict(cache_seqlens=np.array([2.7])), flashcl.Error, "cache_seqlens: expected integers"),
    (dict(cache_seqlens=np.array([2**32 + 2])), flashcl.Error, "cache_seqlens: values past the int32 range"),
    (dict(block_table=np.zeros((1, 1), np.float32)), flashcl.Error, "block_table: expected integers"),
    (dict(rotary_cos=np.ones((4, 8), np.float32), rotary_sin=np.zeros((4, 8), np.float32)), flashcl.Error,
     "rotary_cos: the rotary embedding applies to q and the appended k"),
    (dict(k_cache=np.zeros((1, 4, 2, 16), np.float32).view(), k_new=np.zeros((1, 1, 2, 16), np.float32),
          v_new=np.zeros((1, 1, 2, 16), np.float32), read_only=True), flashcl.Error, "k_cache: a read-only array"),
])
def test_errors(change, error, message):
    call = dict(q=np.zeros((1, 1, 2, 16), np.float32), k_cache=np.zeros((1, 4, 2, 16), np.float32),
                v_cache=np.zeros((1, 4, 2, 16), np.float32), cache_seqlens=np.array([2], np.int32))
    call.update(change)
    if call.pop("read_only", False):
        call["k_cache"].flags.writeable = False
    with pytest.raises(error, match=message):
        flashcl.attention_with_kvcache(call.pop("q"), call.pop("k_cache"), call.pop("v_cache"),
                                       call.pop("cache_seqlens"), **call)
