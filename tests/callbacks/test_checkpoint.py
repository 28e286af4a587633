"""ModelCheckpoint and KeepBestModel (R rows 16 and 18), atomic writes, non-finite weights."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import luz
from luz.callbacks import KeepBestModel, ModelCheckpoint
from luz.serialization import read_checkpoint
from tests.conftest import Linear, classification_data, regression_data


def _module(lr: float = 0.01) -> luz.LuzModule:
    return luz.setup(Linear, loss=nn.MSELoss(), optimizer=torch.optim.SGD).set_opt_hparams(lr=lr)


def _fit(callbacks: list[Any], epochs: int = 5, lr: float = 0.01, **kwargs: Any) -> luz.Fitted:
    x, y = regression_data()
    return _module(lr).fit((x, y), epochs=epochs, callbacks=callbacks, verbose=False, **kwargs)


def test_directory_path_writes_one_file_per_epoch(tmp_path: Path) -> None:
    fitted = _fit([ModelCheckpoint(str(tmp_path / "ckpt") + "/", monitor="train_loss")])
    files = sorted(os.listdir(tmp_path / "ckpt"))
    losses = fitted.get_metrics().query("set == 'train' and metric == 'loss'")["value"].tolist()
    assert files == [f"epoch-{e:02d}-train_loss-{loss:.3f}.pt" for e, loss in enumerate(losses, start=1)]
    state = read_checkpoint(tmp_path / "ckpt" / files[-1])
    assert state["epoch"] == 5
    assert set(state) >= {"model", "optimizers", "records", "callbacks", "rng"}
    assert len(state["records"]["metrics"]["train"]) == 5


def test_save_best_only_writes_only_improvements(tmp_path: Path) -> None:
    class Bump(luz.Callback):  # worsen the weights at the start of epochs 3 and 4
        def on_epoch_begin(self) -> None:
            if self.context.epoch in (3, 4):
                for p in self.context.model.parameters():
                    p.add_(3.0)

    template = str(tmp_path / "best-{epoch}-{monitor:.4f}.pt")
    fitted = _fit([Bump(), ModelCheckpoint(template, monitor="train_loss", save_best_only=True)], epochs=6)
    losses = fitted.get_metrics().query("set == 'train' and metric == 'loss'")["value"].tolist()
    best, expected = float("inf"), []
    for epoch, loss in enumerate(losses, start=1):
        if loss < best:
            best = loss
            expected.append(f"best-{epoch}-{loss:.4f}.pt")
    assert sorted(os.listdir(tmp_path)) == sorted(expected)
    assert len(expected) < 6  # the bumps made some epochs worse, and they were not saved


def test_loading_checkpoints_changes_and_reproduces_predictions(tmp_path: Path) -> None:
    fitted = _fit([ModelCheckpoint(str(tmp_path) + os.sep, monitor="train_loss")], lr=0.05)
    files = sorted(tmp_path.iterdir())
    x = torch.randn(10, 10)
    final = fitted.predict(x, verbose=False)
    luz.load_checkpoint(fitted, files[0])
    assert not torch.equal(fitted.predict(x, verbose=False), final)
    luz.load_checkpoint(fitted, files[4])
    assert torch.equal(fitted.predict(x, verbose=False), final)
    assert len(fitted.records["metrics"]["train"]) == 5  # records untouched


def test_a_path_without_epoch_is_overwritten(tmp_path: Path) -> None:
    _fit([ModelCheckpoint(tmp_path / "sub" / "last.pt", monitor="train_loss")], epochs=3)
    assert os.listdir(tmp_path / "sub") == ["last.pt"]
    assert read_checkpoint(tmp_path / "sub" / "last.pt")["epoch"] == 3


def test_non_finite_weights_are_not_written(tmp_path: Path) -> None:
    poison = luz.callback(
        on_epoch_end=lambda ctx: ctx.model.fc.weight.fill_(float("nan")) if ctx.epoch == 2 else None,
        weight=-1,
    )
    template = str(tmp_path / "e{epoch}.pt")
    with pytest.warns(UserWarning, match="NaN or infinite weights at epoch 2"):
        _fit([poison, ModelCheckpoint(template, monitor="train_loss")], epochs=2)
    assert os.listdir(tmp_path) == ["e1.pt"]


def test_unknown_monitor_fails_at_the_first_epoch(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="train_loss"):
        _fit([ModelCheckpoint(tmp_path / "x.pt", monitor="train_los")])
    assert not (tmp_path / "x.pt").exists()


def test_a_failed_write_keeps_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_save = torch.save

    def save(obj: Any, handle: Any) -> None:
        if obj["epoch"] == 2:
            handle.write(b"partial bytes")
            raise OSError("disk full")
        real_save(obj, handle)

    monkeypatch.setattr(torch, "save", save)
    with pytest.raises(OSError, match="disk full"):
        _fit([ModelCheckpoint(tmp_path / "last.pt", monitor="train_loss")], epochs=3)
    assert os.listdir(tmp_path) == ["last.pt"]
    assert read_checkpoint(tmp_path / "last.pt")["epoch"] == 1


# -- KeepBestModel ---------------------------------------------------------------------------------


class Scalar(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor([100.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.w


def test_keep_best_model_restores_the_best_epoch() -> None:
    weights: list[torch.Tensor] = []
    track = luz.callback(on_epoch_end=lambda ctx: weights.append(ctx.model.w.detach().clone()))
    keep = KeepBestModel(monitor="train_loss", mode="max")
    x, y = torch.ones(100, 1), torch.zeros(100, 1)
    fitted = (
        luz.setup(Scalar, loss=nn.MSELoss(), optimizer=torch.optim.SGD)
        .set_opt_hparams(lr=0.01)
        .fit((x, y), epochs=5, callbacks=[track, keep], verbose=False)
    )
    assert weights[-1].item() < 90  # training moved it towards 0
    assert fitted.model.w.item() > 90  # mode="max": the worst-loss epoch 1 came back
    assert torch.equal(fitted.model.w.detach(), weights[0])
    assert not Path(keep.path).exists()  # temporary checkpoint removed


def test_keep_best_model_also_restores_the_optimizer() -> None:
    seen: dict[str, Any] = {}

    def remember(ctx: Any) -> None:
        if ctx.epoch == 2:
            seen["state"] = {k: v.clone() for k, v in ctx.optimizers["opt"].state[ctx.model.w].items()}

    def check(ctx: Any) -> None:
        seen["after"] = dict(ctx.optimizers["opt"].state[ctx.model.w])

    poison = luz.callback(
        on_epoch_begin=lambda ctx: ctx.model.w.fill_(1e3) if ctx.epoch >= 3 else None, weight=-1
    )
    keep = KeepBestModel(monitor="train_loss")
    x, y = torch.ones(100, 1), torch.zeros(100, 1)
    (
        luz.setup(Scalar, loss=nn.MSELoss(), optimizer=torch.optim.Adam)
        .set_opt_hparams(lr=0.01)
        .fit(
            (x, y),
            epochs=4,
            callbacks=[
                poison,
                luz.callback(on_epoch_end=remember),
                keep,
                luz.callback(on_fit_end=check, weight=9),
            ],
            verbose=False,
        )
    )
    assert keep.best is None  # reset for the next fit
    for key, value in seen["state"].items():
        assert torch.equal(seen["after"][key], value)


def test_keep_best_model_also_restores_callback_states() -> None:
    # inventory §5.10: model, optimizer and callback states go back to the best epoch.
    class Count(luz.Callback):
        def __init__(self) -> None:
            self.epochs = 0

        def on_epoch_end(self) -> None:
            self.epochs += 1

        def state_dict(self) -> dict[str, Any]:
            return {"epochs": self.epochs}

        def load_state_dict(self, state: dict[str, Any]) -> None:
            self.epochs = state["epochs"]

    count = Count()
    x, y = torch.ones(100, 1), torch.zeros(100, 1)
    luz.setup(Scalar, loss=nn.MSELoss(), optimizer=torch.optim.SGD).set_opt_hparams(lr=0.01).fit(
        (x, y), epochs=5, callbacks=[count, KeepBestModel(monitor="train_loss", mode="max")], verbose=False
    )
    assert count.epochs == 1  # the best (worst-loss) epoch was the first


def test_keep_best_model_leaves_callbacks_without_load_state_dict_alone() -> None:
    class Info(luz.Callback):  # SPEC §3: load_state_dict is optional
        def state_dict(self) -> dict[str, Any]:
            return {"seen": 1}

    x, y = torch.ones(100, 1), torch.zeros(100, 1)
    fitted = (
        luz.setup(Scalar, loss=nn.MSELoss(), optimizer=torch.optim.SGD)
        .set_opt_hparams(lr=0.01)
        .fit((x, y), epochs=3, callbacks=[Info(), KeepBestModel(monitor="train_loss")], verbose=False)
    )
    assert len(fitted.records["metrics"]["train"]) == 3


def test_keep_best_model_with_auto_resume_ends_like_an_uninterrupted_run(tmp_path: Path) -> None:
    from luz.callbacks import AutoResume, LRScheduler

    def run(fail_at: int | None) -> LRScheduler:
        scheduler = LRScheduler(torch.optim.lr_scheduler.StepLR, step_size=1, gamma=0.5)

        def fail(ctx: Any) -> None:
            if ctx.epoch == fail_at:
                raise RuntimeError("simulated failure")

        x, y = torch.ones(100, 1), torch.zeros(100, 1)
        callbacks = [
            scheduler,
            KeepBestModel(monitor="train_loss", mode="max"),
            luz.callback(on_train_batch_begin=fail),
            AutoResume(tmp_path / "state.pt"),
        ]
        luz.setup(Scalar, loss=nn.MSELoss(), optimizer=torch.optim.SGD).set_opt_hparams(lr=0.01).fit(
            (x, y), epochs=5, callbacks=callbacks, verbose=False
        )
        return scheduler

    reference = run(None).state_dict()
    with pytest.raises(RuntimeError):
        run(3)
    resumed = run(None).state_dict()
    assert resumed == reference
    assert reference["last_epoch"] == 1  # back at the best (first) epoch


def test_a_reused_save_best_only_checkpoint_starts_over_each_fit(tmp_path: Path) -> None:
    x, y = regression_data(100)
    cb = ModelCheckpoint(str(tmp_path / "a") + "/", monitor="train_loss", save_best_only=True)
    module = luz.setup(Linear, loss=nn.MSELoss(), optimizer=torch.optim.SGD)
    first = module.set_opt_hparams(lr=0.05).fit((x, y), epochs=8, callbacks=[cb], verbose=False)
    cb.path = str(tmp_path / "b" / "epoch-{epoch:02d}.pt")
    # A slower second fit never gets below the first fit's best loss, yet it saves every
    # improvement of its own.
    torch.manual_seed(3)
    fitted = module.set_opt_hparams(lr=0.001).fit((x, y), epochs=4, callbacks=[cb], verbose=False)
    losses = [e["loss"] for e in fitted.records["metrics"]["train"]]
    first_fit_best = min(e["loss"] for e in first.records["metrics"]["train"])
    assert min(losses) > first_fit_best  # without the reset, nothing after epoch 1 would be saved
    saved, best = [1], losses[0]
    for epoch, loss in enumerate(losses[1:], start=2):
        if loss < best:
            saved.append(epoch)
            best = loss
    assert sorted(os.listdir(tmp_path / "b")) == [f"epoch-{e:02d}.pt" for e in saved]
    assert cb.best == pytest.approx(best)


def test_checkpoint_path_is_checked_at_construction(tmp_path: Path) -> None:
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "a_dir").mkdir()
    with pytest.raises(
        ValueError, match=r"unknown field \{epch\}\. The valid fields are \{epoch\}, \{monitor\}"
    ):
        ModelCheckpoint(str(tmp_path / "m-{epch}.pt"))
    with pytest.raises(ValueError, match=r"is an existing directory.*end the path with '/'"):
        ModelCheckpoint(tmp_path / "a_dir")
    with pytest.raises(ValueError, match="which is a file, not a directory"):
        ModelCheckpoint(tmp_path / "a_file" / "deeper" / "m.pt")
    with pytest.raises(TypeError, match="`path` must be a file path or template"):
        ModelCheckpoint(None)  # type: ignore[arg-type]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_dir", "a_file"]  # nothing written
    # a directory with '/' and a template with valid fields and formats are fine
    ModelCheckpoint(str(tmp_path / "a_dir") + "/")
    ModelCheckpoint(str(tmp_path / "new" / "m-{epoch:03d}-{monitor_name}-{monitor:.2e}.pt"))


def test_checkpoint_in_a_read_only_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    # Root may write anywhere, so the check reads os.access (a read-only mount refuses root too).
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == locked else real_access(p, mode))
    with pytest.raises(PermissionError, match=r"the directory .*locked' is not writable"):
        ModelCheckpoint(locked / "sub" / "m.pt")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write to a read-only directory")
def test_checkpoint_in_a_chmod_read_only_directory(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        with pytest.raises(PermissionError, match="not writable"):
            ModelCheckpoint(locked / "m.pt")
    finally:
        locked.chmod(0o755)


def test_a_template_may_use_any_monitor_name(tmp_path: Path) -> None:
    template = str(tmp_path / "m-{epoch:02d}-{valid_loss:.3f}-{Train_Loss:.4f}-{monitor_name}.pt")
    x, y = regression_data()
    cb = ModelCheckpoint(template, monitor="train_loss")
    fitted = _module().fit((x, y), epochs=3, valid_data=(x[:40], y[:40]), callbacks=[cb], verbose=False)
    metrics = fitted.get_metrics()
    train = metrics.query("set == 'train' and metric == 'loss'")["value"].tolist()
    valid = metrics.query("set == 'valid' and metric == 'loss'")["value"].tolist()
    expected = [
        f"m-{e:02d}-{v:.3f}-{t:.4f}-train_loss.pt"
        for e, (t, v) in enumerate(zip(train, valid, strict=True), 1)
    ]
    assert sorted(os.listdir(tmp_path)) == expected
    assert read_checkpoint(tmp_path / expected[-1])["epoch"] == 3


def test_a_template_with_a_dict_metric_key(tmp_path: Path) -> None:
    # Flattened names work as fields too: one optimizer's loss, one class's AUROC.
    x, y = classification_data()
    module = (
        luz.setup(
            Linear,
            loss=nn.CrossEntropyLoss(),
            optimizer=torch.optim.SGD,
            metrics=[luz.metrics.MulticlassAUROC(average="none", from_logits=True)],
        )
        .set_hparams(out_features=3)
        .set_opt_hparams(lr=0.1)
    )
    cb = ModelCheckpoint(str(tmp_path / "e{epoch}-{train_auc_2:.5f}.pt"), monitor="train_loss")
    fitted = module.fit((x, y), epochs=2, callbacks=[cb], verbose=False)
    aucs = fitted.get_metrics().query("set == 'train' and metric == 'auc_2'")["value"].tolist()
    assert sorted(os.listdir(tmp_path)) == [f"e{e}-{a:.5f}.pt" for e, a in enumerate(aucs, 1)]


def test_a_template_field_that_is_no_metric_fails_at_construction(tmp_path: Path) -> None:
    for bad in ("{loss}", "{val_loss}", "{test_acc}", "{}", "{0}", "{valid_}"):
        with pytest.raises(ValueError, match=r"unknown field .*monitor names such as \{valid_loss:\.3f\}"):
            ModelCheckpoint(str(tmp_path / f"m-{bad}.pt"))
    with pytest.raises(ValueError, match=r"formatting it failed"):
        ModelCheckpoint(str(tmp_path / "m-{valid_loss:d}.pt"))  # a float with an int format
    assert list(tmp_path.iterdir()) == []


def test_an_unrecorded_monitor_name_in_the_template_fails_at_the_first_epoch(tmp_path: Path) -> None:
    cb = ModelCheckpoint(str(tmp_path / "m-{valid_acc:.3f}.pt"), monitor="train_loss")
    with pytest.raises(luz.CallbackError) as info:
        _fit([cb], epochs=3)
    message = str(info.value.__cause__)
    assert "uses {valid_acc}, but epoch 1 recorded no metric of that name" in message
    assert "Available monitor names: 'train_loss'." in message
    assert list(tmp_path.iterdir()) == []
