"""Train a tiny Hugging Face GPT-2 language model as it is, then let it continue sequences.

Shows a causal LM from ``transformers`` trained by luz unchanged: ``GPT2LMHeadModel`` built from
a small config (no download) is the module; the data is a plain list of dicts
(``input_ids``, ``attention_mask`` and ``labels``, the same ids: the model shifts them itself),
whose batches go whole to ``model(**batch)``; ``loss="output"`` trains on the model's own
next-token loss. AdamW with a linear warm-up stepped every batch
(``LRScheduler(..., call_on="on_train_batch_end")``). ``predict`` on sequences without labels
returns the logits, from which next-token accuracy is measured, and the trained model's own
``generate`` continues new prompts. Data: arithmetic
sequences modulo 32 (``7 10 13 16 ...``); the step (1 to 4) is known once two numbers are seen.

Needs the huggingface extra: pip install "pyluz[huggingface]".

Run:  python examples/hf_gpt2_lm.py            (about 30 s on 2 CPU cores)
      python examples/hf_gpt2_lm.py --quick    (a smoke run: 1 epoch on 128 sequences)
"""

from __future__ import annotations

import argparse

import torch
import transformers

import luz

VOCAB, LENGTH, STEPS = 32, 12, (1, 2, 3, 4)


def sequences(n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` arithmetic sequences of ``LENGTH`` numbers modulo ``VOCAB``, random start and step."""
    start = torch.randint(0, VOCAB, (n, 1), generator=generator)
    step = torch.tensor(STEPS)[torch.randint(0, len(STEPS), (n, 1), generator=generator)]
    return (start + step * torch.arange(LENGTH)) % VOCAB


def gpt2_config() -> transformers.GPT2Config:
    """Two layers of width 32, no dropout, no cache (training only needs the logits); 0 is a
    number here, so padding must come from the attention mask, not from the ids."""
    return transformers.GPT2Config(
        vocab_size=VOCAB,
        n_positions=LENGTH,
        n_embd=32,
        n_layer=2,
        n_head=4,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=None,
        eos_token_id=None,  # every number may follow: generation stops at max_new_tokens
        pad_token_id=0,
        use_cache=False,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="1 epoch on 128 sequences, for smoke tests")
    args = parser.parse_args()
    # The class name GPT2LMHeadModel maps to no loss type, so transformers would log that it
    # falls back to the causal-LM loss, which is the right one: keep its log to errors.
    transformers.logging.set_verbosity_error()
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)

    train_ids = sequences(128 if args.quick else 4000, generator)
    test_ids = sequences(256, generator)
    mask = torch.ones(LENGTH, dtype=torch.int64)  # no padding: every position is real
    train = [{"input_ids": ids, "attention_mask": mask, "labels": ids} for ids in train_ids]
    epochs = 1 if args.quick else args.epochs
    batch_size = 32
    warmup_steps = 2 * len(train) // batch_size // max(epochs, 1) + 1

    module = (
        luz.setup(transformers.GPT2LMHeadModel, loss="output", optimizer=torch.optim.AdamW)
        .set_hparams(config=gpt2_config())
        .set_opt_hparams(lr=3e-3, weight_decay=0.01)
    )
    warmup = luz.callbacks.LRScheduler(
        torch.optim.lr_scheduler.LambdaLR,
        lambda step: min(1.0, (step + 1) / warmup_steps),
        call_on="on_train_batch_end",  # one scheduler step per batch
    )
    fitted = module.fit(
        train, epochs=epochs, callbacks=[warmup], dataloader_options={"batch_size": batch_size}, verbose=False
    )
    losses = [f"{m['loss']:.3f}" for m in fitted.records["metrics"]["train"]]
    uniform = torch.log(torch.tensor(VOCAB)).item()
    print(f"Training loss per epoch: {' '.join(losses)} (uniform guessing: {uniform:.3f})")

    # predict: logits (N, LENGTH, VOCAB) for sequences without labels.
    logits = fitted.predict([{"input_ids": ids, "attention_mask": mask} for ids in test_ids])
    guesses = logits[:, 1:-1].argmax(dim=-1)  # from the second number on, the step is known
    accuracy = (guesses == test_ids[:, 2:]).float().mean().item()
    print(f"Next-number accuracy on 256 new sequences (from the third number on): {accuracy:.3f}")

    model = fitted.model.eval()
    for prompt in ([5, 8], [30, 31], [1, 3]):
        ids = torch.tensor([prompt])
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=6, do_sample=False)
        print(f"{' '.join(map(str, prompt))} -> {' '.join(map(str, out[0, len(prompt) :].tolist()))}")


if __name__ == "__main__":
    main()
