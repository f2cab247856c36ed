"""Trains a tiny Llama-style model (built from a config: random weights, no downloads) for a few
AdamW steps with attn_implementation "flashcl", "eager" and "sdpa" on the same batch, and prints
each one's losses and tokens per second. Run from a venv with the package installed (or with
PYTHONPATH=build/python): python python/examples/train_tiny.py [--steps 10] [--seq 128].
"""

import argparse
import copy
import time

import torch
import transformers

import flashcl.transformers  # noqa: F401  (registers "flashcl")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10, help="AdamW steps (at least 2; the first is not timed)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=128)
    args = parser.parse_args()
    if args.steps < 2:
        parser.error("--steps: at least 2 (the first step compiles the kernels and is not timed)")

    config = transformers.LlamaConfig(vocab_size=512, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=args.seq)
    torch.manual_seed(0)
    base = transformers.AutoModelForCausalLM.from_config(copy.deepcopy(config), attn_implementation="eager")
    ids = torch.randint(0, config.vocab_size, (args.batch, args.seq))
    for implementation in ("flashcl", "eager", "sdpa"):
        model = transformers.AutoModelForCausalLM.from_config(copy.deepcopy(config),
                                                              attn_implementation=implementation)
        model.load_state_dict(base.state_dict())
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        losses = []
        for step in range(args.steps):
            if step == 1:  # the first step compiles flashcl's kernels (once per shape): not timed
                start = time.perf_counter()
            optimizer.zero_grad()
            loss = model(ids, labels=ids).loss
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        seconds = time.perf_counter() - start
        tokens = (args.steps - 1) * args.batch * args.seq
        print(f"{implementation:8s} loss {losses[0]:.4f} -> {losses[-1]:.4f}   {tokens / seconds:9.0f} tokens/s")


if __name__ == "__main__":
    main()
