"""pyluz: a high-level training loop for PyTorch (a Python port of R's luz).

Example:
    >>> import torch, luz
    >>> from torch import nn
    >>> x, y = torch.randn(64, 3), torch.randn(64, 1)
    >>> fitted = (
    ...     luz.setup(nn.Linear, loss=nn.MSELoss(), optimizer=torch.optim.SGD)
    ...     .set_hparams(in_features=3, out_features=1)
    ...     .set_opt_hparams(lr=0.1)
    ...     .fit((x, y), epochs=2, verbose=False)
    ... )
"""

from __future__ import annotations

from typing import Any

from luz import callbacks, metrics, serialization
from luz.accelerator import Accelerator
from luz.callbacks.base import Callback, callback
from luz.callbacks.mixup import MixupLoss, MixupTarget, mixup
from luz.context import Context
from luz.data import as_dataloader
from luz.errors import CallbackError, MetricError
from luz.events import BREAKPOINTS, SkipEpoch, StopTraining
from luz.fitted import Evaluation, Fitted
from luz.lr_finder import LRFinderResult, lr_finder
from luz.metrics.base import Metric, MetricSet
from luz.module import LuzModule, setup
from luz.serialization import load, load_checkpoint, load_model_weights, save, save_model_weights

__version__ = "0.1.0"


def set_hparams(module: LuzModule, **hparams: Any) -> LuzModule:
    """Functional form of `LuzModule.set_hparams`."""
    return module.set_hparams(**hparams)


def set_opt_hparams(module: LuzModule, **opt_hparams: Any) -> LuzModule:
    """Functional form of `LuzModule.set_opt_hparams`."""
    return module.set_opt_hparams(**opt_hparams)


def fit(module: LuzModule, data: Any, **kwargs: Any) -> Fitted:
    """Functional form of `LuzModule.fit`."""
    return module.fit(data, **kwargs)


def predict(fitted: Fitted, newdata: Any, **kwargs: Any) -> Any:
    """Functional form of `Fitted.predict`."""
    return fitted.predict(newdata, **kwargs)


def evaluate(fitted: Fitted, data: Any, **kwargs: Any) -> Evaluation:
    """Functional form of `Fitted.evaluate`."""
    return fitted.evaluate(data, **kwargs)


def get_metrics(obj: Fitted | Evaluation | Context) -> Any:
    """The metrics DataFrame of a fitted object, an evaluation or a context."""
    if isinstance(obj, Context):
        return obj.get_metrics_df()
    if isinstance(obj, Fitted | Evaluation):
        return obj.get_metrics()
    raise TypeError(f"get_metrics() takes a Fitted, an Evaluation or a Context, got {type(obj).__name__}.")


__all__ = [
    "BREAKPOINTS",
    "Accelerator",
    "Callback",
    "CallbackError",
    "Context",
    "Evaluation",
    "Fitted",
    "LRFinderResult",
    "LuzModule",
    "Metric",
    "MetricError",
    "MetricSet",
    "MixupLoss",
    "MixupTarget",
    "SkipEpoch",
    "StopTraining",
    "as_dataloader",
    "callback",
    "callbacks",
    "evaluate",
    "fit",
    "get_metrics",
    "load",
    "load_checkpoint",
    "load_model_weights",
    "lr_finder",
    "metrics",
    "mixup",
    "predict",
    "save",
    "save_model_weights",
    "serialization",
    "set_hparams",
    "set_opt_hparams",
    "setup",
]
