"""Records: the metrics and timings a run logs, and the one transaction an epoch commits in.

``records["metrics"]["train"|"valid"]`` is a list with one ``{name: value}`` dict per epoch;
``records["profile"]`` holds wall-clock seconds lists for ``fit``, ``epoch``, ``train`` and
``valid``; callbacks may add keys of their own (``ctx.log(what, set, value)``). Records are
plain containers, so results and checkpoints store them as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    import pandas as pd

Records = dict[str, Any]
SETS = ("train", "valid")
"""The sets of ``records["metrics"]``: training, and validation (evaluate logs as ``valid``)."""
MetricValue = float | dict[str, float]


def new_records() -> Records:
    """An empty records structure: metrics per set and wall-clock profile lists."""
    return {
        "metrics": {"train": [], "valid": []},
        "profile": {"fit": [], "epoch": [], "train": [], "valid": []},
    }


def merged_with_defaults(records: Records) -> Records:
    """``records`` over an empty structure: keys it lacks get their empty default."""
    merged = new_records()
    merged.update(records)
    return merged


# -- logging and reading ------------------------------------------------------------------------


def log(
    records: Records, what: str, set: str, value: Any, index: int | None = None, *, append: bool = True
) -> None:
    """Store ``value`` at ``records[what][set]``: appended, or at 1-based ``index`` (a dict
    merges into a dict already there unless ``append=False``)."""
    entries = records.setdefault(what, {}).setdefault(set, [])
    if index is None:
        entries.append(value)
        return
    if index < 1:
        raise ValueError(f"`index` is 1-based, got {index}.")
    while len(entries) < index:
        entries.append({} if isinstance(value, dict) else None)
    current = entries[index - 1]
    if append and isinstance(current, dict) and isinstance(value, dict):
        current.update(value)
    else:
        entries[index - 1] = value


def get_log(records: Records, what: str, set: str, index: int | None = None) -> Any:
    """The entry at 1-based ``index`` (default: the last), or ``None`` if absent."""
    entries = records.get(what, {}).get(set, [])
    if not entries:
        return None
    if index is None:
        return entries[-1]
    return entries[index - 1] if 1 <= index <= len(entries) else None


# -- the epoch transaction ----------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """How long every record list was when an epoch began (see `snapshot`)."""

    records: Records
    lengths: dict[tuple[str, str], int]


def snapshot(records: Records) -> Snapshot:
    """Mark the start of an epoch. Cheap: it keeps the lengths of the record lists only."""
    return Snapshot(records, {(what, key): len(entries) for what, key, entries in _lists(records)})


def rollback(mark: Snapshot) -> None:
    """Drop everything logged since `snapshot`: an epoch that does not commit leaves no records.

    The records object held by the snapshot is rolled back, so records swapped in by a
    callback mid-epoch (a resume) are left alone.
    """
    for what, key, entries in _lists(mark.records):
        del entries[mark.lengths.get((what, key), 0) :]


def _lists(records: Records) -> list[tuple[str, str, list[Any]]]:
    return [
        (what, key, entries)
        for what, sets in records.items()
        if isinstance(sets, dict)
        for key, entries in sets.items()
        if isinstance(entries, list)
    ]


# -- values ---------------------------------------------------------------------------------------


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


# -- tables ---------------------------------------------------------------------------------------


def metric_rows(records: Records) -> list[tuple[str, str, int, float]]:
    """``(set, metric, epoch, value)`` rows: train rows epoch by epoch, then valid rows.

    Dict values (several optimizers, per-class AUROC) give one row per key: ``loss_<opt>``,
    ``auc_<class>``.
    """
    rows = []
    for set_name in ("train", "valid"):
        for epoch, metrics in enumerate(records.get("metrics", {}).get(set_name, []), start=1):
            for name, value in (metrics or {}).items():
                for flat_name, flat_value in flatten_value(name, value):
                    rows.append((set_name, flat_name, epoch, float(flat_value)))
    return rows


def metrics_frame(records: Records) -> pd.DataFrame:
    """All metrics as a DataFrame with columns ``set, metric, epoch, value``."""
    import pandas as pd  # an optional cost: pandas loads only when a table is asked for

    frame: pd.DataFrame = pd.DataFrame(metric_rows(records), columns=["set", "metric", "epoch", "value"])
    return frame


def evaluation_frame(records: Records) -> pd.DataFrame:
    """The metrics of an evaluation as a DataFrame with columns ``metric, value``."""
    import pandas as pd

    rows = [(metric, value) for _, metric, _, value in metric_rows(records)]
    frame: pd.DataFrame = pd.DataFrame(rows, columns=["metric", "value"])
    return frame


# -- the records API of the context -----------------------------------------------------------


class RecordsAccess:
    """The records part of `luz.context.Context`: ``ctx.records`` (read-only), ``ctx.log``,
    ``ctx.log_metric`` and the readers; the epoch and phase come from the context."""

    _records: Records
    epoch: int
    training: bool

    @property
    def records(self) -> Records:
        """Metrics and timings logged so far (read-only: use ``log`` / ``log_metric``)."""
        return self._records

    @records.setter
    def records(self, value: object) -> None:
        raise AttributeError(
            "`ctx.records` is read-only: use `ctx.log()` / `ctx.log_metric()`, or "
            "`ctx.unsafe_set_records()` to replace everything."
        )

    def log(self, what: str, set: str, value: Any, index: int | None = None, *, append: bool = True) -> None:
        """Record ``value`` at ``records[what][set]``.

        Args:
            what: top-level key (``"metrics"``, ``"profile"`` or your own).
            set: second-level key (e.g. ``"train"``).
            value: the value to store.
            index: 1-based position (an epoch, say); ``None`` appends.
            append: when the position holds a dict and ``value`` is a dict, merge into it
                instead of replacing.
        """
        log(self._records, what, set, value, index, append=append)

    def log_metric(self, name: str, value: float | dict[str, float]) -> None:
        """Record a metric value for the current epoch in the current set (train or valid)."""
        log(self._records, "metrics", "train" if self.training else "valid", {name: value}, self.epoch)

    def get_log(self, what: str, set: str, index: int | None = None) -> Any:
        """The entry at 1-based ``index`` (default: the last), or ``None`` if absent."""
        return get_log(self._records, what, set, index)

    def get_metrics(self, set: str, epoch: int | None = None) -> dict[str, Any] | None:
        """The ``{name: value}`` metrics of ``set`` at ``epoch`` (default: the last epoch)."""
        result = self.get_log("metrics", set, epoch)
        return result if result else None

    def get_metric(self, name: str, set: str, epoch: int | None = None) -> Any:
        """One metric value of ``set`` at ``epoch`` (default: the last), or ``None``."""
        metrics = self.get_metrics(set, epoch)
        return None if metrics is None else metrics.get(name)

    def get_formatted_metrics(self, set: str, epoch: int | None = None) -> dict[str, str]:
        """Metric values of ``set`` at ``epoch`` formatted for display (4 decimals)."""
        return {k: format_value(v) for k, v in (self.get_metrics(set, epoch) or {}).items()}

    def get_metrics_df(self) -> pd.DataFrame:
        """All metrics as a DataFrame with columns ``set, metric, epoch, value``."""
        return metrics_frame(self._records)

    def unsafe_set_records(self, records: Records) -> None:
        """Replace all records (used when resuming from a checkpoint)."""
        self._records = merged_with_defaults(records)
