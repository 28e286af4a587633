"""`Fitted`: predict, evaluate, metrics frames, repr; `Evaluation`."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch import nn

import luz
from luz.metrics import MAE, MSE, RMSE
from tests.conftest import Linear, regression_data


@pytest.fixture
def data() -> tuple[torch.Tensor, torch.Tensor]:
    return regression_data()


@pytest.fixture
def fitted(data: tuple[torch.Tensor, torch.Tensor]) -> luz.Fitted:
    return (
        luz.setup(Linear, loss=nn.MSELoss(), optimizer=torch.optim.SGD, metrics=[MAE(), MSE(), RMSE()])
        .set_opt_hparams(lr=0.05)
        .fit(data, epochs=2, valid_data=data, verbose=False)
    )


# -- predict -------------------------------------------------------------------------------------


def test_predict_shape_and_determinism(fitted: luz.Fitted, data: Any) -> None:
    # R row 56
    x, y = data
    p1 = fitted.predict(x, verbose=False)
    p2 = fitted.predict(luz.as_dataloader(x, batch_size=7), verbose=False)
    p3 = fitted.predict((x, y), verbose=False)  # element 0 is the input
    assert p1.shape == (100, 1)
    assert torch.equal(p1, p3) and torch.equal(p1, fitted.predict(x, verbose=False))
    torch.testing.assert_close(p1, p2)  # other batch sizes may round differently
    assert torch.allclose(p1, fitted.model(x))
    assert not fitted.model.training


def test_predict_stack_false_returns_list(fitted: luz.Fitted, data: Any) -> None:
    x, _ = data
    parts = fitted.predict(x, stack=False, verbose=False)
    assert isinstance(parts, list)
    assert [p.shape[0] for p in parts] == [32, 32, 32, 4]


def test_predict_uses_model_predict_method(data: Any) -> None:
    class WithPredict(Linear):
        def predict(self, x: torch.Tensor) -> torch.Tensor:
            return torch.sigmoid(self(x)) + 10

    x, y = data
    fitted = (
        luz.setup(WithPredict, loss=nn.MSELoss(), optimizer=torch.optim.SGD)
        .set_opt_hparams(lr=0.01)
        .fit((x, y), epochs=1, verbose=False)
    )
    preds = fitted.predict(x, verbose=False)
    assert torch.allclose(preds, torch.sigmoid(fitted.model(x)) + 10)


def test_predict_dataloader_options(fitted: luz.Fitted, data: Any) -> None:
    # R row 59: batch 45 + drop_last -> 90 rows
    x, _ = data
    preds = fitted.predict(x, dataloader_options={"batch_size": 45, "drop_last": True}, verbose=False)
    assert preds.shape == (90, 1)


def test_predict_shuffle_is_ignored_with_warning(fitted: luz.Fitted, data: Any) -> None:
    x, _ = data
    with pytest.warns(UserWarning, match="ignored for predictions"):
        preds = fitted.predict(x, dataloader_options={"shuffle": True}, verbose=False)
    assert torch.equal(preds, fitted.predict(x, verbose=False))


def test_predict_options_with_dataloader_warn(fitted: luz.Fitted, data: Any) -> None:
    x, _ = data
    with pytest.warns(UserWarning, match="already a dataloader"):
        preds = fitted.predict(luz.as_dataloader(x), dataloader_options={"batch_size": 3}, verbose=False)
    assert preds.shape == (100, 1)


def test_predict_nested_outputs_are_stacked(data: Any) -> None:
    class Pair(Linear):
        def forward(self, x: torch.Tensor) -> Any:
            out = super().forward(x)
            return out, {"double": out * 2}

        def loss(self, pred: Any, target: torch.Tensor) -> torch.Tensor:
            return nn.functional.mse_loss(pred[0], target)

    x, y = data
    fitted = (
        luz.setup(Pair, optimizer=torch.optim.SGD)
        .set_opt_hparams(lr=0.01)
        .fit((x, y), epochs=1, verbose=False)
    )
    single, parts = fitted.predict(x, verbose=False)
    assert single.shape == (100, 1)
    assert torch.allclose(parts["double"], single * 2)


def test_predict_unstackable_outputs_suggest_stack_false(data: Any) -> None:
    class Strings(Linear):
        def predict(self, x: torch.Tensor) -> str:
            return "nope"

    x, y = data
    fitted = (
        luz.setup(Strings, loss=nn.MSELoss(), optimizer=torch.optim.SGD)
        .set_opt_hparams(lr=0.01)
        .fit((x, y), epochs=1, verbose=False)
    )
    with pytest.raises(TypeError, match="stack=False"):
        fitted.predict(x, verbose=False)
    assert fitted.predict(x, stack=False, verbose=False) == ["nope"] * 4


# -- evaluate ------------------------------------------------------------------------------------


def test_evaluate_returns_four_rows(fitted: luz.Fitted, data: Any) -> None:
    # R row 60
    ev = fitted.evaluate(data, verbose=False)
    assert isinstance(ev, luz.Evaluation)
    frame = ev.get_metrics()
    assert frame.shape == (4, 2)
    assert list(frame.columns) == ["metric", "value"]
    assert list(frame["metric"]) == ["loss", "mae", "mse", "rmse"]
    x, y = data
    mse = nn.functional.mse_loss(fitted.model(x), y).item()
    values = dict(zip(frame["metric"], frame["value"], strict=True))
    assert values["mse"] == pytest.approx(mse, rel=1e-5)
    assert values["rmse"] == pytest.approx(math.sqrt(mse), rel=1e-5)
    text = repr(ev)
    assert "A `luz.Evaluation`" in text and "mae: " in text and "rmse: " in text


def test_evaluate_metrics_override_is_temporary(fitted: luz.Fitted, data: Any) -> None:
    # R row 63
    ev = fitted.evaluate(data, metrics=[MAE()], verbose=False)
    assert list(ev.get_metrics()["metric"]) == ["loss", "mae"]
    again = fitted.evaluate(data, verbose=False)
    assert list(again.get_metrics()["metric"]) == ["loss", "mae", "mse", "rmse"]


def test_evaluate_shuffle_warns(fitted: luz.Fitted, data: Any) -> None:
    with pytest.warns(UserWarning, match="ignored for predictions"):
        fitted.evaluate(data, dataloader_options={"shuffle": True}, verbose=False)


def test_evaluate_metric_class_error_leaves_model_clean(fitted: luz.Fitted, data: Any) -> None:
    with pytest.raises(TypeError, match="forget to instantiate"):
        fitted.evaluate(data, metrics=[MAE], verbose=False)
    assert "ctx" not in fitted.model.__dict__


def test_evaluate_with_two_optimizers() -> None:
    class Two(Linear):
        def __init__(self) -> None:
            super().__init__()
            self.extra = nn.Linear(10, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return super().forward(x) + self.extra(x)

        def set_optimizers(self) -> dict[str, torch.optim.Optimizer]:
            return {
                "a": torch.optim.SGD(self.fc.parameters(), lr=0.01),
                "b": torch.optim.SGD(self.extra.parameters(), lr=0.01),
            }

    x, y = regression_data()
    fitted = luz.setup(Two, loss=nn.MSELoss()).fit((x, y), epochs=1, verbose=False)
    frame = fitted.evaluate((x, y), verbose=False).get_metrics()
    assert list(frame["metric"]) == ["loss_a", "loss_b"]
    assert frame["value"][0] == pytest.approx(frame["value"][1])


# -- metrics frames, device, repr ------------------------------------------------------------------


def test_get_metrics_frame_layout(fitted: luz.Fitted) -> None:
    frame = fitted.get_metrics()
    assert list(frame.columns) == ["set", "metric", "epoch", "value"]
    assert len(frame) == 2 * 2 * 4
    assert list(frame["set"]) == ["train"] * 8 + ["valid"] * 8
    assert list(frame["epoch"][:8]) == [1] * 4 + [2] * 4
    assert list(frame["metric"][:4]) == ["loss", "mae", "mse", "rmse"]
    assert frame["value"].dtype == float
    first = fitted.records["metrics"]["train"][0]
    assert frame["value"][1] == first["mae"]
    assert frame.equals(luz.get_metrics(fitted))


def test_fitted_device() -> None:
    # R row 62: pyluz reports the device on the fitted object
    x, y = regression_data()
    fitted = (
        luz.setup(Linear, loss=nn.MSELoss(), optimizer=torch.optim.SGD)
        .set_opt_hparams(lr=0.01)
        .fit((x, y), epochs=1, accelerator=luz.Accelerator(cpu=True), verbose=False)
    )
    assert fitted.device == torch.device("cpu")


def test_fitted_repr(fitted: luz.Fitted) -> None:
    # R row 51
    text = repr(fitted)
    assert "Total time:" in text
    assert "Avg time per training epoch:" in text
    assert "Training:" in text and "Validation:" in text
    assert "rmse: " in text
    assert "Linear(" in text


def test_fitted_records_profile(fitted: luz.Fitted) -> None:
    profile = fitted.records["profile"]
    assert {k: len(v) for k, v in profile.items()} == {"fit": 1, "epoch": 2, "train": 2, "valid": 2}
    assert all(isinstance(v, float) and v >= 0 for values in profile.values() for v in values)


def test_a_submodule_named_predict_is_not_a_predict_method() -> None:
    class Head(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Linear(10, 4)
            self.predict = nn.Linear(4, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.predict(self.body(x))

    x, y = regression_data(64)
    fitted = luz.setup(Head, loss=nn.MSELoss(), optimizer=torch.optim.SGD).fit(
        (x, y), epochs=1, verbose=False
    )
    assert fitted.predict(x).shape == (64, 1)


# -- stop_reason: what ended training ------------------------------------------------------------


def _fit_with(*callbacks: Any, epochs: int = 4) -> luz.Fitted:
    x, y = regression_data(64)
    return (
        luz.setup(Linear, loss=nn.MSELoss(), optimizer=torch.optim.SGD)
        .set_opt_hparams(lr=0.01)
        .fit((x, y), epochs=epochs, callbacks=list(callbacks), verbose=False)
    )


def test_stop_reason_is_none_when_every_epoch_ran(fitted: luz.Fitted) -> None:
    assert fitted.stop_reason is None
    assert "ended early" not in repr(fitted)


def test_stop_reason_names_early_stopping_and_its_monitor() -> None:
    stop = luz.callbacks.EarlyStopping(monitor="train_loss", patience=0, mode="max")  # a falling loss
    fitted = _fit_with(stop, epochs=5)
    assert len(fitted.records["metrics"]["train"]) == 2
    assert fitted.stop_reason is not None
    assert fitted.stop_reason.startswith(
        "EarlyStopping stopped training at epoch 2: train_loss did not improve on "
    )
    assert fitted.stop_reason.endswith("(patience 0)")
    assert f"Training ended early: {fitted.stop_reason}." in repr(fitted)


def test_stop_reason_after_ctrl_c_says_interrupted_and_fit_returns() -> None:
    def ctrl_c(ctx: luz.Context) -> None:
        if (ctx.epoch, ctx.iter) == (3, 1):
            raise KeyboardInterrupt

    fitted = _fit_with(luz.callback(on_train_batch_end=ctrl_c))
    assert len(fitted.records["metrics"]["train"]) == 2
    assert fitted.stop_reason == "interrupted (KeyboardInterrupt) during epoch 3"


class Enough(luz.Callback):
    def on_epoch_end(self) -> None:
        if self.ctx.epoch == 2:  # type: ignore[union-attr]
            raise luz.StopTraining("enough for today")


def test_stop_reason_names_the_callback_class_and_its_message() -> None:
    assert _fit_with(Enough()).stop_reason == "Enough stopped training at epoch 2: enough for today"


class StopsSayingWhen(luz.Callback):
    def __init__(self, message: str) -> None:
        self.message = message

    def on_epoch_end(self) -> None:
        if self.ctx.epoch == 2:
            raise luz.StopTraining(self.message)


def test_a_stop_message_that_says_when_takes_the_place_of_at_epoch() -> None:
    # SPEC §1: "... non-finite training loss (nan) at epoch 4" says when itself.
    fitted = _fit_with(StopsSayingWhen("the loss plateaued at epoch 2"))
    assert fitted.stop_reason == "StopsSayingWhen stopped training: the loss plateaued at epoch 2"
    # Another epoch (a longer number too) is part of the message, not the time of the stop.
    fitted = _fit_with(StopsSayingWhen("the best was at epoch 1, not at epoch 21"))
    assert fitted.stop_reason == (
        "StopsSayingWhen stopped training at epoch 2: the best was at epoch 1, not at epoch 21"
    )


def test_stop_reason_for_a_bare_stop_from_a_lambda_callback() -> None:
    def stop(ctx: luz.Context) -> None:
        if ctx.epoch == 3:
            raise luz.StopTraining

    fitted = _fit_with(luz.callback(on_epoch_begin=stop))
    assert fitted.stop_reason == "callback(on_epoch_begin) stopped training at epoch 3"
    before = _fit_with(luz.callback(on_fit_begin=lambda ctx: _raise(luz.StopTraining())))
    assert before.stop_reason == "callback(on_fit_begin) stopped training before the first epoch"


def _raise(error: BaseException) -> None:
    raise error
