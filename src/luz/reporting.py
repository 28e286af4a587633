"""What results look like: the ``repr`` text of fitted models and evaluations, and plots."""

from __future__ import annotations

from typing import Any

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


def _rule(title: str) -> str:
    return f"── {title} " + "─" * max(3, 40 - len(title))


def _metric_lines(metrics: dict[str, Any] | None) -> list[str]:
    return [f"{name}: {format_value(value)}" for name, value in (metrics or {}).items()]


def fitted_summary(records: Records, model: Any) -> str:
    """The text of ``repr(fitted)``: times, last-epoch metrics (train and valid), the model."""
    profile = records.get("profile", {})
    lines = ["A `luz.Fitted`", _rule("Time")]
    fit_times = profile.get("fit", [])
    if fit_times:
        lines.append(f"• Total time: {pretty_seconds(sum(fit_times))}")
    for key, label in (("train", "training"), ("valid", "validation")):
        times = profile.get(key, [])
        if times:
            lines.append(f"• Avg time per {label} epoch: {pretty_seconds(sum(times) / len(times))}")
    metrics = records.get("metrics", {})
    lines += ["", _rule("Results"), "Metrics observed in the last epoch.", ""]
    for key, label in (("train", "Training"), ("valid", "Validation")):
        epochs = metrics.get(key, [])
        if epochs:
            lines += [f"ℹ {label}:", *_metric_lines(epochs[-1]), ""]
    lines += [_rule("Model"), repr(model)]
    return "\n".join(lines)


def evaluation_summary(records: Records) -> str:
    """The text of ``repr(evaluation)``: one ``name: value`` line per metric."""
    valid = records.get("metrics", {}).get("valid", [])
    return "\n".join(["A `luz.Evaluation`", _rule("Results"), *_metric_lines(valid[-1] if valid else None)])


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
