"""The monitor base: name resolution, comparisons and argument checks."""

from __future__ import annotations

import pytest

import luz
from luz.callbacks.monitor import MonitorCallback, monitor_names


def _ctx(train: dict[str, object], valid: dict[str, object] | None = None) -> luz.Context:
    ctx = luz.Context()
    ctx.epoch = 1
    ctx.log("metrics", "train", dict(train), 1)
    if valid is not None:
        ctx.log("metrics", "valid", dict(valid), 1)
    return ctx


def test_resolves_plain_flattened_and_underscore_names_case_insensitively() -> None:
    ctx = _ctx({"loss": {"gen_a": 1.0, "disc": 2.0}}, {"loss": 0.5, "my_acc": 0.75, "auc": {"0": 0.6}})
    assert MonitorCallback("valid_loss").current_value(ctx) == 0.5
    assert MonitorCallback("Valid_My_Acc").current_value(ctx) == 0.75
    assert MonitorCallback("train_loss_gen_a").current_value(ctx) == 1.0
    assert MonitorCallback("TRAIN_LOSS_DISC").resolve_monitor(ctx) == ("train", "loss_disc")
    assert MonitorCallback("valid_auc_0").current_value(ctx) == 0.6
    assert set(monitor_names(ctx)) == {
        "train_loss_gen_a",
        "train_loss_disc",
        "valid_loss",
        "valid_my_acc",
        "valid_auc_0",
    }


def test_unknown_name_lists_available_names() -> None:
    ctx = _ctx({"loss": {"gen": 1.0, "disc": 2.0}})
    with pytest.raises(ValueError, match=r"train_loss_gen.*train_loss_disc") as info:
        MonitorCallback("train_loss").current_value(ctx)
    assert "valid_data" not in str(info.value)
    with pytest.raises(ValueError, match="valid_data"):
        MonitorCallback("valid_loss").current_value(ctx)


@pytest.mark.parametrize(
    ("mode", "new", "best", "expected"),
    [
        ("min", 0.5, 1.0, True),
        ("min", 0.95, 1.0, False),  # within min_delta
        ("max", 1.2, 1.0, True),
        ("max", 1.05, 1.0, False),
        ("zero", -0.5, 1.0, True),
        ("zero", 0.5, -1.0, True),
        ("zero", -1.5, 1.0, False),  # R compared |best| with min_delta and ignored `new`
        ("zero", 0.95, 1.0, False),
    ],
)
def test_is_improvement(mode: str, new: float, best: float, expected: bool) -> None:
    assert MonitorCallback(mode=mode, min_delta=0.1).is_improvement(new, best) is expected


def test_first_value_improves_and_nan_never_does() -> None:
    cb = MonitorCallback()
    assert cb.is_improvement(3.0, None)
    assert not cb.is_improvement(float("nan"), 1.0)


def test_argument_checks() -> None:
    with pytest.raises(ValueError, match="`mode`"):
        MonitorCallback(mode="lowest")
    with pytest.raises(ValueError, match="`min_delta`"):
        MonitorCallback(min_delta=-1)
    with pytest.raises(TypeError, match="`min_delta`"):
        MonitorCallback(min_delta="0.1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`monitor`"):
        MonitorCallback("test_loss")
    with pytest.raises(TypeError, match="`monitor`"):
        MonitorCallback(3)  # type: ignore[arg-type]
