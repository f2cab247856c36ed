"""flashcl as a Hugging Face attention implementation on the inputs a review found it mishandled,
each against attn_implementation="eager" in fp32 (or under the same autocast) on tiny models built
from configs (random weights, no downloads): sequences packed into one row with only restarting
position_ids (DataCollatorWithFlattening's default: tokens attended across the boundary), a static
cache (keys longer than the mask: a crash), BART's cross-attention with a padded encoder (the
decoder's queries were dropped by the encoder's mask), bf16 autocast (q and k fp32, v bf16: a
crash), DeepSeek-V3's MLA (V's head dim differs from Q's: a crash), a sliding window with a 4-D
mask (the window was applied twice), T5's position bias, which flashcl cannot add and now refuses
instead of ignoring, a decoder as long as its padded encoder (its rows were dropped by the
encoder's mask), an encoder's padded positions (zeros where eager computes them), and model classes
that refuse flash_attention_2 (they ran through flashcl with wrong scores, or crashed).
"""

import copy

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
import flashcl.transformers  # noqa: E402,F401  (registers "flashcl")

ATOL = 1e-4
SMALL = dict(vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
             max_position_embeddings=64)


def pair(cfg, model_class=transformers.AutoModelForCausalLM, ours="flashcl", base="eager"):
    torch.manual_seed(0)
    eager = model_class.from_config(copy.deepcopy(cfg), attn_implementation=base).eval()
    mine = model_class.from_config(copy.deepcopy(cfg), attn_implementation=ours).eval()
    mine.load_state_dict(eager.state_dict())
    return eager, mine


def ids_of(batch, seq, seed=1):
    return torch.randint(1, SMALL["vocab_size"], (batch, seq), generator=torch.Generator().manual_seed(seed))


def max_diff(a, b):
    return (a - b).abs().max().item()


@torch.no_grad()
def test_sequences_packed_by_position_ids():
    eager, ours = pair(transformers.LlamaConfig(num_key_value_heads=2, **SMALL))
    ids = ids_of(1, 16)
    pos = torch.cat([torch.arange(6), torch.arange(10)]).unsqueeze(0)
    separate = torch.cat([eager(ids[:, :6]).logits, eager(ids[:, 6:]).logits], dim=1)
    assert max_diff(ours(ids, position_ids=pos, use_cache=False).logits, separate) <= ATOL
    # the same rows as a batch of two with the offsets given (flattened, as transformers does)
    cu = torch.tensor([0, 8, 16], dtype=torch.int32)
    two = ids.view(2, 8)
    got = ours(two, position_ids=torch.arange(8).repeat(2, 1), cu_seq_lens_q=cu, cu_seq_lens_k=cu, max_length_q=8,
               max_length_k=8, use_cache=False).logits
    assert max_diff(got, eager(two).logits) <= ATOL


@torch.no_grad()
def test_generate_with_a_static_cache():
    eager, ours = pair(transformers.LlamaConfig(num_key_value_heads=2, **SMALL))
    ids, mask = ids_of(2, 10), torch.ones(2, 10, dtype=torch.long)
    mask[0, :3] = 0
    kw = dict(attention_mask=mask, max_new_tokens=5, do_sample=False, pad_token_id=0, cache_implementation="static")
    assert torch.equal(ours.generate(ids, **kw), eager.generate(ids, **kw))


@torch.no_grad()
@pytest.mark.parametrize("dec_len", [7, 12])  # 12: the encoder's length (its mask zeroed the decoder's rows)
def test_cross_attention_with_a_padded_encoder(dec_len):
    cfg = transformers.BartConfig(vocab_size=96, d_model=64, encoder_layers=1, decoder_layers=1,
                                  encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=64,
                                  decoder_ffn_dim=64, max_position_embeddings=64, dropout=0.0, attention_dropout=0.0)
    eager, ours = pair(cfg, transformers.AutoModelForSeq2SeqLM)
    ids, mask = ids_of(2, 12), torch.ones(2, 12, dtype=torch.long)
    mask[0, -4:] = 0
    dec = ids_of(2, dec_len, seed=2)
    kw = dict(input_ids=ids, attention_mask=mask, decoder_input_ids=dec)
    assert max_diff(ours(**kw).logits, eager(**kw).logits) <= ATOL
    gen = dict(attention_mask=mask, max_new_tokens=5, do_sample=False)
    assert torch.equal(ours.generate(ids, **gen), eager.generate(ids, **gen))


@torch.no_grad()
def test_bf16_autocast():
    eager, ours = pair(transformers.LlamaConfig(num_key_value_heads=2, **SMALL), base="sdpa")
    ids = ids_of(2, 12)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        a, b = eager(ids).logits, ours(ids).logits
    assert max_diff(a.float(), b.float()) <= 0.05  # bf16's rounding, as flash_attention_2 under autocast


@torch.no_grad()
def test_mla_value_head_dim():
    cfg = transformers.DeepseekV3Config(
        vocab_size=96, hidden_size=64, intermediate_size=128, moe_intermediate_size=32, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, q_lora_rank=None, kv_lora_rank=16, qk_rope_head_dim=8,
        qk_nope_head_dim=16, v_head_dim=8, n_routed_experts=4, num_experts_per_tok=2, n_group=1, topk_group=1,
        first_k_dense_replace=2, max_position_embeddings=64)
    eager, ours = pair(cfg)
    ids, mask = ids_of(2, 12), torch.ones(2, 12, dtype=torch.long)
    mask[0, :3] = 0
    keep = mask.bool()
    a, b = eager(ids, attention_mask=mask).logits, ours(ids, attention_mask=mask).logits
    assert max_diff(a[keep], b[keep]) <= ATOL


@torch.no_grad()
def test_sliding_window_with_a_4d_mask():
    eager, ours = pair(transformers.MistralConfig(num_key_value_heads=2, sliding_window=4, **SMALL), base="sdpa")
    ids = ids_of(1, 12)
    causal = torch.ones(12, 12, dtype=torch.bool).tril()[None, None]  # the mask the caller wants, window or not
    assert max_diff(ours(ids, attention_mask=causal).logits, eager(ids, attention_mask=causal).logits) <= ATOL


def test_position_bias_is_refused():
    cfg = transformers.T5Config(vocab_size=96, d_model=64, d_kv=16, d_ff=128, num_layers=1, num_decoder_layers=1,
                                num_heads=4, dropout_rate=0.0)
    # T5 declares no flash support, so "flashcl" is refused when the model is built ...
    with pytest.raises(ValueError, match="flashcl: T5ForConditionalGeneration does not support"):
        pair(cfg, transformers.AutoModelForSeq2SeqLM)
    # ... and the attention function refuses a position bias from any model that passes one
    q = torch.randn(1, 4, 8, 16)
    with pytest.raises(NotImplementedError, match="'position_bias' attention input is not supported"):
        flashcl.transformers.flashcl_attention(torch.nn.Module(), q, q, q, None, position_bias=torch.zeros(1, 4, 8, 8))


@torch.no_grad()
def test_encoder_padded_positions_match_eager():
    # non-causal calls keep every query: the padded positions' states are eager's too, not zeros
    cfg = transformers.BertConfig(vocab_size=96, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=128, max_position_embeddings=64, hidden_dropout_prob=0.0,
                                  attention_probs_dropout_prob=0.0)
    eager, ours = pair(cfg, transformers.AutoModel)
    ids, mask = ids_of(2, 12), torch.ones(2, 12, dtype=torch.long)
    mask[0, -4:] = 0
    a, b = eager(ids, attention_mask=mask), ours(ids, attention_mask=mask)
    assert max_diff(a.last_hidden_state, b.last_hidden_state) <= ATOL


@torch.no_grad()
def test_encoder_with_a_sliding_window_and_padding():
    # ModernBERT's local layers: the padded row's queries stay aligned with its keys (keeping every
    # query row shifted each real row's window: 1.7e-2 off)
    cfg = transformers.ModernBertConfig(vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=2, local_attention=4, global_attn_every_n_layers=2,
                                        max_position_embeddings=64, attention_dropout=0.0, mlp_dropout=0.0,
                                        embedding_dropout=0.0, pad_token_id=0)
    eager, ours = pair(cfg, transformers.AutoModel)
    ids, mask = ids_of(2, 16), torch.ones(2, 16, dtype=torch.long)
    mask[1, 10:], ids[1, 10:] = 0, 0
    a, b = eager(ids, attention_mask=mask), ours(ids, attention_mask=mask)
    keep = mask.bool()
    assert max_diff(a.last_hidden_state[keep], b.last_hidden_state[keep]) <= ATOL


class NoFlashLlama(transformers.LlamaForCausalLM):
    _supports_flash_attn = False  # as Gemma 3's multimodal model and DeepSeek-V3.2 declare


def test_models_without_flash_support_are_refused():
    cfg = transformers.LlamaConfig(num_key_value_heads=2, **SMALL)
    message = "flashcl: NoFlashLlama does not support flash-attention-style attention"
    with pytest.raises(ValueError, match=message):
        NoFlashLlama._from_config(copy.deepcopy(cfg), attn_implementation="flashcl")
    model = NoFlashLlama._from_config(copy.deepcopy(cfg), attn_implementation="eager")
    with pytest.raises(ValueError, match=message):
        model.set_attn_implementation("flashcl")
    # the models that support flash attention are unaffected
    transformers.LlamaForCausalLM._from_config(copy.deepcopy(cfg), attn_implementation="flashcl")


def test_any_model_when_asked(monkeypatch):
    # the flag also marks limits flashcl lacks (BLIP-2's Q-Former: fp32, 4-D masks): the caller may
    # let such a model through, and it matches eager
    monkeypatch.setenv("FLASHCL_HF_ANY_MODEL", "1")
    cfg = transformers.Blip2QFormerConfig(vocab_size=96, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                          intermediate_size=64, encoder_hidden_size=16, max_position_embeddings=64,
                                          hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    torch.manual_seed(0)
    eager = transformers.Blip2QFormerModel._from_config(copy.deepcopy(cfg), attn_implementation="eager").eval()
    ours = transformers.Blip2QFormerModel._from_config(copy.deepcopy(cfg), attn_implementation="flashcl").eval()
    ours.load_state_dict(eager.state_dict())
    embeds = torch.randn(2, 6, 32, generator=torch.Generator().manual_seed(3))
    images = torch.randn(2, 5, 16, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        a = eager(query_embeds=embeds, encoder_hidden_states=images).last_hidden_state
        b = ours(query_embeds=embeds, encoder_hidden_states=images).last_hidden_state
    assert max_diff(a, b) <= ATOL
