"""Regression on the diabetes data: learning-rate finder, one-cycle schedule, CSV/TensorBoard logs.

Shows a regression workflow: ``MAE``, ``MSE`` and ``RMSE`` metrics; ``luz.lr_finder`` to pick a
learning rate (its plot is saved); a fit whose ``OneCycleLR`` schedule is stepped after every
batch by ``LRScheduler(..., call_on="on_train_batch_end")``; the metrics logged to a CSV file by
``CSVLogger`` and to TensorBoard event files by ``TensorBoard``; and ``fitted.plot()`` (one panel
per metric) saved as a PNG. The target is standardised for training; test errors are reported
in the original units next to the error of always predicting the training mean. Data:
scikit-learn's bundled diabetes table (442 patients, 10 features; no download).

Run:  python examples/diabetes_regression.py                  (about 10 s on 2 CPU cores)
      python examples/diabetes_regression.py --quick          (a smoke run: 1 epoch)
      python examples/diabetes_regression.py --logdir logs    (where logs and plots go;
                                                               default: a new temp dir)
      tensorboard --logdir <logdir>/tensorboard               (to browse the logged metrics)
"""

from __future__ import annotations

import argparse
import importlib.util
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display needed

import matplotlib.pyplot as plt
import torch
from sklearn.datasets import load_diabetes
from sklearn.model_selection import train_test_split
from torch import nn

import luz

Split = tuple[torch.Tensor, torch.Tensor]


class DiabetesNet(nn.Module):
    """A small MLP predicting one number per patient."""

    def __init__(self, in_features: int = 10, hidden: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_features, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)


def load_data(seed: int = 0) -> tuple[Split, Split, Split, tuple[float, float]]:
    """Standardised features and target: train, validation and test splits (60/20/20), and the
    target's training mean and standard deviation."""
    data = load_diabetes()
    x = torch.tensor(data.data, dtype=torch.float32)
    y = torch.tensor(data.target, dtype=torch.float32)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=seed)
    x_train, x_valid, y_train, y_valid = train_test_split(x_train, y_train, test_size=0.25, random_state=seed)
    x_mean, x_std = x_train.mean(dim=0), x_train.std(dim=0)
    y_mean, y_std = y_train.mean().item(), y_train.std().item()

    def scale(x: torch.Tensor, y: torch.Tensor) -> Split:
        return (x - x_mean) / x_std, (y - y_mean) / y_std

    return scale(x_train, y_train), scale(x_valid, y_valid), scale(x_test, y_test), (y_mean, y_std)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--logdir", default=None, help="directory for logs and plots (default: temp dir)")
    parser.add_argument("--quick", action="store_true", help="one epoch, for smoke tests")
    args = parser.parse_args()
    torch.manual_seed(1)
    logdir = Path(args.logdir or tempfile.mkdtemp(prefix="luz-diabetes-"))
    logdir.mkdir(parents=True, exist_ok=True)
    epochs = 1 if args.quick else args.epochs

    train, valid, test, (y_mean, y_std) = load_data()
    module = luz.setup(
        DiabetesNet,
        loss=nn.MSELoss(),
        optimizer=torch.optim.AdamW,
        metrics=[luz.metrics.MAE(), luz.metrics.MSE(), luz.metrics.RMSE()],
    ).set_hparams(in_features=train[0].shape[1])
    options = {"batch_size": args.batch_size}

    # 1. Find a learning rate: train briefly while raising it, and look at the loss.
    finder = luz.lr_finder(
        module,
        train,
        steps=20 if args.quick else 100,
        start_lr=1e-4,
        end_lr=0.3,
        dataloader_options=options,
        verbose=False,
    )
    figure = finder.plot()
    figure.savefig(logdir / "lr_finder.png", dpi=80)
    plt.close(figure)
    max_lr = finder.suggest()
    print(f"lr_finder: steepest loss descent at lr={max_lr:.3g} (plot: {logdir / 'lr_finder.png'})")

    # 2. Fit with a one-cycle schedule peaking there, stepped after every batch.
    steps_per_epoch = len(train[0]) // args.batch_size  # training loaders drop the last partial batch
    callbacks: list[luz.Callback] = [
        luz.callbacks.LRScheduler(
            torch.optim.lr_scheduler.OneCycleLR,
            max_lr=max_lr,
            epochs=epochs,
            steps_per_epoch=steps_per_epoch,
            call_on="on_train_batch_end",
        ),
        luz.callbacks.CSVLogger(logdir / "metrics.csv"),
    ]
    if importlib.util.find_spec("tensorboard") is not None:
        callbacks.append(luz.callbacks.TensorBoard(logdir / "tensorboard"))
    else:
        print("tensorboard is not installed (pip install tensorboard): skipping TensorBoard logs")
    fitted = module.set_opt_hparams(lr=max_lr).fit(
        train,
        epochs=epochs,
        valid_data=valid,
        dataloader_options=options,
        callbacks=callbacks,
        verbose=False,
    )
    print(fitted)
    figure = fitted.plot()
    figure.savefig(logdir / "metrics.png", dpi=80)
    plt.close(figure)
    csv_rows = (logdir / "metrics.csv").read_text().count("\n") - 1
    print(f"Logs in {logdir}: metrics.csv ({csv_rows} rows), metrics.png, lr_finder.png, tensorboard/")

    # 3. Test errors, back in the target's units (a disease-progression score).
    metrics = fitted.evaluate(test, dataloader_options=options).records["metrics"]["valid"][-1]
    baseline_mae = (test[1] * y_std).abs().mean().item()  # always predicting the training mean
    print(
        f"Test MAE {metrics['mae'] * y_std:.1f}, RMSE {metrics['rmse'] * y_std:.1f} "
        f"(predicting the training mean: MAE {baseline_mae:.1f})"
    )
    predictions = fitted.predict(test[0]) * y_std + y_mean
    print(f"First 5 test predictions: {[round(p, 1) for p in predictions[:5].tolist()]}")
    print(f"First 5 test targets:     {[round(t, 1) for t in (test[1][:5] * y_std + y_mean).tolist()]}")


if __name__ == "__main__":
    main()
