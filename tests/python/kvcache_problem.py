"""The KV-cache decode problem shared by the Python KV-cache tests (test_torch_kvcache.py on torch
tensors, test_numpy_kvcache.py on numpy arrays): one call's inputs as float64 masters stored in a
torch dtype, the poisoning of the rows an append writes, and the check of O, LSE and the caches
against a float64 reference written from flash-attn's documented semantics (append at
cache_seqlens, rotary on q and k in both styles, paged caches through the block table,
cache_batch_idx, causal bottom-right, window, softcap, ALiBi); plus the cases both run.
"""

import numpy as np
import pytest

from conftest import FP16_ATOL, FP32_ATOL, assert_close, reference

torch = pytest.importorskip("torch")

# The main checks' storage: fp32 on the CPU (tight tolerance), fp16 on CUDA (what serving uses).
MAIN_DTYPE = {"cpu": torch.float32, "cuda": torch.float16}
ATOL = {torch.float32: FP32_ATOL, torch.float16: FP16_ATOL, torch.bfloat16: 1.6e-2}
# A stored element's rounding relative to its magnitude (rotated rows are computed in fp32)
ROUNDING = {torch.float32: 2e-7, torch.float16: 2.0 ** -11, torch.bfloat16: 2.0 ** -8}


def f64(t):
    """A tensor as a float64 numpy array on the host (the reference's inputs)."""
    return t.to("cpu", torch.float64).numpy()


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

    def poison_appended(self, k_cache, v_cache):
        """NaN into the cache rows the append must write (torch tensors or numpy arrays)."""
        for b, l0 in enumerate(self.seqlens):
            for t in range(self.nnew):
                slot, row = self.where(b, int(l0) + t)
                k_cache[slot, row] = float("nan")
                v_cache[slot, row] = float("nan")

    def stored(self, t):
        return None if t is None else t.to(self.dtype).to(self.device)

    def run(self, place=lambda t: t, **extra):
        """Calls flash_attn_with_kvcache on q, the caches, k and v as `place` puts them; returns (out,
        lse, (k_cache_before, v_cache_before), (k_cache, v_cache))."""
        stored = lambda t: None if t is None else place(self.stored(t))  # noqa: E731
        k_cache, v_cache = stored(self.k_cache), stored(self.v_cache)
        self.poison_appended(k_cache, v_cache)
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
        from flashcl.torch import flash_attn_with_kvcache

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
