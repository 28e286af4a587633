"""The text and HTML summaries of `LuzModule`, `Fitted` and `Evaluation`, pinned by golden files.

The golden files are compared exactly after times are normalised to ``<time>``. Regenerate them
with ``LUZ_UPDATE_GOLDEN=1 python -m pytest tests/test_reprs.py`` and review the diff.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import luz
from tests.conftest import Linear, regression_data

GOLDEN = Path(__file__).parent / "golden"
_TIME = re.compile(r"\b\d+(?:\.\d+)?(?:µs|ms|s)\b|\b\d+m \d+s\b|\b\d+h \d+m\b")


def _normalise(text: str) -> str:
    return _TIME.sub("<time>", text)


def _check_golden(name: str, text: str) -> None:
    path = GOLDEN / f"{name}.txt"
    text = _normalise(text) + "\n"
    if os.environ.get("LUZ_UPDATE_GOLDEN"):
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8")


def _records(epochs: int) -> dict[str, Any]:
    train = [{"loss": 1.0 / e, "mae": 0.5 / e} for e in range(1, epochs + 1)]
    valid = [{"loss": 1.2 / e, "mae": 0.6 / e} for e in range(1, epochs + 1)]
    return {
        "metrics": {"train": train, "valid": valid},
        "profile": {"fit": [3.5], "epoch": [1.0] * epochs, "train": [0.8] * epochs, "valid": [0.2] * epochs},
    }


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(10, 4)
        self.head = nn.Linear(4, 1)
        self.head.bias.requires_grad_(False)


def test_fitted_repr_golden() -> None:
    fitted = luz.Fitted(_Net(), records=_records(3))
    _check_golden("fitted", repr(fitted))


def test_fitted_repr_after_early_stopping_golden() -> None:
    stop = "EarlyStopping stopped training at epoch 2: valid_loss did not improve on 0.6000 (patience 0)"
    fitted = luz.Fitted(_Net(), records=_records(2), stop_reason=stop)
    _check_golden("fitted_stopped", repr(fitted))


def test_evaluation_repr_golden() -> None:
    records = {
        "metrics": {"train": [], "valid": [{"loss": 0.25, "mae": 0.125}]},
        "profile": {"valid": [0.04]},
    }
    _check_golden("evaluation", repr(luz.Evaluation(records)))


def test_luz_module_repr_golden() -> None:
    module = luz.setup(Linear, loss=nn.MSELoss(), optimizer=torch.optim.SGD, metrics=[luz.metrics.MAE()])
    _check_golden("luz_module", repr(module.set_hparams(in_features=10).set_opt_hparams(lr=0.1)))
    _check_golden(
        "luz_module_instance", repr(luz.setup(_Net(), loss=nn.MSELoss(), optimizer=torch.optim.SGD))
    )


def test_a_real_fit_reports_its_parameters_metrics_and_how_it_ended() -> None:
    x, y = regression_data(64)
    module = luz.setup(Linear, loss=nn.MSELoss(), optimizer=torch.optim.SGD, metrics=[luz.metrics.MAE()])
    fitted = module.set_opt_hparams(lr=0.01).fit((x, y), epochs=2, valid_data=0.25, verbose=False)
    text = repr(fitted)
    n = sum(p.numel() for p in fitted.model.parameters())
    assert f"The model (`Linear`) has {n} parameters ({n} trainable)." in text
    assert "Training ran every epoch (2)." in text
    last = fitted.records["metrics"]["valid"][-1]
    assert f"mae: {last['mae']:.4f}" in text
    html = fitted._repr_html_()
    assert html.startswith('<div class="luz-repr">') and html.endswith("</div>")
    assert f"mae: {last['mae']:.4f}" in html and f"has {n} parameters" in html
    ev = fitted.evaluate((x, y), verbose=False)
    assert "Total time:" in repr(ev) and "Total time:" in ev._repr_html_()
    assert "<code>luz.Evaluation</code>" in ev._repr_html_()


class _Sneaky(nn.Module):
    """A model whose repr holds markup: the HTML summaries must show it, not run it."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(3, 1)

    def extra_repr(self) -> str:
        return "<script>alert('x')</script> & <b>"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


@pytest.mark.parametrize("kind", ["fitted", "module"])
def test_html_reprs_escape_markup(kind: str) -> None:
    obj: Any = luz.setup(_Sneaky(), loss=nn.MSELoss(), optimizer=torch.optim.SGD)
    if kind == "fitted":
        obj = luz.Fitted(_Sneaky(), records=_records(1), stop_reason="Stopper <i>stopped</i> at epoch 1")
    html = obj._repr_html_()
    assert "<script>" not in html and "<b>" not in html and "<i>" not in html
    assert "&lt;script&gt;" in html or kind == "module"
    assert "&lt;i&gt;stopped&lt;/i&gt;" in html or kind == "module"
