"""flashcl.torch: flash_attn_func and flash_attn_varlen_func against the float64 reference (fp32,
fp16, bf16, GQA, causal, window, softcap, ALiBi, varlen with LSE), the general ``attention`` with a
mask, the custom op under torch.compile (opaque, no graph break) and torch.library.opcheck, and the
clear errors for what flashcl does not do (dropout, paged KV) or does not do yet (the backward).
"""

import numpy as np
import pytest

from conftest import FP16_ATOL, FP32_ATOL, assert_close, reference, reference_varlen, round_bf16

torch = pytest.importorskip("torch")
import flashcl  # noqa: E402
from flashcl.torch import attention, flash_attn_func, flash_attn_varlen_func  # noqa: E402


@pytest.fixture
def gen(rng):
    return torch.Generator().manual_seed(int(rng.integers(2**31)))


def randn(gen, *shape, dtype=torch.float32):
    return torch.randn(*shape, generator=gen).to(dtype)


def np64(t):
    return t.detach().to(torch.float64).numpy()


@pytest.mark.parametrize("options", [
    dict(), dict(causal=True), dict(window_size=(6, 2)), dict(causal=True, window_size=(9, 0)),
    dict(softcap=4.0, softmax_scale=0.7), dict(alibi=True, causal=True),
], ids=["plain", "causal", "window", "causal_window", "softcap", "alibi"])
def test_flash_attn_func(gen, options):
    q, k, v = randn(gen, 2, 27, 4, 32), randn(gen, 2, 35, 2, 32), randn(gen, 2, 35, 2, 32)
    options = dict(options)
    ref_options = dict(causal=options.get("causal", False), window=options.get("window_size", (-1, -1)),
                       softcap=options.get("softcap", 0.0), scale=options.get("softmax_scale"))
    if options.pop("alibi", False):
        options["alibi_slopes"] = torch.rand(4, generator=gen) * 0.5
        ref_options["alibi"] = options["alibi_slopes"].numpy()
    out, lse, probs = flash_attn_func(q, k, v, return_attn_probs=True, **options)
    assert probs is None and out.dtype == torch.float32 and out.shape == q.shape
    ref_o, ref_lse = reference(np64(q), np64(k), np64(v), **ref_options)
    assert_close(out.numpy(), ref_o, FP32_ATOL)
    assert_close(lse.numpy(), ref_lse, FP32_ATOL, "LSE")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precisions(gen, dtype):
    q, k, v = (randn(gen, 1, 33, 2, 64, dtype=dtype) for _ in range(3))
    out = flash_attn_func(q, k, v, causal=True)
    assert out.dtype == dtype
    ref = reference(np64(q), np64(k), np64(v), causal=True)[0]  # the inputs are already rounded
    assert_close(out.float().numpy(), ref, FP16_ATOL if dtype == torch.float16 else 8e-3)


def test_varlen(gen):
    cu_q = torch.tensor([0, 9, 9, 31], dtype=torch.int32)
    cu_k = torch.tensor([0, 14, 20, 41], dtype=torch.int32)
    q, k, v = randn(gen, 31, 4, 16), randn(gen, 41, 1, 16), randn(gen, 41, 1, 16)
    out, lse, _ = flash_attn_varlen_func(q, k, v, cu_q, cu_k, 22, 21, causal=True, return_attn_probs=True)
    ref_o, ref_lse = reference_varlen(np64(q), np64(k), np64(v), cu_q.numpy(), cu_k.numpy(), causal=True)
    assert_close(out.numpy(), ref_o, FP32_ATOL)
    assert_close(lse.numpy(), ref_lse, FP32_ATOL, "LSE")


def test_attention_with_mask(gen):
    q, k, v = randn(gen, 2, 12, 2, 16), randn(gen, 2, 15, 2, 16), randn(gen, 2, 15, 2, 16)
    keep = torch.rand(2, 1, 12, 15, generator=gen) > 0.3
    bias = torch.randn(1, 2, 12, 15, generator=gen)
    assert_close(attention(q, k, v, mask=keep).numpy(), reference(np64(q), np64(k), np64(v), mask=keep.numpy())[0],
                 FP32_ATOL)
    assert_close(attention(q, k, v, mask=bias).numpy(), reference(np64(q), np64(k), np64(v), mask=np64(bias))[0],
                 FP32_ATOL)


def test_torch_compile_sees_an_opaque_op(gen):
    q, k, v = randn(gen, 1, 17, 2, 16), randn(gen, 1, 17, 2, 16), randn(gen, 1, 17, 2, 16)
    compiled = torch.compile(lambda a, b, c: flash_attn_func(a, b, c, causal=True), backend="aot_eager",
                             fullgraph=True)
    assert torch.equal(compiled(q, k, v), flash_attn_func(q, k, v, causal=True))


def test_opcheck(gen):
    q, k, v = randn(gen, 1, 9, 2, 8), randn(gen, 1, 11, 1, 8), randn(gen, 1, 11, 1, 8)
    args = (q, k, v, None, None, 9, 11, 0.35, True, -1, -1, 0.0, None, None)
    torch.library.opcheck(torch.ops.flashcl.fwd.default, args,
                          test_utils=("test_schema", "test_faketensor", "test_aot_dispatch_static"))


def test_errors(gen):
    q = randn(gen, 1, 8, 2, 16)
    with pytest.raises(NotImplementedError, match="dropout_p = 0.1 is not supported"):
        flash_attn_func(q, q, q, dropout_p=0.1)
    with pytest.raises(NotImplementedError, match="block_table"):
        flash_attn_varlen_func(q[0], q[0], q[0], torch.tensor([0, 8]), torch.tensor([0, 8]), 8, 8,
                               block_table=torch.zeros(1, 1, dtype=torch.int32))
    with pytest.raises(flashcl.Error, match="q: dtype torch.float64 is not supported") as info:
        flash_attn_func(q.double(), q.double(), q.double())
    assert info.value.status == flashcl.Status.UnsupportedDType
    with pytest.raises(flashcl.Error, match="heads_kv: heads \\(2\\) must be a multiple of heads_kv \\(3\\)"):
        flash_attn_func(q, randn(gen, 1, 8, 3, 16), randn(gen, 1, 8, 3, 16))


def test_backward_not_available_yet(gen):
    q = randn(gen, 1, 8, 2, 16).requires_grad_()
    out = flash_attn_func(q, q, q)
    with pytest.raises(NotImplementedError, match="backward is not available yet"):
        out.sum().backward()
