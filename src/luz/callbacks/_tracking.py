"""What the experiment-tracking loggers (`MLflowLogger`, `WandbLogger`) share: the run's life
cycle around a fit, flat parameters, per-epoch metrics and the lazy import of the back end."""

from __future__ import annotations

import importlib
import types
import warnings
from collections.abc import Mapping
from typing import Any, Literal

import torch

from luz.accelerator import is_writer
from luz.callbacks.base import Callback
from luz.records import SETS, flatten_value

Status = Literal["FINISHED", "FAILED", "KILLED"]
"""How a fit ended, in MLflow's words: every epoch or an early stop, an error, an interrupt."""


def import_backend(module: str, extra: str, who: str) -> types.ModuleType:
    """Import the optional package ``module`` for callback ``who``, or raise an ImportError
    naming the pyluz extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(
            f"{who} needs the `{module}` package, which is not installed: pip install 'pyluz[{extra}]'."
        ) from error


def warn_joined_run(logger: str, run: str, unused: str, fix: str) -> None:
    """Warn that ``logger`` logs into ``run``, a run the user started, so the arguments named
    in ``unused`` (``"`a` and `b` are"``) do nothing; ``fix`` says how to get a run of its own."""
    warnings.warn(
        f"{logger}: logging into the active {run}, which you started; {unused} not used. {fix}",
        UserWarning,
        stacklevel=3,
    )


def param_value(value: Any) -> Any:
    """``value`` as a tracking parameter: numbers, strings, booleans and ``None`` as they are,
    a one-element tensor as its number, a class or function as its import path, else ``str``."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    if isinstance(value, type | types.FunctionType):
        return f"{value.__module__}.{value.__qualname__}"
    if isinstance(value, types.BuiltinFunctionType):  # qualname: torch._VariableFunctionsClass.relu
        module = value.__module__  # None for a bound method of a builtin object
        return f"{module}.{value.__name__}" if module else value.__name__
    return str(value)


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, Mapping) and value:
        for key, item in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), item, out)
    else:
        out[prefix] = param_value(value)


def flat_params(hparams: Mapping[str, Any], opt_hparams: Mapping[str, Any]) -> dict[str, Any]:
    """One flat dict of parameters from a fit's hparams and opt_hparams.

    Nested mappings become dotted keys (``{"block": {"width": 8}}`` → ``block.width``). Keys
    are used as they are; a key that both hold is logged as ``hparams.<key>`` and
    ``opt_hparams.<key>``, so neither hides the other.

    Example:
        >>> flat_params({"block": {"width": 8}}, {"lr": 0.1})
        {'block.width': 8, 'lr': 0.1}
    """
    model: dict[str, Any] = {}
    opt: dict[str, Any] = {}
    _flatten("", dict(hparams), model)
    _flatten("", dict(opt_hparams), opt)
    model.pop("", None)  # an empty mapping flattens to nothing
    opt.pop("", None)
    shared = model.keys() & opt.keys()
    params = {(f"hparams.{k}" if k in shared else k): v for k, v in model.items()}
    params.update({(f"opt_hparams.{k}" if k in shared else k): v for k, v in opt.items()})
    return params


def epoch_metrics(records: Mapping[str, Any], epoch: int) -> dict[str, float]:
    """The metrics of 1-based ``epoch`` as ``{"<set>_<name>": value}`` — the monitor names
    (``train_loss``, ``valid_acc``, ``train_lr``, ``valid_loss_gen``, ``valid_auc_0``)."""
    out: dict[str, float] = {}
    for set_name in SETS:
        entries = records["metrics"][set_name]
        if epoch > len(entries):
            continue
        for name, value in entries[epoch - 1].items():
            for flat, item in flatten_value(name, value):
                out[f"{set_name}_{flat}"] = float(item)
    return out


class TrackingLogger(Callback):
    """Base of the experiment-tracking loggers: opens a run at ``on_fit_begin`` (rank 0 only),
    logs the parameters, logs each epoch's metrics with ``step = epoch`` and closes the run.

    The run ends ``FINISHED`` after every epoch or an early stop, ``KILLED`` after an
    interrupt (Ctrl-C, SIGTERM) and ``FAILED`` when an error ends the fit; a run the user
    started before the fit is logged into and left open. Epochs are logged at their end; an
    epoch whose end another callback cut short (a `StopTraining` raised at ``on_epoch_end``
    before this callback ran) is logged at ``on_fit_end``.

    Subclasses implement `open_run`, `log_params`, `log_metrics` and `close_run`.
    """

    def __init__(self) -> None:
        self.owns_run = False
        """Whether this callback started the current run (and so ends it)."""
        self._open = False
        self._status: Status = "FINISHED"
        self._next_epoch: int | None = None  # the first epoch not logged yet

    # -- what a back end implements -----------------------------------------------------------

    def open_run(self) -> bool:
        """Start a run, or join the one the user started; return whether this callback owns it."""
        raise NotImplementedError

    def log_params(self, params: dict[str, Any]) -> None:
        """Log the fit's flat parameters (`flat_params`)."""
        raise NotImplementedError

    def log_metrics(self, metrics: dict[str, float], epoch: int) -> None:
        """Log one epoch's metrics (`epoch_metrics`) at ``step = epoch``."""
        raise NotImplementedError

    def close_run(self, status: Status) -> None:
        """End the run this callback started, with ``status``."""
        raise NotImplementedError

    # -- the life cycle -----------------------------------------------------------------------

    def on_fit_begin(self) -> None:
        self._status, self._next_epoch = "FINISHED", None
        if not is_writer(self.ctx.accelerator):
            return
        self.owns_run = self.open_run()
        self._open = True
        self.log_params(flat_params(self.ctx.hparams, self.ctx.opt_hparams))

    def on_train_begin(self) -> None:
        # The first epoch this fit trains: `AutoResume` skips the epochs it restored before
        # their training begins, so those (in the records already) are not logged again.
        if self._next_epoch is None:
            self._next_epoch = self.ctx.epoch

    def on_epoch_end(self) -> None:
        self._log_through(self.ctx.epoch)

    def on_interrupt(self) -> None:
        self._status = "KILLED"

    def on_fit_end(self) -> None:
        self._log_through(len(self.ctx.records["metrics"]["train"]))
        self._close(self._status)

    def teardown(self) -> None:
        """End the run as ``FAILED`` when the fit ended without ``on_fit_end`` (an error)."""
        self._close("FAILED")

    def _log_through(self, last: int) -> None:
        if not self._open or self._next_epoch is None:
            return
        records = self.ctx.records
        for epoch in range(self._next_epoch, last + 1):
            metrics = epoch_metrics(records, epoch)
            if metrics:
                self.log_metrics(metrics, epoch)
        self._next_epoch = max(self._next_epoch, last + 1)

    def _close(self, status: Status) -> None:
        if not self._open:
            return
        self._open = False
        if self.owns_run:
            self.close_run(status)
