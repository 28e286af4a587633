"""Tables and text summaries of records: metric DataFrames and the ``repr`` of results."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from luz.metrics.base import flatten_value, format_value

if TYPE_CHECKING:
    import pandas as pd


def metric_rows(records: dict[str, Any]) -> list[tuple[str, str, int, float]]:
    """``(set, metric, epoch, value)`` rows: train rows epoch by epoch, then valid rows.

    Dict values (several optimizers, per-class AUROC) give one row per key: ``loss_<opt>``,
    ``auc_<class>``.
    """
    rows = []
    for set_name in ("train", "valid"):
        for epoch, metrics in enumerate(records.get("metrics", {}).get(set_name, []), start=1):
            for name, value in (metrics or {}).items():
                for flat_name, flat_value in flatten_value(name, value):
                    rows.append((set_name, flat_name, epoch, float(flat_value)))
    return rows


def metrics_frame(records: dict[str, Any]) -> pd.DataFrame:
    """All metrics as a DataFrame with columns ``set, metric, epoch, value``."""
    import pandas as pd

    frame: pd.DataFrame = pd.DataFrame(metric_rows(records), columns=["set", "metric", "epoch", "value"])
    return frame


def evaluation_frame(records: dict[str, Any]) -> pd.DataFrame:
    """The metrics of an evaluation as a DataFrame with columns ``metric, value``."""
    import pandas as pd

    rows = [(metric, value) for _, metric, _, value in metric_rows(records)]
    frame: pd.DataFrame = pd.DataFrame(rows, columns=["metric", "value"])
    return frame


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


def fitted_summary(records: dict[str, Any], model: Any) -> str:
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


def evaluation_summary(records: dict[str, Any]) -> str:
    """The text of ``repr(evaluation)``: one ``name: value`` line per metric."""
    valid = records.get("metrics", {}).get("valid", [])
    return "\n".join(["A `luz.Evaluation`", _rule("Results"), *_metric_lines(valid[-1] if valid else None)])
