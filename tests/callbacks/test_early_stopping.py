"""EarlyStopping: epoch counts, modes, the on_early_stopping hook and monitor errors."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

import luz
from luz.callbacks import EarlyStopping
from tests.conftest import Linear, regression_data


def _fit(callbacks: list[Any], epochs: Any = 25, valid: bool = True, verbose: bool = False) -> luz.Fitted:
    x, y = regression_data(n=32)
    module = luz.setup(Linear, loss=nn.MSELoss(), optimizer=torch.optim.SGD).set_opt_hparams(lr=0.01)
    return module.fit(
        (x, y),
        epochs=epochs,
        valid_data=(x, y) if valid else None,
        callbacks=callbacks,
        verbose=verbose,
        dataloader_options={"batch_size": 16},
    )


def _epochs(fitted: luz.Fitted) -> int:
    return len(fitted.records["metrics"]["train"])


@pytest.mark.parametrize(
    ("kwargs", "epochs", "expected"),
    [
        ({"patience": 1, "min_delta": 100.0}, 25, 2),
        ({"patience": 2, "min_delta": 100.0}, 25, 3),
        ({"patience": 2, "min_delta": 100.0}, (5, 25), 5),
        ({"patience": 1, "baseline": 0.0}, (1, 25), 1),
    ],
)
def test_epoch_counts(kwargs: dict[str, Any], epochs: Any, expected: int) -> None:
    fitted = _fit([EarlyStopping(**kwargs)], epochs=epochs)
    assert _epochs(fitted) == expected
    assert len(fitted.records["metrics"]["valid"]) == expected


def test_patience_without_stall_runs_all_epochs() -> None:
    # The loss keeps decreasing with a small lr, so a patience of 3 never runs out.
    fitted = _fit([EarlyStopping(monitor="train_loss", patience=3)], epochs=6, valid=False)
    assert _epochs(fitted) == 6


def test_mode_zero_and_max() -> None:
    # The loss only decreases: in "max" mode it never improves; in "zero" mode it always does.
    assert _epochs(_fit([EarlyStopping(monitor="train_loss", mode="max", patience=2)], epochs=10)) == 3
    assert _epochs(_fit([EarlyStopping(monitor="train_loss", mode="zero", patience=2)], epochs=6)) == 6


def test_message_and_custom_on_early_stopping_hook(capsys: pytest.CaptureFixture[str]) -> None:
    seen: list[int] = []
    hook = luz.callback(on_early_stopping=lambda ctx: seen.append(ctx.epoch))
    fitted = _fit([EarlyStopping(patience=1, min_delta=100.0), hook], epochs=25, verbose=True)
    assert _epochs(fitted) == 2
    assert seen == [2]
    assert "Early stopping at epoch 2 of 25" in capsys.readouterr().err


def test_no_message_when_quiet_or_stopped_by_someone_else(capsys: pytest.CaptureFixture[str]) -> None:
    def stop(ctx: luz.Context) -> None:
        raise luz.StopTraining()

    _fit([EarlyStopping(patience=5), luz.callback(on_epoch_end=stop)], epochs=3, verbose=True)
    assert "Early stopping" not in capsys.readouterr().err


def test_unknown_monitor_fails_at_end_of_first_epoch() -> None:
    ended: list[int] = []
    counter = luz.callback(on_epoch_end=lambda ctx: ended.append(ctx.epoch))
    with pytest.raises(ValueError, match=r"'valid_los'.*'train_loss', 'valid_loss'") as info:
        _fit([EarlyStopping(monitor="valid_los"), counter], epochs=3)
    assert isinstance(info.value, luz.CallbackError)
    assert ended == [1]  # weight inf: the other epoch-end hooks ran first


def test_monitoring_validation_without_validation_data_is_explained() -> None:
    with pytest.raises(ValueError, match="valid_data"):
        _fit([EarlyStopping()], epochs=2, valid=False)


def test_state_dict_round_trip() -> None:
    cb = EarlyStopping(patience=3)
    cb.best, cb.counter = 0.25, 2
    other = EarlyStopping(patience=3)
    other.load_state_dict(cb.state_dict())
    assert (other.best, other.counter) == (0.25, 2)


def test_argument_checks() -> None:
    with pytest.raises(ValueError, match="`patience`"):
        EarlyStopping(patience=-1)
    with pytest.raises(ValueError, match="`patience`"):  # a number, not a count (SPEC §8.3)
        EarlyStopping(patience=1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="`baseline`"):
        EarlyStopping(baseline="0")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`mode`"):
        EarlyStopping(mode="best")
    assert EarlyStopping.weight == float("inf")
