"""MAE, MSE, RMSE: scikit-learn parity (R rows 40–42), accumulation precision and shapes."""

from __future__ import annotations

import math

import pytest
import torch
from sklearn.metrics import mean_absolute_error, mean_squared_error

from luz.metrics import MAE, MSE, RMSE

REFERENCES = {
    MAE: mean_absolute_error,
    MSE: mean_squared_error,
    RMSE: lambda y, p: math.sqrt(mean_squared_error(y, p)),
}


@pytest.mark.parametrize("cls", [MAE, MSE, RMSE])
def test_equals_sklearn_on_random_matrix(cls: type[MSE]) -> None:
    # R rows 40-42: 100x100 random tensors against the numpy formulas.
    x, y = torch.randn(100, 100), torch.randn(100, 100)
    metric = cls()
    metric.update(x, y)
    expected = REFERENCES[cls](y.numpy().ravel(), x.numpy().ravel())
    assert metric.compute() == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("cls", [MAE, MSE, RMSE])
def test_sample_weighted_over_uneven_batches(cls: type[MSE], device: str) -> None:
    x, y = torch.randn(100, 3, device=device), torch.randn(100, 3, device=device)
    metric = cls().to(device)
    for i in range(0, 100, 32):  # batches of 32, 32, 32, 4
        metric.update(x[i : i + 32], y[i : i + 32])
    expected = REFERENCES[cls](y.cpu().numpy().ravel(), x.cpu().numpy().ravel())
    assert metric.compute() == pytest.approx(expected, abs=1e-5)
    assert metric.total.dtype == torch.float64
    assert metric.count == 300 and isinstance(metric.count, int)


def test_accumulates_in_float64() -> None:
    # 1e8 + 1 is not representable in float32: a float32 sum would lose the 1s.
    metric = MAE()
    metric.update(torch.tensor([1e8], dtype=torch.float64), torch.tensor([0.0]))
    for _ in range(4):
        metric.update(torch.tensor([1.0]), torch.tensor([0.0]))
    assert metric.compute() == pytest.approx((1e8 + 4) / 5, rel=0, abs=1e-6)


def test_integer_targets() -> None:
    metric = MAE()
    metric.update(torch.tensor([0.5, 2.0]), torch.tensor([1, 2]))
    assert metric.compute() == pytest.approx(0.25)


@pytest.mark.parametrize(("pred_shape", "target_shape"), [((6, 1), (6,)), ((6,), (6, 1))])
def test_trailing_singleton_is_reshaped(pred_shape: tuple[int, ...], target_shape: tuple[int, ...]) -> None:
    pred, target = torch.randn(6), torch.randn(6)
    metric, flat = MSE(), MSE()
    metric.update(pred.reshape(pred_shape), target.reshape(target_shape))
    flat.update(pred, target)
    assert metric.compute() == pytest.approx(flat.compute())


@pytest.mark.parametrize(
    ("pred_shape", "target_shape"), [((6, 2), (6,)), ((6,), (5,)), ((6, 1), (1, 6)), ((2, 3), (3, 2))]
)
def test_broadcasting_shapes_raise(pred_shape: tuple[int, ...], target_shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError) as info:
        MAE().update(torch.randn(pred_shape), torch.randn(target_shape))
    message = str(info.value)
    assert "MAE" in message and str(pred_shape) in message and str(target_shape) in message


def test_rmse_is_sqrt_of_mse() -> None:
    x, y = torch.randn(50), torch.randn(50)
    mse, rmse = MSE(), RMSE()
    mse.update(x, y)
    rmse.update(x, y)
    assert rmse.compute() == pytest.approx(math.sqrt(mse.compute()))
    assert rmse.record_name == "rmse" and mse.record_name == "mse"


@pytest.mark.parametrize("cls", [MAE, MSE, RMSE])
def test_regression_metrics_take_no_arguments(cls: type) -> None:
    with pytest.raises(
        TypeError, match=rf"{cls.__name__}\(\) takes no arguments, got {cls.__name__}\(reduction='sum'\)"
    ):
        cls(reduction="sum")
