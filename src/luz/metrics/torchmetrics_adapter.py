"""Use a ``torchmetrics.Metric`` instance as a luz metric.

torchmetrics stays optional: luz never imports it, it only recognises instances by their class
hierarchy (see ``luz.metrics.set.check_metric``) and calls their own methods.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from luz.metrics.base import Metric
from luz.records import MetricValue, to_metric_value

if TYPE_CHECKING:
    from typing_extensions import Self


class TorchMetric(Metric):
    """Wraps a ``torchmetrics.Metric`` so it runs with luz's per-phase lifecycle.

    luz wraps torchmetrics instances passed in ``metrics=`` automatically. Like every metric
    prototype, each phase of each epoch uses a deep copy, moved to ``ctx.device`` and reset, so
    state never leaks between epochs or phases, and the instance you passed is never updated.
    The display name is the wrapped class's name (``MulticlassF1Score``, or ``abbrev`` when set
    on the wrapper), the record name its lower case (``multiclassf1score``). ``compute`` results
    become floats: a one-element tensor gives a float, a larger tensor ``{"0": v0, "1": v1, ...}``
    (``"i_j"`` keys for 2-d), a dict ``{key: value}`` with its values converted the same way.
    Whether ``update`` syncs with the host is up to torchmetrics (its argument validation may;
    see ``validate_args``).

    Args:
        metric: a ``torchmetrics.Metric`` instance.

    Example:
        >>> import torch, luz
        >>> from torchmetrics.classification import MulticlassAccuracy
        >>> m = luz.metrics.TorchMetric(MulticlassAccuracy(num_classes=2, average="micro"))
        >>> m.record_name
        'multiclassaccuracy'
        >>> m.update(torch.tensor([[0.1, 0.9], [0.8, 0.2]]), torch.tensor([1, 1]))
        >>> m.compute()
        0.5
    """

    def __init__(self, metric: Any) -> None:
        for method in ("update", "compute", "reset", "to"):
            if not callable(getattr(metric, method, None)):
                raise TypeError(
                    f"TorchMetric expects a torchmetrics.Metric instance (with `{method}()`), "
                    f"got {type(metric).__name__}."
                )
        self.metric = metric
        self._switch = _SyncSwitch()
        self._synced: MetricValue | None = None

    @property
    def display_name(self) -> str:
        """``abbrev`` when set on the wrapper, else the wrapped class's name."""
        return self.abbrev or type(self.metric).__name__

    def update(self, pred: Any, target: Any) -> None:
        self._synced = None
        self.metric.update(pred, target)

    def sync(self) -> None:
        """Make the next ``compute`` gather the state of every rank with torchmetrics' own sync
        (its collectives run in that ``compute``, which luz calls on every rank)."""
        self._switch.on = True

    def compute(self) -> MetricValue:
        if self._synced is not None:
            return self._synced
        try:
            value = to_metric_value(self.metric.compute(), type(self.metric).__name__)
        finally:
            synced, self._switch.on = self._switch.on, False
        if synced:
            self._synced = value
        return value

    def to(self, device: torch.device | str) -> Self:
        """Move the wrapped metric to ``device`` and reset its state (a fresh phase).

        torchmetrics would otherwise sync at every ``compute`` whenever a process group
        exists, including the progress bar's, which runs on rank 0 only: here it syncs only
        after `sync`, and results are not cached across that switch.
        """
        self.metric = self.metric.to(device)
        self.metric.reset()
        self.metric.distributed_available_fn = self._switch
        self.metric.compute_with_cache = False
        self._synced = None
        return self

    def __repr__(self) -> str:
        return f"TorchMetric({self.metric!r})"


class _SyncSwitch:
    """torchmetrics' ``distributed_available_fn``: true only while luz asks for a sync."""

    def __init__(self) -> None:
        self.on = False

    def __call__(self) -> bool:
        return self.on and torch.distributed.is_available() and torch.distributed.is_initialized()
