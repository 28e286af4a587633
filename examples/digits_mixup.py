"""Train a digits classifier with mixup augmentation, and accuracy as a validation-only metric.

Shows the ``Mixup`` callback: each training batch is replaced by convex combinations of pairs of
images, and the target by a ``luz.MixupTarget`` (both labels and the mixing weights). With
``auto_loss=True`` the callback wraps the loss in ``luz.MixupLoss`` while training, which
computes per-sample losses against both labels (it switches the loss to ``reduction="none"``
itself) and mixes them with each sample's weight; validation uses the plain loss. Accuracy cannot
read a mixed target, so it is tracked on validation only with ``luz.MetricSet(valid=[...])``.
Prints the validation and test accuracy. Data: scikit-learn's bundled 8x8 digits (no download).

Run:  python examples/digits_mixup.py            (about 15 s on 2 CPU cores)
      python examples/digits_mixup.py --quick    (a smoke run: 1 epoch)
"""

from __future__ import annotations

import argparse

import torch
from digits import DigitsCNN, load_data  # the model and data split of examples/digits.py
from torch import nn

import luz


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--alpha", type=float, default=0.4, help="the Beta(alpha, alpha) parameter")
    parser.add_argument("--quick", action="store_true", help="one epoch, for smoke tests")
    args = parser.parse_args()
    torch.manual_seed(1)

    train, test = load_data()
    fitted = (
        luz.setup(
            DigitsCNN,
            # A reducing loss (unlike R luz's unreduced one): MixupLoss asks it for per-sample
            # losses while mixing, and validation needs the plain mean.
            loss=nn.CrossEntropyLoss(),
            optimizer=torch.optim.Adam,
            # Training batches carry a MixupTarget, which accuracy cannot read: validation only.
            metrics=luz.MetricSet(valid=[luz.metrics.Accuracy()]),
        )
        .set_opt_hparams(lr=3e-3)
        .fit(
            train,
            epochs=1 if args.quick else args.epochs,
            valid_data=0.2,
            callbacks=[luz.callbacks.Mixup(alpha=args.alpha, auto_loss=True)],
            verbose=True,
        )
    )
    print(fitted)

    valid_acc = fitted.records["metrics"]["valid"][-1]["acc"]
    print(f"Validation accuracy after the last epoch: {valid_acc:.4f}")
    test_acc = (fitted.predict(test[0]).argmax(dim=1) == test[1]).float().mean().item()
    print(f"Test accuracy: {test_acc:.4f}")


if __name__ == "__main__":
    main()
