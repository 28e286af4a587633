"""The progress callback: ``Epoch i/N``, a bar per phase, and end-of-epoch metric lines.

Bars are drawn by tqdm (``tqdm.auto``: a widget in notebooks, text in terminals). Running
metric values need a host sync, so they are computed only when the bar refreshes, at most
every ``refresh`` seconds, never per batch.
"""

from __future__ import annotations

import sys
import time
from typing import IO, Any

from luz._validate import check_real
from luz.callbacks.base import Callback
from luz.records import format_value

_BAR = "{n_fmt}/{total_fmt} [{bar:30}]"


def default_verbose() -> bool:
    """Progress is shown when stderr is a terminal or we run inside a notebook kernel."""
    if "ipykernel" in sys.modules:
        return True
    stream = sys.stderr
    return bool(stream is not None and hasattr(stream, "isatty") and stream.isatty())


class Progress(Callback):
    """Shows progress when ``ctx.verbose`` is true.

    Prints ``Epoch 1/10`` at each epoch start, a bar during training, validation, evaluation and
    prediction with running metrics (``12/50 [=====     ] - ETA: 00:03 - Loss: 1.8386``), and
    ``Train metrics: Loss: 0.1234 - Acc: 0.9876`` / ``Valid metrics: ...`` at each epoch end.

    How it works (the bars, when running metrics are computed): docs/callbacks.md.

    Args:
        refresh: seconds between bar refreshes (each refresh computes the running metrics).
        file: where to write; default ``sys.stderr`` at the time of writing.
    """

    def __init__(self, refresh: float = 0.2, file: IO[str] | None = None) -> None:
        self.refresh = check_real(refresh, "refresh", minimum=0, hint="It is in seconds.")
        self.file = file
        self._bar: Any = None
        self._pending = 0
        self._last = 0.0
        self._phase = ""
        self._total: int | None = None

    @property
    def _out(self) -> IO[str]:
        return self.file if self.file is not None else sys.stderr

    def _print(self, text: str) -> None:
        print(text, file=self._out, flush=True)

    # -- breakpoints ------------------------------------------------------------------------

    def on_epoch_begin(self) -> None:
        ctx = self.context
        if ctx.verbose:
            self._print(f"Epoch {ctx.epoch}/{ctx.max_epochs}")

    def on_train_begin(self) -> None:
        self._open("train")

    def on_valid_begin(self) -> None:
        self._open("valid")

    def on_predict_begin(self) -> None:
        self._open("")

    def on_train_batch_end(self) -> None:
        if self._bar is not None:
            self._tick()

    on_valid_batch_end = on_train_batch_end
    on_predict_batch_end = on_train_batch_end

    def on_train_end(self) -> None:
        self._close()

    on_valid_end = on_train_end
    on_predict_end = on_train_end

    def on_epoch_end(self) -> None:
        ctx = self.context
        if not ctx.verbose:
            return
        for phase, label in (("train", "Train"), ("valid", "Valid")):
            values = ctx.get_metrics(phase, ctx.epoch)
            if values:
                self._print(f"{label} metrics: {self._format(phase, values)}")

    def on_fit_end(self) -> None:
        self._close()

    # -- the bar ----------------------------------------------------------------------------

    def _open(self, phase: str) -> None:
        ctx = self.context
        self._close()
        if not ctx.verbose:
            return
        from tqdm.auto import tqdm

        try:
            total: int | None = len(ctx.data)  # type: ignore[arg-type]
        except TypeError:
            total = None
        self._phase = phase
        self._total = total
        self._pending = 0
        self._last = time.monotonic()
        self._bar = tqdm(
            total=total,
            file=self._out,
            bar_format=self._bar_format(""),
            ascii=" =",
            leave=True,
            dynamic_ncols=False,
            mininterval=self.refresh,
        )

    def _bar_format(self, metrics: str) -> str:
        timing = " - ETA: {remaining}" if self._total else " - {rate_fmt}"
        escaped = metrics.replace("{", "{{").replace("}", "}}")
        return _BAR + timing + escaped

    def _tick(self) -> None:
        self._pending += 1
        now = time.monotonic()
        if now - self._last >= self.refresh:
            self._last = now
            self._flush()

    def _flush(self) -> None:
        bar = self._bar
        if self._phase:
            bar.bar_format = self._bar_format(self._running_metrics())
        bar.update(self._pending)
        self._pending = 0

    def _close(self) -> None:
        if self._bar is None:
            return
        self._flush()
        self._bar.close()
        self._bar = None

    # -- formatting -------------------------------------------------------------------------

    def _running_metrics(self) -> str:
        ctx = self.context
        if ctx.iter == 0:
            return ""
        parts = []
        for metric in ctx.metrics.get(self._phase, []):
            try:
                value = metric.compute()  # a host sync: only at refreshes
            except Exception:  # a metric that cannot compute yet shows nothing
                continue
            parts.append(f" - {metric.display_name}: {metric.format(value)}")
        return "".join(parts)

    def _format(self, phase: str, values: dict[str, Any]) -> str:
        ctx = self.context
        names = ctx.metric_names.get(phase, [])
        metrics = ctx.metrics.get(phase, [])
        display = {n: (m.display_name, m) for n, m in zip(names, metrics, strict=False)}
        parts = []
        for name, value in values.items():
            label, metric = display.get(name, (name, None))
            text = metric.format(value) if metric is not None else _fmt(value)
            parts.append(f"{label}: {text}")
        return " - ".join(parts)


def _fmt(value: Any) -> str:
    return format_value(value)
