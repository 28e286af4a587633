"""The metric contract, the set of metrics a module tracks, and the always-present loss average."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from luz._dist.collectives import reduce_state

if TYPE_CHECKING:
    from typing_extensions import Self

    from luz.context import Context

MetricValue = float | dict[str, float]


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


def format_value(value: Any) -> str:
    """Format a metric value: floats with 4 decimals, dicts as ``k: v | k: v``."""
    if isinstance(value, dict):
        return " | ".join(f"{k}: {format_value(v)}" for k, v in value.items())
    if isinstance(value, float | int) and not isinstance(value, bool):
        return f"{value:.4f}"
    return str(value)


def flatten_value(name: str, value: Any) -> list[tuple[str, Any]]:
    """Split a dict-valued metric into ``name_key`` entries (``loss_gen``, ``auc_0``)."""
    if isinstance(value, dict):
        return [(f"{name}_{key}", v) for key, v in value.items()]
    return [(name, value)]


class LossAverage(Metric):
    """The loss metric every module tracks: the unweighted mean of batch losses.

    Reads ``ctx.loss`` (a dict by optimizer name, or a tensor). A short last batch counts as
    much as a full one, so it can differ from a sample-weighted metric such as MSE. With several
    optimizers ``compute`` returns ``{optimizer name: mean}``. Across the processes of a
    distributed run the batch-loss sums and batch counts are added up, so the value is the mean
    over every rank's batches. ``compute`` raises a ``ValueError`` when batches were seen but
    none set ``ctx.loss`` (a custom ``step()`` must), and returns ``nan`` before any batch.

    Per batch, ``update`` only keeps a reference to the (detached) batch loss; every
    `FOLD_EVERY` batches the kept losses are summed in float64 with one stacked operation, so
    the mean stays exact over long epochs without a tensor operation (or a CUDA kernel launch)
    per step. So ``ctx.loss`` must hold a new tensor each batch (the default step's is): a
    custom step that writes each batch's loss into one reused tensor in place must store a
    copy (``ctx.loss = buffer.clone()``).
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


def check_metric(metric: object, argument: str = "metrics") -> Metric:
    """Accept a luz metric or a torchmetrics metric instance; explain anything else."""
    if isinstance(metric, Metric):
        return metric
    if _is_torchmetrics(metric):
        from luz.metrics.torchmetrics_adapter import TorchMetric

        return TorchMetric(metric)
    hint = ""
    if isinstance(metric, type):
        hint = f"; did you forget to instantiate it? Pass {metric.__name__}() instead of {metric.__name__}."
    raise TypeError(
        f"Expected an object with class luz.Metric (or a torchmetrics.Metric) in `{argument}`, "
        f"got {metric!r} ({type(metric).__name__}){hint or '.'}"
    )


def _is_torchmetrics(obj: object) -> bool:
    return any(
        cls.__module__.startswith("torchmetrics") and cls.__name__ == "Metric" for cls in type(obj).__mro__
    )


def _as_list(value: object, argument: str) -> list[Metric]:
    if value is None:
        return []
    # A string is iterable but is one (wrong) metric, not a list of characters.
    if isinstance(value, Metric | str) or not isinstance(value, Iterable) or _is_torchmetrics(value):
        value = [value]
    return [check_metric(m, argument) for m in value]


def _unique_names(metrics: Sequence[Metric]) -> list[str]:
    names: list[str] = []
    for metric in metrics:
        base = metric.record_name
        name, k = base, 2
        while name in names:
            name, k = f"{base}_{k}", k + 1
        names.append(name)
    return names


class MetricSet:
    """The metrics a module tracks in training and validation.

    ``train`` gets the loss average, ``metrics`` and ``train``; ``valid`` gets the loss average,
    ``metrics`` and ``valid``. The same record name twice becomes ``acc``, ``acc_2``, ...

    Args:
        metrics: metrics for both phases.
        train: metrics for the training phase only.
        valid: metrics for the validation phase only.

    Example:
        >>> import luz
        >>> ms = luz.MetricSet(metrics=[luz.metrics.Accuracy()])
        >>> ms.names("valid")
        ['loss', 'acc']
    """

    def __init__(self, metrics: object = None, train: object = None, valid: object = None) -> None:
        shared = _as_list(metrics, "metrics")
        self.train: list[Metric] = [LossAverage(), *shared, *_as_list(train, "train")]
        self.valid: list[Metric] = [LossAverage(), *shared, *_as_list(valid, "valid")]

    def prototypes(self, phase: str) -> list[Metric]:
        """The prototype metrics of ``"train"`` or ``"valid"``."""
        return self.train if phase == "train" else self.valid

    def names(self, phase: str) -> list[str]:
        """Record names for ``phase``, made unique with ``_2``, ``_3`` suffixes."""
        return _unique_names(self.prototypes(phase))

    def instantiate(self, phase: str, ctx: Context) -> list[Metric]:
        """Fresh copies of the phase's prototypes, on ``ctx.device``, bound to ``ctx``."""
        live = []
        for proto in self.prototypes(phase):
            metric = copy.deepcopy(proto).to(ctx.device)
            metric.ctx = ctx
            live.append(metric)
        return live

    def __repr__(self) -> str:
        return f"MetricSet(train={self.names('train')}, valid={self.names('valid')})"


def as_metric_set(value: object) -> MetricSet:
    """Turn ``None``, a metric, a list of metrics or a `MetricSet` into a `MetricSet`."""
    if isinstance(value, MetricSet):
        return value
    return MetricSet(metrics=value)


def to_metric_value(value: Any, name: str = "metric") -> MetricValue:
    """Convert what a ``compute()`` returned to a float or a flat dict of floats.

    Tensors are read back (the one host sync of a phase): a one-element tensor becomes a float,
    a larger one ``{"0": v0, "1": v1, ...}`` (``"i_j"`` keys for 2-d). Numbers become floats.
    """
    if isinstance(value, dict):
        out: dict[str, float] = {}
        for key, item in value.items():
            converted = to_metric_value(item, name)
            if isinstance(converted, dict):
                out.update({f"{key}_{k}": v for k, v in converted.items()})
            else:
                out[str(key)] = converted
        return out
    if isinstance(value, torch.Tensor):
        if value.numel() == 1:
            return float(value.item())
        host = value.detach().to("cpu", torch.float64)
        return {"_".join(map(str, index)): float(host[index]) for index in _indices(host.shape)}
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise TypeError(
        f"{name}.compute() returned {type(value).__name__}; luz records a number, a tensor or a "
        "dict of them. Wrap the metric in a luz.Metric whose compute() returns one of those."
    )


def _indices(shape: torch.Size) -> list[tuple[int, ...]]:
    grid: list[tuple[int, ...]] = [()]
    for size in shape:
        grid = [(*index, i) for index in grid for i in range(size)]
    return grid
