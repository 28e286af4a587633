"""`CallbackRunner`: grad mode around hooks, nested fires, the stop policy."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

import luz
from luz.callbacks._runner import CallbackRunner


class FunctionPolicy:
    """A stop policy that hands each stop to a function and settles nothing."""

    def __init__(self, fn: Callable[[luz.StopTraining], None]) -> None:
        self.fn = fn

    def hold(self, stop: luz.StopTraining) -> None:
        self.fn(stop)

    def settle(self) -> None:
        pass


def runner(
    *callbacks: luz.Callback, stop_policy: Callable[[luz.StopTraining], None] | None = None
) -> CallbackRunner:
    built = CallbackRunner(
        list(callbacks), stop_policy=None if stop_policy is None else FunctionPolicy(stop_policy)
    )
    luz.Context(runner=built)  # binds the callbacks; ctx.call_callbacks fires through this runner
    return built


def stop(ctx: luz.Context) -> None:
    raise luz.StopTraining()


@pytest.mark.parametrize("grad", [True, False])
def test_hooks_run_without_grad_and_nested_fires_restore_it(grad: bool) -> None:
    seen: list[tuple[str, bool]] = []

    def outer(ctx: luz.Context) -> None:
        seen.append(("outer before", torch.is_grad_enabled()))
        ctx.call_callbacks("on_my_event")  # a nested fire
        seen.append(("outer after", torch.is_grad_enabled()))

    def inner(ctx: luz.Context) -> None:
        seen.append(("inner", torch.is_grad_enabled()))
        with torch.enable_grad():  # a hook may switch grad on for a computation of its own
            ctx.call_callbacks("on_other_event")

    r = runner(
        luz.callback(on_epoch_end=outer),
        luz.callback(on_my_event=inner),
        luz.callback(on_other_event=lambda ctx: seen.append(("innermost", torch.is_grad_enabled()))),
    )
    with torch.set_grad_enabled(grad):
        r.fire("on_epoch_end")
        assert torch.is_grad_enabled() is grad
    assert seen == [("outer before", False), ("inner", False), ("innermost", False), ("outer after", False)]


@pytest.mark.parametrize("grad", [True, False])
def test_grad_mode_is_restored_after_a_hook_that_leaks_it_or_raises(grad: bool) -> None:
    def leak(ctx: luz.Context) -> None:
        torch.set_grad_enabled(True)

    def fail(ctx: luz.Context) -> None:
        raise ValueError("boom")

    r = runner(luz.callback(on_epoch_end=leak, on_fit_end=fail))
    with torch.set_grad_enabled(grad):
        r.fire("on_epoch_end")
        assert torch.is_grad_enabled() is grad
        with pytest.raises(ValueError, match="boom"):
            r.fire("on_fit_end")
        assert torch.is_grad_enabled() is grad


def test_without_a_stop_policy_stop_training_propagates() -> None:
    later: list[str] = []
    r = runner(luz.callback(on_epoch_end=stop), luz.callback(on_epoch_end=lambda ctx: later.append("ran")))
    with pytest.raises(luz.StopTraining):
        r.fire("on_epoch_end")
    assert later == []


def test_a_stop_policy_can_hold_the_stop() -> None:
    held: list[luz.StopTraining] = []
    later: list[bool] = []

    def hold(signal: luz.StopTraining) -> None:
        assert torch.is_grad_enabled()  # the policy runs after grad mode is restored
        held.append(signal)

    r = runner(
        luz.callback(on_epoch_end=stop),
        luz.callback(on_epoch_end=lambda ctx: later.append(True), on_fit_end=lambda ctx: later.append(False)),
        stop_policy=hold,
    )
    r.fire("on_epoch_end")  # does not raise
    assert len(held) == 1 and isinstance(held[0], luz.StopTraining)
    assert later == []  # the breakpoint's later hooks do not run
    r.fire("on_fit_end")
    assert later == [False] and len(held) == 1


def test_a_stop_policy_can_re_raise_and_does_not_see_errors_or_skips() -> None:
    def reraise(signal: luz.StopTraining) -> None:
        raise signal

    def skip(ctx: luz.Context) -> None:
        raise luz.SkipEpoch()

    def fail(ctx: luz.Context) -> None:
        raise KeyError("k")

    r = runner(luz.callback(on_epoch_end=stop, on_epoch_begin=skip, on_fit_end=fail), stop_policy=reraise)
    with pytest.raises(luz.StopTraining):
        r.fire("on_epoch_end")
    with pytest.raises(luz.SkipEpoch):
        r.fire("on_epoch_begin")
    with pytest.raises(KeyError) as info:
        r.fire("on_fit_end")
    assert isinstance(info.value, luz.CallbackError) and "'on_fit_end'" in str(info.value)


def test_custom_breakpoints_are_looked_up_once() -> None:
    asked: list[str] = []

    class Counting(luz.Callback):
        def hook(self, name: str) -> Any:
            asked.append(name)
            return super().hook(name)

        def on_my_event(self) -> None:
            pass

    r = runner(Counting())
    assert len(asked) == len(luz.BREAKPOINTS)
    for _ in range(3):
        r.fire("on_my_event")
        r.fire("on_nobody_listens")
    assert asked[len(luz.BREAKPOINTS) :] == ["on_my_event", "on_nobody_listens"]
    assert r.has("on_my_event") and not r.has("on_nobody_listens") and not r.has("on_epoch_end")


def test_caller_is_none_for_breakpoints_no_callback_implements() -> None:
    calls: list[str] = []
    spy = luz.callback(on_train_batch_end=lambda ctx: calls.append("end"), on_custom=lambda ctx: None)
    built = runner(spy)
    assert built.caller("on_train_batch_begin") is None
    assert built.caller("on_custom_missing") is None
    end = built.caller("on_train_batch_end")
    assert end is not None and built.callers["on_train_batch_end"] is end
    end()
    assert calls == ["end"]
    assert built.caller("on_custom") is not None  # a custom breakpoint some callback implements


def test_a_fit_calls_the_runner_only_for_implemented_batch_breakpoints() -> None:
    # Counted with a profiler hook on a real fit: during training, fire runs for the batch
    # breakpoints some callback implements (on_train_batch_end for the default callbacks,
    # on_train_batch_begin for the spy), never for the five in the step nobody implements.
    import sys

    from torch import nn

    fire_code = CallbackRunner.fire.__code__
    fired: dict[str, int] = {}
    state = {"on": False}

    def profile(frame: Any, event: str, arg: Any) -> None:
        if state["on"] and event == "call" and frame.f_code is fire_code:
            name = frame.f_locals["name"]
            fired[name] = fired.get(name, 0) + 1

    def switch(on: bool) -> Callable[[luz.Context], None]:
        return lambda ctx: state.update(on=on)

    spy = luz.callback(
        on_train_begin=switch(True), on_train_batch_begin=lambda ctx: None, on_train_end=switch(False)
    )
    x, y = torch.randn(64, 3), torch.randn(64, 1)
    module = luz.setup(nn.Linear, loss=nn.MSELoss(), optimizer=torch.optim.SGD)
    module = module.set_hparams(in_features=3, out_features=1).set_opt_hparams(lr=0.1)
    sys.setprofile(profile)
    try:
        module.fit((x, y), epochs=1, verbose=False, callbacks=[spy], dataloader_options={"batch_size": 8})
    finally:
        sys.setprofile(None)
    assert fired == {"on_train_batch_begin": 8, "on_train_batch_end": 8, "on_train_end": 1}
