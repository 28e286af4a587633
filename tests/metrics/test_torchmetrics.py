"""torchmetrics interop: wrapping, fresh state per phase, naming and value conversion."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import luz
from luz.metrics import TorchMetric
from luz.metrics.set import check_metric
from luz.records import to_metric_value as to_python
from tests.conftest import Linear, classification_data

torchmetrics = pytest.importorskip("torchmetrics")
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score  # noqa: E402


def test_torchmetrics_instance_is_wrapped() -> None:
    wrapped = check_metric(MulticlassF1Score(num_classes=3))
    assert isinstance(wrapped, TorchMetric)
    assert wrapped.display_name == "MulticlassF1Score" and wrapped.record_name == "multiclassf1score"


def test_copies_are_reset_and_the_prototype_is_untouched() -> None:
    inner = MulticlassAccuracy(num_classes=2, average="micro")
    inner.update(torch.tensor([[0.9, 0.1]]), torch.tensor([1]))  # stale state from elsewhere
    prototype = TorchMetric(inner)
    live = copy.deepcopy(prototype).to("cpu")
    live.update(torch.tensor([[0.1, 0.9], [0.1, 0.9]]), torch.tensor([1, 1]))
    assert live.compute() == pytest.approx(1.0)
    assert inner.update_count == 1  # only the earlier update


def test_to_python_conversions() -> None:
    assert to_python(torch.tensor(0.25)) == 0.25
    assert to_python(torch.tensor([0.5, 1.0])) == {"0": 0.5, "1": 1.0}
    assert to_python(torch.tensor([[1, 2], [3, 4]])) == {"0_0": 1.0, "0_1": 2.0, "1_0": 3.0, "1_1": 4.0}
    assert to_python({"map": torch.tensor(0.5), "per": torch.tensor([1.0, 2.0])}) == {
        "map": 0.5,
        "per_0": 1.0,
        "per_1": 2.0,
    }
    with pytest.raises(TypeError, match=r"Roc\.compute"):
        to_python((torch.tensor([0.0]), torch.tensor([1.0])), "Roc")


def test_not_a_torchmetric() -> None:
    with pytest.raises(TypeError, match=r"torchmetrics\.Metric"):
        TorchMetric(object())


def test_torchmetric_in_a_fit_matches_torchmetrics_directly() -> None:
    x, y = classification_data(n=120)
    prototype = MulticlassF1Score(num_classes=3)
    fitted = (
        luz.setup(Linear, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.Adam, metrics=[prototype])
        .set_hparams(out_features=3)
        .set_opt_hparams(lr=0.05)
        .fit((x, y), epochs=2, verbose=False)
    )
    assert list(fitted.records["metrics"]["train"][-1]) == ["loss", "multiclassf1score"]
    assert prototype.update_count == 0
    evaluation = fitted.evaluate((x, y), verbose=False)
    values = dict(evaluation.get_metrics().values.tolist())
    expected = MulticlassF1Score(num_classes=3)(fitted.predict(x), y).item()
    assert values["multiclassf1score"] == pytest.approx(expected, abs=1e-6)
