"""The metric contract and the always-present loss average."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from luz._dist.collectives import reduce_state
from luz.records import MetricValue, format_value

if TYPE_CHECKING:
    from typing_extensions import Self

    from luz.context import Context


def refuse_arguments(name: str, args: tuple[Any, ...], kwargs: dict[str, Any], why: str) -> None:
    """Raise ``TypeError`` naming what a metric that takes no arguments was given, and why it
    needs none (``Accuracy(3)`` means "3 classes", which luz reads from the shapes)."""
    if not args and not kwargs:
        return
    given = ", ".join([*map(repr, args), *(f"{k}={v!r}" for k, v in kwargs.items())])
    raise TypeError(f"{name}() takes no arguments, got {name}({given}): {why} Use {name}().")


class Metric:
    """Base class for metrics: keep state in ``__init__``, implement ``update`` and ``compute``.

    ``update(pred, target)`` runs at every batch end and must not read values back to the host
    (no ``.item()``), so accumulate in tensors; ``compute()`` runs at phase end (and at
    progress-bar refreshes) and returns a float or a dict of floats. ``abbrev`` is the display
    name, set on the class or per instance (``self.abbrev = ...`` in ``__init__``); the record
    name is its lower case (default: the lower-cased class name). Instances
    passed to ``setup`` are prototypes: each phase of each epoch uses a fresh deep copy moved to
    ``ctx.device``, with the context as ``self.ctx``.

    Example:
        >>> import torch, luz
        >>> class MeanPrediction(luz.Metric):
        ...     abbrev = "MeanPred"
        ...     def __init__(self) -> None:
        ...         self.total = torch.zeros((), dtype=torch.float64)
        ...         self.count = 0
        ...     def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        ...         self.total += pred.detach().sum()
        ...         self.count += pred.numel()
        ...     def compute(self) -> float:
        ...         return self.total.item() / max(self.count, 1)
    """

    abbrev: str | None = None
    """Display name; an instance attribute overrides the class one."""
    dist_reduce: ClassVar[dict[str, str]] = {}
    """How each state attribute combines across the processes of a distributed run, e.g.
    ``{"total": "sum", "count": "sum"}``: ``"sum"``, ``"max"``, ``"min"`` or ``"cat"``."""
    ctx: Context | None = None

    def update(self, pred: Any, target: Any) -> None:
        """Accumulate one batch (no host syncs)."""
        raise NotImplementedError(f"{type(self).__name__} must implement update(pred, target).")

    def compute(self) -> MetricValue:
        """Return the metric value from the accumulated state."""
        raise NotImplementedError(f"{type(self).__name__} must implement compute().")

    def sync(self) -> None:
        """Replace the state by its combination over all processes of a distributed run.

        luz calls it on every rank once per phase end, just before ``compute``, and only in
        distributed runs. The default combines the attributes named in ``dist_reduce`` (one
        ``all_gather_object``); override it for state that needs more. A metric with neither
        keeps its local state (a warning says so) and records rank 0's value.
        """
        spec = type(self).dist_reduce
        if not spec:
            _warn_unreduced(self)
            return
        reduce_state(self, spec)

    @property
    def display_name(self) -> str:
        """The name shown in progress output (``abbrev``, per instance or class, else the class name)."""
        return self.abbrev or type(self).__name__

    @property
    def record_name(self) -> str:
        """The name used in records and monitor names: the lower-cased display name."""
        return self.display_name.lower()

    def format(self, value: Any) -> str:
        """Format a computed value for display."""
        return format_value(value)

    def to(self, device: torch.device | str) -> Self:
        """Move every tensor attribute to ``device`` (float64 becomes float32 on MPS)."""
        device = torch.device(device)
        for key, value in vars(self).items():
            if isinstance(value, torch.Tensor):
                if device.type == "mps" and value.dtype == torch.float64:
                    value = value.to(torch.float32)
                setattr(self, key, value.to(device))
        return self

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


_WARNED: set[type] = set()


def _warn_unreduced(metric: Metric) -> None:
    cls = type(metric)
    if cls in _WARNED:
        return
    _WARNED.add(cls)
    warnings.warn(
        f"Metric {cls.__name__} declares no `dist_reduce` and does not override `sync()`: in a "
        "distributed run its recorded value is rank 0's, computed on rank 0's share of the data. "
        'Declare e.g. `dist_reduce = {"total": "sum", "count": "sum"}` on the class.',
        UserWarning,
        stacklevel=3,
    )


class LossAverage(Metric):
    """The loss metric every module tracks: the unweighted mean of batch losses.

    Reads ``ctx.loss`` (a dict by optimizer name, or a tensor), which must be a new tensor each
    batch: a custom step that reuses one buffer stores a copy (``ctx.loss = buffer.clone()``).
    A short last batch counts as much as a full one. With several optimizers ``compute``
    returns ``{optimizer name: mean}``; in a distributed run the mean is over every rank's
    batches. ``compute`` returns ``nan`` before any batch and raises a ``ValueError`` when
    batches were seen but none set ``ctx.loss`` (a custom ``step()`` must).

    How it works: docs/metrics.md.
    """

    abbrev = "Loss"
    dist_reduce: ClassVar[dict[str, str]] = {"sums": "sum", "counts": "sum", "batches": "sum"}
    FOLD_EVERY: ClassVar[int] = 64
    """How many batch losses are kept before they are added into the float64 sums."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}
        self.batches = 0  # updates seen, with or without a loss: tells "no batch" from "no loss"
        self._pending: dict[str, list[torch.Tensor]] = {}

    def update(self, pred: Any, target: Any) -> None:
        self.batches += 1
        loss = self.ctx.loss if self.ctx is not None else {}
        if loss is None:
            return
        items = loss.items() if isinstance(loss, dict) else [("opt", loss)]
        for name, value in items:
            pending = self._pending.get(name)
            if pending is None:
                pending = self._pending[name] = []
            # A custom step may store a loss that still has its graph: keep only the value.
            pending.append(value.detach() if value.requires_grad else value)
            if len(pending) >= self.FOLD_EVERY:
                self._fold(name, pending)

    def _fold(self, name: str, pending: list[torch.Tensor]) -> None:
        first = pending[0]
        # float64 keeps the mean exact over long epochs; MPS has no float64.
        dtype = torch.float32 if first.device.type == "mps" else torch.float64
        batch_sum = torch.stack(pending).sum(dtype=dtype)
        total = self.sums.get(name)
        self.sums[name] = batch_sum if total is None else total + batch_sum
        self.counts[name] = self.counts.get(name, 0) + len(pending)
        pending.clear()

    def _fold_all(self) -> None:
        for name, pending in self._pending.items():
            if pending:
                self._fold(name, pending)

    def sync(self) -> None:
        self._fold_all()
        super().sync()

    def compute(self) -> MetricValue:
        self._fold_all()
        if not self.sums:
            if not self.batches:  # no batch reached update (e.g. stopped before the first)
                return float("nan")
            phase = "" if self.ctx is None else (" training" if self.ctx.training else " validation")
            raise ValueError(
                f"ctx.loss was never set during the{phase} phase ({self.batches} batches): a custom "
                "step() must set `ctx.loss` to the batch loss, a tensor or a dict of tensors by "
                'optimizer name (e.g. `ctx.loss = {"opt": loss.detach()}`).'
            )
        means = {name: total.item() / self.counts[name] for name, total in self.sums.items()}
        if len(means) == 1:
            return next(iter(means.values()))
        return means
