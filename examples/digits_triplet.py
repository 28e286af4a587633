"""Learn an embedding of handwritten digits with a triplet loss: tuple input, empty target.

Shows data whose input is a tuple of three images (anchor, positive of the same digit, negative
of another digit) with an empty target, and a model with no ``forward``: luz then passes the
input through unchanged, so ``ctx.pred`` is the list of three image batches and the module's
``loss(pred, target)`` method embeds them and computes a triplet margin loss. A ``predict``
method makes ``fitted.predict(images)`` return embeddings. Prints the fraction of held-out
triplets ranked correctly (anchor closer to the positive than to the negative) before and after
training. Data: scikit-learn's bundled 8x8 digits (no download).

Run:  python examples/digits_triplet.py            (about 15 s on 2 CPU cores)
      python examples/digits_triplet.py --quick    (a smoke run: 1 epoch)
"""

from __future__ import annotations

import argparse

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn
from torch.nn import functional as F
from torch.utils.data import Dataset

import luz


class TripletDigits(Dataset[tuple[tuple[torch.Tensor, ...], torch.Tensor]]):
    """Item ``i``: ``((anchor, positive, negative), empty target)``, anchor = image ``i``.

    The positive and the negative are drawn at random on each access, so every epoch sees new
    triplets; pass a ``seed`` to draw them once, for a fixed test set.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, seed: int | None = None) -> None:
        self.images = images
        self.labels = labels
        self.by_class = [torch.nonzero(labels == c).flatten() for c in range(10)]
        self.fixed: list[tuple[int, int]] | None = None
        if seed is not None:
            generator = torch.Generator().manual_seed(seed)
            self.fixed = [self._draw(i, generator) for i in range(len(labels))]

    def _draw(self, i: int, generator: torch.Generator | None = None) -> tuple[int, int]:
        label = int(self.labels[i])
        same = self.by_class[label]
        positive = int(same[torch.randint(len(same), (1,), generator=generator)])
        offset = int(torch.randint(1, 10, (1,), generator=generator))  # any other class
        other = self.by_class[(label + offset) % 10]
        negative = int(other[torch.randint(len(other), (1,), generator=generator)])
        return positive, negative

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        positive, negative = self.fixed[i] if self.fixed is not None else self._draw(i)
        triplet = (self.images[i], self.images[positive], self.images[negative])
        return triplet, torch.empty(0)


class TripletNet(nn.Module):
    """An embedding network trained with a triplet margin loss. No ``forward``: the input (a
    list of three image batches) reaches ``loss`` unchanged."""

    def __init__(self, embedding_size: int = 16, margin: float = 1.0) -> None:
        super().__init__()
        self.margin = margin
        self.embed = nn.Sequential(
            nn.Conv2d(1, 32, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(64 * 2 * 2, embedding_size),
        )

    def loss(self, pred: list[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        anchor, positive, negative = (self.embed(x) for x in pred)
        return F.triplet_margin_loss(anchor, positive, negative, margin=self.margin)

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """What ``fitted.predict`` returns: the embedding of each image."""
        return self.embed(images)


def ranked_correctly(embeddings: torch.Tensor, triplets: TripletDigits) -> float:
    """The share of the dataset's triplets whose anchor is closer to the positive."""
    assert triplets.fixed is not None
    positive, negative = (torch.tensor(idx) for idx in zip(*triplets.fixed, strict=True))
    d_pos = (embeddings - embeddings[positive]).norm(dim=1)
    d_neg = (embeddings - embeddings[negative]).norm(dim=1)
    return (d_pos < d_neg).float().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--quick", action="store_true", help="one epoch, for smoke tests")
    args = parser.parse_args()
    torch.manual_seed(1)

    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    labels = torch.tensor(digits.target, dtype=torch.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=0.2, random_state=0, stratify=labels
    )
    test_triplets = TripletDigits(x_test, y_test, seed=0)

    module = luz.setup(TripletNet, optimizer=torch.optim.Adam).set_opt_hparams(lr=1e-3)
    untrained = ranked_correctly(TripletNet().predict(x_test).detach(), test_triplets)
    fitted = module.fit(
        TripletDigits(x_train, y_train),
        epochs=1 if args.quick else args.epochs,
        valid_data=test_triplets,
        verbose=True,
    )
    print(fitted)

    embeddings = fitted.predict(x_test)
    print(f"fitted.predict() returns embeddings of shape {tuple(embeddings.shape)}")
    trained = ranked_correctly(embeddings, test_triplets)
    print(f"Test triplets ranked correctly: {trained:.4f} (untrained network: {untrained:.4f})")


if __name__ == "__main__":
    main()
