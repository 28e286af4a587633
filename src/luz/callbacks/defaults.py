"""Callbacks that every run gets: train/eval mode, metrics, timings and interrupts."""

from __future__ import annotations

import sys
import time

from luz._errors import MetricError, rewrap
from luz.callbacks.base import Callback
from luz.metrics.base import Metric


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
    """Creates fresh metrics each phase, updates them per batch and logs them at phase end.

    Breakpoints: ``on_train_begin``/``on_valid_begin`` (fresh copies of the prototypes on
    ``ctx.device``), ``on_*_batch_end`` (``update(ctx.pred, ctx.target)``), ``on_*_end``
    (``compute()`` then ``ctx.log_metric``). Errors name the metric, step, iteration, epoch
    and phase.
    """

    def on_train_begin(self) -> None:
        self._start("train")

    def on_valid_begin(self) -> None:
        self._start("valid")

    def on_train_batch_end(self) -> None:
        self._update("train")

    def on_valid_batch_end(self) -> None:
        self._update("valid")

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

    def _update(self, phase: str) -> None:
        ctx = self.context
        pred, target = ctx.pred, ctx.target
        for metric in ctx.metrics[phase]:
            try:
                metric.update(pred, target)
            except Exception as error:
                raise _metric_error(error, metric, "update", ctx.iter, ctx.epoch, phase) from error

    def _finish(self, phase: str) -> None:
        ctx = self.context
        if ctx.iter == 0:  # an empty phase has nothing to report
            return
        for name, metric in zip(ctx.metric_names[phase], ctx.metrics[phase], strict=True):
            try:
                value = metric.compute()
            except Exception as error:
                raise _metric_error(error, metric, "compute", ctx.iter, ctx.epoch, phase) from error
            ctx.log_metric(name, value)


def _metric_error(error: Exception, metric: Metric, step: str, it: int, epoch: int, phase: str) -> Exception:
    mode = "training" if phase == "train" else "validation"
    message = (
        f"Error when running `{step}` of metric '{metric.display_name}' "
        f"({type(metric).__name__}) at iter {it} of epoch {epoch}, in {mode} mode"
    )
    return rewrap(error, message, MetricError)


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
    """Reports a Ctrl-C during `fit`: the loop catches ``KeyboardInterrupt``, fires
    ``on_interrupt`` (this prints a note when verbose), then ``on_fit_end``, and returns the
    model trained so far."""

    def on_interrupt(self) -> None:
        ctx = self.context
        if ctx.verbose:
            print(
                f"Training interrupted at epoch {ctx.epoch}; returning the model trained so far.",
                file=sys.stderr,
            )
