"""The loops: breakpoint order against the documented tree, stop signals, exactness, no host syncs."""

from __future__ import annotations

import sys
from typing import Any

import pytest
import torch
from torch import nn

import luz
from luz.events import BREAKPOINT_TREE
from tests.conftest import Linear, make_recorder, regression_data, two_optimizer_model

# -- an expander for the documented tree -----------------------------------------------------


def _parse(tree: str) -> dict[str, list[tuple[str, list[Any]]]]:
    """Sections of the tree as nested ``(line, children)`` nodes, by indentation."""
    root: list[tuple[str, list[Any]]] = []
    stack: list[tuple[int, list[tuple[str, list[Any]]]]] = [(-1, root)]
    for line in tree.splitlines():
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        while stack[-1][0] >= indent:
            stack.pop()
        node: tuple[str, list[Any]] = (line.strip().rstrip(":"), [])
        stack[-1][1].append(node)
        stack.append((indent, node[1]))
    return {name: children for name, children in root}


def _expand(nodes: list[tuple[str, list[Any]]], counts: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for text, children in nodes:
        if text.startswith("for each "):
            for _ in range(counts[text.removeprefix("for each ")]):
                out += _expand(children, counts)
        elif text.startswith("if "):
            if counts[text.removeprefix("if ")]:
                out += _expand(children, counts)
        elif text.startswith("("):  # a control point that is not a breakpoint
            assert not children, text
        else:
            assert text.startswith("on_") and not children, text
            out.append(text)
    return out


def expected(section: str, **counts: Any) -> list[str]:
    """The breakpoint sequence the documented tree prescribes for ``section`` and ``counts``."""
    names = {k.replace("_", " "): v for k, v in counts.items()}
    return _expand(_parse(BREAKPOINT_TREE)[section], names)


def test_expander_reads_every_breakpoint() -> None:
    fit = expected(
        "fit",
        epoch=1,
        training_batch=1,
        optimizer=1,
        validation_batch=1,
        validation_data=True,
        StopTraining_was_raised=True,
        KeyboardInterrupt_was_raised=True,
    )
    seen = set(fit) | set(expected("predict", batch=1)) | set(expected("evaluate", batch=1, optimizer=1))
    assert seen == set(luz.BREAKPOINTS)
    assert len(luz.BREAKPOINTS) == 25


# -- models -------------------------------------------------------------------------------------


TwoOptNet = two_optimizer_model(("first", "second"))


def fit_counts(epochs: int, train_batches: int, valid_batches: int, optimizers: int) -> dict[str, Any]:
    return {
        "epoch": epochs,
        "training_batch": train_batches,
        "optimizer": optimizers,
        "validation_batch": valid_batches,
        "validation_data": valid_batches > 0,
        "StopTraining_was_raised": False,
        "KeyboardInterrupt_was_raised": False,
    }


def test_breakpoint_sequence_matches_tree() -> None:
    x, y = regression_data(60)
    vx, vy = regression_data(40)
    rec = make_recorder()
    module = luz.setup(TwoOptNet, loss=nn.MSELoss())
    fitted = module.fit(
        (x, y),
        epochs=2,
        valid_data=(vx, vy),
        callbacks=[rec],
        verbose=False,
        dataloader_options={"batch_size": 20},
    )
    assert rec.calls == expected("fit", **fit_counts(2, 3, 2, 2))

    rec_eval = make_recorder()
    fitted.evaluate((vx, vy), callbacks=[rec_eval], verbose=False, dataloader_options={"batch_size": 20})
    assert rec_eval.calls == expected("evaluate", batch=2, optimizer=2)

    rec_pred = make_recorder()
    fitted.predict(vx, callbacks=[rec_pred], verbose=False, dataloader_options={"batch_size": 15})
    assert rec_pred.calls == expected("predict", batch=3)


def test_breakpoint_sequence_without_validation_single_optimizer() -> None:
    x, y = regression_data(64)
    rec = make_recorder()
    luz.setup(Linear, loss=nn.MSELoss(), optimizer=torch.optim.SGD).set_opt_hparams(lr=0.01).fit(
        (x, y), epochs=3, callbacks=rec, verbose=False
    )
    assert rec.calls == expected("fit", **fit_counts(3, 2, 0, 1))


def _raiser(at: str, epoch: int, exc: BaseException, iteration: int | None = None) -> luz.Callback:
    def hook(ctx: luz.Context) -> None:
        if ctx.epoch == epoch and (iteration is None or ctx.iter == iteration):
            raise exc

    return luz.callback(**{at: hook})


def _sgd_module() -> luz.LuzModule:
    return luz.setup(Linear, loss=nn.MSELoss(), optimizer=torch.optim.SGD).set_opt_hparams(lr=0.01)


def test_stop_training_fires_early_stopping_then_fit_end() -> None:
    x, y = regression_data(64)
    rec = make_recorder()
    stop = _raiser("on_train_batch_end", 2, luz.StopTraining(), iteration=1)
    fitted = _sgd_module().fit((x, y), epochs=5, valid_data=(x, y), callbacks=[rec, stop], verbose=False)
    one_epoch = expected("fit", **fit_counts(1, 2, 2, 1))[:-1]  # without on_fit_end
    partial = [
        "on_epoch_begin",
        "on_train_begin",
        "on_train_batch_begin",
        "on_train_batch_after_pred",
        "on_train_batch_after_loss",
        "on_train_batch_before_backward",
        "on_train_batch_before_step",
        "on_train_batch_after_step",
        "on_train_batch_end",
    ]
    assert rec.calls == [*one_epoch, *partial, "on_early_stopping", "on_fit_end"]
    assert len(fitted.records["metrics"]["train"]) == 1
    assert len(fitted.records["metrics"]["valid"]) == 1


def test_stop_training_at_epoch_end_keeps_the_epoch() -> None:
    x, y = regression_data(64)
    stop = _raiser("on_epoch_end", 2, luz.StopTraining())
    fitted = _sgd_module().fit((x, y), epochs=5, valid_data=(x, y), callbacks=[stop], verbose=False)
    assert len(fitted.records["metrics"]["train"]) == 2
    assert len(fitted.records["metrics"]["valid"]) == 2


def test_skip_epoch_skips_rest_of_epoch_and_leaves_no_records() -> None:
    x, y = regression_data(64)
    rec = make_recorder(weight=1)  # runs after the skipper (weight 0) at each breakpoint
    skip = _raiser("on_train_end", 2, luz.SkipEpoch())
    fitted = _sgd_module().fit((x, y), epochs=3, valid_data=(x, y), callbacks=[skip, rec], verbose=False)
    calls = rec.calls
    # epoch 2 stops inside on_train_end: rec (weight 1) never sees it, nor anything after it.
    epochs = [i for i, c in enumerate(calls) if c == "on_epoch_begin"]
    assert len(epochs) == 3
    epoch2 = calls[epochs[1] : epochs[2]]
    assert "on_train_end" not in epoch2
    assert "on_valid_begin" not in epoch2
    assert "on_epoch_end" not in epoch2
    assert calls[-1] == "on_fit_end"
    assert calls.count("on_epoch_end") == 2
    frame = fitted.get_metrics()
    assert sorted(set(frame["epoch"])) == [1, 3]
    assert not fitted.records["metrics"]["train"][1]
    assert fitted.records["metrics"]["train"][2]["loss"] > 0
    assert len(fitted.records["metrics"]["valid"]) == 3


def test_keyboard_interrupt_returns_model_trained_so_far() -> None:
    # R row 8: interrupt at the start of epoch 3 -> 2 train epochs recorded, on_interrupt called.
    x, y = regression_data(64)
    rec = make_recorder()
    interrupt = _raiser("on_epoch_begin", 3, KeyboardInterrupt())
    fitted = _sgd_module().fit((x, y), epochs=5, callbacks=[interrupt, rec], verbose=False)
    assert isinstance(fitted, luz.Fitted)
    assert len(fitted.records["metrics"]["train"]) == 2
    assert rec.calls[-2:] == ["on_interrupt", "on_fit_end"]
    assert rec.calls.count("on_epoch_begin") == 2
    assert "ctx" not in fitted.model.__dict__


def test_interrupt_prints_note_when_verbose(capsys: pytest.CaptureFixture[str]) -> None:
    x, y = regression_data(64)
    interrupt = _raiser("on_epoch_begin", 2, KeyboardInterrupt())
    _sgd_module().fit((x, y), epochs=3, callbacks=[interrupt], verbose=True)
    assert "interrupted at epoch 2" in capsys.readouterr().err


def test_ordinary_error_propagates_without_fit_end() -> None:
    x, y = regression_data(64)
    rec = make_recorder()
    boom = _raiser("on_epoch_end", 1, ValueError("boom"))
    cb_instances = [rec, boom]
    with pytest.raises(ValueError, match="boom"):
        _sgd_module().fit((x, y), epochs=3, callbacks=cb_instances, verbose=False)
    assert "on_fit_end" not in rec.calls
    assert "on_early_stopping" not in rec.calls
    with pytest.raises(RuntimeError, match="not attached"):
        _ = rec.ctx  # cleaned up all the same


def test_error_in_model_propagates_unwrapped() -> None:
    class Broken(Linear):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise ZeroDivisionError("inside forward")

    x, y = regression_data(64)
    with pytest.raises(ZeroDivisionError, match="inside forward") as info:
        luz.setup(Broken, loss=nn.MSELoss(), optimizer=torch.optim.SGD).set_opt_hparams(lr=0.1).fit(
            (x, y), epochs=1, verbose=False
        )
    assert not isinstance(info.value, luz.CallbackError)


def test_epochs_zero_runs_nothing() -> None:
    x, y = regression_data(64)
    rec = make_recorder()
    fitted = _sgd_module().fit((x, y), epochs=0, callbacks=rec, verbose=False)
    assert rec.calls == ["on_fit_begin", "on_fit_end"]
    assert fitted.records["metrics"] == {"train": [], "valid": []}
    assert fitted.get_metrics().empty


def test_epochs_min_max_pair() -> None:
    x, y = regression_data(64)
    seen: list[tuple[int, int]] = []
    cb = luz.callback(on_fit_begin=lambda ctx: seen.append((ctx.min_epochs, ctx.max_epochs)))
    fitted = _sgd_module().fit((x, y), epochs=(1, 3), callbacks=[cb], verbose=False)
    assert seen == [(1, 3)]
    assert len(fitted.records["metrics"]["train"]) == 3


def test_empty_training_loader_is_an_error() -> None:
    x, y = regression_data(10)
    with pytest.raises(ValueError, match="no batches"):
        _sgd_module().fit((x, y), epochs=1, verbose=False)


def test_empty_validation_loader_warns_and_records_nothing() -> None:
    x, y = regression_data(64)
    with pytest.warns(UserWarning, match="validation data produced no batches"):
        fitted = _sgd_module().fit(
            (x, y), epochs=2, valid_data=(torch.randn(0, 10), torch.randn(0, 1)), verbose=False
        )
    assert fitted.records["metrics"]["valid"] == []
    assert len(fitted.records["metrics"]["train"]) == 2


# -- exactness ------------------------------------------------------------------------------------


@pytest.mark.parametrize("optimizer", [torch.optim.SGD, torch.optim.Adam])
def test_fit_equals_hand_written_loop(optimizer: type[torch.optim.Optimizer]) -> None:
    x, y = regression_data(100)
    options = {"shuffle": False, "drop_last": False, "batch_size": 32}

    torch.manual_seed(42)
    fitted = (
        luz.setup(Linear, loss=nn.MSELoss(), optimizer=optimizer)
        .set_opt_hparams(lr=0.05)
        .fit((x, y), epochs=3, verbose=False, dataloader_options=options)
    )

    torch.manual_seed(42)
    model = Linear()
    opt = optimizer(model.parameters(), lr=0.05)
    for _ in range(3):
        for start in range(0, 100, 32):
            xb, yb = x[start : start + 32], y[start : start + 32]
            loss = nn.functional.mse_loss(model(xb), yb)
            loss.backward()
            opt.step()
            opt.zero_grad()

    got = dict(fitted.model.named_parameters())
    for name, param in model.named_parameters():
        assert torch.equal(got[name], param), name
    assert not torch.equal(got["fc.weight"], Linear().fc.weight)


# -- the last prediction (SPEC §2) -------------------------------------------------------------------


def test_the_last_training_prediction_is_kept_detached() -> None:
    x, y = regression_data(64)
    seen: dict[str, Any] = {"after_pred": []}

    def at_train_end(ctx: luz.Context) -> None:
        seen["at_end"] = ctx.pred
        seen["loss_grad"] = ctx.loss_grad

    spy = luz.callback(
        on_train_batch_after_pred=lambda ctx: seen["after_pred"].append(ctx.pred),
        on_train_batch_begin=lambda ctx: (
            seen.setdefault("before_second", ctx.pred) if ctx.iter == 2 else None
        ),
        on_train_end=at_train_end,
    )
    luz.setup(Linear, loss=nn.MSELoss(), optimizer=torch.optim.SGD).set_opt_hparams(lr=0.05).fit(
        (x, y), epochs=1, callbacks=[spy], verbose=False, dataloader_options={"batch_size": 16}
    )
    last = seen["after_pred"][-1]
    assert last.grad_fn is not None  # during the batch the prediction has its graph
    kept = seen["at_end"]
    assert kept.grad_fn is None and not kept.requires_grad  # the graph is freed
    assert torch.equal(kept, last.detach()) and kept.shape == (16, 1)
    assert seen["before_second"].grad_fn is None  # released after every batch, not only the last
    assert seen["loss_grad"] is None


def test_a_structured_prediction_is_kept_detached() -> None:
    class TwoHeads(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(10, 1)

        def forward(self, x: torch.Tensor) -> dict[str, Any]:
            out = self.fc(x)
            return {"mean": out, "both": (out, out * 2), "n": 3}

    def loss(pred: dict[str, Any], target: torch.Tensor) -> torch.Tensor:
        return nn.functional.mse_loss(pred["mean"], target)

    x, y = regression_data(32)
    seen: list[Any] = []
    luz.setup(TwoHeads, loss=loss, optimizer=torch.optim.SGD).set_opt_hparams(lr=0.05).fit(
        (x, y),
        epochs=1,
        verbose=False,
        callbacks=[luz.callback(on_train_end=lambda ctx: seen.append(ctx.pred))],
    )
    (pred,) = seen
    assert pred["n"] == 3 and pred["mean"].shape == (32, 1)
    assert not any(t.requires_grad for t in (pred["mean"], *pred["both"]))
    assert torch.equal(pred["both"][1], pred["mean"] * 2)


# -- no host sync during batches -------------------------------------------------------------------

_SYNCS = ("item", "tolist", "cpu", "numpy", "__float__", "__int__", "__bool__")


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_no_host_sync_during_batches(monkeypatch: pytest.MonkeyPatch, task: str) -> None:
    counts: dict[str, int] = {}
    state = {"on": False}

    for name in _SYNCS:
        original = getattr(torch.Tensor, name)

        def wrapper(self: torch.Tensor, *args: Any, _name: str = name, _orig: Any = original) -> Any:
            # torch's RandomSampler reads its CPU index permutation with .tolist(): that is the
            # sampler's business (never a device sync), so calls from torch.utils.data are excluded.
            caller = sys._getframe(1).f_code.co_filename.replace("\\", "/")
            if state["on"] and "torch/utils/data/" not in caller:
                counts[_name] = counts.get(_name, 0) + 1
            return _orig(self, *args)

        monkeypatch.setattr(torch.Tensor, name, wrapper)

    def switch(on: bool) -> Any:
        def hook(ctx: luz.Context) -> None:
            if ctx.iter == 1 or not on:
                state["on"] = on

        return hook

    on_first = luz.callback(
        on_train_batch_begin=switch(True), on_valid_batch_begin=switch(True), weight=-float("inf")
    )
    off_at_end = luz.callback(on_train_end=switch(False), on_valid_end=switch(False), weight=-float("inf"))
    sanity = {"computed": 0}

    def check_compute(ctx: luz.Context) -> None:
        sanity["computed"] += 1
        assert not state["on"]

    if task == "classification":
        x, y = torch.randn(96, 10), torch.randint(0, 3, (96,))
        module = luz.setup(
            Linear, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.SGD, metrics=[luz.metrics.Accuracy()]
        ).set_hparams(out_features=3)
    else:
        x, y = regression_data(96)
        metrics = [luz.metrics.MAE(), luz.metrics.MSE(), luz.metrics.RMSE()]
        module = luz.setup(Linear, loss=nn.MSELoss(), optimizer=torch.optim.SGD, metrics=metrics)
    fitted = module.set_opt_hparams(lr=0.1).fit(
        (x, y),
        epochs=2,
        valid_data=(x, y),
        callbacks=[on_first, off_at_end, luz.callback(on_epoch_end=check_compute)],
        verbose=False,
    )
    assert counts == {}
    assert sanity["computed"] == 2
    assert len(fitted.records["metrics"]["valid"]) == 2
    # The wrappers do count when switched on (the test can fail).
    state["on"] = True
    torch.ones(()).item()
    assert counts == {"item": 1}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("optimizer", [torch.optim.SGD, torch.optim.Adam])
def test_no_cuda_sync_during_batches(optimizer: Any) -> None:
    # Issue 7: an epoch with validation, verbose=False, the default callbacks, Accuracy and the
    # loss average, under CUDA's sync debug mode between the phases' begin and end hooks.
    def mode(value: str) -> Any:
        return lambda ctx: torch.cuda.set_sync_debug_mode(value)

    on = luz.callback(on_train_begin=mode("error"), on_valid_begin=mode("error"), weight=float("inf"))
    off = luz.callback(on_train_end=mode("default"), on_valid_end=mode("default"), weight=-float("inf"))
    x, y = torch.randn(512, 10), torch.randint(0, 3, (512,))
    module = luz.setup(
        Linear, loss=nn.CrossEntropyLoss(), optimizer=optimizer, metrics=[luz.metrics.Accuracy()]
    )
    try:
        fitted = (
            module.set_hparams(out_features=3)
            .set_opt_hparams(lr=0.01)
            .fit((x, y), epochs=2, valid_data=0.25, callbacks=[on, off], verbose=False)
        )
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert fitted.model.fc.weight.device.type == "cuda"
    assert len(fitted.records["metrics"]["valid"]) == 2


@pytest.mark.parametrize("where", ["on_fit_begin", "on_train_batch_after_loss", "on_valid_end"])
def test_stop_training_anywhere_in_fit(where: str) -> None:
    x, y = regression_data(64)
    rec = make_recorder(weight=1)
    stop = luz.callback(**{where: lambda ctx: (_ for _ in ()).throw(luz.StopTraining())})
    fitted = _sgd_module().fit((x, y), epochs=3, valid_data=(x, y), callbacks=[stop, rec], verbose=False)
    assert rec.calls[-2:] == ["on_early_stopping", "on_fit_end"]
    assert fitted.records["metrics"] == {"train": [], "valid": []}
    assert len(fitted.records["profile"]["fit"]) == 1


def test_keyboard_interrupt_in_fit_begin() -> None:
    x, y = regression_data(64)
    rec = make_recorder(weight=1)
    interrupt = luz.callback(on_fit_begin=lambda ctx: (_ for _ in ()).throw(KeyboardInterrupt()))
    fitted = _sgd_module().fit((x, y), epochs=3, callbacks=[interrupt, rec], verbose=False)
    assert rec.calls == ["on_interrupt", "on_fit_end"]
    assert fitted.records["metrics"]["train"] == []


def test_a_skipped_epoch_leaves_no_timings_either() -> None:
    x, y = regression_data(64)
    skip = _raiser("on_valid_begin", 2, luz.SkipEpoch())
    fitted = _sgd_module().fit((x, y), epochs=3, valid_data=(x, y), callbacks=[skip], verbose=False)
    profile = fitted.records["profile"]
    assert [len(profile[k]) for k in ("fit", "epoch", "train", "valid")] == [1, 2, 2, 2]


@pytest.mark.parametrize("where", ["on_early_stopping", "on_fit_end"])
def test_stop_training_during_the_wrap_up_is_ignored(where: str) -> None:
    x, y = regression_data(64)
    stop_at_3 = _raiser("on_epoch_end", 3, luz.StopTraining())
    late = luz.callback(**{where: lambda ctx: (_ for _ in ()).throw(luz.StopTraining())})
    fitted = _sgd_module().fit((x, y), epochs=5, callbacks=[stop_at_3, late], verbose=False)
    assert len(fitted.records["metrics"]["train"]) == 3


def test_stop_training_ends_evaluate_and_predict_early() -> None:
    x, y = regression_data(64)
    fitted = _sgd_module().fit((x, y), epochs=1, verbose=False)
    stop = luz.callback(
        on_valid_batch_end=lambda ctx: (_ for _ in ()).throw(luz.StopTraining()) if ctx.iter == 1 else None,
        on_predict_batch_end=lambda ctx: (_ for _ in ()).throw(luz.StopTraining()),
    )
    ev = fitted.evaluate((x, y), callbacks=[stop], dataloader_options={"batch_size": 16})
    assert ev.get_metrics()["metric"].tolist() == ["loss"]
    preds = fitted.predict(x, callbacks=[stop], dataloader_options={"batch_size": 16})
    assert preds.shape == (16, 1)


def test_an_epoch_whose_end_hook_stops_training_still_commits() -> None:
    # The epoch is complete: ctx.after_epoch_end actions run for it, then the fit stops.
    committed: list[int] = []

    class Stop(luz.Callback):
        def on_fit_begin(self) -> None:
            self.context.after_epoch_end(lambda: committed.append(self.context.epoch))

        def on_epoch_end(self) -> None:
            if self.context.epoch == 2:
                raise luz.StopTraining("enough")

    x, y = torch.randn(32, 3), torch.randn(32, 1)
    fitted = (
        luz.setup(nn.Linear, loss=nn.MSELoss(), optimizer=torch.optim.SGD)
        .set_hparams(in_features=3, out_features=1)
        .set_opt_hparams(lr=0.1)
        .fit((x, y), epochs=5, verbose=False, callbacks=[Stop()])
    )
    assert committed == [1, 2]
    assert len(fitted.records["metrics"]["train"]) == 2
    assert fitted.stop_reason is not None and "enough" in fitted.stop_reason
