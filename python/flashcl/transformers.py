"""flashcl as a Hugging Face attention implementation. Importing this module (or calling
``register()``) adds "flashcl" to transformers' ``AttentionInterface`` with ``flashcl_attention``
and to its ``AttentionMaskInterface`` with the mask form flash-attn uses (None, or the 2-D padding
mask), so ``from_config(cfg, attn_implementation="flashcl")`` and
``model.set_attn_implementation("flashcl")`` work. As "flash_attention_2" does: causal comes from
the module (or ``is_causal``), padding becomes a varlen call (the padded rows are dropped, no N×N
mask is built), sequences packed into one row (offsets given, or position ids that restart) become
a varlen call, a static cache's unused slots are cut, one-query steps keep every query, q/k/v are
cast to one dtype under autocast, a V head dim other than Q's (MLA) is padded and trimmed, sliding
windows and softcaps come from the layer's kwargs, and GQA's K/V are used without being repeated.
Unlike flash_attention_2 and as eager and sdpa, non-causal calls without a sliding window
(encoders, cross-attention) keep every query row (flash_attention_2 zeroes those the keys' padding
mask covers). fp32 works too (on PoCL's CPU device as well as on GPUs). Inputs that would change the
scores in ways flashcl lacks (attention sinks, T5's position bias) raise instead of being ignored,
and model classes that refuse "flash_attention_2" (``_supports_flash_attn = False``) refuse
"flashcl" as well. transformers routes every implementation named "flash..." through its
flash-attention code, so models that special-case that name (GPT-Neo, Bark; GPT-OSS, which it
sends to a Hub kernel) do not run through flashcl.
"""

import numbers
import os
import warnings
from typing import Optional, Tuple

import torch
from torch import Tensor
from transformers.modeling_flash_attention_utils import prepare_fa_kwargs_from_position_ids

from . import functional as _functional
from ._flashcl import Status
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


_UNSUPPORTED_INPUTS = ("s_aux", "sinks", "position_bias")  # inputs that change the scores, which flashcl lacks
_warned_attentions = False


def _packed_offsets(position_ids: Optional[Tensor], batch: int, seq: int) -> Optional[Tensor]:
    """The sequences' offsets when one row packs several (padding-free training without offsets:
    DataCollatorWithFlattening's default), found as transformers finds them (the position ids
    restart at their minimum where a sequence starts); None otherwise."""
    if position_ids is None or batch != 1 or seq == 1 or position_ids.shape[-1] != seq:
        return None
    pos = position_ids.reshape(-1)
    if bool((pos - (torch.arange(seq, device=pos.device) + pos.min())).abs().sum() == 0):
        return None  # one sequence
    (offsets, _), _ = prepare_fa_kwargs_from_position_ids(pos)
    return offsets


def _common_dtype(module: torch.nn.Module, q: Tensor, k: Tensor, v: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """q, k, v in one dtype, as flash_attention_2 casts them: under autocast an fp32 q (rotary
    embeddings make q and k fp32 while v stays bf16) goes to autocast's dtype; other mixes go to the
    module's weights' dtype. fp32 models stay fp32 (flashcl runs fp32)."""
    target = None
    device = q.device.type
    if q.dtype == torch.float32 and torch.is_autocast_enabled(device):
        target = torch.get_autocast_dtype(device)
    elif not (q.dtype == k.dtype == v.dtype):
        target = next((m.weight.dtype for m in module.modules() if isinstance(m, torch.nn.Linear)), q.dtype)
    return (q, k, v) if target is None else (q.to(target), k.to(target), v.to(target))


def flashcl_attention(module: torch.nn.Module, query: Tensor, key: Tensor, value: Tensor,
                      attention_mask: Optional[Tensor], dropout: float = 0.0, scaling: Optional[float] = None,
                      sliding_window: Optional[int] = None, softcap: Optional[float] = None,
                      is_causal: Optional[bool] = None, **kwargs) -> Tuple[Tensor, None]:
    """transformers' attention-function signature: query (B, H, Sq, d), key and value (B, H_kv, Sk,
    d); returns ((B, Sq, H, d_v), None). ``attention_mask`` is None, a (B, Sk) padding mask (True
    keeps a token; the queries are the last Sq positions) or a 4-D boolean/additive mask. Packed
    sequences come as ``cu_seq_lens_q``/``cu_seq_lens_k`` or as ``position_ids`` that restart."""
    global _warned_attentions
    if dropout:
        raise NotImplementedError(f"flashcl: attention dropout ({dropout}) is not supported; set the model's "
                                  "attention_dropout to 0")
    for name in _UNSUPPORTED_INPUTS:
        if kwargs.get(name) is not None:
            raise NotImplementedError(f"flashcl: the model's '{name}' attention input is not supported (it would "
                                      "be ignored); use attn_implementation='eager' or 'sdpa' for this model")
    if kwargs.get("output_attentions") and not _warned_attentions:
        _warned_attentions = True
        warnings.warn("flashcl: output_attentions=True returns no attention weights (as flash_attention_2)",
                      stacklevel=2)
    q, k, v = _common_dtype(module, *(t.transpose(1, 2) for t in (query, key, value)))  # (B, S, H, d)
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    batch, seq_q, seq_k = q.shape[0], q.shape[1], k.shape[1]
    d_qk, d_v = q.shape[-1], v.shape[-1]
    if d_v != d_qk:  # MLA (DeepSeek): one head dim for the call, the scale Q K^T's, O trimmed to V's
        d = max(d_qk, d_v)
        q, k, v = (torch.nn.functional.pad(t, (0, d - t.shape[-1])) for t in (q, k, v))
        scaling = scaling if scaling is not None else d_qk ** -0.5
    # The window the eager mask builds: a query sees itself and sliding_window − 1 keys before it.
    window = (-1, -1)
    if sliding_window is not None and (isinstance(sliding_window, bool) or not isinstance(sliding_window, numbers.Integral)
                                       or sliding_window < 1):
        _functional._fail(Status.InvalidArgument,
                          f"sliding_window: the model's window must be an integer >= 1, got {sliding_window!r}")
    if sliding_window is not None and seq_k > sliding_window:
        window = (sliding_window - 1, sliding_window - 1)
    options = dict(window=window, softcap=softcap or 0.0, scale=scaling)
    cu_q, cu_k = kwargs.get("cu_seq_lens_q"), kwargs.get("cu_seq_lens_k")
    max_q, max_k = kwargs.get("max_length_q"), kwargs.get("max_length_k")
    if attention_mask is None and (cu_q is None or cu_k is None):
        cu_q = cu_k = _packed_offsets(kwargs.get("position_ids"), batch, seq_q if seq_q == seq_k else 1)
        max_q = max_k = None
    if attention_mask is None and cu_q is not None and cu_k is not None:
        # Packed sequences (padding-free training): the rows of every batch entry, with their offsets.
        out = _attention(q.reshape(-1, *q.shape[2:]), k.reshape(-1, *k.shape[2:]), v.reshape(-1, *v.shape[2:]),
                         causal=causal, cu_seqlens_q=cu_q, cu_seqlens_k=cu_k, max_seqlen_q=max_q, max_seqlen_k=max_k,
                         **options).view(batch, seq_q, *q.shape[2:])
    elif attention_mask is None:
        out = _attention(q, k, v, causal=causal, **options)
    elif attention_mask.dim() == 2:
        if attention_mask.shape[0] != batch or attention_mask.shape[1] < min(seq_q, seq_k):
            _functional._fail(Status.InvalidArgument,
                              f"attention_mask: a (B, Sk) padding mask needs B = {batch} rows and at least "
                              f"{min(seq_q, seq_k)} positions, got shape {tuple(attention_mask.shape)}")
        if seq_k > attention_mask.shape[1]:  # a static cache: keys past the mask's length are unused slots
            k, v, seq_k = k[:, :attention_mask.shape[1]], v[:, :attention_mask.shape[1]], attention_mask.shape[1]
        keep_k = attention_mask[:, -seq_k:].bool()
        # Causal: the queries are the last Sq tokens of the keys' sequences, so the keys' padding is
        # theirs too (padded query rows come back as zeros, as flash_attention_2 leaves them), except
        # one query a row (a decode step: always kept, as flash_attention_2 does). Non-causal: every
        # query is kept, as eager and sdpa compute every row: in cross-attention the mask is the
        # encoder's and says nothing about the decoder's queries, also when both have one length
        # (flash_attention_2 drops them there: a decoder padded to the encoder's length got zeros);
        # but not under a sliding window (ModernBERT's local layers), which the varlen call aligns by
        # each sequence's query and key counts: kept query rows would shift every real row's window.
        if seq_q == 1 or (not causal and window == (-1, -1)):
            keep_q = torch.ones(batch, seq_q, dtype=torch.bool, device=q.device)
        else:
            keep_q = keep_k[:, -seq_q:]
        q_rows, cu_q, idx_q, max_q = _unpad(q, keep_q)
        k_rows, cu_k, idx_k, max_k = _unpad(k, keep_k)
        v_rows = v.reshape(batch * seq_k, *v.shape[2:]).index_select(0, idx_k)
        rows = _attention(q_rows, k_rows, v_rows, causal=causal, cu_seqlens_q=cu_q, cu_seqlens_k=cu_k,
                          max_seqlen_q=max_q, max_seqlen_k=max_k, **options)
        out = rows.new_zeros(batch * seq_q, *rows.shape[1:]).index_copy(0, idx_q, rows)
        out = out.view(batch, seq_q, *rows.shape[1:])
    else:
        # A full mask already holds the causal and window pattern the model wants (as sdpa takes it).
        options["window"] = (-1, -1)
        out = _attention(q, k, v, causal=False, mask=attention_mask, **options)
    return (out[..., :d_v] if out.shape[-1] != d_v else out), None


def register() -> None:
    """Adds "flashcl" to transformers' attention and attention-mask interfaces (idempotent)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, flash_attention_mask

    AttentionInterface.register(NAME, flashcl_attention)
    AttentionMaskInterface.register(NAME, flash_attention_mask)
    _answer_flash_loader()
    _refuse_models_without_flash_support()


def _refuse_models_without_flash_support() -> None:
    """transformers refuses "flash_attention_2" for a model class that sets _supports_flash_attn =
    False (its masks or inputs go beyond what flash-attention's mask form carries: Gemma 3's
    bidirectional image tokens, DeepSeek-V3.2's sparse key indices), but checks that only for names
    of the form flash_attention_N. "flashcl" takes the same mask form, so it is refused for the same
    models, with the same kind of error (ValueError, at from_config/from_pretrained or
    set_attn_implementation); before, such a model ran with wrong scores or crashed in its forward.
    The flag also marks limits of flash-attn that flashcl lacks (fp32, 4-D masks: BLIP-2's Q-Former
    ran right before), so FLASHCL_HF_ANY_MODEL=1, read when a model is built, lets any model through."""
    from transformers import PreTrainedModel

    choose = PreTrainedModel.get_correct_attn_implementation
    if getattr(choose, "_flashcl_wrapped", False):
        return

    def get_correct_attn_implementation(self, requested_attention, *args, **kwargs):
        if (requested_attention == NAME and not (self._supports_flash_attn
                                                 or getattr(self, "_supports_flash_attn_2", False))
                and os.environ.get("FLASHCL_HF_ANY_MODEL") != "1"):
            raise ValueError(f"flashcl: {type(self).__name__} does not support flash-attention-style attention "
                             "(transformers marks it _supports_flash_attn = False: its masks or attention inputs "
                             "may go beyond flash_attention_2's); use attn_implementation='sdpa' or 'eager', or "
                             "set FLASHCL_HF_ANY_MODEL=1 to run it through flashcl anyway (where the flag marks only "
                             "limits flashcl lacks, e.g. fp32 or 4-D masks in BLIP-2's Q-Former)")
        return choose(self, requested_attention, *args, **kwargs)

    get_correct_attn_implementation._flashcl_wrapped = True
    PreTrainedModel.get_correct_attn_implementation = get_correct_attn_implementation


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
