"""The set of metrics a module tracks: checking what users pass and naming the records."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from luz.metrics.base import LossAverage, Metric
from luz.metrics.torchmetrics_adapter import TorchMetric

if TYPE_CHECKING:
    from luz.context import Context


def check_metric(metric: object, argument: str = "metrics") -> Metric:
    """Accept a luz metric or a torchmetrics metric instance; explain anything else."""
    if isinstance(metric, Metric):
        return metric
    if _is_torchmetrics(metric):
        return TorchMetric(metric)
    hint = ""
    if isinstance(metric, type):
        hint = f"; did you forget to instantiate it? Pass {metric.__name__}() instead of {metric.__name__}."
    raise TypeError(
        f"Expected an object with class luz.Metric (or a torchmetrics.Metric) in `{argument}`, "
        f"got {metric!r} ({type(metric).__name__}){hint or '.'}"
    )


def _is_torchmetrics(obj: object) -> bool:
    return any(
        cls.__module__.startswith("torchmetrics") and cls.__name__ == "Metric" for cls in type(obj).__mro__
    )


def _as_list(value: object, argument: str) -> list[Metric]:
    if value is None:
        return []
    # A string is iterable but is one (wrong) metric, not a list of characters.
    if isinstance(value, Metric | str) or not isinstance(value, Iterable) or _is_torchmetrics(value):
        value = [value]
    return [check_metric(m, argument) for m in value]


def _unique_names(metrics: Sequence[Metric]) -> list[str]:
    names: list[str] = []
    for metric in metrics:
        base = metric.record_name
        name, k = base, 2
        while name in names:
            name, k = f"{base}_{k}", k + 1
        names.append(name)
    return names


class MetricSet:
    """The metrics a module tracks in training and validation.

    ``train`` gets the loss average, ``metrics`` and ``train``; ``valid`` gets the loss average,
    ``metrics`` and ``valid``. The same record name twice becomes ``acc``, ``acc_2``, ...

    Args:
        metrics: metrics for both phases.
        train: metrics for the training phase only.
        valid: metrics for the validation phase only.

    Example:
        >>> import luz
        >>> ms = luz.MetricSet(metrics=[luz.metrics.Accuracy()])
        >>> ms.names("valid")
        ['loss', 'acc']
    """

    def __init__(self, metrics: object = None, train: object = None, valid: object = None) -> None:
        shared = _as_list(metrics, "metrics")
        self.train: list[Metric] = [LossAverage(), *shared, *_as_list(train, "train")]
        self.valid: list[Metric] = [LossAverage(), *shared, *_as_list(valid, "valid")]

    def prototypes(self, phase: str) -> list[Metric]:
        """The prototype metrics of ``"train"`` or ``"valid"``."""
        return self.train if phase == "train" else self.valid

    def names(self, phase: str) -> list[str]:
        """Record names for ``phase``, made unique with ``_2``, ``_3`` suffixes."""
        return _unique_names(self.prototypes(phase))

    def instantiate(self, phase: str, ctx: Context) -> list[Metric]:
        """Fresh copies of the phase's prototypes, on ``ctx.device``, bound to ``ctx``."""
        live = []
        for proto in self.prototypes(phase):
            metric = copy.deepcopy(proto).to(ctx.device)
            metric.ctx = ctx
            live.append(metric)
        return live

    def __repr__(self) -> str:
        return f"MetricSet(train={self.names('train')}, valid={self.names('valid')})"


def as_metric_set(value: object) -> MetricSet:
    """Turn ``None``, a metric, a list of metrics or a `MetricSet` into a `MetricSet`."""
    if isinstance(value, MetricSet):
        return value
    return MetricSet(metrics=value)
