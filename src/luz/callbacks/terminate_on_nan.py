"""Stopping training on a non-finite training loss, without a host sync per batch: `TerminateOnNaN`
(per batch, opt-in) and `NaNGuard` (per epoch, a default of `fit`)."""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Callable
from typing import Any

import torch

from luz._validate import check_flag, check_optional_count
from luz.callbacks.base import Callback
from luz.events import StopTraining

BUFFER_KEY = "terminate_on_nan"
"""The ``ctx.buffers`` key under which `TerminateOnNaN` leaves ``{"epoch", "batch", "value"}``
when it stops a fit (`AutoResume` then keeps its state file)."""


class TerminateOnNaN(Callback):
    """Stops training at the first NaN or infinite training loss.

    Non-finite losses are detected on the device, with no host sync per batch; the result is
    read at the end of each training phase (before validation) and, with ``check_every=n``,
    every ``n`` batches, before backward. At a non-finite loss a ``RuntimeWarning`` gives the
    epoch, the batch and the value, and `luz.StopTraining` ends the fit gracefully; the
    unfinished epoch leaves no records. ``check_every=1`` keeps the optimizer from ever
    stepping on a non-finite loss.

    How it works: docs/troubleshooting.md (NaN and infinite losses).

    Args:
        check_every: also check every ``check_every`` training batches (``None``: only at the
            end of each training phase).

    Attributes:
        stopped_at: ``{"epoch", "batch", "value"}`` of the first non-finite loss, or ``None``.

    Example:
        >>> import luz
        >>> cb = luz.callbacks.TerminateOnNaN()
        >>> # model.fit(data, callbacks=[cb])
    """

    def __init__(self, check_every: int | None = None) -> None:
        self.check_every = check_optional_count(
            check_every, "check_every", minimum=1, hint="None checks only at the end of each training phase."
        )
        self.stopped_at: dict[str, Any] | None = None
        self._first: torch.Tensor | None = None
        self._value: torch.Tensor | None = None

    def on_fit_begin(self) -> None:
        self.stopped_at = None

    def on_train_begin(self) -> None:
        device = self.context.device
        self._first = torch.zeros((), dtype=torch.int64, device=device)  # 0: none seen yet
        self._value = torch.zeros((), dtype=torch.float32, device=device)

    def on_train_batch_after_loss(self) -> None:
        # Only with check_every: look before backward, so a bad batch never steps the weights.
        ctx = self.context
        if self.check_every is not None and ctx.iter % self.check_every == 0:
            self._record(ctx.loss.get(ctx.opt_name))
            self._check()

    def on_train_batch_end(self) -> None:
        for loss in self.context.loss.values():  # every optimizer's loss (custom steps too)
            self._record(loss)

    def _record(self, loss: object) -> None:
        first, value = self._first, self._value
        if first is None or value is None or not isinstance(loss, torch.Tensor):
            return
        loss = loss.detach().float().reshape(())
        # The first non-finite batch's (1-based) index and value, kept on the device.
        new = torch.isfinite(loss).logical_not_().logical_and_(first == 0)
        self._first = torch.where(new, self.context.iter, first)
        self._value = torch.where(new, loss, value)

    def on_train_end(self) -> None:
        self._check()

    def _check(self) -> None:
        if self._first is None or self._value is None:
            return
        batch = int(self._first)  # the host sync
        if batch == 0:
            return
        ctx = self.context
        value = float(self._value)
        self.stopped_at = {"epoch": ctx.epoch, "batch": batch, "value": value}
        ctx.buffers[BUFFER_KEY] = dict(self.stopped_at)
        self._first = self._value = None
        shown = "nan" if math.isnan(value) else str(value)
        warnings.warn(
            f"TerminateOnNaN: the training loss is {shown} at batch {batch} of epoch {ctx.epoch}; "
            f"stopping training. The records end at epoch {ctx.epoch - 1}.",
            RuntimeWarning,
            stacklevel=2,
        )
        raise StopTraining(f"non-finite training loss ({shown}) at epoch {ctx.epoch}, batch {batch}")

    def __repr__(self) -> str:
        return f"TerminateOnNaN(check_every={self.check_every})"


class NaNGuard(Callback):
    """Stops training after an epoch whose training loss average is NaN or infinite (a default).

    `fit` adds one to its default callbacks. At ``on_epoch_end`` it reads the epoch's recorded
    training loss average (``records["metrics"]["train"]``, every optimizer's), which `Metrics`
    computed already: no device work and no host sync of its own. When it is not finite, a
    ``RuntimeWarning`` names the epoch and the value and `luz.StopTraining` ends the fit after
    that epoch: its records stay, but the callbacks after this one (checkpoints, loggers,
    `AutoResume`) do not run at that epoch end, so nothing is written for it, and
    ``Fitted.stop_reason`` says what happened. `AutoResume` keeps its state file, as after
    `TerminateOnNaN`.

    Passing any `TerminateOnNaN` or `NaNGuard` to `fit` replaces the default one; pass
    ``NaNGuard(enabled=False)`` to turn the guard off (a disabled guard has no hooks).

    Args:
        enabled: whether to check (``False``: the guard does nothing).

    Example:
        >>> import luz
        >>> off = luz.callbacks.NaNGuard(enabled=False)
        >>> # model.fit(data, callbacks=[off]): train on through non-finite losses
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = check_flag(enabled, "enabled")

    def hook(self, name: str) -> Callable[[], Any] | None:
        """The hooks of an enabled guard; none when disabled (so it costs nothing)."""
        return super().hook(name) if self.enabled else None

    def on_epoch_end(self) -> None:
        ctx = self.context
        loss = ctx.get_metric("loss", "train", ctx.epoch)
        values = loss.values() if isinstance(loss, dict) else [loss]
        bad = next((float(v) for v in values if isinstance(v, numbers.Real) and not math.isfinite(v)), None)
        if bad is None:
            return
        shown = "nan" if math.isnan(bad) else str(bad)
        ctx.buffers[BUFFER_KEY] = {"epoch": ctx.epoch, "batch": None, "value": bad}
        warnings.warn(
            f"The training loss average of epoch {ctx.epoch} is {shown}; stopping training after "
            f"this epoch (no checkpoint is written for it). Pass TerminateOnNaN() to find the "
            f"batch, or NaNGuard(enabled=False) to train on.",
            RuntimeWarning,
            stacklevel=2,
        )
        raise StopTraining(f"non-finite training loss ({shown}) at epoch {ctx.epoch}")

    def __repr__(self) -> str:
        return f"NaNGuard(enabled={self.enabled})"
