"""Use a ``torchmetrics.Metric`` instance as a luz metric (torchmetrics stays optional)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from luz.metrics.base import Metric, MetricValue

if TYPE_CHECKING:
    from typing_extensions import Self


class TorchMetric(Metric):
    """Wraps a ``torchmetrics.Metric``: its own ``update``/``compute``; record name from its class.

    ``luz`` wraps torchmetrics instances passed in ``metrics=`` automatically. Tensor results
    become floats; a 1-d tensor becomes ``{"0": v0, "1": v1, ...}``.
    """

    def __init__(self, metric: Any) -> None:
        self.metric = metric

    @property
    def display_name(self) -> str:
        return type(self.metric).__name__

    def update(self, pred: Any, target: Any) -> None:
        self.metric.update(pred, target)

    def compute(self) -> MetricValue:
        return _to_python(self.metric.compute())

    def to(self, device: torch.device | str) -> Self:
        self.metric = self.metric.to(device)
        self.metric.reset()
        return self

    def __repr__(self) -> str:
        return f"TorchMetric({self.metric!r})"


def _to_python(value: Any) -> MetricValue:
    if isinstance(value, dict):
        out: dict[str, float] = {}
        for key, v in value.items():
            converted = _to_python(v)
            if isinstance(converted, dict):
                out.update({f"{key}_{k}": x for k, x in converted.items()})
            else:
                out[str(key)] = converted
        return out
    if isinstance(value, torch.Tensor):
        if value.numel() == 1:
            return float(value.item())
        return {str(i): float(v) for i, v in enumerate(value.flatten().tolist())}
    return float(value)
