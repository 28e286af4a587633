"""The monitor base shared by callbacks that watch one metric (early stopping, checkpoints).

A monitor name is ``<set>_<record name>``: ``valid_loss``, ``train_acc``, ``valid_loss_gen``
(one optimizer's loss when there are several), ``valid_auc_0`` (one key of a dict-valued
metric). Names are matched case-insensitively against the records of the current epoch, so
record and optimizer names may contain ``_``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from luz._validate import check_choice, check_real, invalid
from luz.callbacks.base import Callback
from luz.records import SETS, flatten_value

if TYPE_CHECKING:
    from luz.context import Context

MODES = ("min", "max", "zero")


def is_monitor_name(name: str) -> bool:
    """Whether ``name`` has the form of a monitor name, ``<set>_<name>`` (case ignored)."""
    set_name, _, rest = name.lower().partition("_")
    return set_name in SETS and bool(rest)


def check_monitor(monitor: object) -> str:
    """Validate the form ``<set>_<name>`` of a monitor name and return it."""
    if not isinstance(monitor, str):
        raise invalid("monitor", "a str such as 'valid_loss'", monitor, error=TypeError)
    if not is_monitor_name(monitor):
        raise invalid(
            "monitor",
            "a name '<set>_<metric>' with set 'train' or 'valid'",
            monitor,
            "For example 'valid_loss', 'train_acc' or 'valid_loss_<optimizer name>'.",
        )
    return monitor


def monitor_names(ctx: Context, epoch: int | None = None) -> dict[str, tuple[str, str]]:
    """The monitorable names of ``epoch`` (default: the current one), lower-cased.

    Returns:
        ``{"valid_loss": ("valid", "loss"), "valid_auc_0": ("valid", "auc_0"), ...}``: each
        name mapped to its set and its flattened record name as stored.
    """
    epoch = ctx.epoch if epoch is None else epoch
    names: dict[str, tuple[str, str]] = {}
    for set_name in SETS:
        for name, value in (ctx.get_metrics(set_name, epoch) or {}).items():
            for flat, _ in flatten_value(name, value):
                names[f"{set_name}_{flat}".lower()] = (set_name, flat)
    return names


def flat_metric_value(ctx: Context, set_name: str, flat: str, epoch: int) -> Any:
    """The value of flattened record ``flat`` (``loss``, ``loss_gen``) of ``set_name`` at ``epoch``."""
    for name, value in (ctx.get_metrics(set_name, epoch) or {}).items():
        for key, item in flatten_value(name, value):
            if key == flat:
                return item
    return None


class MonitorCallback(Callback):
    """Base for callbacks that watch one metric and compare its values.

    Subclasses call `current_value` (typically at ``on_epoch_end``) and `is_improvement`.

    Args:
        monitor: ``<set>_<record name>``, e.g. ``"valid_loss"``, ``"train_acc"``,
            ``"valid_loss_<optimizer name>"``, ``"valid_auc_0"``; case-insensitive.
        mode: ``"min"`` (lower is better), ``"max"`` (higher is better) or ``"zero"`` (closer
            to zero is better).
        min_delta: the smallest change that counts as an improvement (>= 0).

    Example:
        >>> import luz
        >>> class PrintBest(luz.callbacks.MonitorCallback):
        ...     best = None
        ...     def on_epoch_end(self) -> None:
        ...         value = self.current_value(self.ctx)
        ...         if self.is_improvement(value, self.best):
        ...             self.best = value
        ...             print("new best", self.monitor, value)
    """

    def __init__(self, monitor: str = "valid_loss", mode: str = "min", min_delta: float = 0.0) -> None:
        self.monitor = check_monitor(monitor)
        self.mode = check_choice(mode, "mode", MODES)
        self.min_delta = check_real(min_delta, "min_delta", minimum=0)

    def resolve_monitor(self, ctx: Context) -> tuple[str, str]:
        """``(set, record name)`` of the monitored value in the current epoch's records.

        Raises:
            ValueError: no record of the current epoch has that name; the message lists the
                names that exist.
        """
        names = monitor_names(ctx)
        found = names.get(self.monitor.lower())
        if found is not None:
            return found
        available = ", ".join(repr(n) for n in names) or "none (no metrics recorded yet)"
        hint = ""
        if self.monitor.lower().startswith("valid_") and ctx.get_metrics("valid", ctx.epoch) is None:
            hint = (
                " No validation metrics were recorded: pass `valid_data` to fit() or monitor "
                "a 'train_' metric."
            )
        raise ValueError(
            f"{type(self).__name__}: cannot monitor {self.monitor!r} at epoch {ctx.epoch}. "
            f"Available monitor names: {available}.{hint}"
        )

    def current_value(self, ctx: Context) -> float:
        """The monitored value in the current epoch's records, as a float."""
        set_name, flat = self.resolve_monitor(ctx)
        value = flat_metric_value(ctx, set_name, flat, ctx.epoch)
        try:
            return float(value)
        except (TypeError, ValueError) as error:
            raise ValueError(
                f"{type(self).__name__}: the monitored quantity {self.monitor!r} must be a single "
                f"number, got {value!r}."
            ) from error

    def is_improvement(self, new: float, best: float | None) -> bool:
        """Whether ``new`` beats ``best`` by more than ``min_delta`` (``best=None``: always).

        ``min``: ``new < best - min_delta``; ``max``: ``new > best + min_delta``; ``zero``:
        ``|new| < |best| - min_delta``. A NaN ``new`` never improves.
        """
        if math.isnan(new):
            return False
        if best is None or math.isnan(best):
            return True
        if self.mode == "min":
            return new < best - self.min_delta
        if self.mode == "max":
            return new > best + self.min_delta
        return abs(new) < abs(best) - self.min_delta

    def __repr__(self) -> str:
        name = type(self).__name__
        return f"{name}(monitor={self.monitor!r}, mode={self.mode!r}, min_delta={self.min_delta})"
