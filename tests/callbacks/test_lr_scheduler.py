"""LRScheduler: stepping, plateau schedulers fed the epoch value, optimizer choice, checks."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

import luz
from luz.callbacks import LRScheduler
from tests.conftest import regression_data, two_optimizer_model


def _lrs(ctx: luz.Context, seen: list[float]) -> None:
    seen.append(ctx.opt.param_groups[0]["lr"])


def _fit(callbacks: list[Any], epochs: int = 4, valid: bool = False, module: Any = None) -> luz.Fitted:
    x, y = regression_data(n=32)
    if module is None:
        module = (
            luz.setup(nn.Linear, loss=nn.MSELoss(), optimizer=torch.optim.Adam)
            .set_hparams(in_features=10, out_features=1)
            .set_opt_hparams(lr=1e-3)
        )
    return module.fit(
        (x, y),
        epochs=epochs,
        valid_data=(x, y) if valid else None,
        callbacks=callbacks,
        verbose=False,
        dataloader_options={"batch_size": 16},
    )


def test_multiplicative_halves_lr_each_epoch() -> None:
    seen: list[float] = []
    sched = LRScheduler(torch.optim.lr_scheduler.MultiplicativeLR, lr_lambda=lambda epoch: 0.5)
    _fit([sched, luz.callback(on_epoch_begin=lambda ctx: _lrs(ctx, seen))], epochs=4)
    assert seen == pytest.approx([1e-3, 5e-4, 2.5e-4, 1.25e-4])


def test_positional_args_and_batch_level_call_on() -> None:
    seen: list[float] = []
    sched = LRScheduler(torch.optim.lr_scheduler.StepLR, 1, 0.5, call_on="on_train_batch_end")
    _fit([sched, luz.callback(on_epoch_begin=lambda ctx: _lrs(ctx, seen))], epochs=3)
    assert seen == pytest.approx([1e-3, 2.5e-4, 6.25e-5])  # 2 batches per epoch


class _Recorder(torch.optim.lr_scheduler.ReduceLROnPlateau):
    def __init__(self, optimizer: torch.optim.Optimizer, **kwargs: Any) -> None:
        super().__init__(optimizer, **kwargs)
        self.fed: list[float] = []

    def step(self, metrics: Any, epoch: Any = None) -> None:  # type: ignore[override]
        self.fed.append(float(metrics))
        super().step(metrics)


@pytest.mark.parametrize("valid", [False, True])
def test_plateau_is_fed_the_epoch_loss(valid: bool) -> None:
    sched = LRScheduler(_Recorder, mode="max", patience=0, factor=0.5)
    fitted = _fit([sched], epochs=3, valid=valid)
    set_name = "valid" if valid else "train"
    expected = [epoch["loss"] for epoch in fitted.records["metrics"][set_name]]
    assert sched.scheduler.fed == pytest.approx(expected)
    # mode="max" on a falling loss: every epoch after the first is a plateau, so lr halves twice
    assert sched.scheduler.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3 / 4)


def test_plateau_with_explicit_monitor() -> None:
    sched = LRScheduler(_Recorder, monitor="Train_Loss")
    fitted = _fit([sched], epochs=2, valid=True)
    assert sched.scheduler.fed == pytest.approx([e["loss"] for e in fitted.records["metrics"]["train"]])
    with pytest.raises(ValueError, match="Available monitor names: train_loss, valid_loss"):
        _fit([LRScheduler(_Recorder, monitor="valid_acc")], epochs=1, valid=True)


TwoOpt = two_optimizer_model(("opt_a", "opt_b"))


def _two_opt() -> luz.LuzModule:
    return luz.setup(TwoOpt, loss=nn.MSELoss())


def test_opt_name_selects_one_of_several_optimizers() -> None:
    lrs: dict[str, float] = {}

    def grab(ctx: luz.Context) -> None:
        lrs.update({name: opt.param_groups[0]["lr"] for name, opt in ctx.optimizers.items()})

    sched = LRScheduler(torch.optim.lr_scheduler.StepLR, step_size=1, gamma=0.1, opt_name="opt_b")
    _fit([sched, luz.callback(on_fit_end=grab)], epochs=2, module=_two_opt())
    assert lrs == pytest.approx({"opt_a": 0.01, "opt_b": 0.0001})


def test_plateau_with_several_optimizers_gets_its_own_loss() -> None:
    sched = LRScheduler(_Recorder, opt_name="opt_a")
    fitted = _fit([sched], epochs=2, valid=True, module=_two_opt())
    assert sched.scheduler.fed == pytest.approx(
        [e["loss"]["opt_a"] for e in fitted.records["metrics"]["valid"]]
    )


def test_optimizer_name_errors() -> None:
    with pytest.raises(ValueError, match="opt_a, opt_b"):
        _fit([LRScheduler(torch.optim.lr_scheduler.StepLR, step_size=1)], epochs=1, module=_two_opt())
    with pytest.raises(ValueError, match=r"'gen'.*opt_a, opt_b"):
        _fit(
            [LRScheduler(torch.optim.lr_scheduler.StepLR, step_size=1, opt_name="gen")], 1, module=_two_opt()
        )


def test_invalid_call_on_and_scheduler() -> None:
    with pytest.raises(ValueError, match="`call_on`='on_batch_end'"):
        LRScheduler(torch.optim.lr_scheduler.StepLR, step_size=1, call_on="on_batch_end")
    with pytest.raises(TypeError, match="`scheduler`"):
        LRScheduler("step")  # type: ignore[arg-type]


def test_state_dict_delegates_and_waits_for_the_scheduler() -> None:
    sched = LRScheduler(torch.optim.lr_scheduler.StepLR, step_size=1, gamma=0.5)
    _fit([sched], epochs=3)
    state = sched.state_dict()
    assert state["last_epoch"] == 3
    fresh = LRScheduler(torch.optim.lr_scheduler.StepLR, step_size=1, gamma=0.5)
    fresh.load_state_dict(state)
    _fit([fresh], epochs=1)
    assert fresh.scheduler.last_epoch == 4  # continued from the restored epoch 3


def test_the_step_is_a_hook_at_call_on_not_an_attribute() -> None:
    sched = LRScheduler(torch.optim.lr_scheduler.StepLR, step_size=1, call_on="on_train_batch_end")
    assert sched.hook("on_train_batch_end") == sched.step
    assert sched.hook("on_fit_begin") == sched.on_fit_begin
    assert sched.hook("on_epoch_end") is None
    assert "on_train_batch_end" not in vars(sched)
    at_begin = LRScheduler(torch.optim.lr_scheduler.StepLR, step_size=1, call_on="on_fit_begin")
    assert at_begin.hook("on_fit_begin") == at_begin._begin_and_step
    assert at_begin.hook("on_epoch_end") is None
