"""Learning-rate scheduling: step any ``torch.optim.lr_scheduler`` at a chosen breakpoint."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from luz._validate import invalid
from luz.callbacks.base import Callback
from luz.callbacks.monitor import check_monitor, flat_metric_value, monitor_names
from luz.events import check_breakpoint_name

if TYPE_CHECKING:
    from luz.context import Context


def _takes_metrics(scheduler: Any) -> bool:
    """Whether ``scheduler.step`` takes a ``metrics`` argument (``ReduceLROnPlateau``)."""
    try:
        return "metrics" in inspect.signature(scheduler.step).parameters
    except (TypeError, ValueError):  # no introspectable signature
        return False


class LRScheduler(Callback):
    """Creates a learning-rate scheduler at ``on_fit_begin`` and steps it at ``call_on``.

    ``scheduler(optimizer, *args, **kwargs)`` builds it: a ``torch.optim.lr_scheduler`` class
    or any callable taking the optimizer first. When the scheduler's ``step`` takes
    ``metrics`` (``ReduceLROnPlateau``) it gets the epoch's value of ``monitor`` from the
    records; by default the epoch's validation loss if validation ran, else the training loss
    (``loss_<opt_name>`` with several optimizers). At a batch-level ``call_on`` no epoch
    record exists yet, so the default then falls back to the current batch's loss.
    ``state_dict()`` / ``load_state_dict()`` delegate to the scheduler, so it resumes exactly.

    Args:
        scheduler: scheduler class or factory ``(optimizer, *args, **kwargs) -> scheduler``.
        *args: positional arguments for ``scheduler`` after the optimizer.
        call_on: the built-in breakpoint at which ``scheduler.step()`` runs.
        opt_name: which optimizer to schedule; needed when there are several.
        monitor: for ``ReduceLROnPlateau``-like schedulers, the ``<set>_<name>`` value to feed.
        **kwargs: keyword arguments for ``scheduler``.

    Example:
        >>> import torch, luz
        >>> cb = luz.callbacks.LRScheduler(torch.optim.lr_scheduler.StepLR, step_size=1, gamma=0.5)
        >>> plateau = luz.callbacks.LRScheduler(torch.optim.lr_scheduler.ReduceLROnPlateau, patience=2)
    """

    def __init__(
        self,
        scheduler: Callable[..., Any],
        *args: Any,
        call_on: str = "on_epoch_end",
        opt_name: str | None = None,
        monitor: str | None = None,
        **kwargs: Any,
    ) -> None:
        if not callable(scheduler):
            raise TypeError(
                "`scheduler` must be a scheduler class or a function of the optimizer, e.g. "
                "LRScheduler(torch.optim.lr_scheduler.StepLR, step_size=10); got "
                f"{type(scheduler).__name__}."
            )
        self.call_on = check_breakpoint_name(call_on, argument="call_on", custom=False)
        if opt_name is not None and not isinstance(opt_name, str):
            raise invalid("opt_name", "None or an optimizer name (a str)", opt_name, error=TypeError)
        self.factory = scheduler
        self.args = args
        self.kwargs = kwargs
        self.opt_name = opt_name
        self.monitor = None if monitor is None else check_monitor(monitor)
        self.scheduler: Any = None
        self._resolved_name: str | None = None
        self._pending_state: dict[str, Any] | None = None
        self._feeds_metrics = False

    def hook(self, name: str) -> Callable[[], Any] | None:
        """`step` at ``call_on`` (after creating the scheduler when that is ``on_fit_begin``)."""
        if name != self.call_on:
            return super().hook(name)
        return self._begin_and_step if name == "on_fit_begin" else self.step

    def on_fit_begin(self) -> None:
        ctx = self.context
        name = self._resolve_optimizer(ctx)
        self._resolved_name = name
        self.scheduler = self.factory(ctx.optimizers[name], *self.args, **self.kwargs)
        self._feeds_metrics = _takes_metrics(self.scheduler)  # once: step() may run per batch
        if self._pending_state is not None:
            self.scheduler.load_state_dict(self._pending_state)
            self._pending_state = None

    def _begin_and_step(self) -> None:
        LRScheduler.on_fit_begin(self)
        self.step()

    def step(self) -> None:
        """Step the scheduler (with the monitored value for plateau schedulers)."""
        if self.scheduler is None:
            raise RuntimeError("LRScheduler.step() ran before on_fit_begin created the scheduler.")
        if self._feeds_metrics:
            self.scheduler.step(self._monitored_value(self.context))
        else:
            self.scheduler.step()

    def _resolve_optimizer(self, ctx: Context) -> str:
        names = list(ctx.optimizers)
        if self.opt_name is None:
            if len(names) == 1:
                return names[0]
            raise ValueError(
                f"LRScheduler: the model has {len(names)} optimizers ({', '.join(names)}); "
                "pass `opt_name=` to choose the one to schedule."
            )
        if self.opt_name not in ctx.optimizers:
            raise ValueError(
                f"LRScheduler: `opt_name`={self.opt_name!r} is not an optimizer of this model. "
                f"Optimizer names: {', '.join(names)}."
            )
        return self.opt_name

    def _monitored_value(self, ctx: Context) -> float:
        names = monitor_names(ctx)
        if self.monitor is not None:
            found = names.get(self.monitor.lower())
            if found is None:
                raise ValueError(
                    f"LRScheduler: cannot monitor {self.monitor!r} at {self.call_on} of epoch "
                    f"{ctx.epoch}. Available monitor names: {', '.join(names) or 'none'}."
                )
            return _lookup(ctx, *found)
        opt = (self._resolved_name or "").lower()
        for set_name in ("valid", "train"):
            for candidate in (f"{set_name}_loss_{opt}", f"{set_name}_loss"):
                if candidate in names:
                    return _lookup(ctx, *names[candidate])
        loss = ctx.loss.get(self._resolved_name or "")
        if loss is None:
            raise ValueError(
                f"LRScheduler: no loss to feed the scheduler at {self.call_on} of epoch {ctx.epoch}; "
                "pass `monitor=` or use call_on='on_epoch_end'."
            )
        return float(loss.item())  # a host sync, once per scheduler step

    def state_dict(self) -> dict[str, Any]:
        """The scheduler's ``state_dict()`` (``{}`` before the first fit)."""
        if self.scheduler is not None:
            state: dict[str, Any] = self.scheduler.state_dict()
            return state
        return dict(self._pending_state or {})

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the scheduler's state (kept until the scheduler exists, if need be)."""
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state)
        elif state:
            self._pending_state = dict(state)

    def __repr__(self) -> str:
        name = getattr(self.factory, "__name__", type(self.factory).__name__)
        return f"LRScheduler({name}, call_on={self.call_on!r}, opt_name={self.opt_name!r})"


def _lookup(ctx: Context, set_name: str, flat: str) -> float:
    return float(flat_metric_value(ctx, set_name, flat, ctx.epoch))
