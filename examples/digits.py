"""Classify handwritten digits with a small CNN: the pyluz get-started example.

Shows the whole pipeline on scikit-learn's bundled 8x8 digits (1,797 images, no download):
``setup`` with a loss, an optimizer and accuracy, ``set_hparams`` / ``set_opt_hparams``,
``fit`` with a held-out validation split and progress output, then ``evaluate`` and
``predict`` on a test split.

Run:  python examples/digits.py            (about 15 s on 2 CPU cores)
      python examples/digits.py --quick    (a smoke run: 1 epoch)
"""

from __future__ import annotations

import argparse

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn
from torch.nn import functional as F

import luz


class DigitsCNN(nn.Module):
    """Two conv layers, dropout and two linear layers (luz's MNIST CNN, sized for 8x8 images)."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3, padding=1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(64 * 4 * 4, 128)
        self.fc2 = nn.Linear(128, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = self.dropout1(torch.flatten(x, 1))
        x = self.dropout2(F.relu(self.fc1(x)))
        return self.fc2(x)


def load_data(seed: int = 0) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """Digits as (N, 1, 8, 8) float images scaled to [0, 1] and int64 labels: train and test."""
    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    labels = torch.tensor(digits.target, dtype=torch.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=0.2, random_state=seed, stratify=labels
    )
    return (x_train, y_train), (x_test, y_test)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--quick", action="store_true", help="one epoch, for smoke tests")
    args = parser.parse_args()
    torch.manual_seed(1)

    train, test = load_data()
    fitted = (
        luz.setup(
            DigitsCNN,
            loss=nn.CrossEntropyLoss(),
            optimizer=torch.optim.Adam,
            metrics=[luz.metrics.Accuracy()],
        )
        .set_hparams(num_classes=10)
        .set_opt_hparams(lr=3e-3)
        .fit(train, epochs=1 if args.quick else args.epochs, valid_data=0.2, verbose=True)
    )
    print(fitted)

    evaluation = fitted.evaluate(test)
    print(evaluation)
    predicted = fitted.predict(test[0]).argmax(dim=1)
    print(f"First 10 test predictions: {predicted[:10].tolist()}")
    print(f"First 10 test labels:      {test[1][:10].tolist()}")

    valid_acc = fitted.records["metrics"]["valid"][-1]["acc"]
    print(f"Validation accuracy after the last epoch: {valid_acc:.4f}")


if __name__ == "__main__":
    main()
