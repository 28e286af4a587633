"""Built-in metrics. Pass instances to ``luz.setup(metrics=[...])``; see docs/metrics.md."""

from luz.metrics.auc import BinaryAUROC, MulticlassAUROC
from luz.metrics.base import LossAverage, Metric
from luz.metrics.classification import Accuracy, BinaryAccuracy, BinaryAccuracyWithLogits
from luz.metrics.regression import MAE, MSE, RMSE
from luz.metrics.set import MetricSet
from luz.metrics.torchmetrics_adapter import TorchMetric

__all__ = [
    "MAE",
    "MSE",
    "RMSE",
    "Accuracy",
    "BinaryAUROC",
    "BinaryAccuracy",
    "BinaryAccuracyWithLogits",
    "LossAverage",
    "Metric",
    "MetricSet",
    "MulticlassAUROC",
    "TorchMetric",
]
