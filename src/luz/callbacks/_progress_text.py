"""The text forms of progress: a bar redrawn in place (terminals) and one line per epoch (logs).

A view is told what happens (an epoch begins, a phase begins, is redrawn, ends, an epoch ends)
and decides what to show; `luz.callbacks.Progress` picks the view. Times come from the clock the
view is given, so a fake clock makes the output deterministic.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import IO

from luz.reporting import pretty_seconds

Pairs = list[tuple[str, str]]
"""Metric display names and formatted values, in order: ``[("Loss", "0.1234"), ...]``."""

Clock = Callable[[], float]

LABELS = {"train": "Train", "valid": "Valid", "evaluate": "Evaluate", "predict": "Predict"}
"""How each phase is named in the output."""

_BAR = "{n_fmt}/{total_fmt} [{bar:30}]"


def join_pairs(pairs: Pairs) -> str:
    """``Loss: 0.1234 - Acc: 0.9000``."""
    return " - ".join(f"{name}: {text}" for name, text in pairs)


def meter_text(n: int, total: int | None, elapsed: float, metrics: Pairs, *, bar: bool) -> str:
    """``12/50 [=====     ] - ETA: 00:03 - Loss: 1.8386`` (without the ``[...]`` when not ``bar``):
    an ETA when the total is known, else a rate."""
    from tqdm import tqdm

    head = _BAR if bar else "{n_fmt}/{total_fmt}"
    timing = " - ETA: {remaining}" if total else " - {rate_fmt}"
    tail = "".join(f" - {name}: {text}" for name, text in metrics)
    escaped = tail.replace("{", "{{").replace("}", "}}")
    text: str = tqdm.format_meter(n, total, elapsed, ascii=" =", bar_format=head + timing + escaped)
    return text


class View:
    """What a progress view is told; every method is a no-op here.

    Attributes:
        redraws: whether the view shows a phase while it runs (`phase_draw` is called, and the
            running metrics computed, at each refresh).
    """

    redraws = False

    def __init__(self, clock: Clock) -> None:
        self.clock = clock

    def epoch_begin(self, epoch: int, max_epochs: int) -> None:
        """An epoch of a fit begins."""

    def phase_begin(self, phase: str, total: int | None) -> None:
        """A pass over data begins: ``train``, ``valid``, ``evaluate`` or ``predict``."""

    def phase_draw(self, n: int, metrics: Pairs) -> None:
        """A refresh: ``n`` batches done, the running metrics."""

    def phase_end(self, n: int, metrics: Callable[[], Pairs], complete: bool) -> None:
        """The pass ended after ``n`` batches (``complete``: it saw all of them); ``metrics()``
        computes the final running metrics (a host sync: call it only if they are shown)."""

    def epoch_end(self, epoch: int, max_epochs: int, phases: list[tuple[str, Pairs]]) -> None:
        """An epoch ended with these recorded metrics per phase."""

    def run_end(self, outcome: str) -> None:
        """The run ended: ``"done"``, ``"stopped"`` (a `StopTraining`) or ``"interrupted"``."""


class BarView(View):
    """Terminals: ``Epoch i/N``, a bar per phase redrawn in place with ``\\r``, then
    ``Train metrics: ...`` / ``Valid metrics: ...`` lines."""

    redraws = True

    def __init__(self, clock: Clock, stream: IO[str]) -> None:
        super().__init__(clock)
        self.stream = stream
        self._start = 0.0
        self._total: int | None = None
        self._width = 0
        self._drawn = -1

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()

    def epoch_begin(self, epoch: int, max_epochs: int) -> None:
        self._write(f"Epoch {epoch}/{max_epochs}\n")

    def phase_begin(self, phase: str, total: int | None) -> None:
        self._start = self.clock()
        self._total = total
        self._width = 0
        self.phase_draw(0, [])

    def phase_draw(self, n: int, metrics: Pairs) -> None:
        line = meter_text(n, self._total, self.clock() - self._start, metrics, bar=True)
        padding = " " * max(self._width - len(line), 0)  # wipe what a longer line left
        self._width, self._drawn = len(line), n
        self._write("\r" + line + padding)

    def phase_end(self, n: int, metrics: Callable[[], Pairs], complete: bool) -> None:
        if n != self._drawn:  # else the last redraw already shows the end
            self.phase_draw(n, metrics())
        self._write("\n")

    def epoch_end(self, epoch: int, max_epochs: int, phases: list[tuple[str, Pairs]]) -> None:
        for phase, pairs in phases:
            self._write(f"{LABELS[phase]} metrics: {join_pairs(pairs)}\n")


class LinesView(View):
    """Logs (not a terminal, not a notebook): one line per epoch, no carriage returns::

        Epoch 1/10 - 120ms - Train: Loss: 0.4321 - Acc: 0.8800 - Valid: Loss: 0.5012 - Acc: 0.8500

    and one line per evaluation (``Evaluate: 4/4 batches - 15ms - Loss: ...``) or prediction.
    Nothing is computed during a phase: per batch it only counts.
    """

    def __init__(self, clock: Clock, stream: IO[str]) -> None:
        super().__init__(clock)
        self.stream = stream
        self._epoch_start = 0.0
        self._start = 0.0
        self._phase = ""
        self._total: int | None = None

    def _print(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def epoch_begin(self, epoch: int, max_epochs: int) -> None:
        self._epoch_start = self.clock()

    def phase_begin(self, phase: str, total: int | None) -> None:
        self._phase = phase
        self._total = total
        self._start = self.clock()

    def phase_end(self, n: int, metrics: Callable[[], Pairs], complete: bool) -> None:
        if self._phase not in ("evaluate", "predict"):
            return  # a fit's phases are reported in the epoch's line
        seconds = pretty_seconds(self.clock() - self._start)
        count = f"{n}/{self._total}" if self._total is not None else f"{n}"
        parts = [f"{LABELS[self._phase]}: {count} batches", seconds]
        pairs = metrics() if self._phase == "evaluate" else []
        if pairs:
            parts.append(join_pairs(pairs))
        self._print(" - ".join(parts))

    def epoch_end(self, epoch: int, max_epochs: int, phases: list[tuple[str, Pairs]]) -> None:
        parts = [f"Epoch {epoch}/{max_epochs}", pretty_seconds(self.clock() - self._epoch_start)]
        parts += [f"{LABELS[phase]}: {join_pairs(pairs)}" for phase, pairs in phases if pairs]
        self._print(" - ".join(parts))
