"""Fine-tune a Hugging Face BERT-style classifier as it is: no wrapper, no loss of your own.

Shows a ``transformers`` model trained by luz unchanged: ``BertForSequenceClassification``
built from a tiny config (no download) is the module, ``set_hparams(config=...)`` builds it;
a ``datasets.Dataset`` in torch format gives dict batches (``input_ids``, ``attention_mask``,
``labels``) that go whole to ``model(**batch)``; ``loss="output"`` trains on the loss the model
computes from the labels, and ``Accuracy`` and ``predict`` see its logits. AdamW with a linear
warm-up stepped every batch (``LRScheduler(..., call_on="on_train_batch_end")``). Data: made-up
movie reviews from a word list, labelled by the sentiment word they hold, tokenized by a
whitespace tokenizer written here.

Needs the huggingface extra: pip install "pyluz[huggingface]".

Run:  python examples/hf_text_classifier.py            (about 20 s on 2 CPU cores)
      python examples/hf_text_classifier.py --quick    (a smoke run: 1 epoch on 128 reviews)
"""

from __future__ import annotations

import argparse
import random

import datasets
import torch
import transformers

import luz

FILLER = [
    *("the", "a", "this", "that", "movie", "film", "plot", "actors", "story", "was", "is"),
    *("really", "quite", "very", "and", "but", "it", "i", "found"),
]
POSITIVE = ["good", "great", "wonderful", "moving", "superb", "delightful"]
NEGATIVE = ["bad", "awful", "boring", "dull", "terrible", "clumsy"]
SPECIAL = ["[PAD]", "[CLS]", "[UNK]"]
LENGTH = 12


class WhitespaceTokenizer:
    """Words to ids: ``[CLS]`` first, padded with ``[PAD]`` to ``length`` (unknown words are
    ``[UNK]``), with the attention mask that marks the real tokens."""

    def __init__(self, words: list[str], length: int = LENGTH) -> None:
        self.vocab = {w: i for i, w in enumerate([*SPECIAL, *words])}
        self.length = length

    def __call__(self, texts: list[str]) -> dict[str, torch.Tensor]:
        rows = [[self.vocab["[CLS]"]] + [self.vocab.get(w, 2) for w in t.split()] for t in texts]
        rows = [row[: self.length] for row in rows]
        ids = torch.zeros(len(rows), self.length, dtype=torch.int64)  # [PAD] is 0
        mask = torch.zeros_like(ids)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row)
            mask[i, : len(row)] = 1
        return {"input_ids": ids, "attention_mask": mask}


def reviews(n: int, rng: random.Random) -> tuple[list[str], list[int]]:
    """``n`` reviews of 4 to 10 filler words around one sentiment word; label 1 if positive."""
    texts, labels = [], []
    for _ in range(n):
        label = rng.random() < 0.5
        words = rng.choices(FILLER, k=rng.randint(4, 10))
        words.insert(rng.randrange(len(words) + 1), rng.choice(POSITIVE if label else NEGATIVE))
        texts.append(" ".join(words))
        labels.append(int(label))
    return texts, labels


def as_dataset(tokenizer: WhitespaceTokenizer, texts: list[str], labels: list[int]) -> datasets.Dataset:
    """A ``datasets.Dataset`` of tokenized reviews in torch format: its items are dicts."""
    columns = {k: v.tolist() for k, v in tokenizer(texts).items()}
    return datasets.Dataset.from_dict({**columns, "labels": labels}).with_format("torch")


def bert_config(vocab_size: int) -> transformers.BertConfig:
    """A 2-layer BERT with hidden size 32: about 20k parameters."""
    return transformers.BertConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=LENGTH,
        num_labels=2,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--quick", action="store_true", help="1 epoch on 128 reviews, for smoke tests")
    args = parser.parse_args()
    torch.manual_seed(0)
    rng = random.Random(0)

    tokenizer = WhitespaceTokenizer(FILLER + POSITIVE + NEGATIVE)
    train = as_dataset(tokenizer, *reviews(128 if args.quick else 2000, rng))
    valid = as_dataset(tokenizer, *reviews(64 if args.quick else 400, rng))
    epochs = 1 if args.quick else args.epochs
    batch_size = 32
    warmup_steps = len(train) // batch_size  # one epoch of linear warm-up

    module = (
        luz.setup(
            transformers.BertForSequenceClassification,  # the model class, as it is
            loss="output",  # the loss the model computes from the batch's labels
            optimizer=torch.optim.AdamW,
            metrics=[luz.metrics.Accuracy()],  # on the output's logits
        )
        .set_hparams(config=bert_config(len(tokenizer.vocab)))
        .set_opt_hparams(lr=3e-3, weight_decay=0.01)
    )
    warmup = luz.callbacks.LRScheduler(
        torch.optim.lr_scheduler.LambdaLR,
        lambda step: min(1.0, (step + 1) / warmup_steps),
        call_on="on_train_batch_end",  # one scheduler step per batch
    )
    fitted = module.fit(
        train,
        epochs=epochs,
        valid_data=valid,
        callbacks=[warmup],
        dataloader_options={"batch_size": batch_size},
        verbose=False,
    )
    print(f"Trained {sum(p.numel() for p in fitted.model.parameters()):,} parameters in {epochs} epoch(s)")
    print(f"Validation accuracy after the last epoch: {fitted.records['metrics']['valid'][-1]['acc']:.3f}")

    new = ["i found this film really moving", "the plot was dull and the actors awful", "a superb story"]
    encoded = tokenizer(new)  # no labels: predict needs none
    logits = fitted.predict(datasets.Dataset.from_dict(encoded).with_format("torch"))
    for text, p in zip(new, logits.softmax(dim=1)[:, 1].tolist(), strict=True):
        print(f"P(positive) = {p:.2f}  {text!r}")


if __name__ == "__main__":
    main()
