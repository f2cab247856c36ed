"""flashcl as a Hugging Face attention implementation ("flashcl"), on tiny models built from
configs in code (random weights, no downloads): a Llama-style decoder with GQA, a Mistral-style
decoder with a sliding window shorter than the sequence, and a BERT encoder (is_causal False), each
against attn_implementation="eager" in fp32: outputs at every real token with and without padding
(left padding for the decoders, right for the encoder), greedy generate() with the KV cache,
switching an existing model with set_attn_implementation, and training: every parameter's gradient
(the decoders and the encoder) and 20 AdamW steps' losses (the decoders).
"""

import copy

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
import flashcl.transformers  # noqa: E402,F401  (registers "flashcl")

ATOL = 1e-4  # the bar: logits within 1e-4 of eager in fp32

SMALL = dict(vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
             max_position_embeddings=64)


def pair(cfg, model_class=transformers.AutoModelForCausalLM):
    """The same random model twice: eager and flashcl (each with its own copy of the config)."""
    torch.manual_seed(0)
    eager = model_class.from_config(copy.deepcopy(cfg), attn_implementation="eager").eval()
    ours = model_class.from_config(copy.deepcopy(cfg), attn_implementation="flashcl").eval()
    ours.load_state_dict(eager.state_dict())
    assert ours.config._attn_implementation == "flashcl"
    return eager, ours


def batch(seq=20, pad=5, left=True):
    ids = torch.randint(0, SMALL["vocab_size"], (2, seq), generator=torch.Generator().manual_seed(1))
    mask = torch.ones(2, seq, dtype=torch.long)
    if left:
        mask[0, :pad] = 0
    else:
        mask[0, seq - pad:] = 0
    return ids, mask


def compare(eager, ours, ids, mask, field="logits"):
    with torch.no_grad():
        a = getattr(eager(ids, attention_mask=mask), field)
        b = getattr(ours(ids, attention_mask=mask), field)
    keep = mask.bool()
    err = (a[keep] - b[keep]).abs().max().item()
    assert err <= ATOL, f"{field}: max difference {err:.3g} from eager"


def decoder_config(kind):
    if kind == "llama_gqa":
        return transformers.LlamaConfig(num_key_value_heads=2, **SMALL)
    return transformers.MistralConfig(num_key_value_heads=2, sliding_window=6, **SMALL)


def encoder_config():
    # (no dropout: flashcl's attention has none, and training must compare like with like)
    return transformers.BertConfig(vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                   num_attention_heads=4, max_position_embeddings=64, hidden_dropout_prob=0.0,
                                   attention_probs_dropout_prob=0.0)


def compare_gradients(eager, ours, tolerance=1e-5):
    for (name, a), b in zip(eager.named_parameters(), ours.parameters()):
        if a.grad is None and b.grad is None:
            continue  # (a parameter the loss does not reach, e.g. BERT's pooler)
        err = (a.grad - b.grad).abs().max().item()
        assert err <= tolerance, f"{name}: gradient differs from eager by {err:.3g}"


@pytest.mark.parametrize("kind", ["llama_gqa", "mistral_sliding_window"])
def test_decoder_logits(kind):
    eager, ours = pair(decoder_config(kind))
    ids, mask = batch()
    compare(eager, ours, ids, torch.ones_like(mask))  # no padding: plain causal calls
    compare(eager, ours, ids, mask)  # left padding: varlen calls


def test_generate_greedy_with_kv_cache():
    eager, ours = pair(transformers.LlamaConfig(num_key_value_heads=1, **SMALL))
    ids, mask = batch(seq=12, pad=4)
    kwargs = dict(attention_mask=mask, max_new_tokens=8, do_sample=False, pad_token_id=0)
    with torch.no_grad():
        assert torch.equal(eager.generate(ids, **kwargs), ours.generate(ids, **kwargs))


def test_encoder_right_padding():
    eager, ours = pair(encoder_config(), transformers.AutoModel)
    ids, mask = batch(left=False)
    compare(eager, ours, ids, mask, "last_hidden_state")


def test_encoder_gradients():
    # every parameter's gradient of a loss over the real tokens' hidden states, right-padded batch
    eager, ours = pair(encoder_config(), transformers.AutoModel)
    ids, mask = batch(left=False)
    weights = torch.randn(2, ids.shape[1], SMALL["hidden_size"], generator=torch.Generator().manual_seed(2))
    for model in (eager, ours):
        model.train()
        hidden = model(ids, attention_mask=mask).last_hidden_state
        ((hidden * weights * mask[..., None]).sum() / hidden[mask.bool()].numel()).backward()  # a mean, as a loss
    compare_gradients(eager, ours)


def test_set_attn_implementation():
    eager, _ = pair(transformers.LlamaConfig(num_key_value_heads=2, **SMALL))
    switched = copy.deepcopy(eager)
    switched.set_attn_implementation("flashcl")
    assert switched.config._attn_implementation == "flashcl"
    ids, mask = batch()
    compare(eager, switched, ids, mask)


@pytest.mark.parametrize("kind", ["llama_gqa", "mistral_sliding_window"])
def test_training_matches_eager(kind):
    # Gradients of every parameter after one step, then 20 AdamW steps (bars: 1e-3 on the losses),
    # on a left-padded batch whose labels skip every prediction made from a padded position.
    eager, ours = pair(decoder_config(kind))
    ids, mask = batch()
    seen = mask.clone()
    seen[:, 1:] *= mask[:, :-1]
    labels = ids.masked_fill(seen == 0, -100)
    losses = {}
    for name, model in (("eager", eager), ("flashcl", ours)):
        model.train()
        model(ids, attention_mask=mask, labels=labels).loss.backward()
    compare_gradients(eager, ours)
    for name, model in (("eager", eager), ("flashcl", ours)):
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        losses[name] = []
        for _ in range(20):
            optimizer.zero_grad()
            loss = model(ids, attention_mask=mask, labels=labels).loss
            loss.backward()
            optimizer.step()
            losses[name].append(loss.item())
    assert losses["eager"][-1] < losses["eager"][0] - 0.5  # it trains
    worst = max(abs(a - b) for a, b in zip(losses["eager"], losses["flashcl"]))
    assert worst <= 1e-3, f"losses differ from eager by {worst:.3g}"


def test_bad_sliding_window_is_named():
    """A model window below 1 was reported as the library's window_size.left of one less."""
    q = torch.randn(1, 2, 8, 16)
    module = torch.nn.Module()
    module.is_causal = True
    with pytest.raises(flashcl.Error, match="sliding_window: the model's window must be an integer >= 1, got -5"):
        flashcl.transformers.flashcl_attention(module, q, q, q, None, sliding_window=-5)


def test_padding_mask_of_another_shape_is_named():
    """A (B, Sk) padding mask of another batch or shorter than the queries failed in torch's reshape."""
    q = torch.randn(2, 2, 8, 16)
    module = torch.nn.Module()
    module.is_causal = True
    for mask in (torch.ones(1, 8, dtype=torch.bool), torch.ones(2, 5, dtype=torch.bool)):
        with pytest.raises(flashcl.Error, match="attention_mask: a \\(B, Sk\\) padding mask needs B = 2 rows"):
            flashcl.transformers.flashcl_attention(module, q, q, q, mask)
