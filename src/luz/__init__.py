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

from luz import callbacks, metrics, serialization
from luz.accelerator import Accelerator
from luz.callbacks.base import Callback, callback
from luz.callbacks.mixup import MixupLoss, MixupTarget, mixup
from luz.context import Context
from luz.data import as_dataloader
from luz.errors import CallbackError, MetricError
from luz.events import BREAKPOINTS, SkipEpoch, StopTraining, Terminated
from luz.lr_finder import LRFinderResult, lr_finder
from luz.metrics.base import Metric
from luz.metrics.set import MetricSet
from luz.module import LuzModule, setup
from luz.results import Evaluation, Fitted
from luz.run import evaluate, fit, get_metrics, predict, set_hparams, set_opt_hparams
from luz.serialization import load, load_checkpoint, load_model_weights, save, save_model_weights

__version__ = "0.1.0"

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
    "Terminated",
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
