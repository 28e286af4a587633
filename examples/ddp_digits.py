"""Train the digits CNN with DistributedDataParallel: the same script on 1 or N processes.

Launch on 2 processes (CPU with Gloo here; one GPU per process with NCCL when CUDA is there):

    torchrun --nproc-per-node=2 examples/ddp_digits.py
    torchrun --nproc-per-node=2 examples/ddp_digits.py --quick    (a smoke run: 1 epoch)

or run it as a plain script (one process, no DDP):  python examples/ddp_digits.py

pyluz detects torchrun, joins the process group, wraps the model in DDP for training, gives each
process its share of the training data (a ``DistributedSampler``, reshuffled every epoch) and
of the validation/test batches, reduces the metrics across processes, and lets only rank 0
print and write files. Every rank ends with the same fitted model and the same records. The
batch size is per process: with ``--batch-size 32`` on 2 processes each optimizer step sees 64
images. See ``docs/distributed.md``.
"""

from __future__ import annotations

import argparse
import os
import tempfile

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
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32, help="per process")
    parser.add_argument("--quick", action="store_true", help="one epoch, for smoke tests")
    parser.add_argument("--state", default=os.path.join(tempfile.gettempdir(), "ddp_digits_state.pt"))
    args = parser.parse_args()
    torch.manual_seed(1)

    # Under torchrun this joins the process group (Gloo on CPU, NCCL on cuda:LOCAL_RANK);
    # as a plain script it is an ordinary single-device accelerator.
    acc = luz.Accelerator()
    if acc.is_main_process:
        print(f"{acc!r}: {acc.world_size} process(es) x batch {args.batch_size}")

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
        .fit(
            train,
            epochs=1 if args.quick else args.epochs,
            valid_data=0.2,  # the same split on every rank
            accelerator=acc,
            dataloader_options={"batch_size": args.batch_size},
            # Kill the job and rerun the same command: it continues after the last epoch.
            callbacks=[luz.callbacks.AutoResume(args.state)],
        )
    )

    # Every rank evaluates its share of the test batches; the metrics are reduced across ranks.
    evaluation = fitted.evaluate(test, accelerator=acc)
    # Every rank gets all predictions, in order.
    predicted = fitted.predict(test[0], accelerator=acc).argmax(dim=1)
    if acc.is_main_process:
        print(fitted)
        print(evaluation)
        accuracy = (predicted == test[1]).double().mean().item()
        print(f"Test accuracy: {accuracy:.4f}")


if __name__ == "__main__":
    main()
