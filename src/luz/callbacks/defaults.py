"""Callbacks that every run gets: train/eval mode, metrics, timings and interrupts."""

from __future__ import annotations

import signal
import threading
import time
import warnings
from typing import TYPE_CHECKING, Any

import torch

from luz._console import note as console_note
from luz.callbacks.base import Callback
from luz.errors import MetricError, with_origin
from luz.metrics.base import Metric
from luz.outputs import prediction
from luz.records import to_metric_value

if TYPE_CHECKING:
    from luz.context import Context


class TrainValid(Callback):
    """Switches the model between train and eval mode and resets ``ctx.loss`` per phase.

    Breakpoints: ``on_train_begin`` (``model.train()``, ``ctx.training = True``) and
    ``on_valid_begin`` (``model.eval()``, ``ctx.training = False``).
    """

    def on_train_begin(self) -> None:
        ctx = self.context
        ctx.model.train()
        ctx.training = True
        ctx.loss = {}

    def on_valid_begin(self) -> None:
        ctx = self.context
        ctx.model.eval()
        ctx.training = False
        ctx.loss = {}


class Metrics(Callback):
    """Creates fresh metrics each phase, updates them per batch and logs them at phase end
    (in a distributed run, reduced across ranks: `luz._dist.sync.ReducedMetrics`).

    Breakpoints: ``on_train_begin``/``on_valid_begin`` (fresh copies of the prototypes on
    ``ctx.device``), ``on_*_batch_end`` (``update(ctx.pred, ctx.target)``, with the output's
    ``logits`` when it has them: `luz.outputs.prediction`), ``on_*_end``
    (``compute()`` then ``ctx.log_metric``). Errors name the metric, step, iteration, epoch
    and phase.
    """

    def on_train_begin(self) -> None:
        self._start("train")

    def on_valid_begin(self) -> None:
        self._start("valid")

    def on_train_batch_end(self) -> None:
        self._update(self.ctx, "train")

    def on_valid_batch_end(self) -> None:
        self._update(self.ctx, "valid")

    def on_train_end(self) -> None:
        self._finish("train")

    def on_valid_end(self) -> None:
        self._finish("valid")

    def _start(self, phase: str) -> None:
        ctx = self.context
        if ctx.metric_set is None:
            ctx.metrics[phase], ctx.metric_names[phase] = [], []
            return
        ctx.metrics[phase] = ctx.metric_set.instantiate(phase, ctx)
        ctx.metric_names[phase] = ctx.metric_set.names(phase)

    def _update(self, ctx: Context, phase: str) -> None:
        pred, target = ctx.pred, ctx.target
        if not isinstance(pred, torch.Tensor):  # the logits of a model output that has them
            pred = prediction(pred)
        for metric in ctx.metrics[phase]:
            try:
                metric.update(pred, target)
            except Exception as error:
                raise metric_error(error, metric, "update", ctx.iter, ctx.epoch, phase) from error

    def _finish(self, phase: str) -> None:
        ctx = self.context
        if ctx.iter == 0:  # an empty phase has nothing to report
            if phase == "valid":
                warnings.warn(EMPTY_VALIDATION, UserWarning, stacklevel=2)
            return
        for name, metric in zip(ctx.metric_names[phase], ctx.metrics[phase], strict=True):
            try:
                value = to_metric_value(metric.compute(), metric.display_name)
            except Exception as error:
                raise metric_error(error, metric, "compute", ctx.iter, ctx.epoch, phase) from error
            ctx.log_metric(name, value)


EMPTY_VALIDATION = (
    "The validation data produced no batches: no validation metrics are recorded for this epoch."
)


def metric_error(error: Exception, metric: Metric, step: str, it: int, epoch: int, phase: str) -> Exception:
    """A `MetricError` for ``error`` raised by ``metric.<step>()``, naming the metric, the
    iteration, the epoch and the phase (its type kept: `luz.errors.with_origin`)."""
    mode = "training" if phase == "train" else "validation"
    message = (
        f"Error when running `{step}` of metric '{metric.display_name}' "
        f"({type(metric).__name__}) at iter {it} of epoch {epoch}, in {mode} mode"
    )
    return with_origin(error, message, MetricError)


class Profile(Callback):
    """Records wall-clock seconds in ``records["profile"]``: ``fit`` once, and ``epoch``,
    ``train``, ``valid`` per epoch (appended)."""

    def __init__(self) -> None:
        self._starts: dict[str, float] = {}

    def _begin(self, key: str) -> None:
        self._starts[key] = time.perf_counter()

    def _end(self, key: str) -> None:
        start = self._starts.pop(key, None)
        if start is not None:
            self.context.log("profile", key, time.perf_counter() - start)

    def on_fit_begin(self) -> None:
        self._begin("fit")

    def on_fit_end(self) -> None:
        self._end("fit")

    def on_epoch_begin(self) -> None:
        self._begin("epoch")

    def on_epoch_end(self) -> None:
        self._end("epoch")

    def on_train_begin(self) -> None:
        self._begin("train")

    def on_train_end(self) -> None:
        self._end("train")

    def on_valid_begin(self) -> None:
        self._begin("valid")

    def on_valid_end(self) -> None:
        self._end("valid")


class Interrupt(Callback):
    """Turns Ctrl-C and SIGTERM during `fit` into a graceful stop.

    Ctrl-C stops the fit where it lands and `fit` returns the model trained so far. A SIGTERM
    (what job schedulers send before preemption) stops it at the next batch end the same way
    (``on_interrupt``, then ``on_fit_end``; `AutoResume` keeps its state), then `fit` raises
    `luz.Terminated` (exit status 143).

    How it works: docs/troubleshooting.md (Ctrl-C, SIGTERM and preemption).
    """

    def __init__(self) -> None:
        self._previous: Any = None
        self._installed = False
        self.terminated = False  # whether a SIGTERM arrived during the current fit

    def teardown(self) -> None:
        """Put the previous SIGTERM handler back, however the run ended."""
        self._restore()

    def on_fit_begin(self) -> None:
        self.terminated = False
        if threading.current_thread() is threading.main_thread() and not self._installed:
            self._previous = signal.signal(signal.SIGTERM, self._on_sigterm)
            self._installed = True

    def _on_sigterm(self, signum: int, frame: object) -> None:
        self.terminated = True

    def _restore(self) -> None:
        if self._installed:
            signal.signal(signal.SIGTERM, self._previous)
            self._installed, self._previous = False, None

    def on_train_batch_end(self) -> None:
        if self.terminated:
            raise KeyboardInterrupt("SIGTERM")

    def on_valid_batch_end(self) -> None:
        if self.terminated:
            raise KeyboardInterrupt("SIGTERM")

    def on_interrupt(self) -> None:
        ctx = self.context
        if ctx.verbose:
            if self.terminated:
                note = "exiting with status 143 (luz.Terminated)"
                console_note(f"Training interrupted by SIGTERM at epoch {ctx.epoch}; {note}.")
            else:
                kept = "returning the model trained so far"
                console_note(f"Training interrupted at epoch {ctx.epoch}; {kept}.")
