"""Accuracy metrics. Counts accumulate in int64 tensors on the metric's device, without syncs."""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from luz._validate import check_real
from luz.metrics._shapes import (
    check_tensors,
    elementwise_pair,
    follow,
    logit,
    positive_labels,
    shape_error,
)
from luz.metrics.base import Metric, refuse_arguments


class _Counts(Metric):
    """Shared state of the accuracy metrics: correct predictions (int64 tensor) and a count."""

    abbrev = "Acc"
    dist_reduce: ClassVar[dict[str, str]] = {"correct": "sum", "total": "sum"}

    def __init__(self) -> None:
        self.correct = torch.zeros((), dtype=torch.int64)
        self.total = 0  # a Python int: sample counts come from shapes, never from values

    def _add(self, hits: torch.Tensor) -> None:
        self.correct = follow(self.correct, hits)
        self.correct += hits.sum()
        self.total += hits.numel()

    def compute(self) -> float:
        return self.correct.item() / self.total if self.total else float("nan")


class Accuracy(_Counts):
    """Multiclass accuracy: the share of samples whose arg-max over dim 1 equals the target.

    ``pred`` is ``(N, C, ...)`` scores; ``target`` is ``(N, ...)`` class indices (0-based). Shapes:
    a ``(N, 1)`` target with ``(N, C)`` predictions is read as ``(N,)``; a one-hot or probability
    target shaped like ``pred`` is compared by its arg-max; any other pair raises a
    ``ValueError`` showing both shapes.

    Example:
        >>> import torch, luz
        >>> m = luz.metrics.Accuracy()
        >>> m.update(torch.tensor([[0.1, 0.9], [0.8, 0.2]]), torch.tensor([1, 1]))
        >>> m.compute()
        0.5
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        why = "the number of classes is read from pred's shape (N, C, ...)."
        refuse_arguments(type(self).__name__, args, kwargs, why)
        super().__init__()
        # The shapes (and device) last checked and how the target is read for them: the checks
        # run again only when they change (every batch but a short last one has the same).
        self._checked: tuple[Any, ...] = ()
        self._reading = _AS_IS

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        check_tensors(type(self).__name__, pred, target)
        seen = (pred.shape, target.shape, pred.device)
        if seen != self._checked:
            self._reading = self._read_target(pred, target)
            self.correct = follow(self.correct, pred)
            self._checked = seen
        if self._reading is _ARG_MAX:  # one-hot or probabilities
            target = target.argmax(dim=1)
        elif self._reading is _SQUEEZE:
            target = target.squeeze(1)
        hits = pred.argmax(dim=1) == target
        self.correct += hits.sum()
        self.total += hits.numel()

    def _read_target(self, pred: torch.Tensor, target: torch.Tensor) -> str:
        reading, shape = _AS_IS, tuple(target.shape)
        if pred.ndim >= 2 and target.shape == pred.shape:
            reading, shape = _ARG_MAX, pred.shape[:1] + pred.shape[2:]
        elif pred.ndim == 2 and target.shape == (pred.shape[0], 1):
            reading, shape = _SQUEEZE, tuple(target.shape[:1])
        if pred.ndim < 2 or tuple(pred.shape[:1] + pred.shape[2:]) != shape:
            expected = "pred of shape (N, C, ...) and target of shape (N, ...)"
            raise shape_error(type(self).__name__, pred, target, expected)
        return reading


_AS_IS, _ARG_MAX, _SQUEEZE = "as is", "arg-max", "squeeze"


class BinaryAccuracy(_Counts):
    """Binary accuracy: the share of samples where ``pred > threshold`` matches the 0/1 target.

    ``pred`` holds probabilities or raw scores; ``target`` holds 0/1 labels as floats, integers or
    booleans (numbers above 0.5 count as positive).
    Shapes must be equal, except that ``(N, 1)`` and ``(N,)`` are matched by reshaping
    ``target``; other mismatches raise a ``ValueError`` showing both shapes.

    Args:
        threshold: any finite real number, as in R's ``pred > threshold`` (0 suits raw scores).
            Python and NumPy numbers and 0-d tensors are accepted.

    Example:
        >>> import torch, luz
        >>> m = luz.metrics.BinaryAccuracy(threshold=0.5)
        >>> m.update(torch.tensor([0.2, 0.7, 0.9]), torch.tensor([0, 1, 0]))
        >>> round(m.compute(), 4)
        0.6667
    """

    def __init__(self, threshold: float = 0.5) -> None:
        super().__init__()
        self.threshold = check_real(threshold, "threshold")

    def _cut(self) -> float:
        return self.threshold

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        pred, target = elementwise_pair(type(self).__name__, pred, target)
        self._add((pred.detach() > self._cut()) == positive_labels(target))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(threshold={self.threshold})"


class BinaryAccuracyWithLogits(BinaryAccuracy):
    """Binary accuracy for logits: ``sigmoid(pred) > threshold`` compared with the 0/1 target.

    Computed as ``pred > log(threshold / (1 - threshold))``, which is the same test without the
    rounding of a saturated sigmoid. Targets and shapes as in `BinaryAccuracy`.

    Args:
        threshold: a probability in [0, 1], applied to ``sigmoid(pred)`` (0.5 means ``pred > 0``;
            0 counts every finite logit as positive, 1 none).

    Example:
        >>> import torch, luz
        >>> m = luz.metrics.BinaryAccuracyWithLogits()
        >>> m.update(torch.tensor([-2.0, 0.5, 3.0]), torch.tensor([0.0, 1.0, 0.0]))
        >>> round(m.compute(), 4)
        0.6667
    """

    def __init__(self, threshold: float = 0.5) -> None:
        super().__init__(check_real(threshold, "threshold", minimum=0.0, maximum=1.0))
        self._logit = logit(self.threshold)

    def _cut(self) -> float:
        return self._logit
