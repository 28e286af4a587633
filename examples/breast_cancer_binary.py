"""Binary classification of breast tumours from logits, with early stopping and the best model kept.

Shows a binary classifier that outputs logits: ``BCEWithLogitsLoss`` as the loss,
``BinaryAccuracyWithLogits`` and ``BinaryAUROC(from_logits=True)`` as metrics, and
``torch.sigmoid`` on the predictions to get probabilities. ``EarlyStopping`` ends training when
the validation loss stops improving and ``KeepBestModel`` restores the weights of the best
epoch. Features are standardised with statistics of the training split only. Prints the
stopping epoch and the test loss, accuracy and AUC. Data: scikit-learn's bundled Wisconsin
breast-cancer table (569 tumours, 30 features; no download).

Run:  python examples/breast_cancer_binary.py            (about 10 s on 2 CPU cores)
      python examples/breast_cancer_binary.py --quick    (a smoke run: 1 epoch)
"""

from __future__ import annotations

import argparse

import torch
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split
from torch import nn

import luz


class TumourNet(nn.Module):
    """A small MLP returning one logit per tumour (positive: benign, as in the data)."""

    def __init__(self, in_features: int, hidden: int = 32) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_features, hidden),
            nn.ReLU(),
            nn.Dropout(0.2),
            nn.Linear(hidden, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)


def load_data(seed: int = 0) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """Standardised features and float 0/1 labels: train and test (stratified 80/20)."""
    data = load_breast_cancer()
    x = torch.tensor(data.data, dtype=torch.float32)
    y = torch.tensor(data.target, dtype=torch.float32)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=seed, stratify=y)
    # Statistics from the training split only, so nothing leaks from the test set.
    mean, std = x_train.mean(dim=0), x_train.std(dim=0)
    return ((x_train - mean) / std, y_train), ((x_test - mean) / std, y_test)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=100, help="the maximum number of epochs")
    parser.add_argument("--patience", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="one epoch, for smoke tests")
    args = parser.parse_args()
    torch.manual_seed(1)

    train, test = load_data()
    fitted = (
        luz.setup(
            TumourNet,
            loss=nn.BCEWithLogitsLoss(),
            optimizer=torch.optim.Adam,
            metrics=[luz.metrics.BinaryAccuracyWithLogits(), luz.metrics.BinaryAUROC(from_logits=True)],
        )
        .set_hparams(in_features=train[0].shape[1])
        .set_opt_hparams(lr=1e-3)
        .fit(
            train,
            epochs=1 if args.quick else args.epochs,
            valid_data=0.2,
            callbacks=[
                luz.callbacks.EarlyStopping(monitor="valid_loss", patience=args.patience),
                luz.callbacks.KeepBestModel(monitor="valid_loss"),
            ],
            verbose=False,
        )
    )
    print(fitted)

    valid = fitted.records["metrics"]["valid"]
    best_epoch = min(range(len(valid)), key=lambda i: valid[i]["loss"]) + 1
    print(f"Epochs trained: {len(valid)}; kept the weights of epoch {best_epoch} (lowest validation loss)")

    evaluation = fitted.evaluate(test)
    print(evaluation)
    metrics = evaluation.records["metrics"]["valid"][-1]
    print(f"Test loss {metrics['loss']:.4f}, accuracy {metrics['acc']:.4f}, AUC {metrics['auc']:.4f}")

    probabilities = torch.sigmoid(fitted.predict(test[0]))
    print(f"First 5 test probabilities of 'benign': {[round(p, 3) for p in probabilities[:5].tolist()]}")
    print(f"First 5 test labels:                    {test[1][:5].int().tolist()}")


if __name__ == "__main__":
    main()
