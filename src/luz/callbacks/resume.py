"""Resuming training: from a chosen checkpoint (`ResumeFromCheckpoint`) or automatically after
a crash (`AutoResume`)."""

from __future__ import annotations

import math
import os
import sys
import warnings
from pathlib import Path
from typing import Any, ClassVar

from luz._checkpoint import (
    all_finite,
    checkpoint_state,
    load_checkpoint_into_context,
    read_checkpoint,
    write_checkpoint,
)
from luz.callbacks.base import Callback
from luz.callbacks.terminate_on_nan import BUFFER_KEY
from luz.events import SkipEpoch


def newest_checkpoint(directory: Path) -> Path | None:
    """The most recently written file in ``directory`` (ties: the last name in sorted order),
    ignoring hidden files such as in-progress temporaries."""
    files = [p for p in directory.iterdir() if p.is_file() and not p.name.startswith(".")]
    if not files:
        return None
    return max(files, key=lambda p: (p.stat().st_mtime_ns, p.name))


class ResumeFromCheckpoint(Callback):
    """Starts a fit from a checkpoint: at ``on_fit_begin`` the chosen parts are loaded.

    A directory means its newest checkpoint (e.g. the directory of a `ModelCheckpoint`). If
    nothing exists at ``path`` when the fit begins, a ``UserWarning`` says so and training
    starts from scratch.

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
        self.restore_model_state = restore_model_state
        self.restore_records = restore_records
        self.restore_optimizer_state = restore_optimizer_state
        self.restore_callbacks_state = restore_callbacks_state

    def resolve(self) -> Path | None:
        """The checkpoint file to load, or ``None`` if there is none."""
        if self.path.is_dir():
            return newest_checkpoint(self.path)
        return self.path if self.path.exists() else None

    def on_fit_begin(self) -> None:
        file = self.resolve()
        if file is None:
            warnings.warn(
                f"ResumeFromCheckpoint: no checkpoint at {str(self.path)!r}; training starts from scratch.",
                UserWarning,
                stacklevel=2,
            )
            return
        load_checkpoint_into_context(
            self.context,
            file,
            restore_model_state=self.restore_model_state,
            restore_optimizer_state=self.restore_optimizer_state,
            restore_records=self.restore_records,
            restore_callbacks_state=self.restore_callbacks_state,
            restore_rng=False,
        )

    def __repr__(self) -> str:
        return f"ResumeFromCheckpoint({str(self.path)!r})"


class AutoResume(Callback):
    """Makes a fit resumable: re-running the same script after a crash continues exactly where
    the last completed epoch left off.

    At every epoch end, after every other callback's ``on_epoch_end``, the full state is
    written atomically to ``path``: model, optimizers, records, callback states and every random
    stream (Python, NumPy, torch CPU/CUDA, and data-loader generators). At ``on_fit_begin``, if
    ``path`` exists, epochs up to the saved one are skipped (`luz.SkipEpoch` from
    ``on_epoch_begin``, before any data is drawn); the state is put back at the last skipped
    epoch, after the other callbacks' ``on_epoch_begin`` hooks, so nothing they did while
    skipping survives. The file is deleted when the fit ends normally or early-stops, and kept
    when it fails with an error, is interrupted (Ctrl-C or SIGTERM) or was stopped by
    `TerminateOnNaN` (so a re-run resumes). A model with NaN or infinite weights is never
    written (a warning says so): the file keeps the last good state, and is kept at the end.

    On CPU with a fixed thread count, the resumed run's weights, optimizer and scheduler states,
    records and losses are bitwise identical to an uninterrupted run with the same callbacks
    (see ``docs/checkpoints.md`` for the limits).

    Args:
        path: the state file.

    Example:
        >>> import luz
        >>> cb = luz.callbacks.AutoResume("run/state.pt")
        >>> # model.fit(data, epochs=10, callbacks=[cb]): rerun the script after a crash
    """

    weight: ClassVar[float] = math.inf

    def __init__(self, path: str | os.PathLike[str] = "./state.pt") -> None:
        self.path = Path(path)
        self._pending: dict[str, Any] | None = None
        self._resume_epoch = 0
        self._interrupted = False
        self._nonfinite = False

    def on_fit_begin(self) -> None:
        ctx = self.context
        # Run after every other callback, weight-inf ones included: the state written at epoch
        # end must include everything they changed, and the state restored at epoch begin must
        # override anything they did for skipped epochs.
        ctx.callbacks = [*(cb for cb in ctx.callbacks if cb is not self), self]
        self._pending = None
        self._resume_epoch = 0
        self._interrupted = False
        self._nonfinite = False
        if not self.path.exists():
            return
        self._pending = read_checkpoint(self.path)
        self._resume_epoch = min(int(self._pending["epoch"]), ctx.max_epochs)
        if ctx.verbose:
            print(
                f"Resuming training from {str(self.path)!r} after epoch {self._pending['epoch']}.",
                file=sys.stderr,
            )

    def on_epoch_begin(self) -> None:
        if self._pending is None:
            return
        ctx = self.context
        if ctx.epoch >= self._resume_epoch:
            # The last skipped epoch: put everything back now, so the next epoch starts from
            # exactly the state (RNG included) the crashed run had after this one.
            state, self._pending = self._pending, None
            load_checkpoint_into_context(ctx, state)
        raise SkipEpoch

    def on_epoch_end(self) -> None:
        ctx = self.context
        state = checkpoint_state(ctx)
        if not all_finite(state["model"]):
            self._nonfinite = True
            warnings.warn(
                f"AutoResume: the model has NaN or infinite weights at epoch {ctx.epoch}; not "
                f"writing {str(self.path)!r}, which keeps the last good state.",
                UserWarning,
                stacklevel=2,
            )
            return
        write_checkpoint(state, self.path)

    def on_interrupt(self) -> None:
        self._interrupted = True

    def on_fit_end(self) -> None:
        self._pending = None
        stopped_on_nan = BUFFER_KEY in self.context.buffers
        acc = self.context.accelerator
        writer = acc is None or acc.is_main_process  # distributed: rank 0 owns the file
        if writer and not (self._interrupted or self._nonfinite or stopped_on_nan):
            self.path.unlink(missing_ok=True)

    def __repr__(self) -> str:
        return f"AutoResume({str(self.path)!r})"
