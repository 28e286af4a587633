"""Metrics inside real fits (R rows 44–48): records, phases, errors, dict values, the loss."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch import nn

import luz
from luz.metrics import (
    MAE,
    MSE,
    RMSE,
    Accuracy,
    BinaryAccuracy,
    BinaryAccuracyWithLogits,
    BinaryAUROC,
    MulticlassAUROC,
)
from tests.conftest import Linear, classification_data, regression_data


def _regression(metrics: Any, epochs: int = 1, **fit: Any) -> luz.Fitted:
    x, y = regression_data()
    return (
        luz.setup(Linear, loss=nn.MSELoss(), optimizer=torch.optim.SGD, metrics=metrics)
        .set_opt_hparams(lr=0.01)
        .fit((x, y), epochs=epochs, **{"verbose": False, **fit})
    )


def test_metrics_within_models_with_duplicate_names() -> None:
    # R row 44: three metrics, two named "Acc" -> 4 entries; the port suffixes `_2`.
    x = torch.randn(100, 10)
    y = (x[:, :1] > 0).float()
    fitted = (
        luz.setup(
            Linear,
            loss=nn.BCEWithLogitsLoss(),
            optimizer=torch.optim.Adam,
            metrics=[BinaryAccuracyWithLogits(), BinaryAccuracy(), BinaryAUROC(from_logits=True)],
        )
        .set_opt_hparams(lr=0.01)
        .fit((x, y), epochs=2, verbose=False)
    )
    first = fitted.records["metrics"]["train"][0]
    assert list(first) == ["loss", "acc", "acc_2", "auc"]
    assert all(isinstance(v, float) for v in first.values())
    assert 0 <= first["auc"] <= 1


def test_train_and_valid_metric_sets() -> None:
    # R row 45.
    x, y = regression_data()
    ms = luz.MetricSet(metrics=[MAE()], train=[MSE()], valid=[RMSE()])
    fitted = _regression(ms, epochs=2, valid_data=(x[:40], y[:40]))
    assert list(fitted.records["metrics"]["train"][-1]) == ["loss", "mae", "mse"]
    assert list(fitted.records["metrics"]["valid"][-1]) == ["loss", "mae", "rmse"]
    frame = fitted.get_metrics()
    assert set(frame.loc[frame["set"] == "valid", "metric"]) == {"loss", "mae", "rmse"}
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    figure = fitted.plot()
    plt.close(figure)


def test_state_is_fresh_each_epoch_and_phase() -> None:
    class Count(luz.Metric):
        abbrev = "N"

        def __init__(self) -> None:
            self.n = 0

        def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
            self.n += pred.shape[0]

        def compute(self) -> float:
            return float(self.n)

    x, y = regression_data()
    prototype = Count()
    fitted = _regression([prototype], epochs=2, valid_data=(x[:40], y[:40]))
    # 100 rows, batch 32, drop_last: 96 per training epoch; 40 validation rows.
    assert [e["n"] for e in fitted.records["metrics"]["train"]] == [96.0, 96.0]
    assert [e["n"] for e in fitted.records["metrics"]["valid"]] == [40.0, 40.0]
    assert prototype.n == 0


class FailingUpdate(luz.Metric):
    abbrev = "Fail"

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        raise ValueError("error in update!")

    def compute(self) -> float:
        return 0.0


class FailingCompute(luz.Metric):
    abbrev = "FailC"

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        pass

    def compute(self) -> float:
        raise ValueError("error in compute!")


def test_error_when_metric_update_fails() -> None:
    # R row 47.
    with pytest.raises(luz.CallbackError) as info:
        _regression([FailingUpdate()])
    message = str(info.value)
    assert "Metrics" in message and "on_train_batch_end" in message
    cause = info.value.__cause__
    assert isinstance(cause, luz.MetricError) and isinstance(cause, ValueError)
    text = str(cause)
    for part in ("update", "'Fail'", "FailingUpdate", "iter 1 of epoch 1", "training", "error in update!"):
        assert part in text
    assert isinstance(cause.__cause__, ValueError) and str(cause.__cause__) == "error in update!"


def test_error_when_metric_compute_fails() -> None:
    # R row 48: 1000 rows, batch 32, drop_last -> fails at iter 31 of epoch 1.
    x, y = regression_data(n=1000)
    module = luz.setup(Linear, loss=nn.MSELoss(), optimizer=torch.optim.SGD, metrics=[FailingCompute()])
    with pytest.raises(luz.CallbackError) as info:
        module.set_opt_hparams(lr=0.01).fit((x, y), epochs=1, verbose=False)
    assert "Metrics" in str(info.value) and "on_train_end" in str(info.value)
    cause = info.value.__cause__
    assert isinstance(cause, luz.MetricError)
    for part in (
        "compute",
        "'FailC'",
        "FailingCompute",
        "iter 31 of epoch 1",
        "training",
        "error in compute!",
    ):
        assert part in str(cause)


def test_loss_average_differs_from_mse_with_short_last_batch() -> None:
    # §6.4: the loss is the unweighted mean of batch losses; MSE is sample-weighted.
    x, y = regression_data()
    fitted = _regression([MSE()])
    options = {"batch_size": 32, "drop_last": False}
    values = dict(fitted.evaluate((x, y), dataloader_options=options).get_metrics().values.tolist())
    pred = fitted.predict(x)
    batch_losses = [nn.functional.mse_loss(pred[i : i + 32], y[i : i + 32]).item() for i in range(0, 100, 32)]
    assert values["loss"] == pytest.approx(sum(batch_losses) / 4, abs=1e-6)
    assert values["mse"] == pytest.approx(nn.functional.mse_loss(pred.double(), y.double()).item(), abs=1e-6)
    assert abs(values["loss"] - values["mse"]) > 1e-3


class TwoHeads(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(10, 1), nn.Linear(10, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.a(x) + self.b(x)

    def set_optimizers(self, lr: float = 0.01) -> dict[str, torch.optim.Optimizer]:
        return {
            "first": torch.optim.SGD(self.a.parameters(), lr=lr),
            "second": torch.optim.SGD(self.b.parameters(), lr=lr),
        }


def test_loss_per_optimizer_is_recorded_by_name() -> None:
    x, y = regression_data()
    fitted = luz.setup(TwoHeads, loss=nn.MSELoss(), metrics=[MAE()]).fit((x, y), epochs=1, verbose=False)
    loss = fitted.records["metrics"]["train"][0]["loss"]
    assert set(loss) == {"first", "second"}
    assert set(fitted.get_metrics()["metric"]) == {"loss_first", "loss_second", "mae"}


def test_dict_valued_metric_is_flattened(capsys: pytest.CaptureFixture[str]) -> None:
    x, y = classification_data(n=120)
    fitted = (
        luz.setup(
            Linear,
            loss=nn.CrossEntropyLoss(),
            optimizer=torch.optim.Adam,
            metrics=[Accuracy(), MulticlassAUROC(average="none", from_logits=True)],
        )
        .set_hparams(out_features=3)
        .fit((x[:90], y[:90]), epochs=1, valid_data=(x[90:], y[90:]), verbose=True)
    )
    frame = fitted.get_metrics()
    for phase in ("train", "valid"):
        names = frame.loc[frame["set"] == phase, "metric"].tolist()
        assert names == ["loss", "acc", "auc_0", "auc_1", "auc_2"]
    assert fitted.records["metrics"]["valid"][0]["auc"].keys() == {"0", "1", "2"}
    err = capsys.readouterr().err
    assert "AUC: 0: " in err and " | 2: " in err
    assert "auc" in repr(fitted)
    evaluation = fitted.evaluate((x[90:], y[90:]), verbose=False)
    assert evaluation.get_metrics()["metric"].tolist() == ["loss", "acc", "auc_0", "auc_1", "auc_2"]
    assert "auc" in repr(evaluation)


class ForgetsLoss(Linear):
    """A custom step that sets ctx.pred and steps the optimizer but never sets ctx.loss."""

    def step(self) -> None:
        ctx: Any = self.ctx
        ctx.pred = self(ctx.input)
        if ctx.training:
            loss = nn.functional.mse_loss(ctx.pred, ctx.target)
            loss.backward()
            ctx.opt.step()
            ctx.opt.zero_grad()


def test_custom_step_that_never_sets_the_loss_is_an_error() -> None:
    # SPEC §2: a custom step "must set ctx.pred and ctx.loss"; before, the record was {'loss': {}}.
    x, y = regression_data()
    module = luz.setup(ForgetsLoss, optimizer=torch.optim.SGD).set_opt_hparams(lr=0.01)
    with pytest.raises(ValueError, match=r"ctx.loss was never set during the training phase") as info:
        module.fit((x, y), epochs=1, verbose=False)
    assert "custom step() must set `ctx.loss`" in str(info.value)
    assert "'Loss' (LossAverage)" in str(info.value)  # wrapped: names the metric and the phase


def test_evaluate_stopped_before_its_first_batch_end_records_nan() -> None:
    # The Metrics callback computes at on_valid_end when ctx.iter > 0, even if no batch reached
    # on_valid_batch_end: compute() before any update() must not raise, so it is nan.
    x, y = regression_data()
    fitted = _regression([MAE(), BinaryAUROC()])
    stop = luz.callback(on_valid_batch_begin=lambda ctx: (_ for _ in ()).throw(luz.StopTraining()))
    values = fitted.evaluate((x, y), callbacks=[stop], verbose=False).records["metrics"]["valid"][0]
    assert list(values) == ["loss", "mae", "auc"]
    assert all(math.isnan(v) for v in values.values())


class Renamed(luz.Metric):
    def __init__(self, abbrev: str) -> None:
        self.abbrev = abbrev  # per instance, as R's metrics set it
        self.n = 0

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        self.n += pred.shape[0]

    def compute(self) -> float:
        return float(self.n)


def test_instance_abbrev_names_records_monitors_and_progress(capsys: pytest.CaptureFixture[str]) -> None:
    x, y = regression_data()
    stop = luz.callbacks.EarlyStopping(monitor="valid_rows", mode="max", patience=5)
    rows = [Renamed("Rows")]
    fitted = _regression(rows, epochs=2, valid_data=(x[:40], y[:40]), callbacks=[stop], verbose=True)
    assert list(fitted.records["metrics"]["valid"][0]) == ["loss", "rows"]
    assert len(fitted.records["metrics"]["valid"]) == 2  # the monitor "valid_rows" resolved
    assert fitted.records["metrics"]["valid"][0]["rows"] == 40.0
    err = capsys.readouterr().err
    assert "Valid: Loss: " in err and " - Rows: 40.0000" in err  # the one-line form off a terminal
