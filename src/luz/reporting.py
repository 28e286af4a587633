"""What results look like: the ``repr`` text of fitted models and evaluations, and plots."""

from __future__ import annotations

import html
from typing import Any

from torch import nn

from luz._dist.fsdp import user_class
from luz.records import Records, format_value, metric_rows


def pretty_seconds(seconds: float) -> str:
    """``0.5ms``, ``1.2s``, ``1m 15s``, ``2h 3m``."""
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f}µs"
    if seconds < 1:
        return f"{seconds * 1e3:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes}m"


class Preformatted(str):
    """A summary entry shown as is (a model's multi-line repr): ``<pre>`` in HTML."""

    __slots__ = ()


Section = tuple[str, list[str]]
"""A titled block of a result's summary: ``(title, lines)``; an empty line separates groups."""


def _rule(title: str) -> str:
    return f"── {title} " + "─" * max(3, 40 - len(title))


def _metric_lines(metrics: dict[str, Any] | None) -> list[str]:
    return [f"{name}: {format_value(value)}" for name, value in (metrics or {}).items()]


def count_parameters(model: Any) -> tuple[int, int]:
    """``(total, trainable)`` numbers of parameter elements of an ``nn.Module``."""
    total = trainable = 0
    for p in model.parameters():
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    return total, trainable


def parameters_line(model: Any) -> list[str]:
    """``["The model (`Net`) has 1,234 parameters (1,234 trainable)."]`` (R luz prints the count;
    a model sharded with FSDP is named by its own class); empty for an object without
    ``parameters()``."""
    if not callable(getattr(model, "parameters", None)):
        return []
    total, trainable = count_parameters(model)  # a sharded model's counts are global
    name = user_class(model).__name__ if isinstance(model, nn.Module) else type(model).__name__
    return [f"The model (`{name}`) has {total:,} parameters ({trainable:,} trainable)."]


def _time_lines(profile: dict[str, list[float]], total_key: str | None) -> list[str]:
    lines = []
    total = profile.get(total_key, []) if total_key else []
    if total:
        lines.append(f"• Total time: {pretty_seconds(sum(total))}")
    for key, label in (("train", "training"), ("valid", "validation")):
        times = profile.get(key, [])
        if times:
            lines.append(f"• Avg time per {label} epoch: {pretty_seconds(sum(times) / len(times))}")
    return lines


def ending_line(records: Records, stop_reason: str | None) -> str:
    """How training ended: every epoch ran, or `Fitted.stop_reason`'s sentence."""
    if stop_reason is not None:
        return f"Training ended early: {stop_reason}."
    epochs = len(records.get("metrics", {}).get("train", []))
    return f"Training ran every epoch ({epochs})."


def fitted_sections(records: Records, model: Any, stop_reason: str | None = None) -> list[Section]:
    """The blocks of a `Fitted`'s summary: time, last-epoch metrics, the model, how it ended."""
    results = ["Metrics observed in the last epoch.", ""]
    metrics = records.get("metrics", {})
    for key, label in (("train", "Training"), ("valid", "Validation")):
        epochs = metrics.get(key, [])
        if epochs:
            results += [f"ℹ {label}:", *_metric_lines(epochs[-1]), ""]
    return [
        ("Time", _time_lines(records.get("profile", {}), "fit")),
        ("Results", results[:-1]),
        ("Ending", [ending_line(records, stop_reason)]),
        ("Model", [*parameters_line(model), Preformatted(repr(model))]),  # last, as R prints it
    ]


def evaluation_sections(records: Records) -> list[Section]:
    """The blocks of an `Evaluation`'s summary: its time and one ``name: value`` line per metric."""
    valid = records.get("metrics", {}).get("valid", [])
    times = records.get("profile", {}).get("valid", [])
    time = [f"• Total time: {pretty_seconds(sum(times))}"] if times else []
    return [("Time", time), ("Results", _metric_lines(valid[-1] if valid else None))]


def render_text(title: str, sections: list[Section]) -> str:
    """A summary as plain text: the title, then each non-empty block under a ``── rule``."""
    blocks = [title]
    for i, (name, lines) in enumerate(s for s in sections if s[1]):
        blocks += ([""] if i else []) + [_rule(name), *lines]
    return "\n".join(blocks)


def render_html(title: str, sections: list[Section]) -> str:
    """The same summary as HTML for notebooks; every piece of text is escaped.

    `Preformatted` entries (a model's repr) go in a ``<pre>`` block; ``• `` items form a list.
    """
    parts = [f'<div class="luz-repr"><strong>{_inline(title)}</strong>']
    for name, lines in sections:
        if not lines:
            continue
        parts.append(f"<h4>{html.escape(name)}</h4>")
        items: list[str] = []
        for line in lines:
            if line.startswith("• "):
                items.append(f"<li>{_inline(line[2:])}</li>")
                continue
            if items:
                parts.append("<ul>" + "".join(items) + "</ul>")
                items = []
            if isinstance(line, Preformatted):
                parts.append(f"<pre>{html.escape(line)}</pre>")
            elif line:
                parts.append(f"<div>{_inline(line)}</div>")
        if items:
            parts.append("<ul>" + "".join(items) + "</ul>")
    parts.append("</div>")
    return "".join(parts)


def render_fields_html(title: str, fields: list[tuple[str, str]]) -> str:
    """``name: value`` rows (a `LuzModule`'s set-up) as an escaped HTML table, for notebooks."""
    rows = "".join(
        f"<tr><th style='text-align:left'>{html.escape(name)}</th>"
        f"<td><code>{html.escape(value)}</code></td></tr>"
        for name, value in fields
    )
    return f'<div class="luz-repr"><strong>{_inline(title)}</strong><table>{rows}</table></div>'


def _inline(text: str) -> str:
    """Escape ``text`` for HTML and turn its `backtick` spans into ``<code>``."""
    pieces = html.escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(pieces))


def fitted_summary(records: Records, model: Any, stop_reason: str | None = None) -> str:
    """The text of ``repr(fitted)``: times, last-epoch metrics (train and valid), the model with
    its number of parameters, and how training ended."""
    return render_text("A `luz.Fitted`", fitted_sections(records, model, stop_reason))


def evaluation_summary(records: Records) -> str:
    """The text of ``repr(evaluation)``: its time and one ``name: value`` line per metric."""
    return render_text("A `luz.Evaluation`", evaluation_sections(records))


def new_figure(**kwargs: Any) -> Any:
    """A ``matplotlib.figure.Figure`` built without ``pyplot``, or an error naming the extra.

    The figure is not registered with pyplot's figure manager, so a notebook shows the
    returned figure once (not also the "current" figure at the end of the cell), and nothing
    accumulates in ``pyplot.get_fignums()``. ``savefig`` works on it with any backend.
    """
    try:
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError(
            "Plotting needs matplotlib: pip install 'pyluz[plot]' (or pip install matplotlib)."
        ) from error
    return Figure(**kwargs)


def integer_ticks(axis: Any) -> None:
    """Put major ticks of ``axis`` (an x or y axis) on integers only: epochs are whole numbers."""
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True))


def plot_metrics(records: Records) -> Any:
    """A Figure with one axis per metric; x = epoch, one line with markers per set."""
    rows = metric_rows(records)
    names = list(dict.fromkeys(metric for _, metric, _, _ in rows))
    if not names:
        raise ValueError("There are no metrics to plot: the records are empty.")
    fig = new_figure(figsize=(6, 2.6 * len(names)))
    axes = fig.subplots(len(names), 1, squeeze=False, sharex=True)
    for ax, name in zip(axes[:, 0], names, strict=True):
        for set_name in ("train", "valid"):
            points = [(e, v) for s, m, e, v in rows if s == set_name and m == name]
            if points:
                epochs, values = zip(*points, strict=True)
                ax.plot(epochs, values, marker="o", label=set_name)
        ax.set_title(name)
        ax.set_ylabel(name)
        ax.legend()
    axes[-1, 0].set_xlabel("epoch")
    integer_ticks(axes[-1, 0].xaxis)  # shared x: one locator serves every panel
    fig.tight_layout()
    return fig
