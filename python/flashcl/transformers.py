"""flashcl as a Hugging Face attention implementation. Importing this module (or calling
``register()``) adds "flashcl" to transformers' ``AttentionInterface`` with ``flashcl_attention``
and to its ``AttentionMaskInterface`` with the mask form flash-attn uses (None, or the 2-D padding
mask), so ``from_config(cfg, attn_implementation="flashcl")`` and
``model.set_attn_implementation("flashcl")`` work. As "flash_attention_2" does: causal comes from
the module (or ``is_causal``), padding becomes a varlen call (the padded rows are dropped, no N×N
mask is built), sliding windows and softcaps come from the layer's kwargs, and GQA's K/V are used
without being repeated. fp32 works too (on PoCL's CPU device as well as on GPUs).
"""

from typing import Optional, Tuple

import torch
from torch import Tensor

from .torch import attention as _attention

__all__ = ["flashcl_attention", "register"]

NAME = "flashcl"


def _unpad(x: Tensor, mask: Tensor) -> Tuple[Tensor, Tensor, Tensor, int]:
    """(rows, cu_seqlens, indices, max_seqlen): x (B, S, H, d) packed to the rows `mask` keeps."""
    batch, seq = mask.shape
    indices = mask.reshape(-1).nonzero().squeeze(1)
    lengths = mask.sum(dim=1, dtype=torch.int32)
    cu_seqlens = torch.nn.functional.pad(lengths.cumsum(0, dtype=torch.int32), (1, 0))
    rows = x.reshape(batch * seq, *x.shape[2:]).index_select(0, indices)
    return rows, cu_seqlens, indices, int(lengths.max())


def flashcl_attention(module: torch.nn.Module, query: Tensor, key: Tensor, value: Tensor,
                      attention_mask: Optional[Tensor], dropout: float = 0.0, scaling: Optional[float] = None,
                      sliding_window: Optional[int] = None, softcap: Optional[float] = None,
                      is_causal: Optional[bool] = None, **kwargs) -> Tuple[Tensor, None]:
    """transformers' attention-function signature: query (B, H, Sq, d), key and value (B, H_kv, Sk,
    d); returns ((B, Sq, H, d), None). ``attention_mask`` is None, a (B, Sk) padding mask (True
    keeps a token; the queries are the last Sq positions) or a 4-D boolean/additive mask."""
    if dropout:
        raise NotImplementedError(f"flashcl: attention dropout ({dropout}) is not supported; set the model's "
                                  "attention_dropout to 0")
    if kwargs.get("s_aux") is not None:
        raise NotImplementedError("flashcl: attention sinks (s_aux) are not supported")
    q, k, v = (t.transpose(1, 2) for t in (query, key, value))  # (B, S, H, d)
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    batch, seq_q, seq_k = q.shape[0], q.shape[1], k.shape[1]
    # The window the eager mask builds: a query sees itself and sliding_window − 1 keys before it.
    window = (-1, -1)
    if sliding_window is not None and seq_k > sliding_window:
        window = (sliding_window - 1, sliding_window - 1)
    options = dict(window=window, softcap=softcap or 0.0, scale=scaling)
    cu_seq_lens_q, cu_seq_lens_k = kwargs.get("cu_seq_lens_q"), kwargs.get("cu_seq_lens_k")
    if attention_mask is None and cu_seq_lens_q is not None and cu_seq_lens_k is not None and batch == 1:
        # Packed sequences (padding-free training): one row of several sequences, with their offsets.
        out = _attention(q[0], k[0], v[0], causal=causal, cu_seqlens_q=cu_seq_lens_q, cu_seqlens_k=cu_seq_lens_k,
                         max_seqlen_q=kwargs.get("max_length_q"), max_seqlen_k=kwargs.get("max_length_k"),
                         **options).unsqueeze(0)
    elif attention_mask is None:
        out = _attention(q, k, v, causal=causal, **options)
    elif attention_mask.dim() == 2:
        keep_k = attention_mask[:, -seq_k:].bool()
        keep_q = keep_k[:, -seq_q:]
        q_rows, cu_q, idx_q, max_q = _unpad(q, keep_q)
        k_rows, cu_k, idx_k, max_k = _unpad(k, keep_k)
        v_rows = v.reshape(batch * seq_k, *v.shape[2:]).index_select(0, idx_k)
        rows = _attention(q_rows, k_rows, v_rows, causal=causal, cu_seqlens_q=cu_q, cu_seqlens_k=cu_k,
                          max_seqlen_q=max_q, max_seqlen_k=max_k, **options)
        # Padded query rows come back as zeros (what flash_attention_2 leaves there too).
        out = rows.new_zeros(batch * seq_q, *rows.shape[1:]).index_copy(0, idx_q, rows)
        out = out.view(batch, seq_q, *rows.shape[1:])
    else:
        # A full mask already holds the causal (and window) pattern the model wants.
        out = _attention(q, k, v, causal=False, mask=attention_mask, **options)
    return out, None


def register() -> None:
    """Adds "flashcl" to transformers' attention and attention-mask interfaces (idempotent)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, flash_attention_mask

    AttentionInterface.register(NAME, flashcl_attention)
    AttentionMaskInterface.register(NAME, flash_attention_mask)
    _answer_flash_loader()


def _answer_flash_loader() -> None:
    """transformers 5 takes every implementation whose name contains "flash" for a flash-attention
    kernel and, when a model is built, loads its functions through _lazy_imports (a flash-attn
    package or a Hub kernel; "flashcl" is neither, so model creation would fail). This wraps that
    loader to answer "flashcl" with flashcl.torch's functions, which have flash-attn 2's signatures."""
    try:
        from transformers import modeling_flash_attention_utils as fa_utils
    except ImportError:
        return
    loader = getattr(fa_utils, "_lazy_imports", None)
    if loader is None or getattr(loader, "_flashcl_wrapped", False):
        return
    from .torch import flash_attn_func, flash_attn_varlen_func

    def lazy_imports(implementation, *args, **kwargs):
        if implementation == NAME:
            return flash_attn_func, flash_attn_varlen_func, None, fa_utils._pad_input, fa_utils._unpad_input
        return loader(implementation, *args, **kwargs)

    lazy_imports._flashcl_wrapped = True
    fa_utils._lazy_imports = lazy_imports


register()
