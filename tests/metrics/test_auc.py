"""AUROC: luz's reference values (R rows 34–38), the threshold grid, scikit-learn parity."""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from luz.metrics import BinaryAUROC, MulticlassAUROC
from luz.metrics.auc import threshold_grid

EPS = float(torch.finfo(torch.float32).eps)
ACTUAL = torch.tensor([1, 1, 1, 0, 0, 0])
PREDICTED = torch.tensor([0.9, 0.8, 0.4, 0.5, 0.3, 0.2])


def _three_updates(metric: BinaryAUROC | MulticlassAUROC, pred: torch.Tensor, target: torch.Tensor) -> None:
    for i in range(0, 6, 2):
        metric.update(pred[i : i + 2], target[i : i + 2])


def test_binary_reference_value() -> None:
    # R row 34: thresholds = the predictions, three updates of two samples -> 8/9.
    metric = BinaryAUROC(thresholds=PREDICTED.tolist())
    _three_updates(metric, PREDICTED, ACTUAL)
    assert metric.compute() == pytest.approx(8 / 9, abs=1e-4)
    assert metric.compute() == pytest.approx(roc_auc_score(ACTUAL.numpy(), PREDICTED.numpy()), abs=1e-4)


def test_binary_from_logits_applies_sigmoid() -> None:
    logits = torch.logit(PREDICTED)
    metric = BinaryAUROC(thresholds=PREDICTED.tolist(), from_logits=True)
    metric.update(logits, ACTUAL.bool())
    assert metric.compute() == pytest.approx(8 / 9, abs=1e-4)


def test_binary_is_right_endpoint_sum() -> None:
    # One threshold between the classes' ranges: luz's sum gives tpr at the upper threshold.
    metric = BinaryAUROC(thresholds=[0.5])
    metric.update(torch.tensor([0.6, 0.4, 0.3]), torch.tensor([1.0, 1.0, 0.0]))
    # grid (-eps, 0.5, 1+eps): tpr (1, 1/2, 0), tnr (0, 1, 1) -> 1*0 + 1/2*1 + 0*0.
    assert metric.compute() == pytest.approx(0.5)


def test_multiclass_micro_reference_value() -> None:
    # R row 35 (the example in luz's docs): two columns, thresholds = every prediction.
    pred = torch.stack([1 - PREDICTED, PREDICTED], dim=1)
    metric = MulticlassAUROC(thresholds=pred.flatten().tolist(), average="micro")
    _three_updates(metric, pred, ACTUAL)
    onehot = np.eye(2)[ACTUAL.numpy()]
    expected = roc_auc_score(onehot.ravel(), pred.numpy().ravel())
    assert metric.compute() == pytest.approx(expected, abs=1e-4)


def test_default_grid_keeps_luz_quirk() -> None:
    grid = threshold_grid(200, None)
    assert grid.shape == (200,) and grid.dtype == torch.float64
    assert grid[0].item() == pytest.approx(-EPS) and grid[-1].item() == pytest.approx(1 + EPS)
    assert grid[1].item() == pytest.approx(2 / 198) and grid[-2].item() == pytest.approx(199 / 198)
    assert torch.all(grid[1:-1] > grid[:-2])
    assert grid[-2] > grid[-1]  # luz's order: 199/198 comes before 1 + eps
    assert threshold_grid(2, None).tolist() == pytest.approx([-EPS, 1 + EPS])


def test_explicit_thresholds_are_sorted_with_end_points() -> None:
    grid = threshold_grid(7, [0.7, 0.1, 0.4])
    assert grid.tolist() == pytest.approx([-EPS, 0.1, 0.4, 0.7, 1 + EPS])
    assert BinaryAUROC(thresholds=torch.tensor([0.3, 0.2])).num_thresholds == 4


@pytest.mark.parametrize(
    "num_thresholds", [1, 0, -5, 2.5, True, np.True_, 1.0, np.int64(1), float("nan"), float("inf")]
)
def test_num_thresholds_must_exceed_one(num_thresholds: object) -> None:
    match = rf"`num_thresholds` must be an integer of at least 2, got.*{re.escape(repr(num_thresholds))}"
    with pytest.raises(ValueError, match=match):
        BinaryAUROC(num_thresholds=num_thresholds)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=match):
        MulticlassAUROC(num_thresholds=num_thresholds)  # type: ignore[arg-type]


@pytest.mark.parametrize("num_thresholds", ["200", None, [200]])
def test_num_thresholds_of_wrong_type_is_a_type_error(num_thresholds: object) -> None:
    with pytest.raises(TypeError, match="`num_thresholds` must be an integer"):
        BinaryAUROC(num_thresholds=num_thresholds)  # type: ignore[arg-type]


@pytest.mark.parametrize("num_thresholds", [50, 50.0, np.int64(50), np.int32(50), np.float64(50.0)])
def test_num_thresholds_accepts_integral_numbers(num_thresholds: object) -> None:
    expected = threshold_grid(50, None)
    binary = BinaryAUROC(num_thresholds=num_thresholds)  # type: ignore[arg-type]
    multiclass = MulticlassAUROC(num_thresholds=num_thresholds)  # type: ignore[arg-type]
    for metric in (binary, multiclass):
        assert metric.num_thresholds == 50
        assert torch.equal(metric.thresholds, expected)


@pytest.mark.parametrize("average", ["macro", "weighted", "none"])
def test_multiclass_with_1e5_thresholds_as_in_luz_tests(average: str) -> None:
    # R rows 36-38 pass `num_thresholds = 1e5`, a double: the port accepts integral floats.
    logits, target = _multiclass_data("cpu")
    metric = MulticlassAUROC(num_thresholds=1e5, average=average, from_logits=True)
    assert metric.num_thresholds == 100_000
    metric.update(logits, target)
    y, p = target.numpy(), torch.softmax(logits, dim=1).numpy()
    value = metric.compute()
    if average == "none":
        assert isinstance(value, dict)
        expected = [roc_auc_score(np.eye(4)[y][:, c], p[:, c]) for c in range(4)]
        assert [value[str(c)] for c in range(4)] == pytest.approx(expected, abs=1e-4)
    else:
        assert value == pytest.approx(roc_auc_score(y, p, multi_class="ovr", average=average), abs=1e-4)


def test_unknown_average() -> None:
    with pytest.raises(ValueError, match=r"average.*'micro'.*'bogus'"):
        MulticlassAUROC(average="bogus")


@pytest.mark.parametrize("from_logits", [False, True])
def test_binary_equals_sklearn(from_logits: bool, device: str) -> None:
    target = (torch.rand(400, device=device) < 0.4).long()
    scores = torch.randn(400, device=device) + target
    pred = scores if from_logits else torch.sigmoid(scores)
    metric = BinaryAUROC(num_thresholds=2000, from_logits=from_logits).to(device)
    for i in range(0, 400, 64):
        metric.update(pred[i : i + 64], target[i : i + 64])
    expected = roc_auc_score(target.cpu().numpy(), torch.sigmoid(scores).cpu().numpy())
    assert metric.compute() == pytest.approx(expected, abs=1e-3)
    assert metric.hist is not None and metric.hist.dtype == torch.int64


def _multiclass_data(device: str, n: int = 400, classes: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    target = torch.randint(0, classes, (n,), device=device)
    logits = torch.randn(n, classes, device=device)
    logits[torch.arange(n), target] += 1.0
    return logits, target


@pytest.mark.parametrize("average", ["micro", "macro", "weighted", "none"])
@pytest.mark.parametrize("from_logits", [False, True])
def test_multiclass_equals_sklearn(average: str, from_logits: bool, device: str) -> None:
    # R rows 35-38 with 1000 thresholds; luz's micro is the flattened one-hot problem.
    logits, target = _multiclass_data(device)
    probs = torch.softmax(logits, dim=1)
    metric = MulticlassAUROC(num_thresholds=1000, from_logits=from_logits, average=average).to(device)
    for i in range(0, 400, 64):
        metric.update((logits if from_logits else probs)[i : i + 64], target[i : i + 64])
    y, p = target.cpu().numpy(), probs.cpu().numpy()
    onehot = np.eye(4)[y]
    value = metric.compute()
    if average == "none":
        assert isinstance(value, dict) and list(value) == ["0", "1", "2", "3"]
        for c in range(4):
            assert value[str(c)] == pytest.approx(roc_auc_score(onehot[:, c], p[:, c]), abs=1e-3)
    elif average == "micro":
        assert value == pytest.approx(roc_auc_score(onehot.ravel(), p.ravel()), abs=1e-3)
    else:
        expected = roc_auc_score(y, p, multi_class="ovr", average=average)
        assert value == pytest.approx(expected, abs=1e-3)


def test_weighted_differs_from_macro_with_imbalance() -> None:
    target = torch.cat([torch.zeros(300), torch.ones(60), torch.full((40,), 2)]).long()
    logits = torch.randn(400, 3)
    logits[torch.arange(400), target] += torch.tensor([2.0, 0.2, 0.5])[target]
    values: dict[str, float] = {}
    for average in ("macro", "weighted"):
        metric = MulticlassAUROC(num_thresholds=500, average=average, from_logits=True)
        metric.update(logits, target)
        value = metric.compute()
        assert isinstance(value, float)
        values[average] = value
    assert abs(values["macro"] - values["weighted"]) > 1e-3


def test_multiclass_target_layouts_agree() -> None:
    probs = torch.softmax(torch.randn(30, 3), dim=1)
    target = torch.randint(0, 3, (30,))
    results = []
    for t in (target, target[:, None], torch.nn.functional.one_hot(target, 3)):
        metric = MulticlassAUROC(num_thresholds=50, average="macro")
        metric.update(probs, t)
        results.append(metric.compute())
    assert results[0] == results[1] == results[2]


def test_multiclass_extra_dims() -> None:
    probs = torch.softmax(torch.randn(5, 3, 4), dim=1)
    target = torch.randint(0, 3, (5, 4))
    flat, spatial = MulticlassAUROC(average="none"), MulticlassAUROC(average="none")
    spatial.update(probs, target)
    flat.update(probs.movedim(1, -1).reshape(-1, 3), target.reshape(-1))
    assert spatial.compute() == flat.compute()


def test_multiclass_shape_errors() -> None:
    with pytest.raises(ValueError, match=r"MulticlassAUROC.*\(8,\).*\(8,\)"):
        MulticlassAUROC().update(torch.rand(8), torch.zeros(8, dtype=torch.long))
    with pytest.raises(ValueError, match=r"MulticlassAUROC.*\(8, 3\).*\(8, 2\)"):
        MulticlassAUROC().update(torch.rand(8, 3), torch.zeros(8, 2, dtype=torch.long))
    metric = MulticlassAUROC()
    metric.update(torch.rand(8, 3), torch.zeros(8, dtype=torch.long))
    with pytest.raises(ValueError, match="3 classes"):
        metric.update(torch.rand(8, 4), torch.zeros(8, dtype=torch.long))


def test_binary_shape_errors() -> None:
    with pytest.raises(ValueError, match=r"BinaryAUROC.*\(8, 2\).*\(8,\)"):
        BinaryAUROC().update(torch.rand(8, 2), torch.zeros(8))


@pytest.mark.parametrize(
    "metric", [BinaryAUROC(), MulticlassAUROC(), MulticlassAUROC(average="none")], ids=repr
)
def test_compute_before_update_is_nan(metric: BinaryAUROC | MulticlassAUROC) -> None:
    # Like every built-in metric (an evaluation stopped before its first batch end logs nan).
    value = metric.compute()
    assert isinstance(value, float) and math.isnan(value)


def _luz_reference(pred: torch.Tensor, positive: torch.Tensor, grid: torch.Tensor, trapezoid: bool) -> float:
    """A direct port of luz's per-threshold comparisons (one column, float32 thresholds)."""
    above = pred.unsqueeze(-1) > grid.float()
    tp = (above & positive.unsqueeze(-1)).sum(0).double()
    tn = (~above & ~positive.unsqueeze(-1)).sum(0).double()
    tpr, tnr = tp / positive.sum(), tn / (~positive).sum()
    step = torch.diff(tnr, prepend=torch.zeros(1, dtype=torch.float64))
    if trapezoid:
        after = torch.cat([step[1:], torch.zeros(1, dtype=torch.float64)])
        return float((tpr * (step + after) / 2).sum())
    return float((tpr * step).sum())


@pytest.mark.parametrize("scale", [1.0, 1.2])
def test_matches_luz_algorithm_exactly(scale: float) -> None:
    # scale 1.2 puts predictions above 1, where luz's unsorted grid end matters.
    pred = (torch.rand(300) * scale).round(decimals=2)  # ties with grid values
    positive = torch.rand(300) < 0.5
    grid = threshold_grid(101, None)
    binary = BinaryAUROC(num_thresholds=101)
    binary.update(pred, positive)
    assert binary.compute() == pytest.approx(_luz_reference(pred, positive, grid, False), abs=1e-12)
    micro = MulticlassAUROC(num_thresholds=101, average="micro")
    micro.update(torch.stack([pred, 1 - pred], 1), (~positive).long())
    both = torch.cat([pred, 1 - pred])
    expected = _luz_reference(both, torch.cat([positive, ~positive]), grid, True)
    assert micro.compute() == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(
    ("thresholds", "error", "words"),
    [
        ("abc", TypeError, "`thresholds` must be a non-empty sequence"),
        ([0.1, "x"], TypeError, "`thresholds[1]` must be a number, got 'x'"),
        ([], ValueError, "got [] (list)"),
        ([0.5, math.nan], ValueError, "`thresholds[1]`"),
        (torch.tensor([0.5, math.nan]), ValueError, "(none NaN)"),
        ({"a": 0.5}, TypeError, "`thresholds`"),
    ],
)
def test_bad_thresholds_name_the_argument(thresholds: Any, error: type, words: str) -> None:
    for cls in (BinaryAUROC, MulticlassAUROC):
        with pytest.raises(error) as info:
            cls(thresholds=thresholds)
        assert words in str(info.value)
