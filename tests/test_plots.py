"""fitted.plot(): one panel per metric with train and valid lines, saved as a real PNG."""

from __future__ import annotations

import builtins
from pathlib import Path
from typing import Any

import matplotlib
import pytest
import torch
from torch import nn

import luz
from tests.conftest import Linear, classification_data

matplotlib.use("Agg")


def _fitted(valid: bool) -> luz.Fitted:
    x, y = classification_data(96, classes=3)
    module = luz.setup(
        Linear, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.Adam, metrics=[luz.metrics.Accuracy()]
    ).set_hparams(out_features=3)
    return module.fit((x, y), epochs=3, valid_data=0.25 if valid else None, verbose=False)


def test_one_panel_per_metric_with_train_and_valid_lines(tmp_path: Path) -> None:
    fig = _fitted(valid=True).plot()
    assert [ax.get_title() for ax in fig.axes] == ["loss", "acc"]
    for ax in fig.axes:
        lines = ax.get_lines()
        assert [line.get_label() for line in lines] == ["train", "valid"]
        assert all(list(line.get_xdata()) == [1, 2, 3] for line in lines)
        assert all(line.get_marker() == "o" for line in lines)
    assert fig.axes[-1].get_xlabel() == "epoch"
    path = tmp_path / "metrics.png"
    fig.savefig(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 5000


def test_without_validation_only_train_lines() -> None:
    fig = _fitted(valid=False).plot()
    assert all([line.get_label() for line in ax.get_lines()] == ["train"] for ax in fig.axes)


def test_missing_matplotlib_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    fitted = _fitted(valid=False)
    real_import = builtins.__import__

    def fake_import(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("matplotlib"):
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ImportError, match=r"pyluz\[plot\]"):
        fitted.plot()


def test_figure_is_built_without_pyplot_and_has_integer_epoch_ticks(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    plt.close("all")
    fig = _fitted(valid=True).plot()
    # Not registered with pyplot: a notebook shows the returned figure once, nothing accumulates.
    assert plt.get_fignums() == []
    fig.savefig(tmp_path / "metrics.png")
    assert plt.get_fignums() == []
    for ax in fig.axes:
        ticks = [t for t in ax.get_xticks() if 1 <= t <= 3]
        assert ticks == [1.0, 2.0, 3.0], ticks
        assert all(float(t).is_integer() for t in ax.get_xticks())
