"""Bad input gets a clear error: batch structure, loss failures, shape mismatches, optimizers on
foreign parameters, models without parameters, empty evaluation data (reliability §4, §8.10-11)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

import luz
from tests.conftest import Linear, classification_data, regression_data


def mse_module(model: Any = Linear, loss: Any = None) -> luz.LuzModule:
    return luz.setup(model, loss=loss or nn.MSELoss(), optimizer=torch.optim.SGD).set_opt_hparams(lr=0.1)


# -- batch structure ---------------------------------------------------------------------------


def test_bare_tensor_data_has_no_target() -> None:
    x, _ = regression_data(64)
    with pytest.raises(ValueError, match="the batch has no target") as info:
        mse_module().fit(x, epochs=1, verbose=False)
    message = str(info.value)
    assert "batch 1 of epoch 1 (training)" in message
    assert "a tuple of 1 [a tensor of shape (32, 10) (float32)]" in message
    assert "(input, target, ...)" in message and "fit" in message  # the fix
    assert info.value.__cause__ is not None  # the loss's own error is chained


def test_a_loss_that_needs_no_target_trains_on_bare_tensors() -> None:
    # An autoencoder-style loss ignores the target: no error, the structure check is lazy.
    x, _ = regression_data(64)
    fitted = mse_module(loss=lambda pred, target: pred.pow(2).mean()).fit(x, epochs=1, verbose=False)
    assert len(fitted.records["metrics"]["train"]) == 1


def test_dataloader_of_bare_tensors_needs_a_target_for_the_loss() -> None:
    x, _ = regression_data(64)
    loader = DataLoader(x, batch_size=16)  # yields (16, 10) tensors, not tuples
    with pytest.raises(ValueError, match=r"no target: it is a tensor of shape \(16, 10\)") as info:
        mse_module().fit(loader, epochs=1, verbose=False)
    assert "(input, target, ...)" in str(info.value)


def test_dataloader_of_bare_tensors_predicts_and_trains_a_targetless_loss() -> None:
    # A bare-tensor batch is the input (SPEC §2: predict uses element 0 of a tuple batch).
    x, _ = regression_data(64)
    loader = DataLoader(x, batch_size=16)
    fitted = mse_module(loss=lambda pred, target: pred.pow(2).mean()).fit(loader, epochs=1, verbose=False)
    preds = fitted.predict(loader)
    with torch.no_grad():
        assert torch.equal(preds, fitted.model(x))


class DictData(Dataset[dict[str, torch.Tensor]]):
    def __init__(self, n: int, keys: tuple[str, str] = ("features", "label")) -> None:
        self.x, self.y = regression_data(n)
        self.keys = keys

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {self.keys[0]: self.x[i], self.keys[1]: self.y[i]}


def test_dict_batches_without_input_keys_go_whole_to_the_model_with_a_clear_error() -> None:
    # SPEC §2: a dict without input/x is the input as a whole (model(**batch), the Hugging Face
    # convention); a model that takes no such keywords fails in its forward, with the way out.
    with pytest.raises(TypeError, match=r"dict with keys \['features', 'label'\]") as info:
        mse_module().fit(DictData(64), epochs=1, verbose=False)
    message = str(info.value)
    assert "unexpected keyword argument 'features'" in message  # the model's own words
    assert "the input as a whole, `model(**batch)`" in message
    assert "'input' and 'target' (or 'x' and 'y')" in message
    assert "return `(input, target)` tuples" in message


@pytest.mark.parametrize("keys", [("input", "target"), ("x", "y")])
def test_dict_batches_with_input_and_target_keys_train(keys: tuple[str, str]) -> None:
    data = DictData(64, keys)
    fitted = mse_module().fit(data, epochs=2, valid_data=DictData(32, keys), verbose=False)
    assert len(fitted.records["metrics"]["valid"]) == 2
    preds = fitted.predict(data)
    assert preds.shape == (64, 1)


def test_dict_input_inside_a_tuple_still_works() -> None:
    class Keywords(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(10, 1)

        def forward(self, features: torch.Tensor) -> torch.Tensor:
            return self.fc(features)

    class Wrapped(Dataset[Any]):
        def __init__(self) -> None:
            self.inner = DictData(64)

        def __len__(self) -> int:
            return len(self.inner)

        def __getitem__(self, i: int) -> Any:
            item = self.inner[i]
            return {"features": item["features"]}, item["label"]

    fitted = mse_module(Keywords).fit(Wrapped(), epochs=1, verbose=False)
    assert len(fitted.records["metrics"]["train"]) == 1


# -- loss failures: shapes, batch index, epoch, chained ------------------------------------------------


def test_a_failing_loss_shows_shapes_batch_and_epoch() -> None:
    x, y = classification_data(64, classes=3)
    y[40:] = 7  # out of range for 3 classes: CrossEntropyLoss raises IndexError on CPU
    module = luz.setup(Linear, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.SGD)
    module = module.set_hparams(out_features=3).set_opt_hparams(lr=0.1)
    options = {"shuffle": False, "batch_size": 16}
    with pytest.raises(IndexError, match="out of bounds") as info:
        module.fit((x, y), epochs=1, verbose=False, dataloader_options=options)
    message = str(info.value)
    assert "Error computing the loss at batch 3 of epoch 1 (training)" in message
    assert "pred is a tensor of shape (16, 3) (float32)" in message
    assert "target is a tensor of shape (16,) (int64)" in message
    assert isinstance(info.value, RuntimeError)
    assert isinstance(info.value.__cause__, IndexError)


def test_a_failing_validation_loss_names_the_phase() -> None:
    x, y = classification_data(64, classes=3)
    bad = (x[:16], torch.full((16,), 9))
    module = luz.setup(Linear, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.SGD)
    module = module.set_hparams(out_features=3).set_opt_hparams(lr=0.1)
    with pytest.raises(IndexError, match=r"batch 1 of epoch 1 \(validation\)"):
        module.fit((x, y), epochs=1, valid_data=bad, verbose=False)


@pytest.mark.parametrize("loss", [nn.MSELoss(), nn.L1Loss(), nn.SmoothL1Loss(), nn.HuberLoss()])
def test_broadcasting_regression_loss_is_an_error(loss: nn.Module) -> None:
    # (N, 1) predictions against (N,) targets: torch only warns and computes an (N, N) loss.
    x, y = regression_data(64)
    with pytest.raises(
        ValueError, match=r"prediction of shape \(32, 1\) and a target of shape \(32,\)"
    ) as info:
        mse_module(loss=loss).fit((x, y.squeeze(1)), epochs=1, verbose=False)
    message = str(info.value)
    assert type(loss).__name__ in message
    assert "batch 1 of epoch 1 (training)" in message
    assert "view(-1, 1)" in message  # the fix


def test_non_broadcastable_regression_shapes_are_caught_before_torch() -> None:
    x, y = regression_data(64)
    with pytest.raises(ValueError, match=r"shape \(32, 1\) and a target of shape \(32, 2\)"):
        mse_module().fit((x, y.repeat(1, 2)), epochs=1, verbose=False)


def test_classification_losses_take_other_target_shapes() -> None:
    x, y = classification_data(64, classes=3)
    module = luz.setup(Linear, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.SGD)
    fitted = module.set_hparams(out_features=3).set_opt_hparams(lr=0.1).fit((x, y), epochs=1, verbose=False)
    assert len(fitted.records["metrics"]["train"]) == 1


def test_matching_regression_shapes_train() -> None:
    x, y = regression_data(64)
    fitted = mse_module().fit((x, y), epochs=1, verbose=False)
    assert fitted.records["metrics"]["train"][0]["loss"] > 0


def test_errors_raised_by_a_custom_loss_keep_their_type() -> None:
    def loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise KeyError("no such column")

    x, y = regression_data(64)
    with pytest.raises(KeyError, match="no such column") as info:
        mse_module(loss=loss).fit((x, y), epochs=1, verbose=False)
    assert "Error computing the loss at batch 1 of epoch 1" in str(info.value)


def test_stop_training_from_a_loss_is_not_wrapped() -> None:
    def loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise luz.StopTraining

    x, y = regression_data(64)
    fitted = mse_module(loss=loss).fit((x, y), epochs=2, verbose=False)
    assert fitted.records["metrics"]["train"] == []


# -- models and optimizers ---------------------------------------------------------------------------


class NoParameters(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :1] * 2


def test_model_without_parameters_is_an_error() -> None:
    x, y = regression_data(64)
    with pytest.raises(ValueError, match="NoParameters has no parameters"):
        mse_module(NoParameters).fit((x, y), epochs=1, verbose=False)


def test_optimizer_factory_on_foreign_parameters_is_an_error() -> None:
    other = nn.Linear(10, 1)

    def optimizer(params: Any, lr: float) -> torch.optim.Optimizer:
        return torch.optim.SGD(other.parameters(), lr=lr)  # ignores the model's params

    module = luz.setup(Linear, loss=nn.MSELoss(), optimizer=optimizer).set_opt_hparams(lr=0.1)
    x, y = regression_data(64)
    with pytest.raises(ValueError, match="Optimizer 'opt' holds parameters that are not the model's"):
        module.fit((x, y), epochs=1, verbose=False)


def test_optimizer_factory_on_part_of_the_model_is_fine() -> None:
    initial: list[torch.Tensor] = []

    def optimizer(params: Any, lr: float) -> torch.optim.Optimizer:
        initial.extend(p.detach().clone() for p in params)
        return torch.optim.SGD(params[:1], lr=lr)  # the weight only: the bias stays

    module = luz.setup(Linear, loss=nn.MSELoss(), optimizer=optimizer).set_opt_hparams(lr=0.1)
    x, y = regression_data(64)
    fitted = module.fit((x, y), epochs=1, verbose=False)
    assert not torch.equal(fitted.model.fc.weight, initial[0])
    assert torch.equal(fitted.model.fc.bias, initial[1])


# -- empty evaluation data -------------------------------------------------------------------------------


def test_evaluate_on_empty_data_warns_and_reports_nothing() -> None:
    x, y = regression_data(64)
    fitted = mse_module().fit((x, y), epochs=1, verbose=False)
    with pytest.warns(UserWarning, match="validation data produced no batches"):
        evaluation = fitted.evaluate((torch.randn(0, 10), torch.randn(0, 1)), verbose=False)
    assert evaluation.records["metrics"]["valid"] == []


# -- remaining argument checks (the others live next to their feature) ---------------------------------


def test_terminate_on_nan_rejects_bad_check_every() -> None:
    for bad in (0, -1, True, 1.5):
        with pytest.raises(ValueError, match="`check_every`"):
            luz.callbacks.TerminateOnNaN(check_every=bad)  # type: ignore[arg-type]


def test_callbacks_given_as_a_class_in_a_list() -> None:
    x, y = regression_data(64)
    with pytest.raises(TypeError, match=r"Pass TerminateOnNaN\(\) instead of TerminateOnNaN"):
        mse_module().fit((x, y), epochs=1, callbacks=[luz.callbacks.TerminateOnNaN], verbose=False)
