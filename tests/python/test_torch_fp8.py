"""FP8 from PyTorch (issues 21 and 23): flashcl.torch.flash_attn_func and flash_attn_varlen_func on
float8_e4m3fn / float8_e5m2 CPU tensors with FlashAttention-3's q_descale, k_descale, v_descale
keywords ((B, H_kv)), quantised here with amax scaling per (batch, K/V head) and checked against
the float64 reference on the dequantised inputs (torch's own float8 -> float64 conversion,
independent of the library): plain, causal GQA, varlen with a window and softcap, e5m2 with ALiBi,
LSE; O is bfloat16. Descales with a 16-bit q are ignored, as FA3 does. Also the named errors and
the refusals (dropout, gradients, other devices, mixed dtypes, descale shapes).
"""

import pytest

import flashcl
from conftest import assert_close, reference, reference_varlen

torch = pytest.importorskip("torch")
from flashcl.torch import flash_attn_func, flash_attn_varlen_func  # noqa: E402

FP8 = [t for t in (getattr(torch, "float8_e4m3fn", None), getattr(torch, "float8_e5m2", None)) if t is not None]
if not FP8:
    pytest.skip("this torch has no float8 dtypes", allow_module_level=True)
FP8_MAX = {torch.float8_e4m3fn: 448.0, torch.float8_e5m2: 57344.0}
BF16_ATOL = 1.6e-2  # O rounded to bfloat16 (2^-8 relative) around values of magnitude ~1


def quantised(x, group_rows, dtype):
    """x (rows..., H_kv, d) float64 -> (fp8 tensor, float32 descales (B, H_kv), dequantised float64):
    one descale per (batch or sequence, K/V head), amax / max; group_rows(b) indexes b's rows."""
    batches = len(group_rows)
    descale = torch.empty(batches, x.shape[-2], dtype=torch.float32)
    x8 = torch.empty(x.shape, dtype=dtype)
    for b in range(batches):
        rows = x[group_rows[b]]
        amax = rows.abs().amax(dim=tuple(i for i in range(rows.dim()) if i != rows.dim() - 2)) if rows.numel() else None
        d = (amax / FP8_MAX[dtype]).float() if amax is not None else torch.ones(x.shape[-2])
        d = torch.where(d > 0, d, torch.ones_like(d))
        descale[b] = d
        x8[group_rows[b]] = (rows / d.double()[:, None]).to(dtype)
    values = x8.double()
    for b in range(batches):
        values[group_rows[b]] = values[group_rows[b]] * descale[b].double()[:, None]
    return x8, descale, values.numpy()


def dense_groups(batch):
    return [slice(b, b + 1) for b in range(batch)]


@pytest.mark.parametrize("dtype", FP8, ids=lambda t: str(t).split(".")[-1])
@pytest.mark.parametrize("causal, heads_kv", [(False, 4), (True, 2)])
def test_flash_attn_func_fp8(rng, dtype, causal, heads_kv):
    b, n, h, d = 2, 37, 4, 32
    g = torch.Generator().manual_seed(int(rng.integers(2**31)))
    q, k, v = (torch.randn(b, n, hh, d, generator=g, dtype=torch.float64) for hh in (h, heads_kv, heads_kv))
    group = h // heads_kv
    # Q's descales are (B, H_kv): one scale for each group of query heads
    q8, qd, qv = quantised(q.reshape(b, n, heads_kv, group * d), dense_groups(b), dtype)
    q8, qv = q8.reshape(b, n, h, d), qv.reshape(b, n, h, d)
    k8, kd, kv = quantised(k, dense_groups(b), dtype)
    v8, vd, vv = quantised(v, dense_groups(b), dtype)
    out, lse, _ = flash_attn_func(q8, k8, v8, causal=causal, q_descale=qd, k_descale=kd, v_descale=vd,
                                  return_attn_probs=True)
    assert out.dtype == torch.bfloat16 and out.shape == (b, n, h, d) and lse.shape == (b, h, n)
    ref_o, ref_lse = reference(qv, kv, vv, causal=causal)
    assert_close(out.double().numpy(), ref_o, BF16_ATOL)
    assert_close(lse.double().numpy(), ref_lse, 1e-4, "LSE")


def test_flash_attn_varlen_func_fp8_window_softcap(rng):
    dtype, h, hkv, d = torch.float8_e4m3fn, 4, 2, 32
    cu_q = torch.tensor([0, 13, 13, 40], dtype=torch.int32)
    cu_k = torch.tensor([0, 20, 27, 54], dtype=torch.int32)
    g = torch.Generator().manual_seed(int(rng.integers(2**31)))
    q = torch.randn(40, h, d, generator=g, dtype=torch.float64)
    k, v = torch.randn(54, hkv, d, generator=g, dtype=torch.float64), torch.randn(54, hkv, d, generator=g,
                                                                                   dtype=torch.float64)
    seqs = lambda cu: [slice(int(cu[i]), int(cu[i + 1])) for i in range(len(cu) - 1)]  # noqa: E731
    q8, qd, qv = quantised(q.reshape(40, hkv, 2 * d), seqs(cu_q), dtype)
    q8, qv = q8.reshape(40, h, d), qv.reshape(40, h, d)
    k8, kd, kv = quantised(k, seqs(cu_k), dtype)
    v8, vd, vv = quantised(v, seqs(cu_k), dtype)
    out, lse, _ = flash_attn_varlen_func(q8, k8, v8, cu_q, cu_k, 27, 27, causal=True, window_size=(8, 0),
                                         softcap=3.0, q_descale=qd, k_descale=kd, v_descale=vd,
                                         return_attn_probs=True)
    ref, ref_lse = reference_varlen(qv, kv, vv, cu_q.numpy(), cu_k.numpy(), causal=True, window=(8, 0), softcap=3.0)
    assert out.dtype == torch.bfloat16 and lse.shape == (h, 40)
    assert_close(out.double().numpy(), ref, BF16_ATOL)
    assert_close(lse.double().numpy(), ref_lse, 1e-4, "LSE")


def test_varlen_fp8_rows_outside_the_sequences(rng):
    """Rows before cu_seqlens[0] and past cu_seqlens[-1] (a padded buffer) get O 0 and LSE -inf, as
    the 16-bit path gives them (they were left as allocated); the sequences' rows are those of the
    buffers without them."""
    g = torch.Generator().manual_seed(int(rng.integers(2**31)))
    f8 = torch.float8_e4m3fn
    q, k, v = (torch.randn(n, h, 16, generator=g).to(f8) for n, h in ((12, 4), (14, 2), (14, 2)))
    cu_q, cu_k = torch.tensor([2, 6, 10], dtype=torch.int32), torch.tensor([1, 5, 14], dtype=torch.int32)
    out, lse, _ = flash_attn_varlen_func(q, k, v, cu_q, cu_k, 4, 9, return_attn_probs=True)
    ref, ref_lse, _ = flash_attn_varlen_func(q[2:10], k[1:14], v[1:14], cu_q - 2, cu_k - 1, 4, 9,
                                             return_attn_probs=True)
    assert torch.equal(out[2:10], ref) and torch.equal(lse[:, 2:10], ref_lse)
    for rows in (slice(0, 2), slice(10, None)):
        assert torch.all(out[rows] == 0) and torch.all(lse[:, rows] == float("-inf"))


def test_default_descales_and_alibi(rng):
    # No descales: each is 1 (FA3's default); e5m2 inputs hold their values as they are.
    dtype, b, n, h, d = torch.float8_e5m2, 1, 16, 2, 16
    g = torch.Generator().manual_seed(int(rng.integers(2**31)))
    q8, k8, v8 = (torch.randn(b, n, h, d, generator=g).to(dtype) for _ in range(3))
    slopes = torch.tensor([0.5, 0.125], dtype=torch.float32)
    out = flash_attn_func(q8, k8, v8, alibi_slopes=slopes, causal=True)
    ref, _ = reference(q8.double().numpy(), k8.double().numpy(), v8.double().numpy(), causal=True,
                       alibi=slopes.numpy())
    assert_close(out.double().numpy(), ref, BF16_ATOL)


def test_descales_with_a_16_bit_q_are_ignored(rng):
    # FA3 reads the descales only for fp8 inputs; callers that always pass them (unit scales on a
    # bf16 model) get the ordinary call
    g = torch.Generator().manual_seed(int(rng.integers(2**31)))
    q, k, v = (torch.randn(1, 8, 2, 16, generator=g).to(torch.float16) for _ in range(3))
    scales = torch.full((1, 2), 3.0)
    got = flash_attn_func(q, k, v, q_descale=scales, k_descale=scales, v_descale=scales)
    assert torch.equal(got, flash_attn_func(q, k, v))


def test_fp8_refusals():
    q8 = torch.zeros(1, 8, 2, 16, dtype=torch.float8_e4m3fn)
    # descales that cannot scale, and varlen offsets the float path refuses (they went through
    # unchecked: rows left unwritten)
    with pytest.raises(flashcl.Error, match="fp8.q_descale: entry .* a descale must be finite and > 0"):
        flash_attn_func(q8, q8, q8, q_descale=torch.zeros(1, 2))
    with pytest.raises(flashcl.Error, match="fp8.v_descale: entry .* a descale must be finite and > 0"):
        flash_attn_func(q8, q8, q8, v_descale=torch.full((1, 2), float("nan")))
    p8, cu = q8[0, :6], torch.tensor([0, 4, 6], dtype=torch.int32)
    with pytest.raises(flashcl.Error, match="cu_seqlens_q: sequence 0 has 4 rows, more than seqlen_q"):
        flash_attn_varlen_func(p8, p8, p8, cu, cu, 2, 4)
    with pytest.raises(flashcl.Error, match="cu_seqlens_k: must be non-decreasing"):
        flash_attn_varlen_func(p8, p8, p8, cu, torch.tensor([0, 5, 4], dtype=torch.int32), 4, 5)
    with pytest.raises(NotImplementedError, match="dropout_p"):
        flash_attn_func(q8, q8, q8, dropout_p=0.1)
    with pytest.raises(flashcl.Error, match="k: fp8 attention takes float8_e4m3fn or float8_e5m2"):
        flash_attn_func(q8, q8.to(torch.float16), q8)
    with pytest.raises(flashcl.Error, match="k: dtype torch.float8_e5m2 differs from q's"):
        flash_attn_func(q8, q8.to(torch.float8_e5m2), q8)
    with pytest.raises(flashcl.Error, match=r"fp8.k_descale: expected shape \(1, 2\)"):
        flash_attn_func(q8, q8, q8, k_descale=torch.ones(2))
    with pytest.raises(NotImplementedError, match="fp8 meta tensors are not supported yet"):
        flash_attn_func(q8.to("meta"), q8.to("meta"), q8.to("meta"))
    with pytest.raises(NotImplementedError, match="q_descale is on meta"):
        flash_attn_func(q8, q8, q8, q_descale=torch.ones(1, 2, device="meta"))
    with pytest.raises(NotImplementedError, match="v_descale requires grad"):
        flash_attn_func(q8, q8, q8, v_descale=torch.ones(1, 2, requires_grad=True))
    with pytest.raises(NotImplementedError, match="no backward"):
        flash_attn_func(q8.clone().requires_grad_(), q8, q8)
    with torch.no_grad():  # inference with such tensors is fine
        assert flash_attn_func(q8.clone().requires_grad_(), q8, q8).shape == q8.shape
