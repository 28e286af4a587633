"""TerminateOnNaN: a graceful stop at the first non-finite training loss, naming epoch, batch and
value, with no host sync per batch; checkpoints never hold non-finite weights (reliability §8.9)."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import luz
from luz.callbacks import AutoResume, ModelCheckpoint, NaNGuard, TerminateOnNaN
from luz.serialization import read_checkpoint
from tests.conftest import Linear, make_recorder, regression_data


class Poisoned(Linear):
    """Its loss is multiplied by ``value`` at training batch ``at = (epoch, batch)``."""

    at: ClassVar[tuple[int, int]] = (2, 3)
    value: ClassVar[float] = math.nan

    def loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = F.mse_loss(pred, target)
        ctx = self.ctx  # type: ignore[attr-defined]
        if ctx.training and (ctx.epoch, ctx.iter) == self.at:
            loss = loss * self.value
        return loss


class PoisonedInf(Poisoned):
    value: ClassVar[float] = math.inf


def poisoned(model: type[nn.Module] = Poisoned) -> luz.LuzModule:
    return luz.setup(model, optimizer=torch.optim.SGD).set_opt_hparams(lr=0.01)


def fit(module: luz.LuzModule, *callbacks: Any, epochs: int = 4, valid: bool = True) -> luz.Fitted:
    x, y = regression_data(96)
    return module.fit(
        (x, y),
        epochs=epochs,
        valid_data=(x[:32], y[:32]) if valid else None,
        callbacks=list(callbacks),
        verbose=False,
        dataloader_options={"batch_size": 16},
    )


def test_nan_stops_at_the_end_of_the_training_phase() -> None:
    cb, rec = TerminateOnNaN(), make_recorder(weight=1)
    with pytest.warns(RuntimeWarning, match="training loss is nan at batch 3 of epoch 2; stopping"):
        fitted = fit(poisoned(), cb, rec)
    assert cb.stopped_at is not None
    assert (cb.stopped_at["epoch"], cb.stopped_at["batch"]) == (2, 3)
    assert math.isnan(cb.stopped_at["value"])
    # The stopped epoch is unfinished: only epoch 1 is recorded, and its values are finite.
    assert len(fitted.records["metrics"]["train"]) == 1
    assert len(fitted.records["metrics"]["valid"]) == 1
    assert math.isfinite(fitted.records["metrics"]["train"][0]["loss"])
    # Graceful: early-stopping then fit-end, no validation on the broken model, fit returns.
    assert rec.calls[-2:] == ["on_early_stopping", "on_fit_end"]
    assert rec.calls.count("on_valid_begin") == 1
    assert rec.calls.count("on_train_batch_end") == 6 + 6  # epoch 2 ran to its end (no sync)


def test_infinite_loss_is_reported_with_its_value() -> None:
    cb = TerminateOnNaN()
    with pytest.warns(RuntimeWarning, match="training loss is inf at batch 3 of epoch 2"):
        fit(poisoned(PoisonedInf), cb)
    assert cb.stopped_at is not None and cb.stopped_at["value"] == math.inf


def test_finite_run_is_untouched() -> None:
    cb = TerminateOnNaN(check_every=2)
    fitted = fit(luz.setup(Linear, loss=nn.MSELoss(), optimizer=torch.optim.SGD).set_opt_hparams(lr=0.01), cb)
    assert cb.stopped_at is None
    assert len(fitted.records["metrics"]["train"]) == 4


def test_check_every_one_stops_before_the_optimizer_step() -> None:
    seen: dict[tuple[int, int], dict[str, torch.Tensor]] = {}

    def keep(ctx: luz.Context) -> None:
        seen[(ctx.epoch, ctx.iter)] = {k: v.clone() for k, v in ctx.model.state_dict().items()}

    rec = make_recorder(weight=1)
    with pytest.warns(RuntimeWarning, match="nan at batch 3 of epoch 2"):
        fitted = fit(poisoned(), TerminateOnNaN(check_every=1), luz.callback(on_train_batch_end=keep), rec)
    last_good = seen[(2, 2)]
    assert (2, 3) not in seen
    for name, value in fitted.model.state_dict().items():
        assert torch.equal(value, last_good[name]), name
        assert torch.isfinite(value).all()
    # The recorder runs after TerminateOnNaN: the stop came before it saw the loss, before backward.
    assert rec.calls[-3:] == ["on_train_batch_after_pred", "on_early_stopping", "on_fit_end"]


def test_check_every_n_reads_the_flag_at_multiples_of_n() -> None:
    cb = TerminateOnNaN(check_every=2)  # batch 3 is poisoned: seen at the check of batch 4
    rec = make_recorder(weight=1)
    with pytest.warns(RuntimeWarning, match="nan at batch 3 of epoch 2"):
        fit(poisoned(), cb, rec)
    assert rec.calls.count("on_train_batch_end") == 6 + 3
    # The recorder runs after TerminateOnNaN: the stop came before it saw the loss, before backward.
    assert rec.calls[-3:] == ["on_train_batch_after_pred", "on_early_stopping", "on_fit_end"]


_SYNCS = ("item", "tolist", "cpu", "numpy", "__float__", "__int__", "__bool__", "__index__")


def test_no_host_sync_per_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    phase = {"batches": False}
    for name in _SYNCS:
        original = getattr(torch.Tensor, name)

        def wrapper(self: torch.Tensor, *args: Any, _name: str = name, _orig: Any = original) -> Any:
            caller = sys._getframe(1).f_code.co_filename.replace("\\", "/")
            if phase["batches"] and "torch/utils/data/" not in caller:  # the sampler's CPU indices
                calls.append(_name)
            return _orig(self, *args)

        monkeypatch.setattr(torch.Tensor, name, wrapper)

    def on(value: bool) -> Any:
        return lambda ctx: phase.update(batches=value)

    switches = luz.callback(
        on_train_batch_begin=on(True), on_train_end=on(False), weight=-math.inf
    )  # on_train_end switches off before TerminateOnNaN reads its flag
    cb = TerminateOnNaN()
    with pytest.warns(RuntimeWarning, match="nan at batch 3 of epoch 2"):
        fit(poisoned(), switches, cb, valid=False)
    assert calls == []
    assert cb.stopped_at is not None  # and the flag was read, after the batches
    phase["batches"] = True  # the wrappers do count (the test can fail)
    int(torch.ones((), dtype=torch.int64))
    assert calls == ["__int__"]


def test_second_optimizer_loss_is_watched() -> None:
    class TwoOpt(Linear):
        def set_optimizers(self, lr: float = 0.01) -> dict[str, torch.optim.Optimizer]:
            return {
                "w": torch.optim.SGD([self.fc.weight], lr=lr),
                "b": torch.optim.SGD([self.fc.bias], lr=lr),
            }

        def loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            loss = F.mse_loss(pred, target)
            ctx = self.ctx  # type: ignore[attr-defined]
            if ctx.training and (ctx.epoch, ctx.iter, ctx.opt_name) == (1, 2, "b"):
                return loss * math.nan
            return loss

    cb = TerminateOnNaN()
    with pytest.warns(RuntimeWarning, match="nan at batch 2 of epoch 1"):
        fitted = fit(luz.setup(TwoOpt), cb)
    assert fitted.records["metrics"]["train"] == []


# -- checkpoints never hold non-finite weights ---------------------------------------------------------


def test_nan_stop_keeps_the_autoresume_state_of_the_last_good_epoch(tmp_path: Path) -> None:
    state = tmp_path / "state.pt"
    with pytest.warns(RuntimeWarning, match="nan at batch 3 of epoch 2"):
        fit(poisoned(), TerminateOnNaN(), AutoResume(state))
    assert state.exists()  # not deleted as a finished run would be: the rerun resumes from it
    saved = read_checkpoint(state)
    assert saved["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in saved["model"].values())


def test_autoresume_never_writes_non_finite_weights(tmp_path: Path) -> None:
    # No NaN guard: the NaN loss poisons the weights at epoch 2 and training goes on.
    state = tmp_path / "state.pt"
    with pytest.warns(UserWarning, match="AutoResume: the model has NaN or infinite weights at epoch 2"):
        fitted = fit(poisoned(), NaNGuard(enabled=False), AutoResume(state), epochs=2, valid=False)
    assert not torch.isfinite(fitted.model.fc.weight).all()
    assert state.exists()  # kept at the end: it holds the last good state
    saved = read_checkpoint(state)
    assert saved["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in saved["model"].values())


def test_model_checkpoint_keeps_the_last_good_file(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    with pytest.warns(RuntimeWarning, match="nan at batch 3 of epoch 2"):
        fit(poisoned(), TerminateOnNaN(), ModelCheckpoint(path, monitor="train_loss"))
    saved = read_checkpoint(path)
    assert saved["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in saved["model"].values())


def test_rerun_after_a_nan_stop_resumes(tmp_path: Path) -> None:
    state = tmp_path / "state.pt"
    with pytest.warns(RuntimeWarning):
        fit(poisoned(), TerminateOnNaN(), AutoResume(state))

    class Healed(Poisoned):
        at = (0, 0)  # the fix: no more NaN

    fitted = fit(poisoned(Healed), TerminateOnNaN(), AutoResume(state))
    assert len(fitted.records["metrics"]["train"]) == 4
    assert not state.exists()


# -- the default guard: NaNGuard, at epoch granularity -------------------------------------------


def test_default_guard_stops_after_the_epoch_with_a_nan_loss_average() -> None:
    rec = make_recorder(weight=1)
    with pytest.warns(RuntimeWarning, match="training loss average of epoch 2 is nan; stopping"):
        fitted = fit(poisoned(), rec)
    # Epoch 2 ran to its end (validation too) and is recorded; epochs 3 and 4 did not run.
    train = fitted.records["metrics"]["train"]
    assert len(train) == 2 and len(fitted.records["metrics"]["valid"]) == 2
    assert math.isfinite(train[0]["loss"]) and math.isnan(train[1]["loss"])
    assert rec.calls.count("on_epoch_begin") == 2
    assert rec.calls[-2:] == ["on_early_stopping", "on_fit_end"]
    assert fitted.stop_reason == "NaNGuard stopped training: non-finite training loss (nan) at epoch 2"
    assert f"Training ended early: {fitted.stop_reason}." in repr(fitted)


def test_default_guard_names_an_infinite_value() -> None:
    class LastBatchInf(PoisonedInf):
        at = (2, 6)  # the last batch: the batches before it keep the average inf, not nan

    with pytest.warns(RuntimeWarning, match="average of epoch 2 is inf"):
        fitted = fit(poisoned(LastBatchInf))
    assert fitted.stop_reason is not None and "(inf)" in fitted.stop_reason


def test_default_guard_lets_no_checkpoint_write_the_bad_epoch(tmp_path: Path) -> None:
    state, every = tmp_path / "state.pt", str(tmp_path / "ckpt-{epoch}.pt")
    with pytest.warns(RuntimeWarning) as caught:
        fit(poisoned(), ModelCheckpoint(every, monitor="train_loss"), AutoResume(state))
    # Stopped before the checkpoints' epoch-end hooks: they never even saw the NaN weights.
    assert not [w for w in caught if "NaN or infinite weights" in str(w.message)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt-1.pt", "state.pt"]
    saved = read_checkpoint(state)
    assert saved["epoch"] == 1  # kept, not deleted as after a finished run: the rerun resumes
    assert all(torch.isfinite(v).all() for v in saved["model"].values())


def test_a_terminate_on_nan_of_yours_replaces_the_default_guard() -> None:
    seen: list[list[str]] = []
    probe = luz.callback(on_fit_begin=lambda ctx: seen.append([type(cb).__name__ for cb in ctx.callbacks]))
    with pytest.warns(RuntimeWarning, match="nan at batch 3 of epoch 2"):
        fitted = fit(poisoned(), TerminateOnNaN(), probe)
    assert "NaNGuard" not in seen[0] and "TerminateOnNaN" in seen[0]
    assert len(fitted.records["metrics"]["train"]) == 1  # its own stop: mid-epoch 2
    assert fitted.stop_reason == (
        "TerminateOnNaN stopped training: non-finite training loss (nan) at epoch 2, batch 3"
    )


def test_a_disabled_guard_trains_on_with_no_hooks(recwarn: pytest.WarningsRecorder) -> None:
    guard = NaNGuard(enabled=False)
    assert all(guard.hook(name) is None for name in luz.BREAKPOINTS)
    seen: list[list[str]] = []
    probe = luz.callback(on_fit_begin=lambda ctx: seen.append([type(cb).__name__ for cb in ctx.callbacks]))
    fitted = fit(poisoned(), guard, probe)
    assert seen[0].count("NaNGuard") == 1  # yours, not the default as well
    assert len(fitted.records["metrics"]["train"]) == 4
    assert fitted.stop_reason is None
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_default_guard_is_in_every_fit_and_quiet_on_finite_losses(recwarn: pytest.WarningsRecorder) -> None:
    seen: list[list[str]] = []
    probe = luz.callback(on_fit_begin=lambda ctx: seen.append([type(cb).__name__ for cb in ctx.callbacks]))
    fitted = fit(poisoned(type("Clean", (Poisoned,), {"at": (0, 0)})), probe)
    assert seen[0][:6] == ["Profile", "TrainValid", "Metrics", "Progress", "Interrupt", "NaNGuard"]
    assert fitted.stop_reason is None and len(fitted.records["metrics"]["train"]) == 4
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_guard_enabled_must_be_a_bool() -> None:
    with pytest.raises(TypeError, match="enabled"):
        NaNGuard(enabled="no")  # type: ignore[arg-type]


class TwoLosses(Linear):
    """Two optimizers; the second's loss is NaN from epoch 2 on."""

    def set_optimizers(self, lr: float = 0.01) -> dict[str, torch.optim.Optimizer]:
        return {
            "a": torch.optim.SGD(self.parameters(), lr=lr),
            "b": torch.optim.SGD(self.parameters(), lr=0.0),
        }

    def loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        ctx = self.ctx  # type: ignore[attr-defined]
        loss = F.mse_loss(pred, target)
        return loss * math.nan if ctx.opt_name == "b" and ctx.epoch >= 2 else loss


def test_default_guard_reads_every_optimizers_loss_average() -> None:
    with pytest.warns(RuntimeWarning, match="average of epoch 2 is nan"):
        fitted = fit(luz.setup(TwoLosses), valid=False)
    assert len(fitted.records["metrics"]["train"]) == 2
