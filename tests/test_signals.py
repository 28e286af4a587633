"""Ctrl-C and SIGTERM during fit: a graceful stop at a batch boundary, wrap-up hooks once, the
previous handler restored, atomic files that survive a second interrupt, and a preempted
`AutoResume` run that resumes to the same result (reliability §6, §8.14-15)."""

from __future__ import annotations

import os
import runpy
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import luz
from luz._persist.atomic import atomic_write_with
from luz.callbacks import ModelCheckpoint
from luz.serialization import read_checkpoint
from tests.callbacks.test_resume import assert_identical
from tests.conftest import Linear, make_recorder, regression_data

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGTERM") or os.name == "nt", reason="POSIX signals")


@pytest.fixture
def previous_handler() -> Iterator[Any]:
    """A Python SIGTERM handler installed before the fit (luz must put it back)."""
    calls: list[int] = []

    def handler(signum: int, frame: object) -> None:
        calls.append(signum)

    handler.calls = calls  # type: ignore[attr-defined]
    saved = signal.signal(signal.SIGTERM, handler)
    try:
        yield handler
    finally:
        signal.signal(signal.SIGTERM, saved)


def module() -> luz.LuzModule:
    return luz.setup(Linear, loss=nn.MSELoss(), optimizer=torch.optim.SGD).set_opt_hparams(lr=0.01)


def fit(*callbacks: Any, epochs: int = 3, verbose: bool = False) -> luz.Fitted:
    x, y = regression_data(96)
    return module().fit(
        (x, y),
        epochs=epochs,
        valid_data=(x[:32], y[:32]),
        callbacks=list(callbacks),
        verbose=verbose,
        dataloader_options={"batch_size": 16},
    )


def fit_terminated(*callbacks: Any, verbose: bool = False) -> luz.Fitted:
    """`fit` after a SIGTERM: it raises `luz.Terminated` (status 143) carrying the fitted model."""
    with pytest.raises(luz.Terminated) as info:
        fit(*callbacks, verbose=verbose)
    assert isinstance(info.value, SystemExit) and info.value.code == 143
    assert isinstance(info.value.fitted, luz.Fitted)
    return info.value.fitted


def sigterm_at(hook: str, epoch: int, iteration: int) -> luz.Callback:
    def send(ctx: luz.Context) -> None:
        if (ctx.epoch, ctx.iter) == (epoch, iteration):
            os.kill(os.getpid(), signal.SIGTERM)

    return luz.callback(**{hook: send}, weight=-1)  # before Interrupt checks the flag


def test_sigterm_stops_at_the_next_batch_boundary(previous_handler: Any) -> None:
    rec = make_recorder(weight=1)
    fitted = fit_terminated(sigterm_at("on_train_batch_begin", 2, 3), rec)
    assert fitted.stop_reason == "interrupted (SIGTERM) during epoch 2"
    assert rec.calls.count("on_interrupt") == 1
    assert rec.calls[-2:] == ["on_interrupt", "on_fit_end"]
    assert rec.calls.count("on_train_batch_begin") == 6 + 3  # batch 3 of epoch 2 finished, no more
    assert "on_train_batch_after_step" in rec.calls[-5:]  # the step ran: a batch boundary
    # Epoch 2 is unfinished: only epoch 1 is recorded; the model is usable.
    assert len(fitted.records["metrics"]["train"]) == 1
    assert fitted.predict(torch.randn(4, 10)).shape == (4, 1)
    # The previous handler is back, and the signal was not passed on to it.
    assert signal.getsignal(signal.SIGTERM) is previous_handler
    assert previous_handler.calls == []


def test_sigterm_during_validation(previous_handler: Any) -> None:
    rec = make_recorder(weight=1)
    fitted = fit_terminated(sigterm_at("on_valid_batch_begin", 2, 1), rec)
    assert rec.calls[-2:] == ["on_interrupt", "on_fit_end"]
    assert rec.calls.count("on_valid_batch_begin") == 2 + 1
    assert len(fitted.records["metrics"]["valid"]) == 1
    assert signal.getsignal(signal.SIGTERM) is previous_handler


def test_sigterm_note_when_verbose(previous_handler: Any, capsys: pytest.CaptureFixture[str]) -> None:
    fit_terminated(sigterm_at("on_train_batch_begin", 1, 2), verbose=True)
    assert "Training interrupted by SIGTERM at epoch 1; exiting with status 143" in capsys.readouterr().err


def test_a_second_sigterm_during_the_wrap_up_is_ignored(previous_handler: Any) -> None:
    seen: list[str] = []

    def again(ctx: luz.Context) -> None:
        os.kill(os.getpid(), signal.SIGTERM)  # would kill the process with the default handler
        seen.append("on_interrupt")

    wrap_up = luz.callback(on_interrupt=again, on_fit_end=lambda ctx: seen.append("on_fit_end"))
    fit_terminated(sigterm_at("on_train_batch_begin", 1, 2), wrap_up)
    assert seen == ["on_interrupt", "on_fit_end"]
    assert previous_handler.calls == []


def test_handler_is_restored_when_fit_raises(previous_handler: Any) -> None:
    def boom(ctx: luz.Context) -> None:
        assert signal.getsignal(signal.SIGTERM) is not previous_handler  # luz's, during fit
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        fit(luz.callback(on_epoch_end=boom))
    assert signal.getsignal(signal.SIGTERM) is previous_handler


def test_no_handler_outside_the_main_thread(previous_handler: Any) -> None:
    seen: list[Any] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            fit(luz.callback(on_epoch_end=lambda ctx: seen.append(signal.getsignal(signal.SIGTERM))))
        except BaseException as error:  # surfaced below
            errors.append(error)

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert errors == []
    assert seen == [previous_handler] * 3


def test_predict_and_evaluate_leave_sigterm_alone(previous_handler: Any) -> None:
    fitted = fit(epochs=1)
    x, y = regression_data(32)
    probe = luz.callback(on_predict_batch_end=lambda ctx: seen.append(signal.getsignal(signal.SIGTERM)))
    seen: list[Any] = []
    fitted.predict(x, callbacks=[probe])
    fitted.evaluate((x, y))
    assert seen == [previous_handler]


# -- a second Ctrl-C while a file is written ----------------------------------------------------------


def test_keyboard_interrupt_inside_an_atomic_write_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "file.bin"
    path.write_bytes(b"previous")

    def writer(handle: Any) -> None:
        handle.write(b"half of the new")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write_with(path, writer)
    assert path.read_bytes() == b"previous"
    assert sorted(os.listdir(tmp_path)) == ["file.bin"]  # no temporary file left


def test_second_ctrl_c_during_an_interrupt_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "ckpt.pt"
    checkpoint = ModelCheckpoint(path, monitor="train_loss")

    def save_on_interrupt(ctx: luz.Context) -> None:
        def torch_save(obj: Any, handle: Any) -> None:
            handle.write(b"partial")
            raise KeyboardInterrupt  # the second Ctrl-C lands mid-write

        monkeypatch.setattr(torch, "save", torch_save)
        checkpoint.save(path)

    first = luz.callback(on_epoch_begin=lambda ctx: ctx.epoch == 3 and _raise(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        fit(checkpoint, first, luz.callback(on_interrupt=save_on_interrupt))
    monkeypatch.undo()
    assert read_checkpoint(path)["epoch"] == 2  # the previous checkpoint still loads
    assert sorted(os.listdir(tmp_path)) == ["ckpt.pt"]


def _raise(error: BaseException) -> None:
    raise error


# -- SIGTERM from outside: a preempted AutoResume run resumes ---------------------------------------

_SCRIPT = """
import os, random, sys, time
import numpy as np, torch, luz
from torch import nn
torch.set_num_threads(1)
state, out, marker, mode = sys.argv[1:5]
random.seed(0); np.random.seed(0); torch.manual_seed(0)
x, y = torch.randn(100, 10), torch.randn(100, 1)
net = lambda: nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 1))

def wait_for_sigterm(ctx):
    # Mid-epoch 3, tell the parent we are training, then wait until its SIGTERM has arrived.
    if mode == "wait" and (ctx.epoch, ctx.iter) == (3, 2):
        interrupt = next(cb for cb in ctx.callbacks if isinstance(cb, luz.callbacks.Interrupt))
        open(marker, "w").close()
        deadline = time.monotonic() + 20
        while not interrupt.terminated and time.monotonic() < deadline:
            time.sleep(0.01)

final = {}
def keep(ctx):
    print("fit_end", len(ctx.records["metrics"]["train"]), flush=True)
    final["opt"] = ctx.optimizers["opt"].state_dict()
    final["draw"] = (random.random(), float(np.random.rand()), torch.rand(3))

sched = luz.callbacks.LRScheduler(torch.optim.lr_scheduler.StepLR, step_size=2, gamma=0.5)
fitted = (
    luz.setup(net, loss=nn.MSELoss(), optimizer=torch.optim.Adam).set_opt_hparams(lr=0.01)
    .fit((x, y), epochs=5, valid_data=0.2, verbose=False, dataloader_options={"batch_size": 16},
         callbacks=[sched, luz.callback(on_train_batch_begin=wait_for_sigterm),
                    luz.callback(on_fit_end=keep), luz.callbacks.AutoResume(state)])
)
metrics = fitted.records["metrics"]
print("epochs", len(metrics["train"]), flush=True)
final["sched"] = sched.state_dict()
torch.save({"model": fitted.model.state_dict(), "metrics": metrics, **final}, out)
"""


def test_sigterm_preempted_autoresume_run_resumes_identically(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(_SCRIPT))
    marker, state = tmp_path / "training", tmp_path / "state.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def args(out: str, mode: str) -> list[str]:
        return [str(script), str(state), str(tmp_path / out), str(marker), mode]

    child = subprocess.Popen(
        [sys.executable, *args("preempted.pt", "wait")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while not marker.exists() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        assert marker.exists(), child.communicate()[1].decode()
        child.send_signal(signal.SIGTERM)
        stdout, stderr = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
    # Preempted: on_fit_end ran (epoch 3 unfinished), then fit raised luz.Terminated, so the
    # process ended with status 143 and the script did not carry on to save a "final" model.
    assert child.returncode == 143, stderr.decode()
    assert stdout.decode().split() == ["fit_end", "2"]
    assert not (tmp_path / "preempted.pt").exists()
    assert read_checkpoint(state)["epoch"] == 2  # the state file is kept for the rerun
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []

    resumed = subprocess.run(
        [sys.executable, *args("resumed.pt", "run")], env=env, capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.split() == ["fit_end", "5", "epochs", "5"]
    assert not state.exists()

    # The uninterrupted reference, run in this process (same seeds, one thread, AutoResume too).
    reference = args("reference.pt", "run")
    reference[1] = str(tmp_path / "reference_state.pt")
    saved_argv = sys.argv
    try:
        sys.argv = reference
        runpy.run_path(str(script), run_name="__main__")
    finally:
        sys.argv = saved_argv
    a = torch.load(tmp_path / "resumed.pt", weights_only=True)
    b = torch.load(tmp_path / "reference.pt", weights_only=True)
    assert len(a["metrics"]["train"]) == 5 and len(a["metrics"]["valid"]) == 5
    assert_identical(a, b)


def test_terminated_is_a_system_exit_with_status_143_that_pickles() -> None:
    import pickle

    error = luz.Terminated("interrupted (SIGTERM) during epoch 3")
    assert isinstance(error, SystemExit) and error.code == 143 and "Terminated" in luz.__all__
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is luz.Terminated and again.code == 143 and str(again) == str(error)


_PLAIN = """
import os, signal, sys, torch, luz
from torch import nn
ckpt = sys.argv[1]
def sigterm(ctx):
    if (ctx.epoch, ctx.iter) == (2, 2):
        os.kill(os.getpid(), signal.SIGTERM)
x, y = torch.randn(64, 10), torch.randn(64, 1)
module = luz.setup(lambda: nn.Linear(10, 1), loss=nn.MSELoss(), optimizer=torch.optim.SGD)
module.set_opt_hparams(lr=0.01).fit(
    (x, y), epochs=5, verbose=False, dataloader_options={"batch_size": 16},
    callbacks=[luz.callback(on_train_batch_begin=sigterm),
               luz.callback(on_fit_end=lambda ctx: print("fit_end", ctx.epoch, flush=True)),
               luz.callbacks.ModelCheckpoint(ckpt, monitor="train_loss")])
print("carried on")
"""


def test_an_unhandled_sigterm_ends_the_script_with_status_143(tmp_path: Path) -> None:
    script, ckpt = tmp_path / "plain.py", tmp_path / "ckpt.pt"
    script.write_text(textwrap.dedent(_PLAIN))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(script), str(ckpt)], env=env, capture_output=True, text=True)
    assert done.returncode == 143, done.stderr
    assert done.stdout.split() == ["fit_end", "2"]  # the wrap-up ran; the script did not go on
    assert read_checkpoint(ckpt)["epoch"] == 1  # the checkpoint of the last finished epoch
    assert "Traceback" not in done.stderr
