"""Built-in metrics. Pass instances to ``luz.setup(metrics=[...])``."""

from luz.metrics.base import LossAverage, Metric, MetricSet
from luz.metrics.classification import Accuracy

__all__ = ["Accuracy", "LossAverage", "Metric", "MetricSet"]
