"""The fields of `luz.context.Context` that check what they are given: the optimizers and the
current one, the batch counter and the epoch bounds. A wrong value is an error naming the
field, raised where it is assigned."""

from __future__ import annotations

import torch

from luz._validate import check_count, normalize_optimizers


def _check_epoch_count(value: object, argument: str) -> int:
    return check_count(value, argument, wrong_type=ValueError)  # as for fit(epochs=) (SPEC §1)


class CheckedFields:
    """Checked fields of the context (a mixin of `luz.context.Context`)."""

    _optimizers: dict[str, torch.optim.Optimizer]
    _opt: torch.optim.Optimizer | None
    _opt_name: str | None
    _iter: int
    _min_epochs: int
    _max_epochs: int

    @property
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Optimizers by name. A bare optimizer is stored as ``{"opt": optimizer}``."""
        return self._optimizers

    @optimizers.setter
    def optimizers(self, value: object) -> None:
        self._optimizers = normalize_optimizers(value)
        self._opt = None
        self._opt_name = None

    @property
    def opt(self) -> torch.optim.Optimizer:
        """The optimizer of the current step; falls back to the only optimizer."""
        return self._opt if self._opt is not None else self._optimizers[self._only_optimizer("optimizer")]

    @opt.setter
    def opt(self, value: torch.optim.Optimizer | None) -> None:
        self._opt = value

    @property
    def opt_name(self) -> str:
        """Name of the current optimizer; falls back to the only optimizer's name."""
        return self._opt_name if self._opt_name is not None else self._only_optimizer("optimizer name")

    @opt_name.setter
    def opt_name(self, value: str | None) -> None:
        self._opt_name = value

    def _only_optimizer(self, what: str) -> str:
        if len(self._optimizers) == 1:
            return next(iter(self._optimizers))
        raise RuntimeError(
            f"The current {what} has not been set and there are "
            f"{len(self._optimizers)} optimizers ({', '.join(self._optimizers)})."
        )

    @property
    def iter(self) -> int:
        """The current batch number within the phase, 1-based."""
        return self._iter

    @iter.setter
    def iter(self, value: int) -> None:
        self._iter = check_count(value, "ctx.iter", minimum=None)

    @property
    def min_epochs(self) -> int:
        """Minimum number of epochs (early stopping does not stop before it)."""
        return self._min_epochs

    @min_epochs.setter
    def min_epochs(self, value: int) -> None:
        value = _check_epoch_count(value, "min_epochs")
        if value > self._max_epochs:
            raise ValueError(f"`min_epochs` ({value}) is larger than `max_epochs` ({self._max_epochs}).")
        self._min_epochs = value

    @property
    def max_epochs(self) -> int:
        """Maximum number of epochs."""
        return self._max_epochs

    @max_epochs.setter
    def max_epochs(self, value: int) -> None:
        value = _check_epoch_count(value, "max_epochs")
        if value < self._min_epochs:
            raise ValueError(f"`max_epochs` ({value}) is smaller than `min_epochs` ({self._min_epochs}).")
        self._max_epochs = value
