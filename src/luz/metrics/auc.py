"""Approximate AUROC from confusion counts at fixed thresholds, as luz computes it (§6.5).

``update`` puts every prediction in its threshold bucket (``torch.bucketize``) and adds it to
an int64 histogram of positives and negatives per class: no per-threshold loop, no N×T
comparison matrix, no host sync. ``compute`` turns the histograms into true-positive and
true-negative counts per threshold and integrates the ROC curve.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

import numpy as np
import torch
from torch.nn import functional as F

from luz._validate import check_choice, check_count, check_flag, check_real, invalid
from luz.metrics._shapes import (
    check_tensors,
    elementwise_pair,
    follow,
    positive_labels,
    shape_error,
)
from luz.metrics.base import Metric
from luz.records import MetricValue

_EPS = torch.finfo(torch.float32).eps
_AVERAGES = ("micro", "macro", "weighted", "none")


def threshold_grid(
    num_thresholds: int | float, thresholds: Sequence[float] | torch.Tensor | None
) -> torch.Tensor:
    """luz's thresholds: the given ones sorted, or ``k / (num_thresholds - 2)`` for
    ``k = 2 … num_thresholds - 1``, plus ``-eps`` and ``1 + eps`` (float32 eps) at the ends.

    The default grid keeps luz's quirk: it starts at ``2 / (n - 2)``, reaches ``(n - 1) / (n - 2)``
    (above 1) and ends with ``1 + eps``, so it is not sorted; the metrics follow luz's order.
    ``num_thresholds`` may be any integral number (``1e5`` as in luz's tests, NumPy integers).
    """
    if thresholds is not None:
        inner = _check_thresholds(thresholds).flatten().sort().values
    else:
        # R luz's tests pass `num_thresholds = 1e5`, a double: integral floats are counts here.
        n = check_count(num_thresholds, "num_thresholds", minimum=2, integral_float=True)
        k = torch.arange(2, n, dtype=torch.float64)
        inner = k / (n - 2)
    ends = torch.tensor([0.0 - _EPS, 1.0 + _EPS], dtype=torch.float64)
    return torch.cat([ends[:1], inner, ends[1:]])


def _check_thresholds(thresholds: object) -> torch.Tensor:
    """``thresholds`` as a float64 tensor: a non-empty sequence or tensor of real numbers, none NaN."""
    expected = "a non-empty sequence (or tensor) of real numbers, e.g. [0.25, 0.5, 0.75]"
    hint = "Or leave it None and set `num_thresholds`."
    sequence = isinstance(thresholds, Sequence | torch.Tensor | np.ndarray)
    if not sequence or isinstance(thresholds, str | bytes | Mapping):
        raise invalid("thresholds", expected, thresholds, hint, error=TypeError)
    if isinstance(thresholds, Sequence):  # each a real number, checked here (names the index)
        for i, value in enumerate(thresholds):
            check_real(value, f"thresholds[{i}]", finite=False, hint=hint)
    try:
        grid = torch.as_tensor(thresholds, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):  # nested non-numbers in an array
        raise invalid("thresholds", expected, thresholds, hint, error=TypeError) from None
    # torch.equal is False when NaN is present; unlike `bool(t.isnan().any())` it is no
    # tensor-to-bool read (the metric tests count those).
    if grid.numel() == 0 or not torch.equal(grid, grid):
        raise invalid("thresholds", expected + " (none NaN)", thresholds, hint)
    return grid


class _AUROCBase(Metric):
    """Threshold grid and histogram state shared by the binary and multiclass AUROC."""

    abbrev = "AUC"
    dist_reduce: ClassVar[dict[str, str]] = {"hist": "sum"}

    def __init__(
        self,
        num_thresholds: int | float = 200,
        thresholds: Sequence[float] | torch.Tensor | None = None,
        from_logits: bool = False,
    ) -> None:
        self.thresholds = threshold_grid(num_thresholds, thresholds)
        # luz's grid is not sorted (1.005 comes before 1 + eps): bucket against a sorted copy,
        # then put the counts back in luz's order so the sums run over the same sequence.
        self.sorted_thresholds, self.order = self.thresholds.sort(stable=True)
        self.from_logits = check_flag(from_logits, "from_logits")
        # hist[0] counts negatives, hist[1] positives, per class and threshold bucket.
        self.hist: torch.Tensor | None = None

    @property
    def num_thresholds(self) -> int:
        """The number of thresholds, end points included."""
        return int(self.thresholds.numel())

    def _accumulate(self, pred: torch.Tensor, positive: torch.Tensor) -> None:
        """Add ``(M, C)`` predictions with their ``(M, C)`` boolean labels to the histograms."""
        classes, buckets = pred.shape[1], self.num_thresholds + 1
        if self.hist is None:
            self.hist = torch.zeros((2, classes, buckets), dtype=torch.int64, device=pred.device)
        self.sorted_thresholds = follow(self.sorted_thresholds, pred)
        self.hist = follow(self.hist, pred)
        # Compare in the predictions' precision (at least float32), so a threshold equal to a
        # prediction is not above it.
        work = torch.promote_types(pred.dtype, torch.float32)
        bucket = torch.bucketize(pred.detach().to(work).contiguous(), self.sorted_thresholds.to(work))
        column = torch.arange(classes, device=pred.device) * buckets
        index = positive.to(torch.int64) * (classes * buckets) + column + bucket
        flat = index.reshape(-1)
        self.hist.view(-1).scatter_add_(0, flat, torch.ones_like(flat))

    def _rates(self, hist: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per class and threshold: true-positive rate, true-negative rate; positives per class."""
        hist = hist.to("cpu", torch.float64)  # the one host sync
        neg, pos = hist[0], hist[1]
        # Bucket i holds the predictions above exactly i sorted thresholds.
        above = pos.flip(-1).cumsum(-1).flip(-1)[:, 1:]  # positives above sorted threshold k
        at_or_below = neg.cumsum(-1)[:, :-1]  # negatives at or below sorted threshold k
        order = self.order.cpu()
        true_pos, true_neg = torch.empty_like(above), torch.empty_like(at_or_below)
        true_pos[:, order], true_neg[:, order] = above, at_or_below  # back to luz's order
        n_pos, n_neg = pos.sum(-1, keepdim=True), neg.sum(-1, keepdim=True)
        return true_pos / n_pos, true_neg / n_neg, n_pos.squeeze(-1)


class BinaryAUROC(_AUROCBase):
    """Area under the ROC curve for binary problems, approximated at fixed thresholds.

    ``pred`` holds probabilities (or logits with ``from_logits=True``: a sigmoid is applied);
    ``target`` holds 0/1 labels as floats, integers or booleans (floats above 0.5 are positive).
    Both are flattened. Shapes must be equal, except that ``(N, 1)`` and ``(N,)`` are matched by
    reshaping ``target``; other mismatches raise a ``ValueError``. The area is luz's
    right-endpoint sum ``Σ_t TPR_t · (TNR_t − TNR_{t−1})``; it is exact when every prediction is
    a threshold.

    Args:
        num_thresholds: the grid size, an integer above 1 (``1e5`` is fine), end points
            included; ignored with ``thresholds``.
        thresholds: explicit thresholds (sorted for you; ``-eps`` and ``1 + eps`` are added).
        from_logits: apply a sigmoid to predictions first.

    Example:
        >>> import torch, luz
        >>> pred = torch.tensor([0.9, 0.8, 0.4, 0.5, 0.3, 0.2])
        >>> m = luz.metrics.BinaryAUROC(thresholds=pred.tolist())
        >>> m.update(pred, torch.tensor([1, 1, 1, 0, 0, 0]))
        >>> round(m.compute(), 4)
        0.8889
    """

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        pred, target = elementwise_pair(type(self).__name__, pred, target)
        if self.from_logits:
            pred = torch.sigmoid(pred)
        self._accumulate(pred.reshape(-1, 1), positive_labels(target).reshape(-1, 1))

    def compute(self) -> float:
        if self.hist is None:  # no update yet: nan, like every built-in metric
            return float("nan")
        tpr, tnr, _ = self._rates(self.hist)
        step = torch.diff(tnr, dim=-1, prepend=torch.zeros_like(tnr[:, :1]))
        return float((tpr * step).sum())

    def __repr__(self) -> str:
        return f"BinaryAUROC(num_thresholds={self.num_thresholds}, from_logits={self.from_logits})"


class MulticlassAUROC(_AUROCBase):
    """One-vs-rest AUROC for multiclass problems, approximated at fixed thresholds.

    ``pred`` is ``(N, C, ...)`` probabilities (or logits with ``from_logits=True``: a softmax
    over dim 1 is applied); ``target`` is ``(N, ...)`` class indices (0-based), or a one-hot
    tensor shaped like ``pred``. A ``(N, 1)`` target with ``(N, C)`` predictions is read as
    ``(N,)``; other mismatches raise a ``ValueError``. Each class's area is the trapezoid rule
    over luz's thresholds.

    Args:
        num_thresholds: the grid size, an integer above 1 (``1e5`` is fine), end points
            included; ignored with ``thresholds``.
        thresholds: explicit thresholds (sorted for you; ``-eps`` and ``1 + eps`` are added).
        from_logits: apply a softmax over the class dimension first.
        average: ``"micro"`` (all classes stacked into one binary problem), ``"macro"`` (mean
            over classes), ``"weighted"`` (weighted by each class's positives) or ``"none"``
            (a dict ``{"0": auc, "1": auc, ...}``, recorded as ``auc_0``, ``auc_1``, ...).

    Example:
        >>> import torch, luz
        >>> p = torch.tensor([0.9, 0.8, 0.4, 0.5, 0.3, 0.2])
        >>> pred = torch.stack([1 - p, p], dim=1)
        >>> m = luz.metrics.MulticlassAUROC(thresholds=pred.flatten().tolist(), average="none")
        >>> m.update(pred, torch.tensor([1, 1, 1, 0, 0, 0]))
        >>> {k: round(v, 4) for k, v in m.compute().items()}
        {'0': 0.8889, '1': 0.8889}
    """

    def __init__(
        self,
        num_thresholds: int | float = 200,
        thresholds: Sequence[float] | torch.Tensor | None = None,
        from_logits: bool = False,
        average: str = "micro",
    ) -> None:
        average = check_choice(average, "average", _AVERAGES)
        super().__init__(num_thresholds, thresholds, from_logits)
        self.average = average
        self.num_classes: int | None = None

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        name = type(self).__name__
        check_tensors(name, pred, target)
        if pred.ndim < 2:
            raise shape_error(name, pred, target, "pred of shape (N, C, ...) and target of shape (N, ...)")
        classes = pred.shape[1]
        if self.num_classes is not None and classes != self.num_classes:
            raise ValueError(f"{name} saw {self.num_classes} classes before, now pred {tuple(pred.shape)}.")
        self.num_classes = classes
        if self.from_logits:
            pred = torch.softmax(pred, dim=1)
        if target.shape == pred.shape:  # one-hot targets
            positive = positive_labels(target)
        else:
            if pred.ndim == 2 and target.shape == (pred.shape[0], 1):
                target = target.squeeze(1)
            if pred.shape[:1] + pred.shape[2:] != target.shape:
                raise shape_error(
                    name, pred, target, "pred of shape (N, C, ...) and target of shape (N, ...)"
                )
            # F.one_hot checks the ids on the CPU and with a device-side assert on CUDA: no sync.
            positive = F.one_hot(target.long(), classes).movedim(-1, 1).bool()
        pred, positive = pred.movedim(1, -1), positive.movedim(1, -1)
        width = 1 if self.average == "micro" else classes
        self._accumulate(pred.reshape(-1, width), positive.reshape(-1, width))

    def compute(self) -> MetricValue:
        if self.hist is None:  # no update yet: nan (the number of classes is not known either)
            return float("nan")
        tpr, tnr, n_pos = self._rates(self.hist)
        step = torch.diff(tnr, dim=-1, prepend=torch.zeros_like(tnr[:, :1]))
        after = torch.cat([step[:, 1:], torch.zeros_like(step[:, :1])], dim=-1)
        aucs = (tpr * (step + after) / 2).sum(-1)
        if self.average == "none":
            return {str(c): float(v) for c, v in enumerate(aucs.tolist())}
        if self.average == "weighted":
            return float((aucs * n_pos / n_pos.sum()).sum())
        return float(aucs.mean())  # micro has a single column

    def __repr__(self) -> str:
        return (
            f"MulticlassAUROC(num_thresholds={self.num_thresholds}, from_logits={self.from_logits}, "
            f"average={self.average!r})"
        )
