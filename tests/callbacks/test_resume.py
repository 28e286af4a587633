"""AutoResume and ResumeFromCheckpoint: R rows 20-25, and exact resuming after an exception or a
SIGKILL (bitwise equal weights, optimizer and scheduler states, records and random draws)."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

import luz
from luz.callbacks import AutoResume, EarlyStopping, LRScheduler, ModelCheckpoint, ResumeFromCheckpoint
from luz.serialization import read_checkpoint
from tests.conftest import Linear, regression_data


class Net(nn.Module):
    """Dropout makes the forward pass draw from torch's RNG."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class TwoOpt(nn.Linear):
    def __init__(self) -> None:
        super().__init__(10, 1)

    def set_optimizers(self, lr: float = 1e-3) -> dict[str, torch.optim.Optimizer]:
        return {
            "weight": torch.optim.Adam([self.weight], lr=lr, betas=(0.5, 0.999)),
            "bias": torch.optim.Adam([self.bias], lr=lr),
        }


class FailOnce(luz.Callback):
    """Raises once, at ``breakpoint`` of ``epoch`` (at batch ``iteration`` for batch hooks)."""

    def __init__(self, epoch: int, breakpoint: str = "on_epoch_end", iteration: int | None = None) -> None:
        self.epoch, self.iteration, self.failed = epoch, iteration, False
        self.metrics: Any = None
        setattr(self, breakpoint, self._maybe_fail)

    def _maybe_fail(self) -> None:
        ctx = self.context
        at_iteration = self.iteration is None or ctx.iter == self.iteration
        if ctx.epoch == self.epoch and at_iteration and not self.failed:
            self.failed = True
            self.metrics = ctx.get_metrics_df()
            raise RuntimeError(f"simulated failure at epoch {ctx.epoch}")


class Draws(luz.Callback):
    """Draws from Python's and NumPy's RNGs at every training batch and records the values."""

    def __init__(self) -> None:
        self.trace: list[tuple[int, float, float]] = []

    def on_train_batch_end(self) -> None:
        self.trace.append((self.context.epoch, random.random(), float(np.random.rand())))


class Snapshot(luz.Callback):
    """Keeps copies of the model and optimizer states at each epoch begin and at fit end."""

    weight = -10.0

    def __init__(self) -> None:
        self.begin: dict[int, Any] = {}
        self.final: Any = None

    def _state(self) -> Any:
        ctx = self.context
        opts = {name: _clone(opt.state_dict()) for name, opt in ctx.optimizers.items()}
        return _clone(ctx.model.state_dict()), opts

    def on_epoch_begin(self) -> None:
        self.begin[self.context.epoch] = self._state()

    def on_fit_end(self) -> None:
        self.final = self._state()


def _clone(x: Any) -> Any:
    if isinstance(x, torch.Tensor):
        return x.detach().clone()
    if isinstance(x, dict):
        return {k: _clone(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return type(x)(_clone(v) for v in x)
    return x


def assert_identical(a: Any, b: Any, where: str = "state") -> None:
    """Bitwise equality of nested tensors, numbers and containers."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b), where
        for k in a:
            assert_identical(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_identical(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def _seed() -> None:
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


def _run(
    path: Path, *extra: luz.Callback, data: str = "luz", epochs: int = 6
) -> tuple[luz.Fitted, list[Any]]:
    """A run with shuffling, dropout, Adam, a StepLR scheduler, Python/NumPy draws, a
    validation split and AutoResume."""
    _seed()
    x, y = regression_data()
    callbacks: list[Any] = [
        Snapshot(),
        LRScheduler(torch.optim.lr_scheduler.StepLR, step_size=2, gamma=0.5),
        Draws(),
        AutoResume(path),
        *extra,
    ]
    module = luz.setup(Net, loss=nn.MSELoss(), optimizer=torch.optim.Adam).set_opt_hparams(lr=0.01)
    if data == "luz":
        fitted = module.fit(
            (x, y),
            epochs=epochs,
            valid_data=0.2,
            callbacks=callbacks,
            verbose=False,
            dataloader_options={"batch_size": 16},
        )
    else:  # the user's own loader, with its own generator for shuffling
        generator = torch.Generator().manual_seed(123)
        dataset = luz.data.TensorBatchDataset(x, y)
        loader = DataLoader(
            dataset, batch_size=16, shuffle=True, generator=generator, collate_fn=luz.data.collate_batch
        )
        fitted = module.fit(
            loader, epochs=epochs, valid_data=(x[:20], y[:20]), callbacks=callbacks, verbose=False
        )
    return fitted, callbacks


def _assert_same_run(a: tuple[luz.Fitted, list[Any]], b: tuple[luz.Fitted, list[Any]]) -> None:
    (fa, ca), (fb, cb) = a, b
    assert_identical(ca[0].final, cb[0].final, "model/optimizers")
    assert_identical(ca[1].state_dict(), cb[1].state_dict(), "scheduler")
    assert fa.get_metrics().equals(fb.get_metrics())
    assert_identical(fa.records["metrics"], fb.records["metrics"], "records")
    assert ca[2].trace[-5:] == cb[2].trace[-5:]  # the Python/NumPy streams continue identically


@pytest.mark.parametrize("data", ["luz", "generator"])
@pytest.mark.parametrize("where", ["on_train_batch_begin", "on_epoch_end", "on_valid_batch_end"])
def test_resume_after_an_exception_is_bitwise_identical(tmp_path: Path, data: str, where: str) -> None:
    reference = _run(tmp_path / "reference.pt", data=data)
    assert not (tmp_path / "reference.pt").exists()  # removed after a normal end

    fail = FailOnce(
        epoch=3, breakpoint=where, iteration={"on_train_batch_begin": 2, "on_valid_batch_end": 1}.get(where)
    )
    with pytest.raises(RuntimeError, match="simulated failure at epoch 3"):
        _run(tmp_path / "state.pt", fail, data=data)
    assert read_checkpoint(tmp_path / "state.pt")["epoch"] == 2  # kept after the error
    resumed = _run(tmp_path / "state.pt", fail, data=data)
    _assert_same_run(reference, resumed)
    assert not (tmp_path / "state.pt").exists()


def test_resume_without_restoring_rng_would_differ(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The exactness test above can fail: without the RNG streams, the resumed run differs.
    reference = _run(tmp_path / "reference.pt")
    fail = FailOnce(epoch=3, breakpoint="on_train_batch_begin", iteration=2)
    with pytest.raises(RuntimeError):
        _run(tmp_path / "state.pt", fail)
    monkeypatch.setattr("luz._persist.restore.set_rng_state", lambda *args, **kwargs: None)
    _, callbacks = resumed = _run(tmp_path / "state.pt", fail)
    assert not reference[0].get_metrics().equals(resumed[0].get_metrics())
    assert reference[1][2].trace[-5:] != callbacks[2].trace[-5:]


# -- R rows 20-25 ----------------------------------------------------------------------------------


def _linear_fit(callbacks: list[Any], epochs: int = 10, module: Any = Linear, **kw: Any) -> luz.Fitted:
    x, y = regression_data()
    setup = luz.setup(module, loss=nn.MSELoss(), optimizer=None if module is TwoOpt else torch.optim.SGD)
    return setup.set_opt_hparams(lr=0.01).fit((x, y), epochs=epochs, callbacks=callbacks, verbose=False, **kw)


def test_resume_a_simple_model(tmp_path: Path) -> None:
    auto = AutoResume(tmp_path / "state.pt")
    fail, first = FailOnce(epoch=5), Snapshot()
    _seed()
    with pytest.raises(RuntimeError, match="simulated failure"):
        _linear_fit([first, auto, fail])
    _seed()
    second = Snapshot()
    resumed = _linear_fit([second, auto, fail])
    metrics = resumed.get_metrics()
    assert len(metrics) == 10
    # the crashed run's 5 epochs equal the resumed run's (epoch 5 was not saved: it failed)
    assert metrics.iloc[:5].reset_index(drop=True).equals(fail.metrics.reset_index(drop=True))
    assert_identical(first.begin[5], second.begin[5])  # epoch 5 started from the same state
    assert not (tmp_path / "state.pt").exists()
    # a later run starts fresh instead of resuming
    fresh = _linear_fit([auto], epochs=2)
    assert len(fresh.get_metrics()) == 2


def test_resume_a_model_with_two_optimizers(tmp_path: Path) -> None:
    auto, fail, first = AutoResume(tmp_path / "state.pt"), FailOnce(epoch=5), Snapshot()
    _seed()
    with pytest.raises(RuntimeError):
        _linear_fit([first, auto, fail], module=TwoOpt)
    _seed()
    second = Snapshot()
    _linear_fit([second, auto, fail], module=TwoOpt)
    _, optimizers = second.begin[5]
    assert list(optimizers) == ["weight", "bias"]
    assert optimizers["weight"]["param_groups"][0]["betas"] == (0.5, 0.999)
    assert_identical(first.begin[5], second.begin[5])
    _seed()
    reference = Snapshot()
    _linear_fit([reference, AutoResume(tmp_path / "ref.pt")], module=TwoOpt)
    assert_identical(reference.final, second.final)


class Counter(luz.Callback):
    weight = float("inf")

    def __init__(self) -> None:
        self.i = 1

    def on_epoch_end(self) -> None:
        self.i += 1

    def state_dict(self) -> dict[str, Any]:
        return {"i": self.i}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.i = state["i"]


def test_resume_restores_callback_state(tmp_path: Path) -> None:
    auto, fail = AutoResume(tmp_path / "state.pt"), FailOnce(epoch=5)
    crashed = Counter()
    with pytest.raises(RuntimeError):
        _linear_fit([auto, crashed, fail])
    resumed = Counter()
    _linear_fit([auto, resumed, fail])
    assert crashed.i == 5  # the failure at epoch 5's end came before Counter's hook
    # AutoResume writes after every other callback (weight-inf ones too), so the resumed run
    # ends where an uninterrupted run ends: 1 + 10. (R luz gives 10; without restoring, 7.)
    assert resumed.i == 11


def test_mismatched_callbacks_are_a_clear_error(tmp_path: Path) -> None:
    auto, fail = AutoResume(tmp_path / "state.pt"), FailOnce(epoch=2)
    with pytest.raises(RuntimeError):
        _linear_fit([auto, Counter(), fail])
    with pytest.raises(ValueError, match=r"\['Counter@\d+'\].*\['ModelCheckpoint@\d+'\]"):
        _linear_fit([auto, ModelCheckpoint(tmp_path / "c.pt", monitor="train_loss")])
    assert (tmp_path / "state.pt").exists()


def test_an_early_stopped_run_is_not_resumed(tmp_path: Path) -> None:
    auto = AutoResume(tmp_path / "state.pt")
    first = _linear_fit([auto, EarlyStopping(monitor="train_loss", patience=1, min_delta=100)], epochs=100)
    assert len(first.records["metrics"]["train"]) == 2
    assert not (tmp_path / "state.pt").exists()
    second = _linear_fit([auto, EarlyStopping(monitor="train_loss", patience=1, min_delta=100)], epochs=100)
    assert second.get_metrics()["value"].iloc[0] != first.get_metrics()["value"].iloc[0]


def test_an_interrupted_run_keeps_its_state(tmp_path: Path) -> None:
    def interrupt(ctx: Any) -> None:
        if ctx.epoch == 3:
            raise KeyboardInterrupt

    fitted = _linear_fit([AutoResume(tmp_path / "state.pt"), luz.callback(on_epoch_begin=interrupt)])
    assert len(fitted.records["metrics"]["train"]) == 2
    assert read_checkpoint(tmp_path / "state.pt")["epoch"] == 2


def test_resume_from_checkpoint_directory(tmp_path: Path) -> None:
    first = Snapshot()
    _linear_fit([first, ModelCheckpoint(str(tmp_path) + "/", monitor="train_loss")])
    second = Snapshot()
    fitted = _linear_fit([second, ResumeFromCheckpoint(tmp_path)], epochs=1)
    assert_identical(first.final[0], second.begin[1][0])
    assert len(fitted.records["metrics"]["train"]) == 1  # records not restored by default


def test_resume_from_a_directory_takes_the_last_file_in_sorted_order(tmp_path: Path) -> None:
    # inventory §5.18: the last file of the sorted listing, not the newest by time.
    _linear_fit([ModelCheckpoint(str(tmp_path) + "/", monitor="train_loss")], epochs=10)
    _linear_fit([ModelCheckpoint(str(tmp_path) + "/", monitor="train_loss")], epochs=3)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names[-1].startswith("epoch-10-")
    assert ResumeFromCheckpoint(tmp_path).resolve() == tmp_path / names[-1]


def test_resume_from_a_missing_path_warns_when_made(tmp_path: Path) -> None:
    with pytest.warns(UserWarning, match="no checkpoint"):
        callback = ResumeFromCheckpoint(tmp_path / "nothing.pt")
    assert callback.resolve() is None


def test_resume_from_a_missing_checkpoint_warns_and_trains(tmp_path: Path) -> None:
    with pytest.warns(UserWarning, match="no checkpoint"):
        fitted = _linear_fit([ResumeFromCheckpoint(tmp_path / "nothing.pt")], epochs=1)
    assert len(fitted.records["metrics"]["train"]) == 1


def test_lr_schedule_continues_across_a_resume(tmp_path: Path) -> None:
    def run(fail_at: int) -> list[float]:
        lrs: list[float] = []

        def fail(ctx: Any) -> None:
            if ctx.epoch >= fail_at:
                raise RuntimeError("simulated failure")

        callbacks = [
            AutoResume(tmp_path / "state.pt"),
            LRScheduler(torch.optim.lr_scheduler.StepLR, step_size=1),
            luz.callback(on_epoch_begin=fail),
            luz.callback(on_epoch_begin=lambda ctx: lrs.append(ctx.opt.param_groups[0]["lr"])),
        ]
        with contextlib.suppress(RuntimeError):
            _linear_fit(callbacks)
        return lrs

    crashed, resumed = run(fail_at=5), run(fail_at=11)
    expected = [0.01 * 0.1**e for e in range(10)]
    assert crashed == pytest.approx(expected[:4])
    # R row 25: the state is loaded at on_fit_begin, so the skipped epochs 1-4 already see the
    # restored learning rate: 1e-6 five times, then 1e-7 ... 1e-11.
    assert resumed == pytest.approx([1e-6] * 4 + expected[4:], rel=1e-12)


class InfCrash(luz.Callback):
    """R's `interrupt` callback: weight inf, fails once at the end of epoch 5."""

    weight = float("inf")

    def __init__(self) -> None:
        self.failed = False
        self.metrics: Any = None

    def on_epoch_end(self) -> None:
        if self.context.epoch == 5 and not self.failed:
            self.failed = True
            self.metrics = self.context.get_metrics_df()
            raise RuntimeError("Error on epoch 5")


def test_r_row_20_skipped_epochs_see_the_saved_state(tmp_path: Path) -> None:
    # The crash in epoch 5's on_epoch_end comes before the epoch commits (R luz, writing in
    # AutoResume's own hook, saves epoch 5 here): epoch 4 is saved, and every skipped epoch
    # starts from the weights and optimizer at its end.
    class EndWeights(Snapshot):
        def on_epoch_end(self) -> None:
            self.begin[self.context.epoch] = self._state()

    auto, crash, first = AutoResume(tmp_path / "state.pt"), InfCrash(), EndWeights()
    _seed()  # the same data: epoch 5 is trained again
    with pytest.raises(RuntimeError, match="Error on epoch 5"):
        _linear_fit([first, auto, crash])
    assert read_checkpoint(tmp_path / "state.pt")["epoch"] == 4
    _seed()
    second = Snapshot()
    resumed = _linear_fit([second, auto, crash])
    metrics = resumed.get_metrics()
    assert len(metrics) == 10
    assert metrics.iloc[:5].reset_index(drop=True).equals(crash.metrics.reset_index(drop=True))
    for epoch in range(1, 6):
        assert_identical(first.begin[4], second.begin[epoch], f"epoch {epoch}")


def test_r_row_22_a_later_inf_callback_is_saved_after_its_hook(tmp_path: Path) -> None:
    # list(autoresume, cb_state, inter), all weight inf: epoch 5 crashes before it commits, so
    # epoch 4 is saved with the counter after its hook; the resumed run ends at 11, as an
    # uninterrupted run does (R luz writes inside AutoResume's hook and expects 10).
    auto, crash = AutoResume(tmp_path / "state.pt"), InfCrash()
    crashed = Counter()
    with pytest.raises(RuntimeError):
        _linear_fit([auto, crashed, crash])
    resumed = Counter()
    _linear_fit([auto, resumed, crash])
    assert (crashed.i, resumed.i) == (6, 11)


class ResumeOrder(luz.Callback):
    def __init__(self) -> None:
        self.seen: list[str] = []

    def on_fit_begin(self) -> None:
        self.seen = [type(cb).__name__ for cb in self.context.callbacks]


def test_auto_resume_keeps_the_callback_order(tmp_path: Path) -> None:
    # SPEC §3: a stable sort by weight, defaults first, then the user's list order.
    order = ResumeOrder()
    _linear_fit([AutoResume(tmp_path / "state.pt"), Counter(), order], epochs=1)
    assert order.seen[-3:] == ["ResumeOrder", "AutoResume", "Counter"]


def test_a_crash_after_a_later_callback_resumes_exactly(tmp_path: Path) -> None:
    # AutoResume writes again after the weight-inf callbacks listed after it, so a crash in a
    # later epoch resumes with their epoch-end state too (an uninterrupted run gives 11).
    auto, fail = (
        AutoResume(tmp_path / "state.pt"),
        FailOnce(epoch=7, breakpoint="on_train_batch_begin", iteration=1),
    )
    with pytest.raises(RuntimeError):
        _linear_fit([auto, Counter(), fail])
    assert read_checkpoint(tmp_path / "state.pt")["callbacks"][-1]["state"] == {"i": 7}
    resumed = Counter()
    _linear_fit([auto, resumed, fail])
    assert resumed.i == 11


def test_records_logged_while_skipping_do_not_change_the_resumed_run(tmp_path: Path) -> None:
    # A callback logging by epoch in on_epoch_begin writes into the records during skipped
    # epochs too; the saved records must come back untouched.
    def run(fail: FailOnce | None) -> luz.Fitted:
        log_lr = luz.callback(on_epoch_begin=lambda ctx: ctx.log_metric("lr", ctx.opt.param_groups[0]["lr"]))
        callbacks = [
            LRScheduler(torch.optim.lr_scheduler.StepLR, step_size=1, gamma=0.1),
            log_lr,
            AutoResume(tmp_path / "state.pt"),
        ]
        return _linear_fit(callbacks + ([fail] if fail else []), epochs=5)

    reference = run(None)
    fail = FailOnce(epoch=3, breakpoint="on_train_batch_begin", iteration=1)
    with pytest.raises(RuntimeError):
        run(fail)
    resumed = run(fail)
    lrs = [entry["lr"] for entry in resumed.records["metrics"]["train"]]
    assert lrs == [entry["lr"] for entry in reference.records["metrics"]["train"]]
    assert lrs == pytest.approx([0.01 * 0.1**e for e in range(5)])


def test_resume_from_a_directory_compares_epoch_numbers_as_numbers(tmp_path: Path) -> None:
    for name in ("epoch-09-loss-1.0.pt", "epoch-99-loss-1.0.pt", "epoch-100-loss-2.0.pt"):
        (tmp_path / name).write_bytes(b"")
    assert ResumeFromCheckpoint(tmp_path).resolve() == tmp_path / "epoch-100-loss-2.0.pt"


def test_auto_resume_creates_the_parent_directory(tmp_path: Path) -> None:
    AutoResume(tmp_path / "a" / "b" / "state.pt")
    assert (tmp_path / "a" / "b").is_dir()


# -- SIGKILL mid-epoch -------------------------------------------------------------------------------

_SCRIPT = """
import os, random, signal, sys
import numpy as np, torch, luz
from torch import nn
torch.set_num_threads(1)
state, out, kill = sys.argv[1], sys.argv[2], sys.argv[3] == "kill"
random.seed(0); np.random.seed(0); torch.manual_seed(0)
x, y = torch.randn(100, 10), torch.randn(100, 1)
net = lambda: nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 1))

def maybe_kill(ctx):
    if kill and ctx.epoch == 3 and ctx.iter == 3:
        os.kill(os.getpid(), signal.SIGKILL)

final = {}
def keep(ctx):
    final["opt"] = ctx.optimizers["opt"].state_dict()
    final["sched"] = sched.state_dict()
    final["draw"] = (random.random(), float(np.random.rand()), torch.rand(3))

sched = luz.callbacks.LRScheduler(torch.optim.lr_scheduler.StepLR, step_size=2, gamma=0.5)
fitted = (
    luz.setup(net, loss=nn.MSELoss(), optimizer=torch.optim.Adam).set_opt_hparams(lr=0.01)
    .fit((x, y), epochs=5, valid_data=0.2, verbose=False, dataloader_options={"batch_size": 16},
         callbacks=[sched, luz.callback(on_train_batch_end=maybe_kill), luz.callback(on_fit_end=keep),
                    luz.callbacks.AutoResume(state)])
)
metrics = fitted.records["metrics"]
torch.save({"model": fitted.model.state_dict(), "metrics": metrics, **final}, out)
"""


def script_runner(tmp_path: Path, source: str) -> Callable[[str, str, str], subprocess.CompletedProcess[str]]:
    """Write ``source`` to ``tmp_path/train.py``; the returned ``run(state, out, mode)`` runs it
    in a fresh process with those three arguments (file names inside ``tmp_path``, and a mode)."""
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(source))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def run(state: str, out: str, mode: str) -> subprocess.CompletedProcess[str]:
        args = [sys.executable, str(script), str(tmp_path / state), str(tmp_path / out), mode]
        return subprocess.run(args, env=env, capture_output=True, text=True, check=False)

    return run


def test_resume_after_sigkill_mid_epoch_is_bitwise_identical(tmp_path: Path) -> None:
    run = script_runner(tmp_path, _SCRIPT)
    killed = run("state.pt", "unused.pt", "kill")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert read_checkpoint(tmp_path / "state.pt")["epoch"] == 2
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    resumed = run("state.pt", "resumed.pt", "run")
    assert resumed.returncode == 0, resumed.stderr
    reference = run("reference.pt", "reference_out.pt", "run")
    assert reference.returncode == 0, reference.stderr
    a = torch.load(tmp_path / "resumed.pt", weights_only=True)
    b = torch.load(tmp_path / "reference_out.pt", weights_only=True)
    assert len(a["metrics"]["train"]) == 5 and len(a["metrics"]["valid"]) == 5
    assert_identical(a, b)
    assert not (tmp_path / "state.pt").exists()
