"""The default callbacks: TrainValid, Metrics (and its error chains), Profile, Interrupt."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

import luz
from luz.metrics import MAE, MSE, RMSE
from tests.conftest import Linear, regression_data


class Constant(luz.Metric):
    """A metric with a constructor argument (R row 39)."""

    abbrev = "Const"

    def __init__(self, value: float) -> None:
        self.value = value
        self.batches = torch.zeros((), dtype=torch.int64)

    def update(self, pred: Any, target: Any) -> None:
        self.batches += 1

    def compute(self) -> float:
        return self.value * int(self.batches.item())


def module(**kwargs: Any) -> luz.LuzModule:
    options: dict[str, Any] = {"loss": nn.MSELoss(), "optimizer": torch.optim.SGD, **kwargs}
    return luz.setup(Linear, **options).set_opt_hparams(lr=0.01)


def test_custom_metric_with_argument() -> None:
    # R row 39
    metric = Constant(2.5)
    metric.update(None, None)
    metric.update(None, None)
    assert metric.compute() == 5.0
    x, y = regression_data(64)
    fitted = module(metrics=[Constant(1.5)]).fit((x, y), epochs=1, verbose=False)
    assert fitted.records["metrics"]["train"][0]["const"] == 3.0  # 2 batches of 32


def test_duplicate_metric_names_are_suffixed() -> None:
    # R row 44: BCE-with-logits model, 3 metrics, the same name twice -> 4 entries
    x = torch.randn(64, 10)
    y = (x[:, :1] > 0).float()
    fitted = (
        luz.setup(
            Linear,
            loss=nn.BCEWithLogitsLoss(),
            optimizer=torch.optim.Adam,
            metrics=[luz.metrics.BinaryAccuracyWithLogits(), luz.metrics.BinaryAccuracy(0.5), MAE()],
        )
        .set_opt_hparams(lr=0.01)
        .fit((x, y), epochs=1, verbose=False)
    )
    record = fitted.records["metrics"]["train"][0]
    assert list(record) == ["loss", "acc", "acc_2", "mae"]


def test_train_and_valid_metric_sets() -> None:
    # R row 45
    x, y = regression_data()
    metrics = luz.MetricSet(metrics=[MAE()], train=[MSE()], valid=[RMSE()])
    fitted = module(metrics=metrics).fit(
        (x, y), epochs=2, valid_data=(x, y), dataloader_options={"batch_size": 100}, verbose=False
    )
    assert list(fitted.records["metrics"]["train"][1]) == ["loss", "mae", "mse"]
    assert list(fitted.records["metrics"]["valid"][1]) == ["loss", "mae", "rmse"]
    valid = fitted.records["metrics"]["valid"][1]
    assert valid["rmse"] ** 2 == pytest.approx(valid["loss"], rel=1e-5)  # one batch of 100


def test_metrics_are_fresh_each_phase() -> None:
    x, y = regression_data(64)
    fitted = module(metrics=[Constant(1.0)]).fit((x, y), epochs=3, valid_data=(x, y), verbose=False)
    assert [e["const"] for e in fitted.records["metrics"]["train"]] == [2.0, 2.0, 2.0]
    assert [e["const"] for e in fitted.records["metrics"]["valid"]] == [2.0, 2.0, 2.0]


def test_loss_average_is_unweighted_mean_of_batch_losses() -> None:
    x, y = regression_data(100)
    losses: list[float] = []
    fitted = module().fit(
        (x, y),
        epochs=1,
        valid_data=(x, y),
        callbacks=[luz.callback(on_valid_batch_end=lambda ctx: losses.append(ctx.loss["opt"].item()))],
        verbose=False,
    )
    assert len(losses) == 4  # 32, 32, 32, 4
    assert fitted.records["metrics"]["valid"][0]["loss"] == pytest.approx(sum(losses) / 4)


class FailingUpdate(luz.Metric):
    abbrev = "Fail"

    def update(self, pred: Any, target: Any) -> None:
        raise ValueError("Error!")

    def compute(self) -> float:
        return 0.0


class FailingCompute(luz.Metric):
    abbrev = "FailC"

    def update(self, pred: Any, target: Any) -> None:
        pass

    def compute(self) -> float:
        raise ValueError("Error!")


def test_metric_update_error_chain() -> None:
    # R row 47
    x, y = regression_data(64)
    with pytest.raises(luz.CallbackError) as info:
        module(metrics=[FailingUpdate()]).fit((x, y), epochs=1, verbose=False)
    error = info.value
    assert isinstance(error, ValueError)
    assert "Metrics" in str(error) and "on_train_batch_end" in str(error)
    cause = error.__cause__
    assert isinstance(cause, luz.MetricError) and isinstance(cause, ValueError)
    text = str(cause)
    for phrase in ["`update`", "'Fail'", "FailingUpdate", "iter 1 of epoch 1", "training mode", "Error!"]:
        assert phrase in text, phrase
    assert str(cause.__cause__) == "Error!"


def test_metric_compute_error_chain() -> None:
    # R row 48: 1000 rows / 32 with drop_last -> fails at iter 31
    x, y = regression_data(1000)
    with pytest.raises(luz.CallbackError, match="on_train_end") as info:
        module(metrics=[FailingCompute()]).fit((x, y), epochs=1, verbose=False)
    cause = info.value.__cause__
    assert isinstance(cause, luz.MetricError)
    for phrase in ["`compute`", "'FailC'", "FailingCompute", "iter 31 of epoch 1", "training mode"]:
        assert phrase in str(cause), phrase


def test_metric_error_in_validation_names_the_mode() -> None:
    class FailsInValid(FailingUpdate):
        def update(self, pred: Any, target: Any) -> None:
            if not self.ctx.training:  # type: ignore[union-attr]
                raise ValueError("valid only")

    x, y = regression_data(64)
    with pytest.raises(luz.CallbackError, match="on_valid_batch_end") as info:
        module(metrics=[FailsInValid()]).fit((x, y), epochs=1, valid_data=(x, y), verbose=False)
    assert "validation mode" in str(info.value.__cause__)


def test_train_valid_modes() -> None:
    modes: list[tuple[str, bool, bool]] = []

    def note(phase: str) -> Any:
        return lambda ctx: modes.append((phase, ctx.model.training, ctx.training))

    x, y = regression_data(64)
    module().fit(
        (x, y),
        epochs=1,
        valid_data=(x, y),
        callbacks=[luz.callback(on_train_batch_begin=note("train"), on_valid_batch_begin=note("valid"))],
        verbose=False,
    )
    assert modes == [("train", True, True)] * 2 + [("valid", False, False)] * 2


def test_profile_lengths() -> None:
    # R row 19
    x, y = regression_data(64)
    fitted = module().fit((x, y), epochs=5, valid_data=(x, y), verbose=False)
    profile = fitted.records["profile"]
    assert [len(profile[k]) for k in ("fit", "epoch", "train", "valid")] == [1, 5, 5, 5]
    assert profile["fit"][0] >= sum(profile["epoch"])
    assert all(e >= t for e, t in zip(profile["epoch"], profile["train"], strict=True))


def test_evaluate_profile_and_records() -> None:
    x, y = regression_data(64)
    fitted = module().fit((x, y), epochs=1, verbose=False)
    ev = fitted.evaluate((x, y), verbose=False)
    assert [len(ev.records["profile"][k]) for k in ("fit", "epoch", "train", "valid")] == [0, 0, 0, 1]
    assert ev.records["metrics"]["train"] == []


def test_interrupt_is_silent_when_not_verbose(capsys: pytest.CaptureFixture[str]) -> None:
    x, y = regression_data(64)

    def stop(ctx: luz.Context) -> None:
        raise KeyboardInterrupt

    fitted = module().fit((x, y), epochs=3, callbacks=[luz.callback(on_train_end=stop)], verbose=False)
    assert capsys.readouterr().err == ""
    assert fitted.records["metrics"]["train"] == []


def test_a_compute_returning_a_tensor_is_recorded_as_a_float() -> None:
    class MeanPred(luz.Metric):
        abbrev = "MP"

        def __init__(self) -> None:
            self.total = torch.zeros(())
            self.n = 0

        def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
            self.total += pred.sum()
            self.n += pred.numel()

        def compute(self) -> Any:
            return self.total / self.n  # a 0-dim tensor: a common slip

    x, y = regression_data(64)
    module = luz.setup(Linear, loss=nn.MSELoss(), optimizer=torch.optim.SGD, metrics=[MeanPred()])
    fitted = module.set_opt_hparams(lr=0.01).fit((x, y), epochs=1, verbose=False)
    value = fitted.records["metrics"]["train"][0]["mp"]
    assert type(value) is float
    assert "mp: " in repr(fitted) and "tensor(" not in repr(fitted)
