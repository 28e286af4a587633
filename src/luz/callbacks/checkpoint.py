"""Saving checkpoints during training (`ModelCheckpoint`) and keeping the best model
(`KeepBestModel`)."""

from __future__ import annotations

import os
import shutil
import string
import tempfile
import warnings
import weakref
from pathlib import Path
from typing import Any, ClassVar

from luz._dist.run_state import shards_state
from luz._persist.atomic import remove_stale_temporaries
from luz._persist.checkpoint import (
    checkpoint_of_parts,
    checkpoint_state,
    commit_checkpoint,
    model_finite,
    model_parts,
    read_checkpoint,
    write_checkpoint,
)
from luz._persist.restore import load_checkpoint_into_context, match_callbacks
from luz._validate import check_flag, check_output_file
from luz.callbacks.monitor import MonitorCallback, flat_metric_value, is_monitor_name, monitor_names

DIRECTORY_TEMPLATE = "epoch-{epoch:02d}-{monitor_name}-{monitor:.3f}.pt"


def _is_directory(path: str) -> bool:
    return path.endswith("/") or path.endswith(os.sep)


TEMPLATE_FIELDS = ("epoch", "monitor", "monitor_name")
"""The fixed fields a `ModelCheckpoint` path template may use; any monitor name
(``{valid_loss:.3f}``, ``{train_acc}``) may be used too."""


def template_fields(text: str) -> list[str]:
    """The field names of template ``text`` (``{valid_loss:.3f}`` → ``valid_loss``), checked.

    Raises:
        ValueError: an unmatched brace, or a field that is neither a `TEMPLATE_FIELDS` name
            nor a monitor name (``train_*``, ``valid_*``).
    """
    try:
        fields = [field for _, field, _, _ in string.Formatter().parse(text) if field is not None]
    except ValueError as error:  # an unmatched brace
        raise _template_error(text, f"it is not a valid template ({error})") from None
    names: list[str] = []
    for field in fields:
        name = field.split(".", 1)[0].split("[", 1)[0]
        if name not in TEMPLATE_FIELDS and not is_monitor_name(name):
            shown = f"{{{field}}}" if field else "{}"
            raise _template_error(text, f"it uses the unknown field {shown}")
        if name not in names:
            names.append(name)
    return names


def check_checkpoint_path(path: object, monitor: str) -> str:
    """``path`` as a checkpoint file template (a directory gets `DIRECTORY_TEMPLATE`), checked
    when the callback is made so a bad path fails before any training, not at the first write.

    Metric fields (``{valid_loss:.3f}``) are checked for their form here; whether such a
    metric exists is only known once an epoch has run (`ModelCheckpoint.file_for`).

    Raises:
        TypeError: ``path`` is not a str or ``os.PathLike``.
        ValueError: it is empty, uses an unknown template field or a bad format, names an
            existing directory without a trailing ``/``, or lies under an existing file.
        PermissionError: the directory it would be written in is not writable.
    """
    if not isinstance(path, str | os.PathLike):
        raise TypeError(
            f"`path` must be a file path or template (str or os.PathLike), got {path!r} "
            f"({type(path).__name__}). Pass e.g. 'checkpoints/' or 'model-{{epoch:02d}}.pt'."
        )
    text = os.fspath(path)
    if not isinstance(text, str) or not text:
        raise ValueError(f"`path` must be a non-empty path or template, got {path!r}.")
    if _is_directory(text):
        text += DIRECTORY_TEMPLATE
    hint = f"To save into it, end the path with '/' ({text.rstrip(os.sep) + '/'!r}); otherwise name a file."
    check_output_file(Path(_format_sample(text, monitor)), "path", shown=text, directory_hint=hint)
    return text


def _format_sample(text: str, monitor: str) -> str:
    """``text`` formatted with sample values: an unknown field or a bad format spec fails here."""
    metrics = {name: 0.5 for name in template_fields(text) if name not in TEMPLATE_FIELDS}
    try:
        return text.format(**metrics, epoch=1, monitor=0.5, monitor_name=monitor)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as error:
        raise _template_error(text, f"formatting it failed ({error})") from None


def _template_error(text: str, problem: str) -> ValueError:
    valid = ", ".join(f"{{{f}}}" for f in TEMPLATE_FIELDS)
    return ValueError(
        f"`path` {text!r} is a template for str.format, but {problem}. The valid fields are "
        f"{valid} and monitor names such as {{valid_loss:.3f}} or {{train_acc}}, e.g. "
        "'model-{epoch:02d}-{monitor:.3f}.pt'; write a literal brace as '{{' or '}}'."
    )


class ModelCheckpoint(MonitorCallback):
    """Saves a full checkpoint (model, optimizers, records, callback and RNG states) at each
    epoch end, or only when ``monitor`` improves.

    A model with NaN or infinite weights is not written (a warning says so). Temporaries that
    killed writes left in the checkpoint directory are removed when the callback is made. With
    a sharded model (``Accelerator(strategy="fsdp")``) each checkpoint is a directory that every
    rank writes its shard into (docs/distributed.md, "Sharded checkpoints").

    How it works (file names, when it writes, distributed fits): docs/checkpoints.md.

    Args:
        path: a ``str.format`` template with ``epoch``, ``monitor`` (the monitored value),
            ``monitor_name`` and any monitor name (``model-{epoch:02d}-{valid_loss:.3f}.pt``),
            or a directory (trailing ``/``), which gets
            ``epoch-{epoch:02d}-{monitor_name}-{monitor:.3f}.pt``. A field that is none of
            these is a ``ValueError`` here; a monitor name that no epoch records is a
            ``ValueError`` at the first epoch end, listing the names that exist.
        monitor: the metric to watch, ``<set>_<name>`` (e.g. ``"valid_loss"``).
        save_best_only: save only when ``monitor`` improves (and always at epoch 1).
        mode: ``"min"``, ``"max"`` or ``"zero"``.
        min_delta: the smallest change that counts as an improvement.

    Example:
        >>> import luz
        >>> cb = luz.callbacks.ModelCheckpoint("checkpoints/", monitor="train_loss")
        >>> # fitted = model.fit(data, callbacks=[cb]); luz.load_checkpoint(fitted, path)
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        monitor: str = "valid_loss",
        save_best_only: bool = False,
        mode: str = "min",
        min_delta: float = 0.0,
    ) -> None:
        super().__init__(monitor=monitor, mode=mode, min_delta=min_delta)
        self.path = check_checkpoint_path(path, self.monitor)
        self._metric_fields = [f for f in template_fields(self.path) if f not in TEMPLATE_FIELDS]
        directory = os.path.dirname(self.path)
        if "{" not in directory:  # a templated directory has no one place to clean
            remove_stale_temporaries(os.path.join(directory, "x"), any_name=True)
        self.save_best_only = check_flag(save_best_only, "save_best_only")
        self.best: float | None = None
        self.last_path: Path | None = None

    every_rank_writes: ClassVar[bool] = False
    """Whether each rank of a distributed fit writes (else rank 0 only)."""

    def file_for(self, epoch: int, value: float, metrics: dict[str, float] | None = None) -> Path:
        """The file name for ``epoch`` with monitored value ``value`` and the values of the
        template's monitor-name fields in ``metrics`` (see `template_values`)."""
        fields = metrics or {}
        return Path(self.path.format(**fields, epoch=epoch, monitor=value, monitor_name=self.monitor))

    def template_values(self) -> dict[str, float]:
        """The current epoch's values of the monitor names the path template uses.

        Raises:
            ValueError: a name the epoch did not record; the message lists the names that exist.
        """
        ctx = self.context
        if not self._metric_fields:
            return {}
        names = monitor_names(ctx)
        values: dict[str, float] = {}
        for field in self._metric_fields:
            found = names.get(field.lower())
            if found is None:
                available = ", ".join(repr(n) for n in names) or "none (no metrics recorded yet)"
                raise ValueError(
                    f"{type(self).__name__}: the path template {self.path!r} uses {{{field}}}, but "
                    f"epoch {ctx.epoch} recorded no metric of that name. Available monitor names: "
                    f"{available}."
                )
            values[field] = float(flat_metric_value(ctx, *found, ctx.epoch))
        return values

    def on_epoch_end(self) -> None:
        ctx = self.context
        value = self.current_value(ctx)
        fields = self.template_values()  # every epoch: a missing name fails at the first one
        better = self.is_improvement(value, self.best)
        first = ctx.epoch == 1  # a new fit: what an earlier fit of this instance saw is history
        if self.save_best_only and not (better or first):
            return
        previous = self.best
        if better or (self.save_best_only and first):
            self.best = value  # before saving, so the checkpoint holds this callback's new state
        if not self.save(self.file_for(ctx.epoch, value, fields)):
            self.best = previous

    def save(self, path: Path) -> bool:
        """Write the running fit's checkpoint to ``path`` unless its weights are not finite."""
        ctx = self.context
        state = checkpoint_state(ctx)
        if not model_finite(ctx, state):
            warnings.warn(
                f"{type(self).__name__}: the model has NaN or infinite weights at epoch {ctx.epoch}; "
                f"not writing {str(path)!r} (earlier checkpoints are kept).",
                UserWarning,
                stacklevel=2,
            )
            return False
        if self.every_rank_writes:  # KeepBestModel: a file per rank (it refuses sharded fits)
            write_checkpoint(state, path)
        else:  # a file from rank 0, or every rank's shard of a directory
            commit_checkpoint(ctx, state, path)
        self.last_path = path
        return True

    def state_dict(self) -> dict[str, Any]:
        """The best monitored value so far."""
        return {"best": self.best}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the best monitored value."""
        self.best = state["best"]

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(path={self.path!r}, monitor={self.monitor!r}, "
            f"save_best_only={self.save_best_only}, mode={self.mode!r}, min_delta={self.min_delta})"
        )


class KeepBestModel(ModelCheckpoint):
    """Keeps the model of the best epoch: at ``on_fit_end`` the model, optimizer and callback
    states of the epoch where ``monitor`` was best are put back (records are left as they are).
    While the fit runs, ``best_epoch`` is the best epoch so far.

    How it works (where the best state is kept, resuming): docs/checkpoints.md.

    Args:
        monitor: the metric to watch, ``<set>_<name>``.
        mode: ``"min"``, ``"max"`` or ``"zero"``.
        min_delta: the smallest change that counts as an improvement.

    Example:
        >>> import luz
        >>> cb = luz.callbacks.KeepBestModel(monitor="valid_loss")
    """

    # The best file is private scratch that each rank reads back at fit end.
    every_rank_writes: ClassVar[bool] = True

    def __init__(self, monitor: str = "valid_loss", mode: str = "min", min_delta: float = 0.0) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="luz-keep-best-"))
        self._finalizer = weakref.finalize(self, shutil.rmtree, self._dir, ignore_errors=True)
        super().__init__(
            self._dir / "best.pt", monitor=monitor, save_best_only=True, mode=mode, min_delta=min_delta
        )
        self.best_epoch: int | None = None

    def on_fit_begin(self) -> None:
        if shards_state(self.context):
            raise ValueError(
                "KeepBestModel does not support a sharded model (Accelerator(strategy='fsdp')): "
                "its best state is private to each process. Use ModelCheckpoint(path, "
                "save_best_only=True) and load the best checkpoint after the fit with "
                "luz.load_checkpoint(fitted, path), or train with strategy='ddp'."
            )
        self._dir.mkdir(parents=True, exist_ok=True)

    def save(self, path: Path) -> bool:
        """Write the best checkpoint and remember its epoch."""
        saved = super().save(path)
        if saved:
            self.best_epoch = self.context.epoch
        return saved

    def on_fit_end(self) -> None:
        ctx = self.context
        file = Path(self.path)
        if file.exists():
            state = read_checkpoint(file)
            load_checkpoint_into_context(
                ctx,
                state,
                restore_model_state=True,
                restore_optimizer_state=True,
                restore_records=False,
                restore_callbacks_state=False,
                restore_rng=False,
                name=str(file),
            )
            self._restore_other_callbacks(state.get("callbacks", []))
            file.unlink(missing_ok=True)
        self.best, self.best_epoch, self.last_path = None, None, None

    def _restore_other_callbacks(self, saved: list[dict[str, Any]]) -> None:
        # As luz: the other callbacks go back to the best epoch too. Matched by class and
        # position; callbacks without `load_state_dict` (it is optional) keep their state.
        pairs = match_callbacks(self.context, saved)
        if pairs is None:
            return  # not this run's callbacks: nothing to match them with
        for entry, cb in pairs:
            load = getattr(cb, "load_state_dict", None)
            # Best-model keepers keep their own best (one would rewrite another's with an older one).
            if not isinstance(cb, KeepBestModel) and entry["state"] is not None and callable(load):
                load(entry["state"])

    def state_dict(self) -> dict[str, Any]:
        """The best value, its epoch and (once one exists) the best epoch's model, optimizer
        and callback states."""
        state: dict[str, Any] = {"best": self.best, "best_epoch": self.best_epoch}
        file = Path(self.path)
        if file.exists():
            # Other callbacks' states at the best epoch; this callback's own state is dropped
            # (it would nest an older best model).
            state.update(model_parts(read_checkpoint(file), blank=type(self).__qualname__))
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the best value and rewrite the best checkpoint from the saved states."""
        self.best, self.best_epoch = state["best"], state["best_epoch"]
        if "model" in state:
            write_checkpoint(checkpoint_of_parts(self.best_epoch, state), self.path)

    def __repr__(self) -> str:
        return f"KeepBestModel(monitor={self.monitor!r}, mode={self.mode!r}, min_delta={self.min_delta})"
