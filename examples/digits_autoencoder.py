"""Compress handwritten digits with a convolutional autoencoder; ``predict`` returns the codes.

Shows a model whose training output (the reconstruction) differs from what ``predict`` should
return: the module defines a ``predict(x)`` method giving the encoding, so ``fitted.predict``
returns codes while ``fit`` and ``evaluate`` use ``forward`` (the reconstruction). The input is
also the target. Prints the test reconstruction MSE (against predicting the mean image) and the
accuracy of a 1-nearest-neighbour classifier on the 8-number codes. Data: scikit-learn's bundled
8x8 digits (no download).

Run:  python examples/digits_autoencoder.py            (about 20 s on 2 CPU cores)
      python examples/digits_autoencoder.py --quick    (a smoke run: 1 epoch)
"""

from __future__ import annotations

import argparse

import torch
from digits import load_data  # the data split of examples/digits.py
from sklearn.neighbors import KNeighborsClassifier
from torch import nn

import luz


class Autoencoder(nn.Module):
    """8x8 image -> ``code_size`` numbers -> 8x8 image."""

    def __init__(self, code_size: int = 8) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(1, 16, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 4x4
            nn.Conv2d(16, 32, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 2x2
            nn.Flatten(),
            nn.Linear(32 * 2 * 2, code_size),
        )
        self.decoder = nn.Sequential(
            nn.Linear(code_size, 32 * 2 * 2),
            nn.ReLU(),
            nn.Unflatten(1, (32, 2, 2)),
            nn.ConvTranspose2d(32, 16, kernel_size=2, stride=2),  # 4x4
            nn.ReLU(),
            nn.ConvTranspose2d(16, 1, kernel_size=2, stride=2),  # 8x8
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """What ``fitted.predict`` returns: the code, not the reconstruction."""
        return self.encoder(x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--code-size", type=int, default=8)
    parser.add_argument("--quick", action="store_true", help="one epoch, for smoke tests")
    args = parser.parse_args()
    torch.manual_seed(1)

    (x_train, y_train), (x_test, y_test) = load_data()
    fitted = (
        luz.setup(Autoencoder, loss=nn.MSELoss(), optimizer=torch.optim.Adam)
        .set_hparams(code_size=args.code_size)
        .set_opt_hparams(lr=3e-3)
        # The input is its own target.
        .fit((x_train, x_train), epochs=1 if args.quick else args.epochs, valid_data=0.2, verbose=True)
    )
    print(fitted)

    mse = fitted.evaluate((x_test, x_test)).records["metrics"]["valid"][-1]["loss"]
    baseline = torch.mean((x_test - x_train.mean(dim=0)) ** 2).item()
    print(f"Test reconstruction MSE: {mse:.4f} (predicting the mean image: {baseline:.4f})")

    codes_train, codes_test = fitted.predict(x_train), fitted.predict(x_test)
    print(f"fitted.predict() returns codes of shape {tuple(codes_test.shape)}")
    knn = KNeighborsClassifier(n_neighbors=1).fit(codes_train.numpy(), y_train.numpy())
    accuracy = knn.score(codes_test.numpy(), y_test.numpy())
    print(f"1-nearest-neighbour accuracy on the {args.code_size}-number codes: {accuracy:.4f}")


if __name__ == "__main__":
    main()
