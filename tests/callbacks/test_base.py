"""`luz.Callback`, the `callback()` shortcut and the hook runner."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import luz
from luz.callbacks._runner import CallbackRunner
from luz.callbacks.base import check_callbacks
from tests.conftest import Linear, regression_data


def fit(callbacks: Any, epochs: int = 1, **kwargs: Any) -> luz.Fitted:
    x, y = regression_data(64)
    return (
        luz.setup(Linear, loss=nn.MSELoss(), optimizer=torch.optim.SGD)
        .set_opt_hparams(lr=0.01)
        .fit((x, y), epochs=epochs, callbacks=callbacks, verbose=False, **kwargs)
    )


class Named(luz.Callback):
    def __init__(self, name: str, log: list[str], weight: float = 0.0) -> None:
        self.name, self.log = name, log
        self.weight = weight  # type: ignore[misc]

    def on_epoch_end(self) -> None:
        self.log.append(self.name)


def test_weight_ordering_is_stable() -> None:
    log: list[str] = []
    callbacks = [
        Named("a1", log, 1),
        Named("z0", log),
        Named("m-1", log, -1),
        Named("y0", log),
        luz.callback(on_epoch_end=lambda ctx: log.append("lambda-5"), weight=-5),
        Named("b1", log, 1),
    ]
    fit(callbacks)
    assert log == ["lambda-5", "m-1", "z0", "y0", "a1", "b1"]


def test_weights_order_user_callbacks_around_defaults() -> None:
    seen: dict[str, bool] = {}

    def before(ctx: luz.Context) -> None:
        seen["before"] = ctx.training

    def after(ctx: luz.Context) -> None:
        seen["after"] = ctx.training

    # TrainValid (weight 0, a default) sets ctx.training to False at on_valid_begin
    fit([luz.callback(on_valid_begin=after), luz.callback(on_valid_begin=before, weight=-1)], valid_data=0.25)
    assert seen == {"before": True, "after": False}


def test_a_fit_is_in_training_mode_from_its_start() -> None:
    # R luz sets ctx$training before the loop: on_fit_begin and epoch 1's begin see True.
    seen: list[tuple[str, bool]] = []
    fit(
        [
            luz.callback(
                on_fit_begin=lambda ctx: seen.append(("fit", ctx.training)),
                on_epoch_begin=lambda ctx: seen.append(("epoch", ctx.training)),
            )
        ]
    )
    assert seen == [("fit", True), ("epoch", True)]


def test_hooks_run_without_grad() -> None:
    states: list[bool] = []
    hook = luz.callback(
        on_train_batch_begin=lambda ctx: states.append(torch.is_grad_enabled()),
        on_train_batch_after_loss=lambda ctx: states.append(torch.is_grad_enabled()),
    )
    fit(hook)
    assert states and not any(states)


def test_hook_error_is_wrapped_and_keeps_type() -> None:
    class Failing(luz.Callback):
        def on_train_batch_end(self) -> None:
            raise ValueError("bad value")

    with pytest.raises(ValueError) as info:
        fit([Failing()])
    error = info.value
    assert isinstance(error, luz.CallbackError)
    assert "Failing" in str(error) and "'on_train_batch_end'" in str(error) and "bad value" in str(error)
    assert isinstance(error.__cause__, ValueError) and not isinstance(error.__cause__, luz.CallbackError)
    assert str(error.__cause__) == "bad value"


def test_hook_error_with_unusual_exception_type() -> None:
    class NeedsArgsError(Exception):
        def __init__(self, a: int, b: int) -> None:
            super().__init__(f"{a}-{b}")

    def hook(ctx: luz.Context) -> None:
        raise NeedsArgsError(1, 2)

    with pytest.raises(luz.CallbackError, match="1-2") as info:
        fit(luz.callback(on_epoch_begin=hook))
    assert isinstance(info.value.__cause__, NeedsArgsError)


def test_stop_signals_are_not_wrapped() -> None:
    runner = CallbackRunner([luz.callback(on_fit_end=lambda ctx: (_ for _ in ()).throw(luz.StopTraining()))])
    for cb in runner.callbacks:
        cb.ctx = luz.Context()
    with pytest.raises(luz.StopTraining):
        runner.fire("on_fit_end")
    assert runner.has("on_fit_end") and not runner.has("on_epoch_end")


def test_callback_shortcut_validation() -> None:
    with pytest.raises(ValueError, match="at least one hook"):
        luz.callback()
    with pytest.raises(ValueError, match="not a breakpoint name"):
        luz.callback(epoch_end=lambda ctx: None)
    with pytest.raises(TypeError, match="must be a function"):
        luz.callback(on_epoch_end=3)  # type: ignore[arg-type]
    cb = luz.callback(on_epoch_end=lambda ctx: None, weight=2)
    assert cb.weight == 2.0
    assert "on_epoch_end" in repr(cb)


def test_check_callbacks_messages() -> None:
    with pytest.raises(TypeError, match="did you forget to instantiate it\\? Pass Named\\(\\)"):
        check_callbacks([Named])
    with pytest.raises(TypeError, match="index 1"):
        check_callbacks([luz.callbacks.Profile(), lambda: None])
    with pytest.raises(TypeError, match=r"luz\.Callback instances"):
        check_callbacks(["profile"])


def test_context_property_outside_a_run() -> None:
    with pytest.raises(RuntimeError, match="not attached"):
        _ = Named("x", []).context
    assert repr(Named("x", [])) == "Named()"


def test_self_ctx_is_set_during_run_and_cleared_after() -> None:
    seen: list[Any] = []

    class Spy(luz.Callback):
        def on_fit_begin(self) -> None:
            seen.append(self.ctx)

    spy = Spy()
    fit([spy])
    assert isinstance(seen[0], luz.Context)
    with pytest.raises(RuntimeError, match="not attached to a running context"):
        _ = spy.ctx


def test_custom_breakpoint_from_a_hook() -> None:
    fired: list[int] = []
    fit(
        [
            luz.callback(on_epoch_end=lambda ctx: ctx.call_callbacks("on_my_event")),
            luz.callback(on_my_event=lambda ctx: fired.append(ctx.epoch)),
        ],
        epochs=2,
    )
    assert fired == [1, 2]


def test_the_error_index_is_the_position_in_the_users_list() -> None:
    x, y = regression_data(64)
    module = luz.setup(Linear, loss=nn.MSELoss(), optimizer=torch.optim.SGD)
    with pytest.raises(TypeError, match="index 1 is") as info:
        module.fit(
            (x, y), epochs=1, callbacks=[luz.callbacks.Profile(), luz.callbacks.Profile], verbose=False
        )
    assert "forget to instantiate" in str(info.value)


def test_callback_declares_exactly_the_builtin_hooks_in_order() -> None:
    declared = [name for name, value in vars(luz.Callback).items() if name.startswith("on_")]
    assert declared == list(luz.BREAKPOINTS)
    for name in declared:
        method = getattr(luz.Callback, name)
        assert callable(method) and (method.__doc__ or "").startswith("Fires"), name
        assert method(luz.Callback()) is None  # a no-op


class EpochEndOnly(luz.Callback):
    def __init__(self) -> None:
        self.epochs: list[int] = []

    def on_epoch_end(self) -> None:
        self.epochs.append(self.context.epoch)


def test_an_override_appears_only_in_its_table_entry() -> None:
    cb = EpochEndOnly()
    runner = CallbackRunner([cb])
    entries = {name for name, hooks in runner.table.items() if any(c is cb for c, _ in hooks)}
    assert entries == {"on_epoch_end"}
    assert [fn for _, fn in runner.table["on_epoch_end"]] == [cb.on_epoch_end]
    assert cb.hook("on_fit_begin") is None and cb.hook("on_my_event") is None
    assert luz.callback(on_fit_end=lambda ctx: None).hook("on_epoch_end") is None


def test_hooks_that_are_not_overridden_are_never_called() -> None:
    import sys

    no_ops = {vars(luz.Callback)[name].__code__ for name in luz.BREAKPOINTS}
    called: list[str] = []

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event == "call" and frame.f_code in no_ops:
            called.append(frame.f_code.co_name)

    cb = EpochEndOnly()
    sys.setprofile(profile)
    try:
        fit([cb], epochs=2, valid_data=0.25)
    finally:
        sys.setprofile(None)
    assert cb.epochs == [1, 2]  # the override ran
    assert called == []  # no declared no-op ran, for this callback or a default one


class Custom(luz.Callback):
    def __init__(self) -> None:
        self.asked: list[str] = []
        self.fired = 0

    def hook(self, name: str) -> Any:
        self.asked.append(name)
        return super().hook(name)

    def on_my_event(self) -> None:
        self.fired += 1


def test_hook_is_asked_once_per_breakpoint_and_custom_methods_are_found() -> None:
    custom = Custom()
    fit([custom, luz.callback(on_train_batch_end=lambda ctx: ctx.call_callbacks("on_my_event"))], epochs=2)
    assert custom.fired == 4  # 2 batches per epoch
    assert sorted(custom.asked) == sorted([*luz.BREAKPOINTS, "on_my_event"])


def test_instance_attributes_named_after_breakpoints_are_hooks() -> None:
    seen: list[int] = []
    cb = luz.Callback()
    cb.on_epoch_end = lambda: seen.append(1)  # type: ignore[method-assign]
    fit([cb], epochs=2)
    assert seen == [1, 1]


def test_near_miss_hook_names_warn_naming_the_built_in() -> None:
    with pytest.warns(
        UserWarning, match=r"'on_epoch_ned' is not a built-in breakpoint but resembles 'on_epoch_end'"
    ):
        luz.callback(on_epoch_ned=lambda ctx: None)
    with pytest.warns(UserWarning, match=r"Typo\.on_trian_end: .* resembles 'on_train_end'"):

        class Typo(luz.Callback):
            def on_trian_end(self) -> None:
                pass


def test_custom_and_built_in_hook_names_do_not_warn() -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        luz.callback(on_epoch_end=lambda ctx: None, on_my_custom_event=lambda ctx: None)

        class Custom(luz.Callback):
            def on_epoch_end(self) -> None:
                pass

            def on_generator_step(self) -> None:  # a custom breakpoint, far from every built-in
                pass

            on_fit_ended = 3  # not a method: not a hook


def test_near_miss_hook_still_runs_when_fired() -> None:
    fired: list[int] = []

    class Fires(luz.Callback):
        def on_train_batch_end(self) -> None:
            self.context.call_callbacks("on_epoch_ends")

    with pytest.warns(UserWarning, match="resembles 'on_epoch_end'"):
        near = luz.callback(on_epoch_ends=lambda ctx: fired.append(ctx.epoch))
    fit([Fires(), near])
    assert fired and set(fired) == {1}


def test_self_ctx_is_typed_context_for_mypy_strict_in_user_code(tmp_path: Path) -> None:
    # The README's own callback: `self.ctx.epoch` must type-check without a None check.
    user = tmp_path / "user_callback.py"
    user.write_text(
        "import luz\n\n\n"
        "class PrintEpoch(luz.Callback):\n"
        "    def on_epoch_end(self) -> None:\n"
        "        epoch: int = self.ctx.epoch\n"
        "        print(epoch, self.ctx.get_metric('loss', 'train'))\n\n\n"
        "def attached(cb: luz.Callback) -> luz.Context:\n"
        "    return cb.ctx\n"
    )
    src = Path(luz.__file__).resolve().parents[1]
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--cache-dir", os.devnull, str(user)],
        capture_output=True,
        text=True,
        env={**os.environ, "MYPYPATH": str(src)},
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
