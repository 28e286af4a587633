"""Accumulate gradients over several small batches (a virtual batch) with a custom ``step()``.

Shows how a module takes over the per-batch step: when it defines ``step()``, luz calls it for
every batch instead of its default step. Following luz's rules for custom steps, it checks
``ctx.training``, sets ``ctx.pred`` and ``ctx.loss[ctx.opt_name]`` (the loss and metric
callbacks read them), and fires the inner breakpoints it supports by hand. Training divides each
loss by ``k`` and steps the optimizer (then zeroes the gradients) every ``k``-th iteration only,
so batches of 8 train like batches of ``8 * k``. Prints the validation and test accuracy. Data:
scikit-learn's bundled 8x8 digits (no download).

Run:  python examples/virtual_batch_size.py            (about 10 s on 2 CPU cores)
      python examples/virtual_batch_size.py --quick    (a smoke run: 1 epoch)
"""

from __future__ import annotations

import argparse

import torch
from digits import load_data  # the data split of examples/digits.py
from torch import nn
from torch.nn import functional as F

import luz


class VirtualBatchNet(nn.Module):
    """A small CNN whose ``step`` accumulates gradients over ``virtual_batches`` batches."""

    ctx: luz.Context  # set by luz while it fits, evaluates or predicts

    def __init__(self, virtual_batches: int = 4) -> None:
        super().__init__()
        self.k = virtual_batches
        self.conv1 = nn.Conv2d(1, 16, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, kernel_size=3, padding=1)
        self.fc = nn.Linear(32 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc(torch.flatten(x, 1))

    def step(self) -> None:
        ctx = self.ctx
        ctx.pred = self(ctx.input)
        loss = F.cross_entropy(ctx.pred, ctx.target)
        ctx.loss[ctx.opt_name] = loss.detach()  # what the loss metric averages
        if not ctx.training:  # validation: forward and loss only (luz holds no_grad here)
            return
        # Scale so that k accumulated gradients average, like one batch k times larger.
        (loss / self.k).backward()
        last_batch = ctx.iter == len(ctx.data)  # type: ignore[arg-type]
        if ctx.iter % self.k == 0 or last_batch:
            ctx.call_callbacks("on_train_batch_before_step")  # e.g. for GradientClip
            ctx.opt.step()
            ctx.opt.zero_grad()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--virtual-batches", type=int, default=4, help="batches per optimizer step")
    parser.add_argument("--quick", action="store_true", help="one epoch, for smoke tests")
    args = parser.parse_args()
    torch.manual_seed(1)

    train, test = load_data()
    fitted = (
        # No loss: the custom step computes it. Metrics still work: they read ctx.pred.
        luz.setup(VirtualBatchNet, optimizer=torch.optim.Adam, metrics=[luz.metrics.Accuracy()])
        .set_hparams(virtual_batches=args.virtual_batches)
        .set_opt_hparams(lr=3e-3)
        .fit(
            train,
            epochs=1 if args.quick else args.epochs,
            valid_data=0.2,
            dataloader_options={"batch_size": args.batch_size},
            callbacks=[luz.callbacks.GradientClip(max_norm=5.0)],
            verbose=True,
        )
    )
    print(fitted)
    print(
        f"Batches of {args.batch_size}, one optimizer step every {args.virtual_batches} batches "
        f"(virtual batch size {args.batch_size * args.virtual_batches})"
    )
    valid_acc = fitted.records["metrics"]["valid"][-1]["acc"]
    print(f"Validation accuracy after the last epoch: {valid_acc:.4f}")
    test_acc = (fitted.predict(test[0]).argmax(dim=1) == test[1]).float().mean().item()
    print(f"Test accuracy: {test_acc:.4f}")


if __name__ == "__main__":
    main()
