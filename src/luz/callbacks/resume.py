"""Resuming training: from a chosen checkpoint (`ResumeFromCheckpoint`) or automatically after
a crash (`AutoResume`)."""

from __future__ import annotations

import copy
import math
import os
import re
import warnings
from pathlib import Path
from typing import Any, ClassVar

from luz._console import note as console_note
from luz._dist.run_state import shards_state
from luz._persist.atomic import remove_stale_temporaries
from luz._persist.checkpoint import (
    check_run,
    checkpoint_state,
    commit_checkpoint,
    model_finite,
    read_checkpoint,
)
from luz._persist.restore import load_checkpoint_into_context
from luz._persist.sharded import (
    checkpoint_exists,
    is_sharded_checkpoint,
    remove_checkpoint,
    remove_uncommitted,
)
from luz._validate import check_flag
from luz.accelerator import is_writer, unwrap_loader
from luz.callbacks.base import Callback
from luz.callbacks.terminate_on_nan import BUFFER_KEY
from luz.events import EPOCH_END_STOP, SkipEpoch, StopTraining


def last_checkpoint(directory: Path) -> Path | None:
    """The last file of ``directory`` in sorted name order, numbers compared as numbers (as luz
    picks it, but ``epoch-100`` after ``epoch-99``: with `ModelCheckpoint`'s default names, the
    latest epoch), ignoring hidden files such as in-progress temporaries. Sharded checkpoint
    directories count as files."""
    files = [p for p in directory.iterdir() if checkpoint_exists(p) and not p.name.startswith(".")]
    return max(files, key=lambda p: _natural_key(p.name)) if files else None


def _natural_key(name: str) -> list[tuple[int, int | str]]:
    # (0, number) and (1, text) parts, so numbers and text never compare with each other.
    return [(0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", name) if part]


class ResumeFromCheckpoint(Callback):
    """Starts a fit from a checkpoint: at ``on_fit_begin`` the chosen parts are loaded.

    A directory means its last checkpoint in sorted name order, numbers compared as numbers
    (with `ModelCheckpoint`'s default names, the latest epoch). If nothing exists at ``path``,
    a ``UserWarning`` says so when the callback is made (and at fit begin if it was there then
    but is gone), and training starts from scratch.

    Args:
        path: a checkpoint file or a directory of them.
        restore_model_state: load the model weights.
        restore_records: replace the records (metrics so far).
        restore_optimizer_state: load the optimizer states (matched by name).
        restore_callbacks_state: load callback states (matched by class, in order).

    Example:
        >>> import luz
        >>> cb = luz.callbacks.ResumeFromCheckpoint("checkpoints/")
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        restore_model_state: bool = True,
        restore_records: bool = False,
        restore_optimizer_state: bool = False,
        restore_callbacks_state: bool = False,
    ) -> None:
        self.path = Path(path)
        self.restore_model_state = check_flag(restore_model_state, "restore_model_state")
        self.restore_records = check_flag(restore_records, "restore_records")
        self.restore_optimizer_state = check_flag(restore_optimizer_state, "restore_optimizer_state")
        self.restore_callbacks_state = check_flag(restore_callbacks_state, "restore_callbacks_state")
        self._warned = False
        if self.resolve() is None:
            self._warn_missing(stacklevel=3)

    def resolve(self) -> Path | None:
        """The checkpoint file (or sharded checkpoint directory) to load, or ``None``."""
        if is_sharded_checkpoint(self.path):
            return self.path
        if self.path.is_dir():
            return last_checkpoint(self.path)
        return self.path if self.path.exists() else None

    def _warn_missing(self, stacklevel: int) -> None:
        self._warned = True
        warnings.warn(
            f"ResumeFromCheckpoint: no checkpoint at {str(self.path)!r} (the path does not exist "
            "or holds no file); unless one is there when the fit begins, training starts from "
            "the model's initial state.",
            UserWarning,
            stacklevel=stacklevel,
        )

    def on_fit_begin(self) -> None:
        file = self.resolve()
        if file is None:
            if not self._warned:  # already said when the callback was made
                self._warn_missing(stacklevel=2)
            return
        state = read_checkpoint(file)
        if self.restore_optimizer_state:  # continuing a run: it must be the same run
            check_run(self.context, state, repr(str(file)))
        load_checkpoint_into_context(
            self.context,
            state,
            name=str(file),
            restore_model_state=self.restore_model_state,
            restore_optimizer_state=self.restore_optimizer_state,
            restore_records=self.restore_records,
            restore_callbacks_state=self.restore_callbacks_state,
            restore_rng=False,
        )

    def __repr__(self) -> str:
        return f"ResumeFromCheckpoint({str(self.path)!r})"


class AutoResume(Callback):
    """Makes a fit resumable: re-running the same script after a crash continues from the last
    completed epoch.

    When each epoch commits (after every callback's ``on_epoch_end``, an early stop's epoch
    included) the full state (model, optimizers, records, callback states and every random
    stream) is written atomically to ``path``, once; after the epoch that stopped the fit, the
    file also says so, and a rerun killed before the fit ended stops there again. At
    ``on_fit_begin``, if ``path`` exists, that state is loaded and the epochs up to the saved
    one are skipped. The file is deleted when the fit ends normally or early-stops, and kept
    when it fails with an error, is interrupted or was stopped by `TerminateOnNaN`; a model
    with NaN or infinite weights is never written. On CPU with a fixed thread count, a run
    resumed after a kill at any instant is bitwise identical to an uninterrupted run with the same callbacks.

    At ``on_fit_begin`` an existing ``path`` is verified (checksum, structure, each part
    against this run): a damaged or inconsistent file is a ``ValueError`` naming it and the
    part, raised before any step, and the file is kept (no silent fresh start). So is a run
    that differs from the one that wrote the file (optimizer classes, batch size, number of
    training samples, shuffling): a ``ValueError`` listing each difference, or with
    ``strict=False`` a ``UserWarning`` listing them, and the fit resumes. A loader with
    ``persistent_workers=True`` cannot be resumed exactly: it is refused at ``on_fit_begin``.

    With a sharded model (``Accelerator(strategy="fsdp")``) ``path`` is a directory that every
    rank writes its shard into (`torch.distributed.checkpoint`), committed atomically; it is
    verified and resumed the same way (docs/distributed.md, "Sharded checkpoints").

    How it works (when it writes and loads, and the limits): docs/checkpoints.md.

    Args:
        path: the state file (a sharded fit: directory); its parent directory is created.
        strict: a resumed run that differs from the saved one is an error (``False``: a warning).

    Example:
        >>> import luz
        >>> cb = luz.callbacks.AutoResume("run/state.pt")
        >>> # model.fit(data, epochs=10, callbacks=[cb]): rerun the script after a crash
    """

    weight: ClassVar[float] = math.inf

    def __init__(self, path: str | os.PathLike[str] = "./state.pt", *, strict: bool = True) -> None:
        self.path = check_state_path(path, "AutoResume", "path")
        self.strict = check_flag(strict, "strict")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(self.path)
        self._pending: dict[str, Any] | None = None
        self._resume_epoch = 0
        self._interrupted = False
        self._nonfinite = False

    def on_fit_begin(self) -> None:
        ctx = self.context
        self._pending = None
        self._resume_epoch = 0
        self._interrupted = False
        self._nonfinite = False
        _refuse_persistent_workers(ctx)
        # One write per epoch, when it commits: after every callback's on_epoch_end (an
        # EarlyStopping listed later included), so a kill between two hooks never saves a mix.
        ctx.after_epoch_end(self._write)
        if is_writer(ctx.accelerator):
            remove_stale_temporaries(self.path)
            remove_uncommitted(self.path)  # in a sharded checkpoint: what killed writes left
        if not checkpoint_exists(self.path):  # a killed first sharded write committed nothing
            return
        # Verified (checksum, structure, and every part against this fit) before anything is
        # restored: a damaged file is an error naming it and its part, never a fresh start.
        state = read_checkpoint(self.path)
        if "sharded" in state and not shards_state(ctx):  # its next write would need a file
            raise ValueError(
                f"AutoResume: {str(self.path)!r} is a sharded checkpoint directory (written by a fit "
                "with Accelerator(strategy='fsdp')) but this fit is not sharded. Resume it with "
                "strategy='fsdp' under torchrun, or start this fit from its weights with "
                "ResumeFromCheckpoint(path) and another AutoResume path."
            )
        check_run(ctx, state, repr(str(self.path)), strict=self.strict)
        self._resume_epoch = min(int(state["epoch"]), ctx.max_epochs)
        if ctx.verbose:
            console_note(f"Resuming training from {str(self.path)!r} after epoch {state['epoch']}.")
        # A copy: records logged by index while epochs are skipped must not reach the saved
        # state, which is put back untouched at the last skipped epoch.
        load_checkpoint_into_context(ctx, copy.deepcopy(state), name=str(self.path))
        self._pending = state
        stopped = state.get("stopped")
        if stopped is not None:
            # Killed after the commit of the epoch that stopped the fit, before it ended: end
            # it again there, as the uninterrupted run did (no epoch more).
            self._pending = None
            ctx.epoch = self._resume_epoch
            stop = StopTraining(str(stopped.get("reason", "")))
            stop.raised_by = str(stopped.get("raised_by") or "") or None
            raise stop

    def on_epoch_begin(self) -> None:
        if self._pending is None:
            return
        ctx = self.context
        if ctx.epoch >= self._resume_epoch:
            # The last skipped epoch: put everything back again, so the next epoch starts from
            # exactly the state (RNG included) the crashed run had after this one.
            state, self._pending = self._pending, None
            load_checkpoint_into_context(ctx, state, name=str(self.path))
        raise SkipEpoch

    def _write(self) -> None:
        ctx = self.context
        if BUFFER_KEY in ctx.buffers:
            return  # a NaN guard stopped this epoch: it is not a good state to resume from
        state = checkpoint_state(ctx)  # every rank: it gathers the random streams
        if not model_finite(ctx, state):
            self._nonfinite = True
            warnings.warn(
                f"AutoResume: the model has NaN or infinite weights at epoch {ctx.epoch}; not "
                f"writing {str(self.path)!r}, which keeps the last good state.",
                UserWarning,
                stacklevel=2,
            )
            return
        stop = ctx.buffers.get(EPOCH_END_STOP)
        if isinstance(stop, StopTraining):  # this epoch stopped the fit: a resume ends there
            state["stopped"] = {"reason": str(stop), "raised_by": stop.raised_by or ""}
        commit_checkpoint(ctx, state, self.path)  # a file from rank 0, or every rank's shard

    def on_interrupt(self) -> None:
        self._interrupted = True

    def on_fit_end(self) -> None:
        self._pending = None
        stopped_on_nan = BUFFER_KEY in self.context.buffers
        writer = is_writer(self.context.accelerator)  # distributed: rank 0 owns the file
        if writer and not (self._interrupted or self._nonfinite or stopped_on_nan):
            remove_checkpoint(self.path)

    def __repr__(self) -> str:
        return f"AutoResume({str(self.path)!r})"


def check_state_path(path: Any, owner: str, argument: str) -> Path:
    """``path`` as a `Path` for a state file: a ``str`` or path-like that is not a directory.

    Raises:
        TypeError: ``path`` is not a str or path-like.
        ValueError: ``path`` is an existing directory (other than a sharded checkpoint).
    """
    if isinstance(path, bool) or not isinstance(path, (str, os.PathLike)):
        raise TypeError(
            f"{owner}: `{argument}` must be a file path (a str or os.PathLike), got "
            f"{type(path).__name__} {path!r}. Pass e.g. {owner}('run/state.pt')."
        )
    result = Path(path)
    if result.is_dir() and not is_sharded_checkpoint(result):
        raise ValueError(
            f"{owner}: `{argument}`={str(result)!r} is a directory; it must be the state file, "
            f"e.g. {str(result / 'state.pt')!r}."
        )
    return result


def _refuse_persistent_workers(ctx: Any) -> None:
    # A loader's worker base seed is drawn from the global RNG when its iterator is made: once
    # per fit with persistent workers, at epoch 1 of the original run but at the first resumed
    # epoch after a restart, so the resumed run would draw (and shuffle) differently.
    for role, loader in (("train_data", ctx.train_data), ("valid_data", ctx.valid_data)):
        user = unwrap_loader(loader)
        if getattr(user, "persistent_workers", False) and getattr(user, "num_workers", 0) > 0:
            raise ValueError(
                f"AutoResume cannot resume a fit exactly when its {role} loader has "
                "persistent_workers=True: the workers' seed is drawn at another point of the "
                "random stream after a restart, so the resumed run would shuffle differently. "
                "Pass persistent_workers=False (the default) in dataloader_options or your "
                "DataLoader; num_workers > 0 without persistent workers resumes exactly."
            )
