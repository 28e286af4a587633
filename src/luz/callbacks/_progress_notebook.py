"""Progress in a Jupyter notebook: widgets updated in place and an HTML table of epochs.

A fit shows two outputs, whatever its number of epochs:

1. one widget: an ``Epoch i/N`` row (a bar over the epochs, elapsed time and an estimate of the
   time left) and one row per phase (``train``, ``valid``), each a bar with ``12/50 - ETA: 00:03 -
   Loss: 1.8386``; the phase rows are reused from epoch to epoch, not added;
2. a table with one row per finished epoch (the recorded metrics and the epoch's time), updated
   in place (a display id), with a text form for viewers that do not render HTML.

Evaluation and prediction show one row (a bar). Nothing is written to stdout or stderr. A bar
turns green when its pass completes and red when it was cut short (an interrupt, a stop).
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

from luz.callbacks._progress_text import LABELS, Clock, Pairs, View, meter_text
from luz.reporting import pretty_seconds


class NotebookView(View):
    """Widgets (ipywidgets) and an HTML table; needs ``ipywidgets`` and IPython."""

    redraws = True

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        import ipywidgets
        from IPython.display import display

        self._widgets: Any = ipywidgets
        self._display: Any = display
        # One layout and one style per kind of widget, shared by the rows (the styles are the
        # first row's): fewer widget models to keep in the notebook's saved widget state.
        layout = ipywidgets.Layout
        self._bar_layout, self._text_layout, self._row_layout = layout(width="40%"), layout(), layout()
        self._bar_style: Any = None
        self._text_style: Any = None
        self._box: Any = None
        self._rows: dict[str, tuple[Any, Any]] = {}  # phase -> (bar, text)
        self._epoch_row: tuple[Any, Any] | None = None
        self._table: Any = None
        self._epochs: list[tuple[int, str, list[tuple[str, Pairs]]]] = []
        self._fit_start = 0.0
        self._epoch_start = 0.0
        self._phase = ""
        self._total: int | None = None
        self._start = 0.0
        self._drawn = -1

    # -- the widget -------------------------------------------------------------------------

    def _new_row(self, label: str, maximum: int, *, first: bool = False) -> tuple[Any, Any]:
        """A row ``label [bar] text`` added to the widget (shown at the first row)."""
        w = self._widgets
        bar_style = self._bar_style or {"description_width": "7em"}
        bar = w.FloatProgress(
            value=0, min=0, max=maximum, description=label, layout=self._bar_layout, style=bar_style
        )
        text = w.HTML("", layout=self._text_layout, style=self._text_style or {})
        self._bar_style, self._text_style = bar.style, text.style
        row = w.HBox([bar, text], layout=self._row_layout)
        if self._box is None:
            self._box = w.VBox([row])
            self._display(self._box)
        else:
            children = tuple(self._box.children)
            self._box.children = (row, *children) if first else (*children, row)
        return bar, text

    def _row(self, phase: str) -> tuple[Any, Any]:
        if phase not in self._rows:
            self._rows[phase] = self._new_row(LABELS[phase].lower(), 1)
        return self._rows[phase]

    def epoch_begin(self, epoch: int, max_epochs: int) -> None:
        now = self.clock()
        if self._epoch_row is None:
            self._fit_start = now
            self._epoch_row = self._new_row("", max(max_epochs, 1), first=True)
        self._epoch_start = now
        self._epoch_row[0].description = f"Epoch {epoch}/{max_epochs}"
        self._draw_epochs(epoch - 1, max_epochs, now)

    def _draw_epochs(self, done: int, max_epochs: int, now: float) -> None:
        assert self._epoch_row is not None
        bar, text = self._epoch_row
        bar.value = done
        elapsed = now - self._fit_start
        line = f"{done}/{max_epochs} epochs - {pretty_seconds(elapsed)} elapsed"
        if 0 < done < max_epochs:
            line += f" - ETA: {pretty_seconds(elapsed / done * (max_epochs - done))}"
        text.value = html.escape(line)

    def phase_begin(self, phase: str, total: int | None) -> None:
        self._phase, self._total, self._start = phase, total, self.clock()
        bar, _ = self._row(phase)
        bar.bar_style = "" if total else "info"  # no length: a full striped bar
        bar.max = total or 1
        self.phase_draw(0, [])

    def phase_draw(self, n: int, metrics: Pairs) -> None:
        bar, text = self._row(self._phase)
        bar.value = min(n, self._total) if self._total else (1 if n else 0)
        line = meter_text(n, self._total, self.clock() - self._start, metrics, bar=False)
        text.value = html.escape(line)
        self._drawn = n

    def phase_end(self, n: int, metrics: Callable[[], Pairs], complete: bool) -> None:
        if n != self._drawn:  # else the last redraw already shows the end
            self.phase_draw(n, metrics())
        bar, _ = self._row(self._phase)
        bar.bar_style = "success" if complete else "danger"

    # -- the table of epochs ----------------------------------------------------------------

    def epoch_end(self, epoch: int, max_epochs: int, phases: list[tuple[str, Pairs]]) -> None:
        now = self.clock()
        self._epochs.append((epoch, pretty_seconds(now - self._epoch_start), phases))
        if self._epoch_row is not None:
            self._draw_epochs(epoch, max_epochs, now)
        header, rows = self._cells()  # built once for both forms of the table
        bundle = {"text/html": _table_html(header, rows), "text/plain": _table_text(header, rows)}
        if self._table is None:
            self._table = self._display(bundle, raw=True, display_id=True)
        else:
            self._table.update(bundle, raw=True)

    def _columns(self) -> list[tuple[str, str]]:
        columns: list[tuple[str, str]] = []
        for _, _, phases in self._epochs:
            for phase, pairs in phases:
                for name, _ in pairs:
                    if (phase, name) not in columns:
                        columns.append((phase, name))
        return columns

    def _cells(self) -> tuple[list[str], list[list[str]]]:
        columns = self._columns()
        header = ["Epoch", *(f"{LABELS[phase]} {name}" for phase, name in columns), "Time"]
        rows = []
        for epoch, seconds, phases in self._epochs:
            values = {(phase, name): text for phase, pairs in phases for name, text in pairs}
            rows.append([str(epoch), *(values.get(column, "") for column in columns), seconds])
        return header, rows

    def run_end(self, outcome: str) -> None:
        if self._epoch_row is not None:
            bar, _ = self._epoch_row
            bar.bar_style = {"done": "success", "stopped": "warning"}.get(outcome, "danger")


def _table_html(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(cell)}</th>" for cell in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in rows
    )
    return f'<table class="luz-progress"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _table_text(header: list[str], rows: list[list[str]]) -> str:
    table = [header, *rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    return "\n".join("  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)) for row in table)
