"""Early stopping: end training when a monitored metric stops improving."""

from __future__ import annotations

import math
from typing import Any, ClassVar

from luz._console import note as console_note
from luz._validate import check_count, check_optional_real
from luz.callbacks.monitor import MonitorCallback
from luz.events import StopTraining


class EarlyStopping(MonitorCallback):
    """Stops training when ``monitor`` has not improved for ``patience`` epochs.

    At every ``on_epoch_end`` (it runs last: ``weight = inf``): the first value only becomes
    the best (unless ``baseline`` is given, which is the initial best); then an improvement
    (see `MonitorCallback.is_improvement`) resets a counter, anything else increments it; when
    the counter is ``>= patience`` and ``epoch >= min_epochs`` it raises `luz.StopTraining`.
    As in R luz the check runs after an improvement too, so ``patience=0`` stops at epoch 2
    (epoch 1 with a baseline). The epoch it stops in is complete and recorded. When verbose,
    ``on_early_stopping`` prints ``Early stopping at epoch X of N``.

    The best value and counter are kept across fits that reuse the instance and are saved by
    ``state_dict()``.

    Args:
        monitor: metric to watch, ``<set>_<name>`` (see `MonitorCallback`).
        min_delta: the smallest change that counts as an improvement.
        patience: epochs without improvement before stopping.
        mode: ``"min"``, ``"max"`` or ``"zero"`` (closer to zero is better).
        baseline: an initial best value the metric has to beat.

    Example:
        >>> import torch, luz
        >>> from torch import nn
        >>> x, y = torch.randn(64, 3), torch.randn(64, 1)
        >>> fitted = (
        ...     luz.setup(nn.Linear, loss=nn.MSELoss(), optimizer=torch.optim.SGD)
        ...     .set_hparams(in_features=3, out_features=1)
        ...     .set_opt_hparams(lr=0.01)
        ...     .fit((x, y), epochs=20, verbose=False,
        ...          callbacks=[luz.callbacks.EarlyStopping(monitor="train_loss", patience=2)])
        ... )
    """

    weight: ClassVar[float] = math.inf

    def __init__(
        self,
        monitor: str = "valid_loss",
        min_delta: float = 0.0,
        patience: int = 0,
        mode: str = "min",
        baseline: float | None = None,
    ) -> None:
        super().__init__(monitor=monitor, mode=mode, min_delta=min_delta)
        self.patience = check_count(patience, "patience")
        self.baseline = check_optional_real(baseline, "baseline", finite=False)
        self.best: float | None = self.baseline
        self.counter = 0
        self._stopped_at: int | None = None

    def on_epoch_end(self) -> None:
        ctx = self.context
        value = self.current_value(ctx)
        if self.best is None:
            self.best = value
            return
        if self.is_improvement(value, self.best):
            self.best = value
            self.counter = 0
        else:
            self.counter += 1
        if self.counter >= self.patience and ctx.epoch >= ctx.min_epochs:
            self._stopped_at = ctx.epoch
            raise StopTraining(
                f"{self.monitor} did not improve on {self.best:.4g} (patience {self.patience})"
            )

    def on_early_stopping(self) -> None:
        ctx = self.context
        if self._stopped_at is not None and ctx.verbose:
            console_note(f"Early stopping at epoch {self._stopped_at} of {ctx.max_epochs}")
        self._stopped_at = None

    def state_dict(self) -> dict[str, Any]:
        """The best value so far and the epochs-without-improvement counter."""
        return {"best": self.best, "counter": self.counter}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned."""
        self.best = state["best"]
        self.counter = int(state["counter"])

    def __repr__(self) -> str:
        return (
            f"EarlyStopping(monitor={self.monitor!r}, min_delta={self.min_delta}, "
            f"patience={self.patience}, mode={self.mode!r}, baseline={self.baseline})"
        )
