"""The metric contract: custom metrics, LossAverage, MetricSet naming, type errors, no host syncs."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest
import torch

import luz
from luz.metrics import (
    MAE,
    MSE,
    RMSE,
    Accuracy,
    BinaryAccuracy,
    BinaryAccuracyWithLogits,
    BinaryAUROC,
    LossAverage,
    MulticlassAUROC,
)


class Scaled(luz.Metric):
    """R row 39: a custom metric with a constructor argument."""

    abbrev = "Scaled"

    def __init__(self, scale: float) -> None:
        self.scale = scale
        self.total = torch.zeros((), dtype=torch.float64)
        self.count = 0

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        self.total += (pred * self.scale).sum()
        self.count += pred.numel()

    def compute(self) -> float:
        return self.total.item() / self.count


def test_custom_metric_update_compute() -> None:
    prototype = Scaled(scale=2.0)
    metric = copy.deepcopy(prototype)
    metric.update(torch.tensor([1.0, 2.0]), torch.tensor([0.0, 0.0]))
    metric.update(torch.tensor([3.0]), torch.tensor([0.0]))
    assert metric.compute() == pytest.approx(4.0)
    assert prototype.count == 0  # the prototype is untouched
    assert metric.record_name == "scaled" and metric.display_name == "Scaled"


def test_record_name_falls_back_to_class_name() -> None:
    class NoAbbrev(luz.Metric):
        pass

    assert NoAbbrev().record_name == "noabbrev"


class Renamed(luz.Metric):
    """R sets ``abbrev`` per instance; here in ``__init__``, overriding the class attribute."""

    abbrev = "Foo"

    def __init__(self, abbrev: str | None = None) -> None:
        if abbrev is not None:
            self.abbrev = abbrev
        self.n = 0

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        self.n += 1

    def compute(self) -> float:
        return float(self.n)


def test_instance_abbrev_wins_over_class_abbrev() -> None:
    assert Renamed().display_name == "Foo" and Renamed().record_name == "foo"
    renamed = Renamed("Bar")
    assert renamed.display_name == "Bar" and renamed.record_name == "bar"
    assert copy.deepcopy(renamed).record_name == "bar"  # prototypes are deep-copied per phase
    ms = luz.MetricSet(metrics=[Renamed(), Renamed("Bar"), Renamed("Bar")])
    assert ms.names("train") == ["loss", "foo", "bar", "bar_2"]
    builtin = MAE()
    builtin.abbrev = "AbsErr"
    assert builtin.record_name == "abserr" and MAE().record_name == "mae"


def test_builtin_names() -> None:
    names = {cls().record_name for cls in (Accuracy, BinaryAccuracy, BinaryAccuracyWithLogits)}
    assert names == {"acc"}
    assert [m().record_name for m in (MAE, MSE, RMSE, BinaryAUROC, MulticlassAUROC)] == [
        "mae",
        "mse",
        "rmse",
        "auc",
        "auc",
    ]


def _ctx(loss: Any, training: bool = True) -> Any:
    return SimpleNamespace(loss=loss, training=training)


def test_loss_average_is_unweighted_mean_of_batches() -> None:
    metric = LossAverage()
    for value in (1.0, 2.0, 6.0):
        metric.ctx = _ctx({"opt": torch.tensor(value)})
        metric.update(None, None)
    assert metric.compute() == pytest.approx(3.0)


def test_loss_average_bare_tensor_and_several_optimizers() -> None:
    bare = LossAverage()
    bare.ctx = _ctx(torch.tensor(5.0))
    bare.update(None, None)
    assert bare.compute() == pytest.approx(5.0)
    several = LossAverage()
    for a, b in ((1.0, 10.0), (3.0, 30.0)):
        several.ctx = _ctx({"gen": torch.tensor(a), "disc": torch.tensor(b)})
        several.update(None, None)
    assert several.compute() == pytest.approx({"gen": 2.0, "disc": 20.0})


def test_loss_average_folds_many_batches_exactly() -> None:
    # More batches than FOLD_EVERY, ending mid-fold, read mid-way too (as a progress bar does).
    values = torch.rand(3 * LossAverage.FOLD_EVERY + 5, generator=torch.Generator().manual_seed(0))
    metric = LossAverage()
    for i, value in enumerate(values):
        metric.ctx = _ctx({"opt": value})
        metric.update(None, None)
        if i == 70:
            assert metric.compute() == pytest.approx(values[:71].double().mean().item(), rel=1e-12)
    assert metric.compute() == pytest.approx(values.double().mean().item(), rel=1e-12)
    assert metric.counts == {"opt": len(values)}


def test_loss_average_keeps_no_graph() -> None:
    weight = torch.ones((), requires_grad=True)
    metric = LossAverage()
    metric.ctx = _ctx({"opt": weight * 2.0})  # a custom step may store the loss with its graph
    metric.update(None, None)
    assert not any(t.requires_grad for t in metric._pending["opt"])
    assert metric.compute() == pytest.approx(2.0)


def test_loss_average_without_any_loss_explains_the_custom_step_rule() -> None:
    metric = LossAverage()
    metric.ctx = _ctx({})  # a custom step that set no loss
    metric.update(None, None)
    metric.update(None, None)
    expected = r"ctx.loss was never set during the training phase \(2 batches\)"
    with pytest.raises(ValueError, match=expected) as info:
        metric.compute()
    assert "custom step() must set `ctx.loss`" in str(info.value)
    assert "dict of tensors by optimizer name" in str(info.value)


def test_loss_average_before_any_batch_is_nan() -> None:
    # No batch reached update (a pass stopped before its first batch end): nothing to report,
    # and no claim that the step forgot ctx.loss.
    assert math.isnan(LossAverage().compute())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "metric",
    [
        Accuracy(),
        BinaryAccuracy(),
        BinaryAccuracyWithLogits(),
        MAE(),
        MSE(),
        RMSE(),
        BinaryAUROC(),
        MulticlassAUROC(),
    ],
    ids=lambda m: type(m).__name__,
)
def test_every_builtin_computes_nan_before_any_update(metric: luz.Metric) -> None:
    value = metric.compute()
    assert isinstance(value, float) and math.isnan(value)


def test_metric_set_phases_and_duplicate_names() -> None:
    # R row 45 names, and the documented `_2` suffix for duplicates (R row 44).
    ms = luz.MetricSet(metrics=[MAE()], train=[MSE()], valid=[RMSE()])
    assert ms.names("train") == ["loss", "mae", "mse"]
    assert ms.names("valid") == ["loss", "mae", "rmse"]
    dup = luz.MetricSet(metrics=[Accuracy(), BinaryAccuracy(), BinaryAccuracyWithLogits()])
    assert dup.names("valid") == ["loss", "acc", "acc_2", "acc_3"]
    single = luz.MetricSet(metrics=MAE(), valid=RMSE())
    assert single.names("valid") == ["loss", "mae", "rmse"]


@pytest.mark.parametrize("bad", [MAE, [MAE], "mae", [object()]])
def test_wrong_metric_type(bad: object) -> None:
    # R row 46: an uninstantiated metric gives a clear error.
    with pytest.raises(TypeError, match="Expected an object with") as info:
        luz.MetricSet(metrics=bad)
    if bad in (MAE, [MAE]):
        assert "instantiate" in str(info.value) and "MAE()" in str(info.value)


def test_setup_rejects_metric_class() -> None:
    with pytest.raises(TypeError, match=r"Expected an object with.*instantiate"):
        luz.setup(torch.nn.Linear, loss=torch.nn.MSELoss(), optimizer=torch.optim.SGD, metrics=[MAE])


# -- no host syncs in update ------------------------------------------------------------------

SYNCS = ("item", "tolist", "cpu", "numpy", "__float__", "__int__", "__bool__")


@pytest.fixture
def sync_counter(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, int]]:
    """Count calls of the tensor methods that read values back to the host."""
    counts = dict.fromkeys(SYNCS, 0)

    def counting(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(self: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            counts[name] += 1
            return original(self, *args, **kwargs)

        return wrapper

    for name in SYNCS:
        monkeypatch.setattr(torch.Tensor, name, counting(name, getattr(torch.Tensor, name)))
    yield counts


def _builtin_cases() -> list[tuple[luz.Metric, torch.Tensor, torch.Tensor]]:
    probs = torch.softmax(torch.randn(16, 3), dim=1)
    classes = torch.randint(0, 3, (16,))
    prob, label = torch.rand(16, 1), torch.randint(0, 2, (16,)).float()
    reg_pred, reg_target = torch.randn(16, 1), torch.randn(16)
    cases: list[tuple[luz.Metric, torch.Tensor, torch.Tensor]] = [
        (Accuracy(), probs, classes),
        (BinaryAccuracy(), prob, label),
        (BinaryAccuracyWithLogits(threshold=0.3), prob, label.bool()),
        (MAE(), reg_pred, reg_target),
        (MSE(), reg_pred, reg_target),
        (RMSE(), reg_pred, reg_target),
        (BinaryAUROC(), prob, label),
        (BinaryAUROC(thresholds=[0.2, 0.5], from_logits=True), prob, label.long()),
    ]
    for average in ("micro", "macro", "weighted", "none"):
        cases.append((MulticlassAUROC(average=average), probs, classes))
    cases.append((MulticlassAUROC(from_logits=True, average="macro"), probs, classes))
    loss = LossAverage()
    loss.ctx = _ctx({"a": torch.tensor(1.0), "b": torch.tensor(2.0)})
    cases.append((loss, probs, classes))
    return cases


def test_update_never_syncs(sync_counter: dict[str, int]) -> None:
    cases = _builtin_cases()
    for metric, pred, target in cases:
        for _ in range(2):  # the first update may create lazy state
            metric.update(pred, target)
    assert sync_counter == dict.fromkeys(SYNCS, 0)
    for metric, _, _ in cases:  # compute is where the sync belongs: the counter sees it
        metric.compute()
    assert sum(sync_counter.values()) >= len(cases)
