"""The repr text of results, and plots."""

from __future__ import annotations

import pytest

from luz.reporting import evaluation_summary, fitted_summary, pretty_seconds
from tests.test_records import records


def test_evaluation_summary() -> None:
    ev = {"metrics": {"train": [], "valid": [{"loss": 1.0, "mae": 0.5}]}}
    text = evaluation_summary(ev)
    assert text.splitlines()[0] == "A `luz.Evaluation`"
    assert "loss: 1.0000" in text and "mae: 0.5000" in text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(5e-6, "5µs"), (0.0123, "12ms"), (1.25, "1.2s"), (75, "1m 15s"), (7380, "2h 3m")],
)
def test_pretty_seconds(seconds: float, text: str) -> None:
    assert pretty_seconds(seconds) == text


def test_fitted_summary() -> None:
    text = fitted_summary(records(), "MODEL")
    assert "• Total time: 2.5s" in text
    assert "• Avg time per training epoch: 500ms" in text
    assert "• Avg time per validation epoch: 200ms" in text
    assert "ℹ Training:" in text and "ℹ Validation:" in text
    assert "loss: gen: 0.5000 | disc: 1.5000" in text
    assert "auc: 0.8000" in text
    assert text.rstrip().endswith("'MODEL'")  # the model's repr


def test_fitted_summary_without_validation_or_epochs() -> None:
    text = fitted_summary({"metrics": {"train": [], "valid": []}, "profile": {}}, "M")
    assert "Validation" not in text and "Training:" not in text and "Total time" not in text
