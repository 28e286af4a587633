"""luz._validate: the one rule table for counts, reals, flags and choices, and every public
argument that goes through it (same exception type, a message naming the argument)."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import luz
from luz._loaders import split_valid
from luz._validate import (
    check_choice,
    check_count,
    check_flag,
    check_optional_count,
    check_optional_flag,
    check_optional_real,
    check_real,
    describe,
)
from luz.callbacks import (
    EarlyStopping,
    GradientClip,
    KeepBestModel,
    LRScheduler,
    Mixup,
    ModelCheckpoint,
    ResumeFromCheckpoint,
    TerminateOnNaN,
)
from luz.lr_finder import lr_schedule
from luz.metrics import BinaryAccuracy, BinaryAccuracyWithLogits, BinaryAUROC, MulticlassAUROC
from tests.conftest import Linear, regression_data

VE, TE = ValueError, TypeError
INF, NAN = math.inf, math.nan

# -- the rule table ----------------------------------------------------------------------------
# Each row: a value, then what check_count, check_count(integral_float=True), check_real,
# check_real(finite=False), check_flag and check_choice(("min", "max")) make of it: the returned
# value, or the exception type.
RULES: list[tuple[Any, Any, Any, Any, Any, Any, Any]] = [
    # value              count  count(1e5)  real    real(inf)  flag   choice
    (3, 3, 3, 3.0, 3.0, TE, TE),
    (np.int64(3), 3, 3, 3.0, 3.0, TE, TE),
    (np.uint8(3), 3, 3, 3.0, 3.0, TE, TE),
    (torch.tensor(3), 3, 3, 3.0, 3.0, TE, TE),
    (0, 0, 0, 0.0, 0.0, TE, TE),
    (-1, VE, VE, -1.0, -1.0, TE, TE),
    (True, VE, VE, VE, VE, True, TE),
    (False, VE, VE, VE, VE, False, TE),
    (np.True_, VE, VE, VE, VE, True, TE),
    (torch.tensor(True), VE, VE, VE, VE, TE, TE),
    (10.0, VE, 10, 10.0, 10.0, TE, TE),
    (1e5, VE, 100_000, 1e5, 1e5, TE, TE),
    (np.float64(50.0), VE, 50, 50.0, 50.0, TE, TE),
    (torch.tensor(4.0), VE, 4, 4.0, 4.0, TE, TE),
    (2.5, VE, VE, 2.5, 2.5, TE, TE),
    (np.float32(0.25), VE, VE, 0.25, 0.25, TE, TE),
    (INF, VE, VE, VE, INF, TE, TE),
    (-INF, VE, VE, VE, -INF, TE, TE),
    (NAN, VE, VE, VE, VE, TE, TE),
    ("3", TE, TE, TE, TE, TE, VE),
    ("min", TE, TE, TE, TE, TE, "min"),
    (None, TE, TE, TE, TE, TE, TE),
    ([3], TE, TE, TE, TE, TE, TE),
    (torch.tensor([3]), TE, TE, TE, TE, TE, TE),
    (3 + 0j, TE, TE, TE, TE, TE, TE),
    (1, 1, 1, 1.0, 1.0, TE, TE),  # not a flag: a truthy value would turn an option on
]

CHECKS: dict[str, Callable[[Any], Any]] = {
    "count": lambda v: check_count(v, "arg"),
    "count_integral_float": lambda v: check_count(v, "arg", integral_float=True),
    "real": lambda v: check_real(v, "arg"),
    "real_not_finite": lambda v: check_real(v, "arg", finite=False),
    "flag": lambda v: check_flag(v, "arg"),
    "choice": lambda v: check_choice(v, "arg", ("min", "max")),
}


def _cases() -> list[Any]:
    return [
        pytest.param(check, row[0], row[i + 1], id=f"{check}-{describe(row[0])}")
        for i, check in enumerate(CHECKS)
        for row in RULES
    ]


@pytest.mark.parametrize(("check", "value", "expected"), _cases())
def test_rule_table(check: str, value: Any, expected: Any) -> None:
    if isinstance(expected, type) and issubclass(expected, Exception):
        with pytest.raises(expected) as info:
            CHECKS[check](value)
        assert type(info.value) is expected  # never a subclass standing in for the other kind
        assert str(info.value).startswith("`arg` must be ")
        assert f"got {describe(value)}." in str(info.value)
        return
    result = CHECKS[check](value)
    assert result == expected and type(result) is type(expected)  # plain Python values out


@pytest.mark.parametrize("value", ["3", None, [3], object()])
def test_wrong_type_can_be_a_value_error_where_spec_says_so(value: Any) -> None:
    with pytest.raises(ValueError, match="`epochs` must be a non-negative integer"):
        check_count(value, "epochs", wrong_type=ValueError)
    with pytest.raises(ValueError, match=r"`valid_data` must be a number in \(0, 1\)"):
        check_real(value, "valid_data", above=0, below=1, wrong_type=ValueError)


def test_optional_checks_pass_none_and_say_so() -> None:
    assert check_optional_count(None, "n") is None
    assert check_optional_real(None, "x") is None
    assert check_optional_flag(None, "f") is None
    assert check_optional_count(np.int64(2), "n", minimum=1) == 2
    assert check_optional_real(np.float32(0.5), "x") == 0.5
    assert check_optional_flag(np.False_, "f") is False
    with pytest.raises(ValueError, match=r"^`n` must be None or a positive integer, got 0 \(int\)\.$"):
        check_optional_count(0, "n", minimum=1)
    with pytest.raises(TypeError, match=r"^`x` must be None or a finite number >= 0, got '1'"):
        check_optional_real("1", "x", minimum=0)
    with pytest.raises(TypeError, match=r"^`f` must be True, False or None, got 1 \(int\)\.$"):
        check_optional_flag(1, "f")


@pytest.mark.parametrize(
    ("kwargs", "inside", "outside", "words"),
    [
        ({"minimum": 0}, [0, 0.5, 7], [-1e-9, -3], "a finite number >= 0"),
        ({"above": 0}, [1e-9, 3], [0, -1], "a finite number > 0"),
        ({"maximum": 1}, [1, -5], [1.5], "a finite number <= 1"),
        ({"below": 1}, [0.999, -5], [1, 2], "a finite number < 1"),
        ({"minimum": 0.0, "maximum": 1.0}, [0, 1, 0.5], [-0.1, 1.1], r"a number in \[0.0, 1.0\]"),
        ({"above": 0, "below": 1}, [0.2, 0.999], [0, 1, 1.5], r"a number in \(0, 1\)"),
        ({"minimum": 0, "finite": False}, [0, INF], [-INF, NAN], "a number >= 0"),
    ],
)
def test_real_bounds(kwargs: dict[str, Any], inside: list[float], outside: list[float], words: str) -> None:
    for value in inside:
        assert check_real(value, "x", **kwargs) == float(value)
    for value in outside:
        with pytest.raises(ValueError, match=f"^`x` must be {words}, got"):
            check_real(value, "x", **kwargs)


@pytest.mark.parametrize(
    ("minimum", "words"),
    [
        (None, "an integer"),
        (0, "a non-negative integer"),
        (1, "a positive integer"),
        (2, "an integer of at least 2"),
    ],
)
def test_count_minimum(minimum: int | None, words: str) -> None:
    low = -5 if minimum is None else minimum
    assert check_count(low, "n", minimum=minimum) == low
    assert check_count(np.int32(low), "n", minimum=minimum) == low
    if minimum is not None:
        with pytest.raises(ValueError, match=f"^`n` must be {words}, got {minimum - 1} \\(int\\)\\.$"):
            check_count(minimum - 1, "n", minimum=minimum)


def test_messages_name_argument_expected_value_type_and_fix() -> None:
    cases: list[tuple[Callable[[], Any], str]] = [
        (
            lambda: check_count("3", "epochs"),
            "`epochs` must be a non-negative integer, got '3' (str). Pass the number 3, not a string.",
        ),
        (
            lambda: check_count(2.0, "epochs"),
            "`epochs` must be a non-negative integer, got 2.0 (float). Pass the integer 2.",
        ),
        (
            lambda: check_count(np.int64(-1), "patience"),
            f"`patience` must be a non-negative integer, got {np.int64(-1)!r} (numpy.int64).",
        ),
        (
            lambda: check_real(True, "alpha", above=0),
            "`alpha` must be a finite number > 0, got True (bool). A bool is not a number here.",
        ),
        (
            lambda: check_real(NAN, "baseline", finite=False, hint="Or pass None."),
            "`baseline` must be a number, got nan (float). NaN is not allowed. Or pass None.",
        ),
        (
            lambda: check_choice("mx", "mode", ("min", "max", "zero")),
            "`mode` must be one of 'min', 'max', 'zero', got 'mx' (str). Did you mean 'max'?",
        ),
        (lambda: check_flag("yes", "cpu"), "`cpu` must be True or False, got 'yes' (str)."),
        (
            lambda: check_real(torch.ones(3), "threshold"),
            "`threshold` must be a finite number, got tensor([1., 1., 1.]) (torch.Tensor).",
        ),
    ]
    for raise_it, message in cases:
        with pytest.raises((TypeError, ValueError)) as info:
            raise_it()
        assert str(info.value) == message


def test_long_values_are_shortened() -> None:
    with pytest.raises(TypeError) as info:
        check_count(list(range(1000)), "steps")
    assert len(str(info.value)) < 200 and "..." in str(info.value)


def test_huge_integers_are_counts_but_not_reals() -> None:
    assert check_count(10**400, "n") == 10**400
    with pytest.raises(ValueError, match="`x` must be a finite number"):
        check_real(10**400, "x")


# -- every public argument that uses the rules ------------------------------------------------


def _module() -> luz.LuzModule:
    return luz.setup(Linear, loss=nn.MSELoss(), optimizer=torch.optim.SGD).set_opt_hparams(lr=0.01)


def _fit(**kwargs: Any) -> luz.Fitted:
    x, y = regression_data(32)
    return _module().fit((x, y), **{"epochs": 1, "verbose": False, **kwargs})


def _fitted() -> luz.Fitted:
    return _fit()


def _set(obj: Any, name: str, value: Any) -> Callable[[], Any]:
    return lambda: setattr(obj, name, value)


def _ctx() -> luz.Context:
    return luz.Context(accelerator=luz.Accelerator(cpu=True))


def _lr_finder(**kwargs: Any) -> Any:
    x, y = regression_data(32)
    return luz.lr_finder(_module(), (x, y), **{"steps": 2, "verbose": False, **kwargs})


def _tensorboard(**kwargs: Any) -> Any:
    from luz.callbacks import TensorBoard

    return TensorBoard(**kwargs)


# (public call, exception type, argument named in the message, value shown in the message)
CALL_SITES: list[Any] = [
    pytest.param(lambda: _fit(epochs=2.0), VE, "epochs", 2.0, id="fit-epochs-float"),
    pytest.param(lambda: _fit(epochs="3"), VE, "epochs", "3", id="fit-epochs-str"),
    pytest.param(lambda: _fit(epochs=(1, np.int64(-2))), VE, "epochs", np.int64(-2), id="fit-epochs-pair"),
    pytest.param(lambda: _fit(valid_data=1.5), VE, "valid_data", 1.5, id="fit-valid_data"),
    pytest.param(lambda: split_valid(torch.arange(10), "0.2"), VE, "valid_data", "0.2", id="split_valid"),
    pytest.param(lambda: _fit(verbose=1), TE, "verbose", 1, id="fit-verbose"),
    pytest.param(lambda: _fit(compile="yes"), TE, "compile", "yes", id="fit-compile"),
    pytest.param(
        lambda: _fitted().predict(torch.randn(4, 10), verbose="no"), TE, "verbose", "no", id="predict"
    ),
    pytest.param(lambda: _fitted().evaluate(regression_data(8), verbose=0), TE, "verbose", 0, id="evaluate"),
    pytest.param(lambda: _set(_ctx(), "max_epochs", 2.0)(), VE, "max_epochs", 2.0, id="ctx.max_epochs"),
    pytest.param(lambda: _set(_ctx(), "min_epochs", "1")(), VE, "min_epochs", "1", id="ctx.min_epochs"),
    pytest.param(lambda: _set(_ctx(), "iter", 1.5)(), VE, "ctx.iter", 1.5, id="ctx.iter-float"),
    pytest.param(lambda: _set(_ctx(), "iter", "3")(), TE, "ctx.iter", "3", id="ctx.iter-str"),
    pytest.param(lambda: _lr_finder(steps=2.0), VE, "steps", 2.0, id="lr_finder-steps"),
    pytest.param(lambda: _lr_finder(start_lr=0), VE, "start_lr", 0, id="lr_finder-start_lr"),
    pytest.param(lambda: _lr_finder(start_lr=1.0, end_lr=0.1), VE, "end_lr", 0.1, id="lr_finder-end_lr"),
    pytest.param(
        lambda: _lr_finder(log_spaced_intervals=1), TE, "log_spaced_intervals", 1, id="lr_finder-log"
    ),
    pytest.param(lambda: _lr_finder(verbose="yes"), TE, "verbose", "yes", id="lr_finder-verbose"),
    pytest.param(lambda: EarlyStopping(patience=-1), VE, "patience", -1, id="patience"),
    pytest.param(lambda: EarlyStopping(patience="2"), TE, "patience", "2", id="patience-str"),
    pytest.param(lambda: EarlyStopping(baseline=NAN), VE, "baseline", NAN, id="baseline-nan"),
    pytest.param(lambda: EarlyStopping(baseline="0"), TE, "baseline", "0", id="baseline-str"),
    pytest.param(lambda: EarlyStopping(mode="best"), VE, "mode", "best", id="mode"),
    pytest.param(lambda: EarlyStopping(mode=None), TE, "mode", None, id="mode-none"),
    pytest.param(lambda: EarlyStopping(min_delta=True), VE, "min_delta", True, id="min_delta-bool"),
    pytest.param(lambda: EarlyStopping(monitor=3), TE, "monitor", 3, id="monitor-type"),
    pytest.param(lambda: EarlyStopping(monitor="test_loss"), VE, "monitor", "test_loss", id="monitor-value"),
    pytest.param(
        lambda: ModelCheckpoint("m.pt", save_best_only=1), TE, "save_best_only", 1, id="save_best_only"
    ),
    pytest.param(lambda: KeepBestModel(min_delta=-1), VE, "min_delta", -1, id="keep_best-min_delta"),
    pytest.param(
        lambda: LRScheduler(torch.optim.lr_scheduler.StepLR, step_size=1, opt_name=1),
        TE,
        "opt_name",
        1,
        id="lr_scheduler-opt_name",
    ),
    pytest.param(lambda: GradientClip(max_norm=-1), VE, "max_norm", -1, id="max_norm"),
    pytest.param(lambda: GradientClip(norm_type=0), VE, "norm_type", 0, id="norm_type"),
    pytest.param(lambda: GradientClip(norm_type="2"), TE, "norm_type", "2", id="norm_type-str"),
    pytest.param(lambda: Mixup(alpha=INF), VE, "alpha", INF, id="alpha"),
    pytest.param(lambda: Mixup(run_valid=1), TE, "run_valid", 1, id="run_valid"),
    pytest.param(lambda: Mixup(auto_loss="no"), TE, "auto_loss", "no", id="auto_loss"),
    pytest.param(lambda: TerminateOnNaN(check_every=0), VE, "check_every", 0, id="check_every"),
    pytest.param(lambda: TerminateOnNaN(check_every="1"), TE, "check_every", "1", id="check_every-str"),
    pytest.param(
        lambda: ResumeFromCheckpoint("missing.pt", restore_records=1), TE, "restore_records", 1, id="resume"
    ),
    pytest.param(lambda: luz.callbacks.Progress(refresh=-1), VE, "refresh", -1, id="progress-refresh"),
    pytest.param(lambda: _tensorboard(histograms=1), TE, "histograms", 1, id="tensorboard-histograms"),
    pytest.param(
        lambda: luz.callback(on_epoch_end=print, weight="1"), TE, "weight", "1", id="callback-weight"
    ),
    pytest.param(lambda: BinaryAccuracy(threshold=NAN), VE, "threshold", NAN, id="threshold"),
    pytest.param(
        lambda: BinaryAccuracyWithLogits(threshold=1.5), VE, "threshold", 1.5, id="logits-threshold"
    ),
    pytest.param(lambda: BinaryAUROC(num_thresholds=1), VE, "num_thresholds", 1, id="num_thresholds"),
    pytest.param(
        lambda: BinaryAUROC(num_thresholds="200"), TE, "num_thresholds", "200", id="num_thresholds-str"
    ),
    pytest.param(lambda: BinaryAUROC(from_logits="yes"), TE, "from_logits", "yes", id="from_logits"),
    pytest.param(lambda: MulticlassAUROC(average="bogus"), VE, "average", "bogus", id="average"),
    pytest.param(lambda: MulticlassAUROC(average=None), TE, "average", None, id="average-none"),
    pytest.param(lambda: luz.Accelerator(cpu="yes"), TE, "cpu", "yes", id="accelerator-cpu"),
    pytest.param(
        lambda: luz.Accelerator(device_placement=1), TE, "device_placement", 1, id="device_placement"
    ),
    pytest.param(lambda: luz.Accelerator(cuda_index=-1), VE, "cuda_index", -1, id="cuda_index"),
    pytest.param(lambda: luz.Accelerator(cuda_index=0.0), VE, "cuda_index", 0.0, id="cuda_index-float"),
    pytest.param(lambda: luz.Accelerator(distributed="no"), TE, "distributed", "no", id="distributed"),
    pytest.param(lambda: luz.Accelerator(timeout=0), VE, "timeout", 0, id="timeout"),
    pytest.param(lambda: luz.Accelerator(timeout="30"), TE, "timeout", "30", id="timeout-str"),
]


@pytest.mark.parametrize(("call", "error", "argument", "value"), CALL_SITES)
def test_public_argument_errors(
    call: Callable[[], Any],
    error: type[Exception],
    argument: str,
    value: Any,
    tmp_path: Path,
    monkeypatch: Any,
) -> None:
    monkeypatch.chdir(tmp_path)  # ModelCheckpoint and ResumeFromCheckpoint paths
    with pytest.raises(error) as info:
        call()
    assert type(info.value) is error
    message = str(info.value)
    assert message.startswith(f"`{argument}` must be "), message
    assert re.search(re.escape(describe(value)), message), message


# -- values the rules accept work as before, end to end ------------------------------------------


def test_numpy_numbers_and_flags_train_a_real_model() -> None:
    x, y = regression_data(64)
    stopper = EarlyStopping(monitor="train_loss", patience=np.int64(1), min_delta=np.float32(10.0))
    clip = GradientClip(max_norm=np.float64(0.5), norm_type=torch.tensor(2.0))
    fitted = _module().fit(
        (x, y),
        epochs=(np.int32(1), np.int64(6)),
        callbacks=[stopper, clip, TerminateOnNaN(check_every=np.int64(1))],
        accelerator=luz.Accelerator(cpu=np.True_, device_placement=np.True_),
        verbose=np.False_,
        compile=np.False_,
    )
    # min_delta=10 means no epoch improves: patience 1 stops at epoch 2, which is recorded.
    assert len(fitted.records["metrics"]["train"]) == 2
    assert type(stopper.patience) is int and type(clip.max_norm) is float and clip.norm_type == 2.0


def test_terminate_on_nan_with_a_numpy_check_every_stops_before_the_bad_step() -> None:
    x, y = regression_data(64)
    y[40:] = math.nan  # batch 3 of 4 (batch size 16, no shuffle) has a NaN target
    cb = TerminateOnNaN(check_every=np.int64(1))
    nan_data = pytest.warns(UserWarning, match="training data's target tensor")  # warned before training
    with nan_data, pytest.warns(RuntimeWarning, match="batch 3"):
        fitted = _module().fit(
            (x, y),
            epochs=3,
            callbacks=[cb],
            verbose=False,
            dataloader_options={"batch_size": 16, "shuffle": False},
        )
    assert cb.stopped_at is not None and cb.stopped_at["batch"] == 3
    assert all(torch.isfinite(p).all() for p in fitted.model.parameters())


def test_lr_finder_accepts_numpy_steps_and_rates() -> None:
    x, y = regression_data(64)
    result = luz.lr_finder(
        _module(), (x, y), steps=np.int64(5), start_lr=np.float32(1e-4), end_lr=np.float64(0.1), verbose=False
    )
    assert len(result.lr) == 5
    assert result.lr == pytest.approx(lr_schedule(5, 1e-4, 0.1))
