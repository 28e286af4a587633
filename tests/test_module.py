"""`setup`, hyper-parameters, `fit` arguments and the module extension points."""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

import luz
from tests.conftest import Linear, classification_data, make_recorder, regression_data


def sgd_module(**setup_kwargs: Any) -> luz.LuzModule:
    kwargs: dict[str, Any] = {"loss": nn.MSELoss(), "optimizer": torch.optim.SGD, **setup_kwargs}
    return luz.setup(Linear, **kwargs).set_opt_hparams(lr=0.01)


# -- setup errors ---------------------------------------------------------------------------


def test_setup_without_loss_lists_remedies() -> None:
    with pytest.raises(ValueError, match="No loss") as info:
        luz.setup(Linear, optimizer=torch.optim.SGD)
    message = str(info.value)
    assert "loss=" in message and "loss(pred, target)" in message and "step()" in message


def test_setup_without_optimizer_lists_remedies() -> None:
    with pytest.raises(ValueError, match="No optimizer") as info:
        luz.setup(Linear, loss=nn.MSELoss())
    assert "optimizer=" in str(info.value) and "set_optimizers" in str(info.value)


def test_setup_accepts_module_methods_instead_of_arguments() -> None:
    class Own(Linear):
        def loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            return nn.functional.mse_loss(pred, target)

        def set_optimizers(self, lr: float = 0.1) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=lr)

    x, y = regression_data()
    fitted = luz.setup(Own).fit((x, y), epochs=1, verbose=False)
    assert len(fitted.records["metrics"]["train"]) == 1


def test_setup_backward_not_callable() -> None:
    with pytest.raises(TypeError, match="`backward` must be a function"):
        luz.setup(Linear, loss=nn.MSELoss(), optimizer=torch.optim.SGD, backward=3)  # type: ignore[arg-type]


def test_setup_loss_class_not_instantiated() -> None:
    with pytest.raises(TypeError, match="did you forget to instantiate it"):
        luz.setup(Linear, loss=nn.MSELoss, optimizer=torch.optim.SGD)  # type: ignore[arg-type]


def test_setup_optimizer_instance_instead_of_class() -> None:
    opt = torch.optim.SGD(nn.Linear(1, 1).parameters(), lr=0.1)
    with pytest.raises(TypeError, match="optimizer class"):
        luz.setup(Linear, loss=nn.MSELoss(), optimizer=opt)  # type: ignore[arg-type]


def test_setup_metric_class_not_instantiated() -> None:
    # R row 46
    with pytest.raises(TypeError, match="Expected an object with") as info:
        luz.setup(Linear, loss=nn.MSELoss(), optimizer=torch.optim.SGD, metrics=[luz.metrics.Accuracy])
    assert "forget to instantiate" in str(info.value)


def test_setup_rejects_non_module_class() -> None:
    with pytest.raises(TypeError, match=r"nn\.Module subclass"):
        luz.setup(int, loss=nn.MSELoss(), optimizer=torch.optim.SGD)  # type: ignore[arg-type]


# -- hyper-parameters ---------------------------------------------------------------------------


def test_set_hparams_returns_new_object_and_replaces() -> None:
    base = luz.setup(Linear, loss=nn.MSELoss(), optimizer=torch.optim.SGD)
    a = base.set_hparams(in_features=3, out_features=2)
    b = a.set_hparams(out_features=4)
    assert base.hparams == {}
    assert a.hparams == {"in_features": 3, "out_features": 2}
    assert b.hparams == {"out_features": 4}
    o1 = b.set_opt_hparams(lr=0.1, momentum=0.9)
    o2 = o1.set_opt_hparams(lr=0.2)
    assert b.opt_hparams == {} and o1.opt_hparams == {"lr": 0.1, "momentum": 0.9}
    assert o2.opt_hparams == {"lr": 0.2}
    assert o2.hparams == {"out_features": 4}
    assert o1 is not b and o2 is not o1


def test_functional_twins() -> None:
    x, y = regression_data()
    module = luz.setup(Linear, loss=nn.MSELoss(), optimizer=torch.optim.SGD)
    module = luz.set_opt_hparams(luz.set_hparams(module, in_features=10), lr=0.01)
    assert module.hparams == {"in_features": 10} and module.opt_hparams == {"lr": 0.01}
    fitted = luz.fit(module, (x, y), epochs=2, verbose=False)
    assert luz.predict(fitted, x, verbose=False).shape == (100, 1)
    ev = luz.evaluate(fitted, (x, y), verbose=False)
    assert list(luz.get_metrics(ev)["metric"]) == ["loss"]
    assert len(luz.get_metrics(fitted)) == 2
    with pytest.raises(TypeError, match="get_metrics"):
        luz.get_metrics(module)  # type: ignore[arg-type]


def test_hparams_reach_the_model_and_fitted() -> None:
    # R row 57: hparams / opt_hparams are kept on the fitted object
    x, y = classification_data()
    fitted = (
        luz.setup(Linear, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.SGD)
        .set_hparams(out_features=3)
        .set_opt_hparams(lr=0.02)
        .fit((x, y), epochs=1, verbose=False)
    )
    assert fitted.model.fc.out_features == 3
    assert fitted.hparams == {"out_features": 3}
    assert fitted.opt_hparams == {"lr": 0.02}


def test_bad_hparams_name_the_module() -> None:
    x, y = regression_data()
    with pytest.raises(TypeError, match="Could not build Linear"):
        sgd_module().set_hparams(nope=1).fit((x, y), epochs=1, verbose=False)


def test_module_instance_trains_a_copy() -> None:
    x, y = regression_data()
    original = Linear()
    before = {k: v.clone() for k, v in original.state_dict().items()}
    module = luz.setup(original, loss=nn.MSELoss(), optimizer=torch.optim.SGD).set_opt_hparams(lr=0.1)
    fitted = module.fit((x, y), epochs=2, verbose=False)
    assert fitted.model is not original
    for key, value in original.state_dict().items():
        assert torch.equal(value, before[key])
    assert not torch.equal(fitted.model.fc.weight, original.fc.weight)
    assert "ctx" not in original.__dict__
    with pytest.raises(TypeError, match="set_hparams"):
        module.set_hparams(in_features=3)


def test_module_factory_function() -> None:
    x, y = regression_data()

    def factory(width: int) -> nn.Module:
        return nn.Sequential(nn.Linear(10, width), nn.Linear(width, 1))

    fitted = (
        luz.setup(factory, loss=nn.MSELoss(), optimizer=torch.optim.SGD)
        .set_hparams(width=4)
        .set_opt_hparams(lr=0.01)
        .fit((x, y), epochs=1, verbose=False)
    )
    assert fitted.model[0].out_features == 4
    # a factory's model is only known at fit time: a missing optimizer is found there
    no_opt = luz.setup(factory, loss=nn.MSELoss()).set_hparams(width=4)
    with pytest.raises(ValueError, match="No optimizer"):
        no_opt.fit((x, y), epochs=1, verbose=False)


# -- fit arguments ---------------------------------------------------------------------------------


@pytest.mark.parametrize("epochs", [-1, True, 2.0, (3, 1), (1, 2, 3), "3", (1, -2)])
def test_invalid_epochs(epochs: Any) -> None:
    x, y = regression_data()
    with pytest.raises(ValueError, match="`epochs`"):
        sgd_module().fit((x, y), epochs=epochs, verbose=False)


@pytest.mark.parametrize("valid_data", [2, -1, True, 1.0, 0.0])
def test_invalid_valid_fraction_shows_the_value(valid_data: Any) -> None:
    # R row 58
    x, y = regression_data()
    with pytest.raises(ValueError, match="valid_data") as info:
        sgd_module().fit((x, y), epochs=1, valid_data=valid_data, verbose=False)
    assert repr(valid_data) in str(info.value)


def test_failed_setup_detaches_callbacks() -> None:
    x, y = regression_data()
    rec = make_recorder()
    with pytest.raises(ValueError, match="valid_data"):
        sgd_module().fit((x, y), epochs=1, valid_data=3, callbacks=[rec], verbose=False)
    assert rec.calls == []
    with pytest.raises(RuntimeError, match="not attached"):
        _ = rec.ctx


def test_valid_fraction_with_dataloader_data() -> None:
    x, y = regression_data()
    dl = luz.as_dataloader((x, y))
    with pytest.raises(ValueError, match="DataLoader"):
        sgd_module().fit(dl, epochs=1, valid_data=0.2, verbose=False)


def test_valid_fraction_creates_valid_records() -> None:
    x, y = regression_data()
    fitted = sgd_module().fit((x, y), epochs=2, valid_data=0.2, verbose=False)
    assert len(fitted.records["metrics"]["valid"]) == 2


def test_valid_fraction_splits_every_sample_exactly_once() -> None:
    n = 103
    x = torch.arange(n, dtype=torch.float32).unsqueeze(1)
    seen: dict[str, list[torch.Tensor]] = {"train": [], "valid": []}

    def grab(ctx: luz.Context) -> None:
        seen["train" if ctx.training else "valid"].append(ctx.input.clone())

    luz.setup(Linear, loss=nn.MSELoss(), optimizer=torch.optim.SGD).set_hparams(
        in_features=1
    ).set_opt_hparams(lr=0.0).fit(
        (x, x),
        epochs=1,
        valid_data=0.2,
        callbacks=[luz.callback(on_train_batch_begin=grab, on_valid_batch_begin=grab)],
        dataloader_options={"drop_last": False},
        verbose=False,
    )
    train = torch.cat(seen["train"]).flatten().tolist()
    valid = torch.cat(seen["valid"]).flatten().tolist()
    assert len(valid) == 20  # floor(103 * 0.2)
    assert sorted(train + valid) == list(range(n))


def test_valid_fraction_is_reproducible_with_seed() -> None:
    x = torch.arange(50, dtype=torch.float32).unsqueeze(1)
    splits = []
    for _ in range(2):
        torch.manual_seed(3)
        got: list[torch.Tensor] = []
        luz.setup(Linear, loss=nn.MSELoss(), optimizer=torch.optim.SGD).set_hparams(
            in_features=1
        ).set_opt_hparams(lr=0.0).fit(
            (x, x),
            epochs=1,
            valid_data=0.5,
            callbacks=[luz.callback(on_valid_batch_begin=lambda ctx, got=got: got.append(ctx.input.clone()))],
            dataloader_options={"batch_size": 5},
            verbose=False,
        )
        splits.append(torch.cat(got))
    assert torch.equal(splits[0], splits[1])


def test_dataloader_options_are_used() -> None:
    # R row 59: 90 rows, batch_size 2 -> 45 iterations
    x, y = regression_data(90)
    iters: list[int] = []
    sgd_module().fit(
        (x, y),
        epochs=1,
        callbacks=[luz.callback(on_train_end=lambda ctx: iters.append(ctx.iter))],
        dataloader_options={"batch_size": 2},
        verbose=False,
    )
    assert iters == [45]


def test_dataloader_options_with_dataloader_data_is_an_error() -> None:
    x, y = regression_data()
    with pytest.raises(ValueError, match="already a dataloader"):
        sgd_module().fit(
            luz.as_dataloader((x, y)), epochs=1, dataloader_options={"batch_size": 2}, verbose=False
        )


def test_dataloader_options_with_dataloader_valid_data_warns() -> None:
    x, y = regression_data()
    with pytest.warns(UserWarning, match="ignored for the validation data"):
        fitted = sgd_module().fit(
            (x, y),
            epochs=1,
            valid_data=luz.as_dataloader((x, y), batch_size=50),
            dataloader_options={"batch_size": 10},
            verbose=False,
        )
    assert len(fitted.records["metrics"]["valid"]) == 1


def test_dataloader_data_is_used_as_is() -> None:
    x, y = regression_data()
    iters: list[int] = []
    sgd_module().fit(
        luz.as_dataloader((x, y), batch_size=25),
        epochs=1,
        callbacks=[luz.callback(on_train_end=lambda ctx: iters.append(ctx.iter))],
        verbose=False,
    )
    assert iters == [4]


def test_unsupported_data_type() -> None:
    with pytest.raises(TypeError, match="str"):
        sgd_module().fit("not data", epochs=1, verbose=False)


def test_callback_class_instead_of_instance() -> None:
    x, y = regression_data()
    with pytest.raises(TypeError, match=r"(?i)did you forget to instantiate"):
        sgd_module().fit((x, y), epochs=1, callbacks=[luz.callbacks.Profile], verbose=False)
    with pytest.raises(TypeError, match=r"(?i)did you forget to instantiate"):
        sgd_module().fit((x, y), epochs=1, callbacks=luz.callbacks.Profile, verbose=False)


def test_single_callback_is_accepted() -> None:
    x, y = regression_data()
    rec = make_recorder()
    sgd_module().fit((x, y), epochs=1, callbacks=rec, verbose=False)
    assert rec.calls[0] == "on_fit_begin"


def test_non_scalar_loss_is_an_error() -> None:
    x, y = regression_data()
    with pytest.raises(ValueError, match="scalar"):
        sgd_module(loss=nn.MSELoss(reduction="none")).fit((x, y), epochs=1, verbose=False)


def test_bad_accelerator_type() -> None:
    x, y = regression_data()
    with pytest.raises(TypeError, match="accelerator"):
        sgd_module().fit((x, y), epochs=1, accelerator="cpu", verbose=False)  # type: ignore[arg-type]


# -- R tests 52-56, 61 -------------------------------------------------------------------------------


def test_fully_managed_fit_with_validation() -> None:
    x, y = regression_data()
    module = sgd_module()
    assert isinstance(module, luz.LuzModule)
    fitted = module.fit((x, y), epochs=2, valid_data=(x, y), verbose=False)
    assert isinstance(fitted, luz.Fitted)
    assert [list(e) for e in fitted.records["metrics"]["valid"]] == [["loss"], ["loss"]]


class TwoOpt(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gen = nn.Linear(10, 1)
        self.disc = nn.Linear(10, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gen(x) + self.disc(x)

    def set_optimizers(self, lr: float = 0.01) -> dict[str, torch.optim.Optimizer]:
        return {
            "gen": torch.optim.SGD(self.gen.parameters(), lr=lr),
            "disc": torch.optim.Adam(self.disc.parameters(), lr=lr),
        }


def test_multiple_optimizers_train_and_log_per_optimizer_loss() -> None:
    x, y = regression_data()
    before = TwoOpt()
    torch.manual_seed(0)
    fitted = luz.setup(TwoOpt, loss=nn.MSELoss()).fit((x, y), epochs=2, valid_data=(x, y), verbose=False)
    torch.manual_seed(0)
    before = TwoOpt()
    assert not torch.equal(before.gen.weight, fitted.model.gen.weight)
    assert not torch.equal(before.disc.weight, fitted.model.disc.weight)
    loss = fitted.records["metrics"]["train"][0]["loss"]
    assert set(loss) == {"gen", "disc"}
    frame = fitted.get_metrics()
    assert set(frame["metric"]) == {"loss_gen", "loss_disc"}
    assert len(frame) == 2 * 2 * 2
    assert fitted.optimizer_names == ["gen", "disc"]


def test_set_optimizers_with_foreign_parameters_is_an_error() -> None:
    class Foreign(Linear):
        def set_optimizers(self, lr: float = 0.1) -> torch.optim.Optimizer:
            return torch.optim.SGD(nn.Linear(1, 1).parameters(), lr=lr)

    x, y = regression_data()
    with pytest.raises(ValueError, match="not the model's"):
        luz.setup(Foreign, loss=nn.MSELoss()).fit((x, y), epochs=1, verbose=False)


def test_set_optimizers_returning_junk() -> None:
    class Junk(Linear):
        def set_optimizers(self) -> Any:
            return [1, 2]

    x, y = regression_data()
    with pytest.raises(TypeError, match=r"torch\.optim\.Optimizer"):
        luz.setup(Junk, loss=nn.MSELoss()).fit((x, y), epochs=1, verbose=False)


def test_fit_without_validation() -> None:
    x, y = regression_data()
    fitted = sgd_module().fit((x, y), epochs=2, verbose=False)
    assert fitted.records["metrics"]["valid"] == []
    assert len(fitted.records["metrics"]["train"]) == 2


def test_custom_backward_reads_ctx() -> None:
    # R row 61
    calls: list[Any] = []

    class WithBackward(Linear):
        def backward(self, loss: torch.Tensor) -> None:
            calls.append(type(self.ctx).__name__)
            (loss * 0).backward()

    x, y = regression_data()
    torch.manual_seed(1)
    fitted = (
        luz.setup(WithBackward, loss=nn.MSELoss(), optimizer=torch.optim.SGD)
        .set_opt_hparams(lr=0.5)
        .fit((x, y), epochs=1, verbose=False)
    )
    torch.manual_seed(1)
    assert torch.equal(WithBackward().fc.weight, fitted.model.fc.weight)  # zero gradients
    assert calls == ["Context"] * 3


def test_setup_backward_function_is_used() -> None:
    seen: list[torch.Tensor] = []

    def backward(loss: torch.Tensor) -> None:
        seen.append(loss)
        loss.backward()

    x, y = regression_data()
    sgd_module(backward=backward).fit((x, y), epochs=1, verbose=False)
    assert len(seen) == 3 and all(t.requires_grad for t in seen)


# -- extension points ------------------------------------------------------------------------------


def test_ctx_is_bound_in_module_methods_and_removed_after() -> None:
    seen: set[str] = set()

    class Spy(Linear):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            assert isinstance(self.ctx, luz.Context)
            seen.add("forward")
            return super().forward(x)

        def loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            assert isinstance(self.ctx, luz.Context)
            seen.add("loss")
            return nn.functional.mse_loss(pred, target)

        def backward(self, loss: torch.Tensor) -> None:
            assert isinstance(self.ctx, luz.Context)
            seen.add("backward")
            loss.backward()

    x, y = regression_data()
    fitted = (
        luz.setup(Spy, optimizer=torch.optim.SGD)
        .set_opt_hparams(lr=0.01)
        .fit((x, y), epochs=1, verbose=False)
    )
    assert seen == {"forward", "loss", "backward"}
    assert "ctx" not in fitted.model.__dict__
    fitted.predict(x, verbose=False)
    assert "ctx" not in fitted.model.__dict__
    fitted.evaluate((x, y), verbose=False)
    assert "ctx" not in fitted.model.__dict__


class VirtualBatch(Linear):
    """A custom step: accumulates gradients over chunks of 8 before stepping (virtual batch)."""

    def step(self) -> None:
        ctx = self.ctx
        if ctx.training:
            total = torch.zeros(())
            for xs, ys in zip(ctx.input.split(8), ctx.target.split(8), strict=True):
                loss = nn.functional.mse_loss(self(xs), ys) * len(xs) / len(ctx.input)
                loss.backward()
                total = total + loss.detach()
            ctx.opt.step()
            ctx.opt.zero_grad()
            ctx.loss = {"opt": total}
            ctx.pred = self(ctx.input).detach()
        else:
            ctx.pred = self(ctx.input)
            ctx.loss = {"opt": nn.functional.mse_loss(ctx.pred, ctx.target)}
        ctx.call_callbacks("on_custom_step_done")


def test_custom_step_for_fit_and_evaluate() -> None:
    x, y = regression_data(96)
    options = {"shuffle": False, "batch_size": 32}
    custom_calls: list[int] = []
    cb = luz.callback(on_custom_step_done=lambda ctx: custom_calls.append(ctx.iter))
    torch.manual_seed(5)
    fitted = (
        luz.setup(VirtualBatch, optimizer=torch.optim.SGD)
        .set_opt_hparams(lr=0.1)
        .fit((x, y), epochs=2, valid_data=(x, y), callbacks=[cb], verbose=False, dataloader_options=options)
    )
    assert custom_calls == [1, 2, 3, 1, 2, 3] * 2
    # equals full-batch training with the default step (up to float rounding of the chunked sum)
    torch.manual_seed(5)
    plain = (
        luz.setup(Linear, loss=nn.MSELoss(), optimizer=torch.optim.SGD)
        .set_opt_hparams(lr=0.1)
        .fit((x, y), epochs=2, verbose=False, dataloader_options=options)
    )
    torch.testing.assert_close(fitted.model.fc.weight, plain.model.fc.weight)
    ev = fitted.evaluate((x, y), verbose=False)
    frame = ev.get_metrics()
    assert list(frame["metric"]) == ["loss"]
    expected = nn.functional.mse_loss(fitted.model(x), y).item()
    assert frame["value"][0] == pytest.approx(expected, rel=1e-5)


def test_model_without_forward_is_identity() -> None:
    class Triplet(nn.Module):
        """Only defines ``loss``; the input tuple (anchor, positive) arrives as ``pred``."""

        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Linear(4, 2)

        def loss(self, pred: tuple[torch.Tensor, torch.Tensor], target: torch.Tensor) -> torch.Tensor:
            anchor, positive = pred
            return (self.embed(anchor) - self.embed(positive)).pow(2).mean() + target.mean() * 0

    class Pairs(Dataset[Any]):
        def __init__(self) -> None:
            self.a, self.p = torch.randn(40, 4), torch.randn(40, 4)

        def __len__(self) -> int:
            return 40

        def __getitem__(self, i: int) -> Any:
            return (self.a[i], self.p[i]), torch.zeros(())

    seen: list[Any] = []
    data = Pairs()
    fitted = (
        luz.setup(Triplet, optimizer=torch.optim.SGD)
        .set_opt_hparams(lr=0.1)
        .fit(
            data,
            epochs=1,
            callbacks=[luz.callback(on_train_batch_after_pred=lambda ctx: seen.append(ctx.pred))],
            dataloader_options={"batch_size": 10},
            verbose=False,
        )
    )
    assert isinstance(seen[0], list | tuple) and len(seen[0]) == 2
    assert seen[0][0].shape == (10, 4)
    assert len(fitted.records["metrics"]["train"]) == 1


def test_dict_input_calls_model_with_keywords() -> None:
    class Keywords(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fa = nn.Linear(3, 1)
            self.fb = nn.Linear(2, 1)

        def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return self.fa(a) + self.fb(b)

    class Named(Dataset[Any]):
        def __init__(self) -> None:
            self.a, self.b, self.y = torch.randn(40, 3), torch.randn(40, 2), torch.randn(40, 1)

        def __len__(self) -> int:
            return 40

        def __getitem__(self, i: int) -> Any:
            return {"a": self.a[i], "b": self.b[i]}, self.y[i]

    fitted = (
        luz.setup(Keywords, loss=nn.MSELoss(), optimizer=torch.optim.SGD)
        .set_opt_hparams(lr=0.1)
        .fit(Named(), epochs=1, dataloader_options={"batch_size": 10}, verbose=False)
    )
    preds = fitted.predict(Named(), verbose=False)
    assert preds.shape == (40, 1)


def test_tuple_input_calls_model_with_positional_args() -> None:
    class Two(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.f = nn.Linear(3, 1)

        def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return self.f(a) * b

    class Args(Dataset[Any]):
        def __len__(self) -> int:
            return 20

        def __getitem__(self, i: int) -> Any:
            return (torch.ones(3) * i, torch.ones(1)), torch.ones(1)

    fitted = (
        luz.setup(Two, loss=nn.MSELoss(), optimizer=torch.optim.SGD)
        .set_opt_hparams(lr=0.001)
        .fit(Args(), epochs=1, dataloader_options={"batch_size": 5}, verbose=False)
    )
    assert fitted.predict(Args(), verbose=False).shape == (20, 1)


def test_repr_of_luz_module() -> None:
    # R row 51
    text = repr(
        luz.setup(Linear, loss=nn.MSELoss(), optimizer=torch.optim.SGD, metrics=[luz.metrics.Accuracy()])
        .set_hparams(in_features=10)
        .set_opt_hparams(lr=0.1)
    )
    assert text.startswith("<LuzModule>")
    assert "Linear" in text and "SGD" in text and "MSELoss" in text
    assert "['loss', 'acc']" in text and "{'lr': 0.1}" in text and "{'in_features': 10}" in text
    own = repr(luz.setup(TwoOpt, loss=nn.MSELoss()))
    assert "module.set_optimizers()" in own


class _Counting(torch.optim.SGD):
    steps = 0

    def step(self, closure: Any = None) -> Any:  # type: ignore[override]
        type(self).steps += 1
        return super().step(closure)


@pytest.mark.parametrize(
    ("opt_hparams", "error", "words"),
    [
        ({"lr": "fast"}, TypeError, "`lr` must be a finite number >= 0.0, got 'fast' (str)"),
        ({"lr": math.inf}, ValueError, "`lr` must be a finite number >= 0.0, got inf"),
        ({"lr": -1e-3}, ValueError, "got -0.001"),
        ({"lr": 0.1, "momentum": -0.9}, ValueError, "`momentum`"),
        ({"lr": 0.1, "weight_decay": "l2"}, TypeError, "`weight_decay`"),
        ({"lr": 0.1, "eps": math.nan}, ValueError, "`eps`"),
        ({"lr": 0.1, "betas": (0.9, 1.2)}, ValueError, "`betas[1]` must be a number in [0.0, 1.0)"),
        ({"lr": 0.1, "betas": 0.9}, TypeError, "`betas` must be a pair"),
    ],
)
def test_set_opt_hparams_checks_the_common_numbers(
    opt_hparams: dict[str, Any], error: type, words: str
) -> None:
    with pytest.raises(error) as info:
        sgd_module().set_opt_hparams(**opt_hparams)
    assert words in str(info.value)


def test_opt_hparams_accept_tensors_and_numpy_and_other_names() -> None:
    x, y = regression_data(64)
    module = luz.setup(Linear, loss=nn.MSELoss(), optimizer=torch.optim.Adam)
    module = module.set_opt_hparams(lr=torch.tensor(0.01), betas=(np.float64(0.8), 0.99), amsgrad=True)
    fitted = module.fit((x, y), epochs=1, verbose=False)
    assert fitted.records["metrics"]["train"][0]["loss"] > 0


def test_param_groups_are_checked_before_any_step() -> None:
    x, y = regression_data(64)
    _Counting.steps = 0
    factory = functools.partial(_Counting, lr=math.inf)
    with pytest.raises(
        ValueError, match=r"`lr of optimizer 'opt' \(param group 0\)` must be a finite number"
    ):
        luz.setup(Linear, loss=nn.MSELoss(), optimizer=factory).fit((x, y), epochs=1, verbose=False)
    assert _Counting.steps == 0


@pytest.mark.parametrize(
    ("hparams", "error"),
    [
        ({"in_features": 10, "out_features": -3}, ValueError),
        ({"in_features": 10, "out_features": "1"}, TypeError),
    ],
)
def test_model_build_errors_name_the_hparams(hparams: dict[str, Any], error: type) -> None:
    x, y = regression_data(64)
    with pytest.raises(error) as info:
        sgd_module().set_hparams(**hparams).fit((x, y), epochs=1, verbose=False)
    given = ", ".join(f"{k}={v!r}" for k, v in hparams.items())
    assert f"Could not build Linear from the hparams given to .set_hparams() ({given})" in str(info.value)
    assert isinstance(info.value, type(info.value.__cause__))  # the torch error type is kept
