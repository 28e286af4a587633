"""Accuracy metrics: scikit-learn parity, target types, shapes and arguments."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score

from luz.metrics import Accuracy, BinaryAccuracy, BinaryAccuracyWithLogits


def _batches(*tensors: torch.Tensor, size: int = 32) -> list[tuple[torch.Tensor, ...]]:
    """Split into batches of ``size`` (the last one short)."""
    n = tensors[0].shape[0]
    return [tuple(t[i : i + size] for t in tensors) for i in range(0, n, size)]


def test_accuracy_equals_sklearn(device: str) -> None:
    pred, target = torch.randn(100, 5, device=device), torch.randint(0, 5, (100,), device=device)
    metric = Accuracy().to(device)
    for p, t in _batches(pred, target):
        metric.update(p, t)
    expected = accuracy_score(target.cpu().numpy(), pred.argmax(1).cpu().numpy())
    assert metric.compute() == pytest.approx(expected, abs=1e-5)
    assert metric.correct.dtype == torch.int64
    assert isinstance(metric.total, int)


def test_accuracy_target_layouts() -> None:
    pred = torch.tensor([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    for target in (
        torch.tensor([1, 1, 0]),
        torch.tensor([[1], [1], [0]]),
        torch.tensor([[0, 1], [0, 1], [1, 0]]),
    ):
        metric = Accuracy()
        metric.update(pred, target)
        assert metric.compute() == pytest.approx(1 / 3)


def test_accuracy_extra_dims() -> None:
    pred, target = torch.randn(4, 3, 5), torch.randint(0, 3, (4, 5))
    metric = Accuracy()
    metric.update(pred, target)
    expected = (pred.argmax(1) == target).double().mean().item()
    assert metric.compute() == pytest.approx(expected)


def test_accuracy_shape_error_names_metric_and_shapes() -> None:
    with pytest.raises(ValueError, match=r"Accuracy.*\(8, 3\).*\(8, 2\)"):
        Accuracy().update(torch.randn(8, 3), torch.zeros(8, 2))
    with pytest.raises(ValueError, match=r"Accuracy.*\(8,\).*\(8,\)"):
        Accuracy().update(torch.randn(8), torch.zeros(8))


def test_binary_accuracy_equals_sklearn(device: str) -> None:
    prob, target = torch.rand(100, device=device), torch.randint(0, 2, (100,), device=device).float()
    metric = BinaryAccuracy(threshold=0.3).to(device)
    for p, t in _batches(prob, target):
        metric.update(p, t)
    expected = accuracy_score(target.cpu().numpy(), (prob > 0.3).float().cpu().numpy())
    assert metric.compute() == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.int64, torch.bool])
def test_binary_accuracy_target_dtypes(dtype: torch.dtype) -> None:
    pred = torch.tensor([0.2, 0.7, 0.9, 0.4])
    target = torch.tensor([0, 1, 0, 0]).to(dtype)
    metric = BinaryAccuracy()
    metric.update(pred, target)
    assert metric.compute() == pytest.approx(0.75)


def test_binary_accuracy_with_logits_is_logit_above_zero() -> None:
    # R test: equals mean((x > 0) == y).
    x, y = torch.randn(100, 100), torch.randint(0, 2, (100, 100)).float()
    metric = BinaryAccuracyWithLogits()
    metric.update(x, y)
    assert metric.compute() == pytest.approx(((x > 0).float() == y).double().mean().item(), abs=1e-5)


def test_binary_accuracy_with_logits_threshold_is_on_probability() -> None:
    x = torch.linspace(-4, 4, 101)
    y = torch.randint(0, 2, (101,))
    for threshold in (0.1, 0.5, 0.8):
        metric = BinaryAccuracyWithLogits(threshold=threshold)
        metric.update(x, y)
        expected = ((torch.sigmoid(x.double()) > threshold) == y.bool()).double().mean().item()
        assert metric.compute() == pytest.approx(expected)


def test_binary_accuracy_reshapes_trailing_singleton() -> None:
    pred, target = torch.rand(10, 1), torch.randint(0, 2, (10,))
    reshaped, flat = BinaryAccuracy(), BinaryAccuracy()
    reshaped.update(pred, target)
    flat.update(pred.squeeze(1), target)
    assert reshaped.compute() == flat.compute()


def test_binary_accuracy_rejects_broadcasting_shapes() -> None:
    with pytest.raises(ValueError, match=r"BinaryAccuracy.*\(10, 2\).*\(10,\)"):
        BinaryAccuracy().update(torch.rand(10, 2), torch.zeros(10))


def test_binary_accuracy_threshold_zero_on_raw_scores() -> None:
    # R compares `pred > threshold` with no range check; 0 is the natural cut for raw scores.
    scores = torch.tensor([-2.0, -0.1, 0.0, 0.3, 4.0])
    labels = torch.tensor([0, 0, 1, 1, 1])
    metric = BinaryAccuracy(threshold=0.0)
    metric.update(scores, labels)
    assert metric.compute() == pytest.approx(4 / 5)  # 0.0 is not > 0
    negative = BinaryAccuracy(threshold=-1.5)
    negative.update(scores, labels)
    assert negative.compute() == pytest.approx(4 / 5)  # only -2.0 is at or below -1.5


@pytest.mark.parametrize(
    "threshold", [0, 0.25, -3, 7.5, np.float32(0.25), np.int64(2), torch.tensor(0.25), torch.tensor(1)]
)
def test_binary_accuracy_threshold_accepts_any_finite_real(threshold: object) -> None:
    metric = BinaryAccuracy(threshold=threshold)  # type: ignore[arg-type]
    assert type(metric.threshold) is float and metric.threshold == float(threshold)  # type: ignore[arg-type]


@pytest.mark.parametrize("threshold", [0, 0.0, 1, np.float64(1.0), torch.tensor(0.0)])
def test_binary_accuracy_with_logits_threshold_end_points(threshold: object) -> None:
    logits = torch.tensor([-200.0, -3.0, 0.0, 5.0, 200.0])
    labels = torch.tensor([1, 1, 0, 1, 0])
    metric = BinaryAccuracyWithLogits(threshold=threshold)  # type: ignore[arg-type]
    metric.update(logits, labels)
    # sigmoid(x) > 0 for every finite x (even -200, where float32 sigmoid rounds to 0), and
    # sigmoid(x) > 1 never: all positive (3 of 5 right) or all negative (2 of 5 right).
    expected = 3 / 5 if float(threshold) == 0 else 2 / 5  # type: ignore[arg-type]
    assert metric.compute() == pytest.approx(expected)


@pytest.mark.parametrize("cls", [BinaryAccuracy, BinaryAccuracyWithLogits])
@pytest.mark.parametrize("threshold", [True, np.True_, float("nan"), float("inf"), -math.inf])
def test_threshold_rejects_bools_and_non_finite_values(cls: type[BinaryAccuracy], threshold: object) -> None:
    with pytest.raises(ValueError, match=rf"`threshold`.*{re.escape(repr(threshold))}"):
        cls(threshold=threshold)  # type: ignore[arg-type]


@pytest.mark.parametrize("cls", [BinaryAccuracy, BinaryAccuracyWithLogits])
@pytest.mark.parametrize("threshold", ["0.5", None, 0.5j, [0.5], torch.tensor([0.5])])
def test_threshold_of_wrong_type_is_a_type_error(cls: type[BinaryAccuracy], threshold: object) -> None:
    with pytest.raises(TypeError, match="`threshold` must be"):
        cls(threshold=threshold)  # type: ignore[arg-type]


@pytest.mark.parametrize("threshold", [-0.2, 1.5, np.float64(1.01)])
def test_logits_threshold_must_be_a_probability(threshold: object) -> None:
    BinaryAccuracy(threshold=threshold)  # type: ignore[arg-type]  # fine on raw scores
    with pytest.raises(ValueError, match=r"`threshold` must be a number in \[0.0, 1.0\], got"):
        BinaryAccuracyWithLogits(threshold=threshold)  # type: ignore[arg-type]


def test_non_tensor_inputs_are_a_type_error() -> None:
    with pytest.raises(TypeError, match="BinaryAccuracy expects tensors"):
        BinaryAccuracy().update([0.1, 0.9], torch.tensor([0, 1]))  # type: ignore[arg-type]


@pytest.mark.parametrize("cls", [Accuracy, BinaryAccuracy, BinaryAccuracyWithLogits])
def test_compute_before_update_is_nan(cls: type[Accuracy]) -> None:
    assert math.isnan(cls().compute())


def test_accuracy_takes_no_arguments() -> None:
    with pytest.raises(
        TypeError, match=r"Accuracy\(\) takes no arguments, got Accuracy\(3\): the number of classes"
    ):
        Accuracy(3)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=r"got Accuracy\(num_classes=3\)"):
        Accuracy(num_classes=3)  # type: ignore[call-arg]


def test_accuracy_checks_shapes_again_when_they_change() -> None:
    # The checks run once per new (pred shape, target shape, device): a later batch with
    # another layout is read its own way, and a bad one still raises.
    gen = torch.Generator().manual_seed(0)
    pred = torch.randn(70, 4, generator=gen)
    labels = torch.randint(0, 4, (70,), generator=gen)
    m = Accuracy()
    m.update(pred[:32], labels[:32])  # (N,) targets
    m.update(pred[32:64], labels[32:64])  # same shapes: no checks
    m.update(pred[64:68], labels[64:68].view(-1, 1))  # (N, 1): squeezed
    m.update(pred[68:], torch.nn.functional.one_hot(labels[68:], 4))  # one-hot: arg-max
    assert m.compute() == pytest.approx(accuracy_score(labels.numpy(), pred.argmax(1).numpy()))
    with pytest.raises(ValueError, match=re.escape("got pred (2, 4) and target (3,)")):
        m.update(pred[:2], labels[:3])
    m.update(pred[:32], labels[:32])  # back to the first shapes: checked again, accepted
    assert m.total == 102
