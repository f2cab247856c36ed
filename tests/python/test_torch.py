"""flashcl.torch: flash_attn_func and flash_attn_varlen_func against the float64 reference (fp32,
fp16, bf16, GQA, causal, window, softcap, ALiBi, varlen with LSE), the general ``attention`` with a
mask, their gradients through the autograd Function against the float64 reference backward (and
gradcheck on a tiny shape), the custom ops under torch.compile (opaque, no graph break) and
torch.library.opcheck, and the clear errors for what flashcl does not do (dropout, paged KV).
"""

import numpy as np
import pytest

from conftest import (FP16_ATOL, FP32_ATOL, assert_close, reference, reference_backward, reference_varlen,
                      variant_cases)

torch = pytest.importorskip("torch")
import flashcl  # noqa: E402
from flashcl.torch import attention, attention_backward, flash_attn_func, flash_attn_varlen_func  # noqa: E402

CASES = variant_cases()  # the shapes of the numpy tests: the same kernels, compiled once


@pytest.fixture
def gen(rng):
    return torch.Generator().manual_seed(int(rng.integers(2**31)))


def randn(gen, *shape, dtype=torch.float32):
    return torch.randn(*shape, generator=gen).to(dtype)


def np64(t):
    return t.detach().to(torch.float64).numpy()


def call(name, gen, requires_grad=False):
    """Runs case `name` of conftest's variant table through flash_attn_func (attention when it has
    a mask), on fresh inputs; returns (inputs, output, reference options)."""
    b, nq, nk, h, hkv, d, options = CASES[name]
    inputs = [randn(gen, b, n, heads, d).requires_grad_(requires_grad) for n, heads in ((nq, h), (nk, hkv), (nk, hkv))]
    kwargs = dict(causal=options.get("causal", False), softcap=options.get("softcap", 0.0))
    if "alibi" in options:
        kwargs["alibi_slopes"] = torch.from_numpy(options["alibi"])
    if "mask" in options:
        out = attention(*inputs, mask=torch.from_numpy(options["mask"]), window=options.get("window", (-1, -1)),
                        scale=options.get("scale"), **kwargs)
    else:
        out = flash_attn_func(*inputs, window_size=options.get("window", (-1, -1)),
                              softmax_scale=options.get("scale"), **kwargs)
    return inputs, out, options


@pytest.mark.parametrize("name", ["plain", "causal_gqa_nq_lt_nk", "window_mqa", "causal_window", "softcap_scale",
                                  "alibi_per_batch_causal", "bias"])
def test_forward(gen, name):
    (q, k, v), out, options = call(name, gen)
    assert out.dtype == torch.float32 and out.shape == q.shape
    assert_close(out.numpy(), reference(np64(q), np64(k), np64(v), **options)[0], FP32_ATOL)


def test_return_attn_probs(gen):
    q, k, v = randn(gen, 2, 33, 4, 24), randn(gen, 2, 50, 2, 24), randn(gen, 2, 50, 2, 24)
    out, lse, probs = flash_attn_func(q, k, v, causal=True, return_attn_probs=True)
    ref_o, ref_lse = reference(np64(q), np64(k), np64(v), causal=True)
    assert probs is None
    assert_close(out.numpy(), ref_o, FP32_ATOL)
    assert_close(lse.numpy(), ref_lse, FP32_ATOL, "LSE")


@pytest.mark.parametrize("dtype, causal, d", [(torch.float16, True, 64), (torch.bfloat16, False, 32)])
def test_half_precisions(gen, dtype, causal, d):
    q, k, v = (randn(gen, 1, 33, 2, d, dtype=dtype) for _ in range(3))
    out = flash_attn_func(q, k, v, causal=causal)
    assert out.dtype == dtype
    ref = reference(np64(q), np64(k), np64(v), causal=causal)[0]  # the inputs are already rounded
    assert_close(out.float().numpy(), ref, FP16_ATOL if dtype == torch.float16 else 8e-3)


def test_varlen(gen):
    cu_q = torch.tensor([0, 9, 9, 31], dtype=torch.int32)
    cu_k = torch.tensor([0, 14, 20, 41], dtype=torch.int32)
    q, k, v = randn(gen, 31, 4, 16), randn(gen, 41, 2, 16), randn(gen, 41, 2, 16)
    out, lse, _ = flash_attn_varlen_func(q, k, v, cu_q, cu_k, 22, 21, causal=True, return_attn_probs=True)
    ref_o, ref_lse = reference_varlen(np64(q), np64(k), np64(v), cu_q.numpy(), cu_k.numpy(), causal=True)
    assert_close(out.numpy(), ref_o, FP32_ATOL)
    assert_close(lse.numpy(), ref_lse, FP32_ATOL, "LSE")


def test_varlen_padded_buffers(gen):
    """Packed buffers holding rows past cu_seqlens[-1], as flash-attn accepts (they were refused on
    CPU tensors): the sequences' rows as without the padding, the padding's O 0, LSE -inf and
    gradients 0."""
    cu_q = torch.tensor([0, 5, 12], dtype=torch.int32)
    cu_k = torch.tensor([0, 7, 16], dtype=torch.int32)
    q, k, v = randn(gen, 15, 2, 16), randn(gen, 19, 2, 16), randn(gen, 19, 2, 16)
    leaves = [t.clone().requires_grad_() for t in (q, k, v)]
    out, lse, _ = flash_attn_varlen_func(*leaves, cu_q, cu_k, 7, 9, causal=True, return_attn_probs=True)
    ref_o, ref_lse = reference_varlen(np64(q[:12]), np64(k[:16]), np64(v[:16]), cu_q.numpy(), cu_k.numpy(),
                                      causal=True)
    assert out.shape == q.shape and lse.shape == (2, 15)
    assert_close(out[:12].detach().numpy(), ref_o, FP32_ATOL)
    assert_close(lse[:, :12].numpy(), ref_lse, FP32_ATOL, "LSE")
    assert torch.all(out[12:] == 0) and torch.all(lse[:, 12:] == float("-inf"))
    unpadded = [t[:n].clone().requires_grad_() for t, n in zip((q, k, v), (12, 16, 16))]
    ref_out = flash_attn_varlen_func(*unpadded, cu_q, cu_k, 7, 9, causal=True)
    d_o = randn(gen, 15, 2, 16)
    out.backward(d_o)
    ref_out.backward(d_o[:12])
    for name, leaf, ref, n in zip("qkv", leaves, unpadded, (12, 16, 16)):
        assert torch.equal(leaf.grad[:n], ref.grad), name
        assert torch.all(leaf.grad[n:] == 0), name


def test_torch_compile_sees_an_opaque_op(gen):
    q, k, v = randn(gen, 1, 17, 2, 16), randn(gen, 1, 17, 2, 16), randn(gen, 1, 17, 2, 16)
    compiled = torch.compile(lambda a, b, c: flash_attn_func(a, b, c, causal=True), backend="aot_eager",
                             fullgraph=True)
    assert torch.equal(compiled(q, k, v), flash_attn_func(q, k, v, causal=True))


def test_opcheck(gen):
    q, k, v = randn(gen, 1, 9, 4, 24), randn(gen, 1, 11, 2, 24), randn(gen, 1, 11, 2, 24)
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


def test_torch_compile_with_a_tensor_passed_twice(gen):
    # flash_attn_func(q, kv, kv) and one cu_seqlens for both sides: the autograd Function got one
    # tensor twice, which broke the graph
    q, kv = (randn(gen, 1, 9, 2, 16).requires_grad_() for _ in range(2))
    cu = torch.tensor([0, 4, 9], dtype=torch.int32)
    calls = (lambda a, b: flash_attn_func(a, b, b, causal=True),
             lambda a, b: flash_attn_varlen_func(a[0], b[0], b[0], cu, cu, 5, 5, causal=True))
    for call in calls:
        compiled = torch.compile(call, backend="aot_eager", fullgraph=True)
        compiled(q, kv).sum().backward()
        grads = [t.grad.clone() for t in (q, kv)]
        for t in (q, kv):
            t.grad = None
        call(q, kv).sum().backward()
        assert all(torch.equal(a, t.grad) for a, t in zip(grads, (q, kv)))
        for t in (q, kv):
            t.grad = None


def test_lse_windows_and_sizes_get_named_errors(gen):
    """A review's finds: an LSE of the right size in another shape (wrong gradients), a window side
    below -1 reported as the clamped -2, max_seqlen past int32 (nanobind's unnamed error)."""
    q = randn(gen, 1, 8, 2, 16)
    out, lse = attention(q, q, q, return_lse=True)
    cases = [
        ("lse: expected shape (1, 2, 8) (the forward's), got (1, 8, 2)",
         lambda: attention_backward(q, q, q, q, out, lse.transpose(1, 2).contiguous())),
        ("window_size.left: must be >= -1 (-1: unbounded), got -5", lambda: flash_attn_func(q, q, q, window_size=(-5, 0))),
        ("max_seqlen_q: 1099511627776 does not fit int32",
         lambda: flash_attn_varlen_func(q[0], q[0], q[0], torch.tensor([0, 8], dtype=torch.int32),
                                        torch.tensor([0, 8], dtype=torch.int32), 2**40, 8)),
    ]
    for says, fn in cases:
        with pytest.raises(flashcl.Error) as info:
            fn()
        assert says in str(info.value)
        assert info.value.status == flashcl.Status.InvalidArgument
    # a float64 LSE (the forward's, converted) is taken as before
    grads = attention_backward(q, q, q, q, out, lse)
    assert all(torch.equal(a, b) for a, b in zip(attention_backward(q, q, q, q, out, lse.double()), grads))


def test_careless_arguments_get_named_errors(gen):
    """What a review found accepted or failing without the library's message: a tensor argument on
    another device (a meta one sent the call to the op's fake, which returned uninitialised memory),
    ALiBi slopes of the wrong shape (the first H were used), a window of three, float or missing
    offsets, a 0-dim q, head dim 0, numpy arrays, an integer mask that was taken for a bias."""
    q = randn(gen, 1, 4, 2, 8)
    cu = torch.tensor([0, 4], dtype=torch.int32)
    S = flashcl.Status
    cases = [
        ("alibi_slopes: device meta differs from q's cpu",
         lambda: flash_attn_func(q, q, q, alibi_slopes=torch.ones(2, device="meta"))),
        ("k: device meta differs", lambda: flash_attn_func(q, q.to("meta"), q)),
        ("cu_seqlens_q: device meta differs",
         lambda: flash_attn_varlen_func(q[0], q[0], q[0], cu.to("meta"), cu, 4, 4)),
        ("alibi_slopes: expected shape (2,) (H) or (1, 2) (B, H), got (5,)",
         lambda: flash_attn_func(q, q, q, alibi_slopes=torch.rand(5))),
        ("alibi_slopes: expected shape", lambda: attention(q, q, q, alibi_slopes=torch.rand(2, 2, 2))),
        ("window_size: expected (left, right)", lambda: flash_attn_func(q, q, q, window_size=(1, 2, 3))),
        ("cu_seqlens_q: expected a 1-d int32 tensor",
         lambda: flash_attn_varlen_func(q[0], q[0], q[0], cu.float(), cu.float(), 4, 4)),
        ("cu_seqlens_q: expected an int32 tensor", lambda: flash_attn_varlen_func(q[0], q[0], q[0], None, None, 4, 4)),
        ("q: expected a torch tensor of 4 dimensions", lambda: flash_attn_func(torch.tensor(1.0), q, q)),
        ("q: expected a torch tensor of 4 dimensions", lambda: flash_attn_func(q.numpy(), q.numpy(), q.numpy())),
        ("has no head dim", lambda: flash_attn_func(q[..., :0], q[..., :0], q[..., :0])),
        ("mask: dtype torch.int32 is neither boolean",
         lambda: attention(q, q, q, mask=torch.ones(4, 4, dtype=torch.int32))),
    ]
    for says, fn in cases:
        with pytest.raises(flashcl.Error) as info:
            fn()
        assert says in str(info.value)
        assert info.value.status == S.InvalidArgument
    slopes = torch.rand(1, 2)  # (B, H) and (H,) still pass
    assert flash_attn_func(q, q, q, alibi_slopes=slopes).shape == q.shape
    assert flash_attn_func(q, q, q, alibi_slopes=slopes[0]).shape == q.shape


def test_uint8_mask_hides_keys_as_a_boolean_one(gen):
    """uint8 masks are boolean (0 hides a key), as numpy's and the C API's; they were added as a
    bias."""
    q = randn(gen, 1, 6, 2, 8)
    mask = torch.from_numpy(np.random.default_rng(3).integers(0, 2, (6, 6)).astype(np.uint8))
    mask[:, 0] = 1  # every row sees a key
    got = attention(q, q, q, mask=mask)
    assert torch.equal(got, attention(q, q, q, mask=mask.bool()))
    ref = reference(np64(q), np64(q), np64(q), mask=mask.numpy().astype(bool))[0]
    assert_close(got.numpy(), ref, FP32_ATOL)


@pytest.mark.parametrize("name", ["causal_gqa_nq_lt_nk", "window_mqa", "alibi_per_batch_causal"])
def test_backward(gen, name):
    inputs, out, options = call(name, gen, requires_grad=True)
    d_o = randn(gen, *out.shape)
    out.backward(d_o)
    expected = reference_backward(*(np64(t) for t in inputs), np64(d_o), **options)
    for t, want, label in zip(inputs, expected, ("dQ", "dK", "dV")):
        assert_close(t.grad.numpy(), want, 5 * FP32_ATOL, label)


def test_varlen_backward(gen):
    cu_q = torch.tensor([0, 9, 9, 31], dtype=torch.int32)
    cu_k = torch.tensor([0, 14, 20, 41], dtype=torch.int32)
    q, k, v = (randn(gen, n, h, 16).requires_grad_() for n, h in ((31, 4), (41, 2), (41, 2)))
    d_o = randn(gen, 31, 4, 16)
    flash_attn_varlen_func(q, k, v, cu_q, cu_k, 22, 21, causal=True).backward(d_o)
    expected = [np.zeros(t.shape) for t in (q, k, v)]
    for b in range(3):
        qs, ks = slice(cu_q[b], cu_q[b + 1]), slice(cu_k[b], cu_k[b + 1])
        if cu_q[b + 1] > cu_q[b] and cu_k[b + 1] > cu_k[b]:
            g = reference_backward(np64(q[None, qs]), np64(k[None, ks]), np64(v[None, ks]), np64(d_o[None, qs]),
                                   causal=True)
            expected[0][qs], expected[1][ks], expected[2][ks] = g[0][0], g[1][0], g[2][0]
    for t, want, label in zip((q, k, v), expected, ("dQ", "dK", "dV")):
        assert_close(t.grad.numpy(), want, 5 * FP32_ATOL, label)


def test_bias_gradient(gen):
    q, k, v = (randn(gen, 2, n, 3, 16).requires_grad_() for n in (25, 31, 31))
    bias = randn(gen, 1, 3, 25, 31).requires_grad_()  # broadcast over the batch: its gradient is summed
    d_o = randn(gen, 2, 25, 3, 16)
    attention(q, k, v, mask=bias).backward(d_o)
    expected = reference_backward(np64(q), np64(k), np64(v), np64(d_o), mask=np64(bias))
    for t, want, label in zip((q, k, v, bias), expected, ("dQ", "dK", "dV", "dBias")):
        assert_close(t.grad.numpy(), want, 5 * FP32_ATOL, label)


def test_gradcheck_tiny():
    # Finite differences of the fp32 computation (through a float64 wrapper), so fp32 tolerances.
    gen = torch.Generator().manual_seed(3)
    inputs = [torch.randn(1, 3, 2, 16, generator=gen, dtype=torch.float64).requires_grad_() for _ in range(3)]
    fn = lambda q, k, v: flash_attn_func(q.float(), k.float(), v.float(), causal=True).double()
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-2, atol=2e-3, rtol=1e-2)


def test_torch_compile_backward(gen):
    q, k, v = (randn(gen, 1, 17, 2, 16).requires_grad_() for _ in range(3))
    compiled = torch.compile(lambda a, b, c: flash_attn_func(a, b, c, causal=True), backend="aot_eager",
                             fullgraph=True)
    compiled(q, k, v).sum().backward()
    grads = [t.grad.clone() for t in (q, k, v)]
    for t in (q, k, v):
        t.grad = None
    flash_attn_func(q, k, v, causal=True).sum().backward()
    assert all(torch.equal(a, t.grad) for a, t in zip(grads, (q, k, v)))


def test_varlen_rows_before_the_first_offset(gen):
    """Offsets that start past row 0 (the library takes them): the rows before cu_seqlens[0] belong
    to no sequence, like those past cu_seqlens[-1], and get O 0, LSE -inf and gradients 0 (they were
    left uninitialised); the sequences' rows are those of the buffers without them."""
    cu_q = torch.tensor([3, 8, 15], dtype=torch.int32)
    cu_k = torch.tensor([2, 9, 19], dtype=torch.int32)
    q, k, v = randn(gen, 17, 2, 16), randn(gen, 21, 2, 16), randn(gen, 21, 2, 16)
    leaves = [t.clone().requires_grad_() for t in (q, k, v)]
    out, lse, _ = flash_attn_varlen_func(*leaves, cu_q, cu_k, 7, 10, causal=True, return_attn_probs=True)
    inner = [t[a:b].clone().requires_grad_() for t, a, b in ((q, 3, 15), (k, 2, 19), (v, 2, 19))]
    ref_out, ref_lse, _ = flash_attn_varlen_func(*inner, cu_q - 3, cu_k - 2, 7, 10, causal=True,
                                                 return_attn_probs=True)
    assert torch.equal(out[3:15], ref_out) and torch.equal(lse[:, 3:15], ref_lse)
    assert torch.all(out[:3] == 0) and torch.all(out[15:] == 0)
    assert torch.all(lse[:, :3] == float("-inf")) and torch.all(lse[:, 15:] == float("-inf"))
    d_o = randn(gen, 17, 2, 16)
    out.backward(d_o)
    ref_out.backward(d_o[3:15])
    for name, leaf, ref, (a, b) in zip("qkv", leaves, inner, ((3, 15), (2, 19), (2, 19))):
        assert torch.equal(leaf.grad[a:b], ref.grad), name
        assert torch.all(leaf.grad[:a] == 0) and torch.all(leaf.grad[b:] == 0), name


def test_huge_window_is_unbounded(gen):
    q, k, v = randn(gen, 1, 9, 2, 16), randn(gen, 1, 11, 2, 16), randn(gen, 1, 11, 2, 16)
    assert torch.equal(flash_attn_func(q, k, v, window_size=(2**40, 2**40)), flash_attn_func(q, k, v))


def test_opcheck_backward(gen):
    q, k, v = randn(gen, 1, 9, 4, 24), randn(gen, 1, 11, 2, 24), randn(gen, 1, 11, 2, 24)
    out, lse = torch.ops.flashcl.fwd(q, k, v, None, None, 9, 11, 0.35, True, -1, -1, 0.0, None, None)
    args = (randn(gen, 1, 9, 4, 24), q, k, v, out, lse, None, None, 9, 11, 0.35, True, -1, -1, 0.0, None, None, True,
            False)
    torch.library.opcheck(torch.ops.flashcl.bwd.default, args,
                          test_utils=("test_schema", "test_faketensor", "test_aot_dispatch_static"))
    # q, k, v (and dO) as transposed views, as Hugging Face's (B, H, N, d) projections give them: the
    # gradients are dense whatever their strides, and the fake must say so (torch.compile's inductor
    # failed its stride check, or with the check off took wrong gradients)
    views = [randn(gen, 1, h, n, 24).transpose(1, 2) for n, h in ((9, 4), (11, 2), (11, 2), (9, 4))]
    views[:3] = [t.copy_(s) for t, s in zip(views[:3], (q, k, v))]
    args = (views[3], *views[:3], out, lse) + args[6:]
    torch.library.opcheck(torch.ops.flashcl.bwd.default, args, test_utils=("test_faketensor",))


def test_functional_api_takes_torch_tensors(gen):
    """flashcl.attention and flashcl.attention_backward on torch tensors: flashcl.torch's results
    (the forward differentiable, the backward the autograd Function's gradients), and a named error
    for what only numpy and pyopencl arrays take."""
    q, k, v = (randn(gen, 2, n, h, 16).requires_grad_() for n, h in ((9, 4), (13, 2), (13, 2)))
    bias = randn(gen, 1, 4, 9, 13)
    out, lse = flashcl.attention(q, k, v, causal=True, mask=bias, return_lse=True)
    expected = attention(q, k, v, causal=True, mask=bias)
    assert isinstance(out, torch.Tensor) and out.requires_grad
    assert torch.equal(out, expected)
    d_o = randn(gen, *out.shape)
    grads = flashcl.attention_backward(d_o, q.detach(), k.detach(), v.detach(), out.detach(), lse, causal=True,
                                       mask=bias)
    expected.backward(d_o)
    for got, want in zip(grads, (q.grad, k.grad, v.grad)):
        assert torch.equal(got, want)
    with pytest.raises(flashcl.Error, match="algorithm: not taken with torch tensors"):
        flashcl.attention(q, k, v, algorithm="fa1")
    with pytest.raises(flashcl.Error, match="d_bias: return_dbias needs an additive float bias"):
        flashcl.attention_backward(d_o, q, k, v, out, lse, return_dbias=True)


def test_second_review_named_errors(gen):
    """What a second review found accepted or failing without the library's message: a backward given
    d_o or out of another shape or dtype than q (its gradients were silently wrong), a window that
    is not a pair, a missing or fractional max_seqlen, integer ALiBi slopes, and a KV cache passed as
    both caches on the copy path (the copy-backs wrote over each other and k_new was lost)."""
    from flashcl.torch import flash_attn_with_kvcache
    q, k, v, d_o = (randn(gen, 1, 8, 2, 16) for _ in range(4))
    out, lse = attention(q, k, v, return_lse=True)
    cu = torch.tensor([0, 8], dtype=torch.int32)
    cache = randn(gen, 1, 8, 2, 16).to(torch.bfloat16)
    step = randn(gen, 1, 1, 2, 16).to(torch.bfloat16)
    cases = [
        ("d_o: torch.float32 of shape (1, 2, 8, 16) differs from q's",
         lambda: attention_backward(d_o.transpose(1, 2).contiguous(), q, k, v, out, lse)),
        ("d_o: torch.int32", lambda: attention_backward(d_o.int(), q, k, v, out, lse)),
        ("out: torch.float16", lambda: attention_backward(d_o, q, k, v, out.half(), lse)),
        ("window_size: expected (left, right) integers, got 3", lambda: flash_attn_func(q, q, q, window_size=3)),
        ("max_seqlen_q: expected an integer, got NoneType",
         lambda: flash_attn_varlen_func(q[0], q[0], q[0], cu, cu, None, 8)),
        ("max_seqlen_k: expected an integer, got float",
         lambda: flash_attn_varlen_func(q[0], q[0], q[0], cu, cu, 8, 7.9)),
        ("alibi_slopes: expected floats, got torch.int64",
         lambda: flash_attn_func(q, q, q, alibi_slopes=torch.ones(2, dtype=torch.int64))),
        ("v_cache: shares memory with k_cache",
         lambda: flash_attn_with_kvcache(step, cache, cache, step, step, cache_seqlens=3)),
    ]
    for says, fn in cases:
        with pytest.raises(flashcl.Error) as info:
            fn()
        assert says in str(info.value)
        assert info.value.status == flashcl.Status.InvalidArgument
    # an interleaved pool (K and V as disjoint views of one tensor) still appends through the copies
    pool = randn(gen, 1, 8, 4, 16).to(torch.bfloat16)
    k_view, v_view = pool[:, :, :2], pool[:, :, 2:]
    flash_attn_with_kvcache(step, k_view, v_view, step, step, cache_seqlens=3)
    assert torch.equal(pool[0, 3, :2], step[0, 0]) and torch.equal(pool[0, 3, 2:], step[0, 0])
