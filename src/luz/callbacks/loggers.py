"""Callbacks that log metrics to files: CSV and TensorBoard."""

from __future__ import annotations

import csv
import importlib.util
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from luz._persist.atomic import atomic_open
from luz._validate import check_output_file, invalid, is_flag
from luz.accelerator import is_writer
from luz.callbacks.base import Callback
from luz.records import SETS, flatten_value

if TYPE_CHECKING:
    pass


class CSVLogger(Callback):
    """Writes the metrics of each epoch to a CSV file: one row per epoch and set.

    Columns are ``epoch,set`` then every metric name seen so far, in order of appearance
    (dict values flattened: ``loss_gen``, ``auc_0``); a set without a metric leaves the cell
    empty. The first write of an instance starts the file over, later epochs add rows. The
    file is rewritten atomically at each ``on_epoch_end`` (it is small), so it is never
    partial. The rows written so far are in ``state_dict()``, so a resumed run continues the
    same file. In a distributed fit rank 0 writes it.

    Args:
        path: the CSV file (``~`` is expanded; parent directories are created).

    Example:
        >>> import luz
        >>> cb = luz.callbacks.CSVLogger("metrics.csv")
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        if not isinstance(path, str | os.PathLike):
            raise invalid("path", "a str or os.PathLike", path, "Pass e.g. 'metrics.csv'.", error=TypeError)
        self.path = Path(path).expanduser()
        # At construction, not at the first write after an epoch of training.
        hint = "Name a CSV file inside it, e.g. 'logs/metrics.csv'."
        check_output_file(self.path, "path", shown=os.fspath(path), directory_hint=hint)
        self.rows: list[dict[str, Any]] = []

    def on_epoch_end(self) -> None:
        ctx = self.context
        for set_name in SETS:
            metrics = ctx.get_metrics(set_name, ctx.epoch)
            if metrics is None:
                continue
            row: dict[str, Any] = {"epoch": ctx.epoch, "set": set_name}
            for name, value in metrics.items():
                row.update(flatten_value(name, value))
            self.rows.append(row)
        if is_writer(ctx.accelerator):  # distributed: rank 0 writes (every rank holds the same rows)
            self._write()

    def _write(self) -> None:
        columns: dict[str, None] = {"epoch": None, "set": None}
        for row in self.rows:
            columns.update(dict.fromkeys(row))
        with atomic_open(self.path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(columns), restval="")
            writer.writeheader()
            writer.writerows(self.rows)

    def state_dict(self) -> dict[str, Any]:
        """The rows written so far."""
        return {"rows": [dict(row) for row in self.rows]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the rows, so the next epoch rewrites the file with them."""
        self.rows = [dict(row) for row in state["rows"]]

    def __repr__(self) -> str:
        return f"CSVLogger({str(self.path)!r})"


def _require_tensorboard() -> None:
    if importlib.util.find_spec("tensorboard") is None:
        raise ImportError(
            "The TensorBoard callback needs the `tensorboard` package: pip install 'pyluz[tensorboard]'."
        )


class TensorBoard(Callback):
    """Logs metrics (and optionally parameter histograms) as TensorBoard event files.

    At ``on_epoch_end`` each metric of each set is a scalar at step = epoch, written to the run
    directories ``<logdir>/train`` and ``<logdir>/valid`` with the metric name as tag. A dict
    value (several optimizers, per-class AUROC) becomes one tag per key: ``loss/<optimizer>``.
    With ``histograms`` a histogram of each parameter (or of the listed ones) is written to
    ``<logdir>/weights`` at ``on_train_end``, tagged with the parameter's name.

    Needs the ``tensorboard`` package (``pip install 'pyluz[tensorboard]'``); it is imported
    only when training starts. In a distributed fit rank 0 writes the event files.

    Args:
        logdir: directory for the event files.
        histograms: ``True`` for every parameter, or a list of parameter names.

    Example:
        >>> import luz
        >>> cb = luz.callbacks.TensorBoard("logs")  # doctest: +SKIP
    """

    def __init__(self, logdir: str | os.PathLike[str] = "logs", histograms: bool | list[str] = False) -> None:
        _require_tensorboard()
        if not isinstance(logdir, str | os.PathLike):
            raise invalid("logdir", "a str or os.PathLike", logdir, "Pass e.g. 'logs'.", error=TypeError)
        self.histograms: bool | list[str]
        if isinstance(histograms, list | tuple) and all(isinstance(n, str) for n in histograms):
            self.histograms = list(histograms)
        elif is_flag(histograms):
            self.histograms = bool(histograms)
        else:
            expected = "True, False or a list of parameter names"
            raise invalid("histograms", expected, histograms, error=TypeError)
        self.logdir = Path(logdir).expanduser()
        shown = os.fspath(logdir)
        if self.logdir.exists() and not self.logdir.is_dir():
            raise ValueError(f"`logdir` {shown!r} is an existing file, not a directory. Name a directory.")
        # The event files go to <logdir>/train and <logdir>/valid: check they can, before training.
        check_output_file(self.logdir / "train" / "events", "logdir", shown=shown)
        self._writers: dict[str, Any] = {}

    def _writer(self, run: str) -> Any:
        writer = self._writers.get(run)
        if writer is None:
            from torch.utils.tensorboard import SummaryWriter  # lazy: tensorboard is optional

            writer = self._writers[run] = SummaryWriter(log_dir=str(self.logdir / run))
        return writer

    def on_fit_begin(self) -> None:
        self._close()
        if isinstance(self.histograms, list):
            names = dict(self.context.model.named_parameters())
            unknown = [n for n in self.histograms if n not in names]
            if unknown:
                raise ValueError(
                    f"TensorBoard: `histograms` names unknown parameters {unknown}. "
                    f"Parameters: {', '.join(names)}."
                )

    def on_train_end(self) -> None:
        ctx = self.context
        if self.histograms is False or not is_writer(ctx.accelerator):
            return
        selected = None if self.histograms is True else set(self.histograms)
        writer = self._writer("weights")
        for name, param in ctx.model.named_parameters():
            if selected is None or name in selected:
                writer.add_histogram(name, param.detach().float().cpu(), global_step=ctx.epoch)

    def on_epoch_end(self) -> None:
        ctx = self.context
        if not is_writer(ctx.accelerator):
            return
        for set_name in SETS:
            metrics = ctx.get_metrics(set_name, ctx.epoch)
            if not metrics:
                continue
            writer = self._writer(set_name)
            for name, value in metrics.items():
                items = value.items() if isinstance(value, dict) else [(None, value)]
                for key, item in items:
                    tag = name if key is None else f"{name}/{key}"
                    writer.add_scalar(tag, float(item), global_step=ctx.epoch)
            writer.flush()
        if "weights" in self._writers:
            self._writers["weights"].flush()

    def on_fit_end(self) -> None:
        self._close()

    def _close(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers = {}

    def __repr__(self) -> str:
        return f"TensorBoard(logdir={str(self.logdir)!r}, histograms={self.histograms!r})"
