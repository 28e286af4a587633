"""A small character-level transformer trained on Shakespeare's sonnets, saved and loaded back.

Shows text generation with luz: a ``Dataset`` of fixed-length character windows passed straight
to ``fit`` with ``dataloader_options``; a GPT-style causal transformer whose ``loss`` method
compares every position's next-character logits with the text shifted by one; gradient
clipping with ``GradientClip``; a callback that prints a sample of generated text at the end of
each epoch; and a ``luz.save`` / ``luz.load(path, module=...)`` round trip, checking that the
loaded model predicts exactly what the trained one does. Data: twenty of Shakespeare's sonnets
(1609, public domain) in examples/data/shakespeare_sonnets.txt.

Run:  python examples/char_transformer.py            (about 60 s on 2 CPU cores)
      python examples/char_transformer.py --quick    (a smoke run: 1 epoch of 4 batches)
      python examples/char_transformer.py --out-dir models   (where the model file goes;
                                                              default: a new temp dir)
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import Dataset

import luz

TEXT_FILE = Path(__file__).parent / "data" / "shakespeare_sonnets.txt"


def read_text(path: Path = TEXT_FILE) -> str:
    """The text without its ``#`` header lines."""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    return "".join(line for line in lines if not line.startswith("#")).strip() + "\n"


class Vocabulary:
    """Characters <-> integer ids, from the characters of a text."""

    def __init__(self, text: str) -> None:
        self.chars = sorted(set(text))
        self.index = {c: i for i, c in enumerate(self.chars)}

    def encode(self, text: str) -> torch.Tensor:
        return torch.tensor([self.index[c] for c in text], dtype=torch.int64)

    def decode(self, ids: torch.Tensor) -> str:
        return "".join(self.chars[i] for i in ids.tolist())

    def __len__(self) -> int:
        return len(self.chars)


class CharWindows(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Windows of ``block_size + 1`` characters every ``stride`` characters; item: (input, target),
    the target being the input shifted by one character."""

    def __init__(self, ids: torch.Tensor, block_size: int, stride: int = 8) -> None:
        self.ids = ids
        self.block_size = block_size
        self.starts = range(0, len(ids) - block_size - 1, stride)

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        window = self.ids[self.starts[i] : self.starts[i] + self.block_size + 1]
        return window[:-1], window[1:]


class CharTransformer(nn.Module):
    """Token and position embeddings, pre-norm transformer blocks with a causal mask, and a
    linear head giving next-character logits at every position."""

    def __init__(
        self, vocab_size: int, block_size: int = 64, d_model: int = 64, n_heads: int = 4, n_layers: int = 2
    ) -> None:
        super().__init__()
        self.block_size = block_size
        self.token = nn.Embedding(vocab_size, d_model)
        self.position = nn.Embedding(block_size, d_model)
        layer = nn.TransformerEncoderLayer(
            d_model, n_heads, dim_feedforward=4 * d_model, dropout=0.2, batch_first=True, norm_first=True
        )
        self.blocks = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        length = ids.shape[1]
        positions = torch.arange(length, device=ids.device)
        x = self.token(ids) + self.position(positions)
        mask = nn.Transformer.generate_square_subsequent_mask(length, device=ids.device)
        x = self.blocks(x, mask=mask, is_causal=True)
        return self.head(self.norm(x))

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of every position's prediction of the next character."""
        return F.cross_entropy(logits.flatten(0, 1), target.flatten())

    @torch.no_grad()
    def generate(self, ids: torch.Tensor, length: int, temperature: float = 0.8) -> torch.Tensor:
        """Extend the 1-D ``ids`` by ``length`` sampled characters (eval mode while sampling)."""
        was_training = self.training
        self.eval()
        for _ in range(length):
            logits = self(ids[-self.block_size :].unsqueeze(0))[0, -1] / temperature
            next_id = torch.multinomial(F.softmax(logits, dim=-1), 1)
            ids = torch.cat([ids, next_id])
        self.train(was_training)
        return ids


class PrintSample(luz.Callback):
    """Prints ``length`` characters generated after ``prompt`` at the end of each epoch."""

    def __init__(self, vocab: Vocabulary, prompt: str = "Shall I ", length: int = 120) -> None:
        self.vocab = vocab
        self.prompt = prompt
        self.length = length

    def on_epoch_end(self) -> None:
        ctx = self.context
        ids = self.vocab.encode(self.prompt).to(ctx.device)
        text = self.vocab.decode(ctx.model.generate(ids, self.length).cpu())  # type: ignore[operator]
        print(f"--- sample after epoch {ctx.epoch} ---\n{text}\n---", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--block-size", type=int, default=64)
    parser.add_argument("--out-dir", default=None, help="where to save the model (default: temp dir)")
    parser.add_argument("--quick", action="store_true", help="1 epoch of 4 batches, for smoke tests")
    args = parser.parse_args()
    torch.manual_seed(1)

    text = read_text()
    vocab = Vocabulary(text)
    ids = vocab.encode(text)
    split = int(0.9 * len(ids))
    train = CharWindows(ids[:split], args.block_size)
    valid = CharWindows(ids[split:], args.block_size, stride=args.block_size)
    if args.quick:
        train = torch.utils.data.Subset(train, range(128))  # type: ignore[assignment]
    print(f"{len(text)} characters, {len(vocab)} distinct; {len(train)} training windows")

    module = (
        luz.setup(CharTransformer, optimizer=torch.optim.AdamW)
        .set_hparams(vocab_size=len(vocab), block_size=args.block_size)
        .set_opt_hparams(lr=2e-3, weight_decay=0.01)
    )
    fitted = module.fit(
        train,  # a Dataset: luz builds the loaders from dataloader_options
        epochs=1 if args.quick else args.epochs,
        valid_data=valid,
        dataloader_options={"batch_size": 32},
        callbacks=[luz.callbacks.GradientClip(max_norm=1.0), PrintSample(vocab)],
        verbose=False,
    )
    print(fitted)
    last = fitted.records["metrics"]
    print(
        f"Final loss per character: train {last['train'][-1]['loss']:.4f}, "
        f"valid {last['valid'][-1]['loss']:.4f} (uniform guessing: {torch.log(torch.tensor(len(vocab))):.4f})"
    )

    # Save, load back with the class, and check the two models agree exactly.
    out_dir = Path(args.out_dir or tempfile.mkdtemp(prefix="luz-char-transformer-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "char_transformer.safetensors"
    luz.save(fitted, path)
    loaded = luz.load(path, module=CharTransformer)
    batch = torch.stack([valid[i][0] for i in range(min(4, len(valid)))])
    difference = (fitted.predict(batch) - loaded.predict(batch)).abs().max().item()
    status = "match" if difference == 0 else "DIFFER"
    print(f"Saved to {path}; luz.load() round trip: predictions {status} (max abs difference {difference})")
    if difference != 0:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
