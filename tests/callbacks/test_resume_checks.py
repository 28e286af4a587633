"""AutoResume's checks of a resumed run: one write per epoch at its commit (an early stop's
epoch included, under a real SIGKILL), the run's recorded shape (optimizer classes, batch size,
samples, shuffling) and the refusal of persistent workers."""

from __future__ import annotations

import hashlib
import signal
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import luz
from luz._persist.checkpoint import write_checkpoint
from luz.callbacks import AutoResume, ResumeFromCheckpoint
from luz.serialization import read_checkpoint
from tests.callbacks.test_resume import FailOnce, assert_identical, script_runner
from tests.conftest import Linear

_KILL_AFTER_COMMIT = """
import os, signal, sys
import torch
from torch import nn
import luz
import luz._persist.checkpoint as checkpoint  # AutoResume writes through commit_checkpoint
torch.set_num_threads(1)
state, out, kill_epoch = sys.argv[1], sys.argv[2], int(sys.argv[3])
torch.manual_seed(0)
x, y = torch.randn(64, 10), torch.randn(64, 1)
original = checkpoint.write_checkpoint

def write_then_die(st, path):
    original(st, path)
    if st["epoch"] == kill_epoch:  # right after AutoResume's write of this epoch
        os.kill(os.getpid(), signal.SIGKILL)

checkpoint.write_checkpoint = write_then_die
stop = luz.callbacks.EarlyStopping(monitor="train_loss", patience=1, min_delta=100)
fitted = (
    luz.setup(nn.Linear, loss=nn.MSELoss(), optimizer=torch.optim.Adam)
    .set_hparams(in_features=10, out_features=1).set_opt_hparams(lr=0.01)
    .fit((x, y), epochs=10, verbose=False, dataloader_options={"batch_size": 16},
         callbacks=[luz.callbacks.AutoResume(state), stop])
)
torch.save({"model": fitted.model.state_dict(), "metrics": fitted.records["metrics"],
            "stop": fitted.stop_reason}, out)
"""


@pytest.mark.parametrize("kill_epoch", [1, 2], ids=["first-epoch", "stopping-epoch"])
def test_a_kill_right_after_the_commit_write_resumes_with_early_stopping_exactly(
    tmp_path: Path, kill_epoch: int
) -> None:
    # [AutoResume, EarlyStopping] (both weight inf): the write comes after EarlyStopping's
    # hook, so the state holds its epoch-end counter; killed after the stopping epoch's write,
    # the rerun ends there too. The uninterrupted run stops after epoch 2.
    run = script_runner(tmp_path, _KILL_AFTER_COMMIT)
    killed = run("state.pt", "unused.pt", str(kill_epoch))
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert read_checkpoint(tmp_path / "state.pt")["epoch"] == kill_epoch
    resumed = run("state.pt", "resumed.pt", "0")
    assert resumed.returncode == 0, resumed.stderr
    reference = run("reference.pt", "reference_out.pt", "0")
    assert reference.returncode == 0, reference.stderr
    a = torch.load(tmp_path / "resumed.pt", weights_only=True)
    b = torch.load(tmp_path / "reference_out.pt", weights_only=True)
    assert len(b["metrics"]["train"]) == 2
    assert len(a["metrics"]["train"]) == 2
    assert_identical(a, b)
    assert a["stop"].startswith("EarlyStopping stopped training at epoch 2")
    assert not (tmp_path / "state.pt").exists()


# -- a changed run -----------------------------------------------------------------------------------


class Steps(luz.Callback):
    def __init__(self) -> None:
        self.steps = 0

    def on_train_batch_end(self) -> None:
        self.steps += 1


def _fit(
    callbacks: list[Any],
    *,
    optimizer: Any = torch.optim.Adam,
    batch_size: int = 16,
    n: int = 64,
    shuffle: bool = True,
) -> luz.Fitted:
    torch.manual_seed(0)
    x, y = torch.randn(n, 10), torch.randn(n, 1)
    module = luz.setup(Linear, loss=nn.MSELoss(), optimizer=optimizer).set_opt_hparams(lr=0.01)
    options = {"batch_size": batch_size, "shuffle": shuffle}
    return module.fit((x, y), epochs=4, verbose=False, callbacks=callbacks, dataloader_options=options)


def _crashed(path: Path) -> str:
    with pytest.raises(RuntimeError, match="simulated failure"):
        _fit([AutoResume(path), FailOnce(epoch=3, breakpoint="on_train_batch_begin", iteration=1)])
    assert read_checkpoint(path)["epoch"] == 2
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_checkpoint_records_the_run(tmp_path: Path) -> None:
    _crashed(tmp_path / "state.pt")
    assert read_checkpoint(tmp_path / "state.pt")["run"] == {
        "optimizers": {"opt": "torch.optim.adam.Adam"},
        "batch_size": 16,
        "samples": 64,
        "shuffle": True,
    }


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"optimizer": torch.optim.SGD}, ["optimizer classes", "torch.optim.sgd.SGD"]),
        ({"batch_size": 32}, ["training batch size: saved 16, now 32"]),
        ({"n": 80}, ["number of training samples: saved 64, now 80"]),
        ({"shuffle": False}, ["training data shuffled: saved True, now False"]),
        (
            {"optimizer": torch.optim.SGD, "batch_size": 8},
            ["optimizer classes", "training batch size: saved 16, now 8"],
        ),
    ],
)
def test_a_changed_run_is_an_error_listing_each_difference(
    tmp_path: Path, change: dict[str, Any], words: list[str]
) -> None:
    path = tmp_path / "state.pt"
    digest = _crashed(path)
    steps = Steps()
    with pytest.raises(ValueError, match=r"state\.pt") as caught:
        _fit([AutoResume(path), steps], **change)
    for word in [*words, "strict=False"]:
        assert word in str(caught.value)
    assert steps.steps == 0
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest


def test_strict_false_warns_listing_the_differences_and_resumes(tmp_path: Path) -> None:
    path = tmp_path / "state.pt"
    _crashed(path)
    steps = Steps()
    with pytest.warns(UserWarning, match=r"state\.pt.*training batch size: saved 16, now 32"):
        fitted = _fit([AutoResume(path, strict=False), steps], batch_size=32)
    assert len(fitted.records["metrics"]["train"]) == 4
    assert steps.steps == 2 * (64 // 32)  # epochs 3 and 4 only: it resumed


def test_resume_from_checkpoint_with_optimizer_state_compares_the_run(tmp_path: Path) -> None:
    path = tmp_path / "state.pt"
    _crashed(path)
    steps = Steps()
    with pytest.raises(ValueError, match=r"optimizer classes"):
        _fit([ResumeFromCheckpoint(path, restore_optimizer_state=True), steps], optimizer=torch.optim.SGD)
    assert steps.steps == 0
    # Weights only: nothing of the run is continued, so nothing is compared.
    _fit([ResumeFromCheckpoint(path)], optimizer=torch.optim.SGD)


def test_a_checkpoint_without_the_run_part_still_resumes(tmp_path: Path) -> None:
    path = tmp_path / "state.pt"
    _crashed(path)
    state = read_checkpoint(path)
    del state["run"]
    write_checkpoint(state, path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fitted = _fit([AutoResume(path)], batch_size=32)
    assert len(fitted.records["metrics"]["train"]) == 4


# -- persistent workers ------------------------------------------------------------------------------


def test_persistent_workers_are_refused_before_any_step(tmp_path: Path) -> None:
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(64, 10), torch.randn(64, 1))
    loader = DataLoader(data, batch_size=16, shuffle=True, num_workers=2, persistent_workers=True)
    steps = Steps()
    module = luz.setup(Linear, loss=nn.MSELoss(), optimizer=torch.optim.Adam)
    with pytest.raises(ValueError, match=r"persistent_workers=True.*persistent_workers=False"):
        module.fit(loader, epochs=2, verbose=False, callbacks=[AutoResume(tmp_path / "state.pt"), steps])
    assert steps.steps == 0
    assert not (tmp_path / "state.pt").exists()
    # The same workers without persistence train (and resume exactly: docs/checkpoints.md).
    loader = DataLoader(data, batch_size=16, shuffle=True, num_workers=2)
    fitted = module.fit(loader, epochs=1, verbose=False, callbacks=[AutoResume(tmp_path / "state.pt")])
    assert len(fitted.records["metrics"]["train"]) == 1
