"""A hand-written training loop that uses luz only for device placement and data loading.

Shows ``luz.Accelerator`` on its own, as in R luz's accelerator vignette: convert a plain
PyTorch loop by building the loader with ``luz.as_dataloader`` and passing the model, the
optimizer and the loader through ``Accelerator().prepare(...)``; the batches then arrive on the
chosen device (CUDA, MPS or CPU) and the rest of the loop is unchanged PyTorch. Prints the loss
per epoch and the test accuracy. Data: scikit-learn's bundled 8x8 digits (no download).

Run:  python examples/accelerator_loop.py            (about 5 s on 2 CPU cores)
      python examples/accelerator_loop.py --quick    (a smoke run: 1 epoch)
"""

from __future__ import annotations

import argparse

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn
from torch.nn import functional as F

import luz


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--cpu", action="store_true", help="use the CPU even if a GPU is available")
    parser.add_argument("--quick", action="store_true", help="one epoch, for smoke tests")
    args = parser.parse_args()
    torch.manual_seed(1)

    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32) / 16.0
    y = torch.tensor(digits.target, dtype=torch.int64)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)

    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    train_dl = luz.as_dataloader((x_train, y_train), batch_size=32, shuffle=True)
    test_dl = luz.as_dataloader((x_test, y_test), batch_size=128)

    # The only luz-specific line: move the model, and make the loaders yield batches on the device.
    accelerator = luz.Accelerator(cpu=args.cpu)
    model, opt, train_dl, test_dl = accelerator.prepare(model, opt, train_dl, test_dl)
    print(f"Training on {accelerator.device}")

    for epoch in range(1, (1 if args.quick else args.epochs) + 1):
        model.train()
        losses = []
        for xb, yb in train_dl:
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            opt.step()
            opt.zero_grad()
            losses.append(loss.detach())
        print(f"Epoch {epoch}: mean training loss {torch.stack(losses).mean().item():.4f}")

    model.eval()
    correct = 0
    with torch.no_grad():
        for xb, yb in test_dl:
            correct += (model(xb).argmax(dim=1) == yb).sum().item()
    print(f"Test accuracy: {correct / len(x_test):.4f}")


if __name__ == "__main__":
    main()
