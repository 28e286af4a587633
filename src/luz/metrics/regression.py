"""Regression metrics: sample-weighted means of absolute and squared errors.

Sums accumulate in float64 tensors on the metric's device (float32 on MPS, which has no
float64); counts are Python ints taken from shapes. ``update`` never reads values back.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch

from luz.metrics._shapes import accumulator_dtype, elementwise_pair, follow
from luz.metrics.base import Metric, refuse_arguments


class _ErrorSum(Metric):
    """Sum of a per-element error over all batches, divided by the number of elements."""

    dist_reduce: ClassVar[dict[str, str]] = {"total": "sum", "count": "sum"}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        why = "it averages over every element of pred and target, whatever their shape."
        refuse_arguments(type(self).__name__, args, kwargs, why)
        self.total = torch.zeros((), dtype=accumulator_dtype(torch.device("cpu")))
        self.count = 0

    def _error(self, diff: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        pred, target = elementwise_pair(type(self).__name__, pred, target)
        self.total = follow(self.total, pred)
        dtype = self.total.dtype
        # The subtraction runs in the accumulator's precision: no cancellation in float32.
        diff = pred.detach().to(dtype) - target.detach().to(dtype)
        self.total += self._error(diff).sum()
        self.count += diff.numel()

    def compute(self) -> float:
        return self.total.item() / self.count if self.count else float("nan")


class MAE(_ErrorSum):
    """Mean absolute error over all elements of all batches: ``sum(|pred - target|) / n``.

    Shapes must be equal, except that ``(N, 1)`` and ``(N,)`` are matched by reshaping
    ``target``; other mismatches raise a ``ValueError`` showing both shapes.

    Example:
        >>> import torch, luz
        >>> m = luz.metrics.MAE()
        >>> m.update(torch.tensor([1.0, 2.0]), torch.tensor([1.5, 1.0]))
        >>> m.compute()
        0.75
    """

    abbrev = "MAE"

    def _error(self, diff: torch.Tensor) -> torch.Tensor:
        return diff.abs()


class MSE(_ErrorSum):
    """Mean squared error over all elements of all batches: ``sum((pred - target)**2) / n``.

    Sample-weighted, so it differs from the ``loss`` record (an unweighted mean of batch losses)
    when the last batch is short. Shapes as in `MAE`.

    Example:
        >>> import torch, luz
        >>> m = luz.metrics.MSE()
        >>> m.update(torch.tensor([1.0, 2.0]), torch.tensor([1.5, 1.0]))
        >>> m.compute()
        0.625
    """

    abbrev = "MSE"

    def _error(self, diff: torch.Tensor) -> torch.Tensor:
        return diff.square()


class RMSE(MSE):
    """Root mean squared error: ``sqrt(MSE)`` over all elements of all batches. Shapes as in `MAE`.

    Example:
        >>> import torch, luz
        >>> m = luz.metrics.RMSE()
        >>> m.update(torch.tensor([0.0, 0.0]), torch.tensor([3.0, 4.0]))
        >>> round(m.compute(), 4)
        3.5355
    """

    abbrev = "RMSE"

    def compute(self) -> float:
        return math.sqrt(super().compute())
