"""The progress callback, in the form that suits where the output goes.

- **notebook** (a Jupyter kernel with ``ipywidgets``): one widget with a row per phase, updated
  in place, and an HTML table of epochs; nothing on stderr (see ``_progress_notebook``);
- **bar** (stderr is a terminal): ``Epoch i/N``, a text bar per phase redrawn with ``\\r``, and
  ``Train metrics: ...`` / ``Valid metrics: ...`` lines, on stderr;
- **lines** (anything else: a pipe, a file, a CI log): one line per epoch on stderr, no
  carriage returns (see ``_progress_text``).

Running metric values need a host sync, so they are computed only when a bar is redrawn, at
most every ``refresh`` seconds, never per batch; the lines form computes none.
"""

from __future__ import annotations

import sys
import time
import weakref
from collections.abc import Callable
from typing import IO, Any, Literal

from luz._console import default_verbose, in_notebook, is_terminal, note_stream, widgets_available
from luz._validate import check_choice, check_real
from luz.callbacks._progress_text import BarView, LinesView, Pairs, View
from luz.callbacks.base import Callback
from luz.records import format_value

__all__ = ["MODES", "Mode", "Progress", "default_verbose"]

Mode = Literal["auto", "bar", "lines", "notebook"]
"""The values of ``Progress(mode=...)``."""

MODES: tuple[Mode, ...] = ("auto", "bar", "lines", "notebook")


class Progress(Callback):
    """Shows progress when ``ctx.verbose`` is true, in one of three forms (``mode``):

    - ``"bar"`` (a terminal): ``Epoch 1/10``, a bar per phase with running metrics
      (``12/50 [=====     ] - ETA: 00:03 - Loss: 1.8386``) and ``Train metrics: Loss: 0.1234 -
      Acc: 0.9876`` / ``Valid metrics: ...`` at each epoch end;
    - ``"lines"`` (logs): one line per epoch, ``Epoch 1/10 - 1.2s - Train: Loss: 0.1234 - Acc:
      0.9876 - Valid: Loss: ...``, and one per evaluation or prediction, no carriage returns;
    - ``"notebook"``: a widget with a bar per phase updated in place and an HTML table of the
      epochs (needs ``ipywidgets``).

    ``"auto"`` picks ``"notebook"`` in a Jupyter kernel with ipywidgets (``"lines"`` on stdout
    without it), ``"bar"`` when the output stream is a terminal, else ``"lines"``. A `Progress`
    passed in ``callbacks`` replaces the default one. How it works: docs/callbacks.md.

    Args:
        refresh: seconds between redraws of a bar (each computes the running metrics).
        file: where the text forms write; default ``sys.stderr`` at the time of writing (stdout
            in a notebook without ipywidgets).
        mode: ``"auto"``, ``"bar"``, ``"lines"`` or ``"notebook"``.
        clock: the time function (seconds) behind the ETA, rates and durations; tests pass a
            fake one to make the output deterministic.

    Example:
        >>> import io, torch, luz
        >>> log = io.StringIO()
        >>> module = luz.setup(torch.nn.Linear, loss=torch.nn.MSELoss(), optimizer=torch.optim.SGD)
        >>> fitted = module.set_hparams(in_features=3, out_features=1).set_opt_hparams(lr=0.1).fit(
        ...     (torch.randn(64, 3), torch.randn(64, 1)), epochs=2, verbose=True,
        ...     callbacks=[luz.callbacks.Progress(file=log)])
        >>> log.getvalue().count("\\n"), log.getvalue().startswith("Epoch 1/2 - ")
        (2, True)
    """

    def __init__(
        self,
        refresh: float = 0.2,
        file: IO[str] | None = None,
        mode: Mode = "auto",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.refresh = check_real(refresh, "refresh", minimum=0, hint="It is in seconds.")
        hint = "Use 'auto' to pick the form from where the output goes."
        mode = check_choice(mode, "mode", MODES, hint=hint)  # type: ignore[assignment]
        if not callable(clock):
            raise TypeError(f"`clock` must be a function returning seconds, got {type(clock).__name__}.")
        self.file = file
        self.mode: Mode = mode
        self.clock = clock
        self._view: View | None = None
        self._fit: weakref.ref[Any] | None = None  # the context of the fit under way
        self._outcome = "done"
        self._phase = ""
        self._count = 0
        self._total: int | None = None
        self._last = 0.0

    # -- choosing the view ------------------------------------------------------------------

    def resolved_mode(self) -> Mode:
        """The form ``mode="auto"`` stands for here and now (see the class docstring)."""
        if self.mode != "auto":
            return self.mode
        if self.file is None and in_notebook():
            return "notebook" if widgets_available() else "lines"
        return "bar" if is_terminal(self.file if self.file is not None else sys.stderr) else "lines"

    def _make_view(self) -> View:
        mode = self.resolved_mode()
        if mode == "notebook":
            if not widgets_available():
                raise ImportError(
                    "Progress(mode='notebook') needs ipywidgets, which is not installed: "
                    "pip install ipywidgets, or use mode='auto' (plain lines without it)."
                )
            from luz.callbacks._progress_notebook import NotebookView

            return NotebookView(self.clock)
        stream = self.file if self.file is not None else note_stream()  # stdout in notebooks
        return BarView(self.clock, stream) if mode == "bar" else LinesView(self.clock, stream)

    @property
    def _fitting(self) -> bool:
        # A fit that failed never reached on_fit_end: its context is gone (or another one runs).
        return self._fit is not None and self._fit() is self.context

    def _begin_run(self, fitting: bool) -> None:
        self._phase = ""
        self._view = self._make_view() if self.context.verbose else None
        self._fit = weakref.ref(self.context) if fitting else None
        self._outcome = "done"

    def _end_run(self) -> None:
        self._close(complete=False)
        if self._view is not None:
            self._view.run_end(self._outcome)
        self._view = None
        self._fit = None

    # -- breakpoints ------------------------------------------------------------------------

    def on_fit_begin(self) -> None:
        self._begin_run(fitting=True)

    def on_epoch_begin(self) -> None:
        if self._view is not None:
            self._view.epoch_begin(self.context.epoch, self.context.max_epochs)

    def on_train_begin(self) -> None:
        self._open("train")

    def on_valid_begin(self) -> None:
        if not self._fitting:
            self._begin_run(fitting=False)
        self._open("valid" if self._fitting else "evaluate")

    def on_predict_begin(self) -> None:
        self._begin_run(fitting=False)
        self._open("predict")

    def on_train_batch_end(self) -> None:
        if self._phase:
            self._count += 1
            if self._view is not None and self._view.redraws:
                now = self.clock()
                if now - self._last >= self.refresh:
                    self._last = now
                    self._view.phase_draw(self._count, self._running_metrics())

    on_valid_batch_end = on_train_batch_end
    on_predict_batch_end = on_train_batch_end

    def on_train_end(self) -> None:
        self._close(complete=True)

    def on_valid_end(self) -> None:
        self._close(complete=True)
        if not self._fitting:
            self._end_run()

    def on_predict_end(self) -> None:
        self._close(complete=True)
        self._end_run()

    def on_epoch_end(self) -> None:
        ctx = self.context
        if self._view is None:
            return
        phases = []
        for phase in ("train", "valid"):
            values = ctx.get_metrics(phase, ctx.epoch)
            if values:
                phases.append((phase, self._format(phase, values)))
        self._view.epoch_end(ctx.epoch, ctx.max_epochs, phases)

    def on_early_stopping(self) -> None:
        self._close(complete=False)  # before the notes of other callbacks
        self._outcome = "stopped"

    def on_interrupt(self) -> None:
        self._close(complete=False)
        self._outcome = "interrupted"

    def on_fit_end(self) -> None:
        self._end_run()

    # -- a phase ----------------------------------------------------------------------------

    def _open(self, phase: str) -> None:
        self._close(complete=False)
        if self._view is None:
            return
        try:
            total: int | None = len(self.context.data)  # type: ignore[arg-type]
        except TypeError:
            total = None
        self._phase, self._count, self._total = phase, 0, total
        self._last = self.clock() if self._view.redraws else 0.0
        self._view.phase_begin(phase, total)

    def _close(self, *, complete: bool) -> None:
        if not self._phase or self._view is None:
            self._phase = ""
            return
        if self._total is not None:
            complete = complete and self._count == self._total
        metrics = self._recorded_metrics if complete else self._running_metrics
        self._view.phase_end(self._count, metrics, complete)
        self._phase = ""

    # -- formatting -------------------------------------------------------------------------

    def _recorded_metrics(self) -> Pairs:
        """A completed phase's values as `Metrics` logged them just before (reduced across
        ranks), so the metrics are not computed a second time; predict has none."""
        if self._phase == "predict":
            return []
        ctx = self.context
        metric_phase = "train" if self._phase == "train" else "valid"
        recorded = ctx.get_metrics(metric_phase, ctx.epoch)
        return self._format(metric_phase, recorded) if recorded else self._running_metrics()

    def _running_metrics(self) -> Pairs:
        ctx = self.context
        if self._phase == "predict" or self._count == 0:
            return []
        metric_phase = "train" if self._phase == "train" else "valid"
        parts = []
        for metric in ctx.metrics.get(metric_phase, []):
            try:
                value = metric.compute()  # a host sync: only at redraws
            except Exception:  # a metric that cannot compute yet shows nothing
                continue
            parts.append((metric.display_name, metric.format(value)))
        return parts

    def _format(self, phase: str, values: dict[str, Any]) -> Pairs:
        ctx = self.context
        names = ctx.metric_names.get(phase, [])
        metrics = ctx.metrics.get(phase, [])
        display = {n: (m.display_name, m) for n, m in zip(names, metrics, strict=False)}
        parts = []
        for name, value in values.items():
            label, metric = display.get(name, (name, None))
            text = metric.format(value) if metric is not None else format_value(value)
            parts.append((label, text))
        return parts
