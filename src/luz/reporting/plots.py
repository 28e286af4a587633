"""Pictures of training: one panel per metric, train and valid lines by epoch."""

from __future__ import annotations

from typing import Any

from luz.reporting.summary import metric_rows


def require_matplotlib() -> Any:
    """Import ``matplotlib.pyplot`` (headless-safe) or explain which extra to install."""
    try:
        import matplotlib

        if matplotlib.get_backend().lower() not in ("agg", "module://matplotlib_inline.backend_inline"):
            import os

            if not os.environ.get("DISPLAY") and os.name != "nt":
                matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise ImportError(
            "Plotting needs matplotlib: pip install 'pyluz[plot]' (or pip install matplotlib)."
        ) from error
    return plt


def plot_metrics(records: dict[str, Any]) -> Any:
    """A Figure with one axis per metric; x = epoch, one line with markers per set."""
    plt = require_matplotlib()
    rows = metric_rows(records)
    names = list(dict.fromkeys(metric for _, metric, _, _ in rows))
    if not names:
        raise ValueError("There are no metrics to plot: the records are empty.")
    fig, axes = plt.subplots(len(names), 1, figsize=(6, 2.6 * len(names)), squeeze=False, sharex=True)
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
    fig.tight_layout()
    return fig
