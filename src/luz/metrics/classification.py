"""Classification accuracy metrics. State is accumulated on the metric's device, without syncs."""

from __future__ import annotations

from typing import Any

import torch

from luz.metrics.base import Metric


def _check_batch(metric: Metric, pred: Any, target: Any) -> None:
    if not isinstance(pred, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise TypeError(
            f"{type(metric).__name__} expects tensors, got pred={type(pred).__name__}, "
            f"target={type(target).__name__}."
        )
    if pred.shape[:1] != target.shape[:1]:
        raise ValueError(
            f"{type(metric).__name__}: pred shape {tuple(pred.shape)} and target shape "
            f"{tuple(target.shape)} have different batch sizes."
        )


class Accuracy(Metric):
    """Multiclass accuracy: share of samples whose arg-max over dim 1 equals the target.

    ``pred`` is ``(N, C, ...)`` scores; ``target`` is ``(N, ...)`` class indices. A ``(N, 1)``
    target is read as ``(N,)``; a one-hot or probability target shaped like ``pred`` is compared
    by its arg-max. Any other pair of shapes raises a ``ValueError`` showing both.

    Example:
        >>> import torch, luz
        >>> m = luz.metrics.Accuracy()
        >>> m.update(torch.tensor([[0.1, 0.9], [0.8, 0.2]]), torch.tensor([1, 1]))
        >>> m.compute()
        0.5
    """

    abbrev = "Acc"

    def __init__(self) -> None:
        self.correct = torch.zeros((), dtype=torch.int64)
        self.total = 0

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        _check_batch(self, pred, target)
        if target.shape == pred.shape and pred.ndim >= 2:
            target = target.argmax(dim=1)
        elif target.ndim == 2 and target.shape[1] == 1 and pred.ndim == 2:
            target = target.squeeze(1)
        if pred.ndim != target.ndim + 1 or pred.shape[2:] != target.shape[1:]:
            raise ValueError(
                f"Accuracy expects pred of shape (N, C, ...) and target of shape (N, ...); got "
                f"pred {tuple(pred.shape)} and target {tuple(target.shape)}."
            )
        self.correct += (pred.argmax(dim=1) == target).sum()
        self.total += target.numel()

    def compute(self) -> float:
        return self.correct.item() / self.total if self.total else float("nan")
