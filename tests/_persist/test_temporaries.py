"""Stray temporaries (issue 15 point 6): a checkpoint write killed with SIGKILL mid-way leaves its
temporary; the next start removes it (and the resumed run is bitwise identical to an
uninterrupted one), but never a live writer's temporary nor a file pyluz did not write."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from luz._persist.atomic import STALE_AFTER_S, atomic_open, is_stale_temporary, remove_stale_temporaries
from luz.callbacks import AutoResume, ModelCheckpoint
from luz.serialization import read_checkpoint

_SCRIPT = """
import io, os, random, signal, sys
import numpy as np, torch, luz
from torch import nn
torch.set_num_threads(1)
state, out, kill = sys.argv[1], sys.argv[2], sys.argv[3] == "kill"
random.seed(0); np.random.seed(0); torch.manual_seed(0)
x, y = torch.randn(100, 10), torch.randn(100, 1)
net = lambda: nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 1))
save = torch.save
epoch = {"now": 0}

def half_then_die(obj, handle, *args, **kwargs):
    # The epoch-3 write is killed half-way: half its bytes are in the temporary, flushed.
    if kill and epoch["now"] == 3:
        buffer = io.BytesIO()
        save(obj, buffer)
        handle.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        handle.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    return save(obj, handle, *args, **kwargs)

torch.save = half_then_die

def mark(ctx):
    epoch["now"] = ctx.epoch

fitted = (
    luz.setup(net, loss=nn.MSELoss(), optimizer=torch.optim.Adam).set_opt_hparams(lr=0.01)
    .fit((x, y), epochs=5, valid_data=0.2, verbose=False, dataloader_options={"batch_size": 16},
         callbacks=[luz.callback(on_epoch_begin=mark), luz.callbacks.AutoResume(state)])
)
torch.save = save
torch.save({"model": fitted.model.state_dict(), "metrics": fitted.records["metrics"]}, out)
"""


def _run(script: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(script), *args], env=env, capture_output=True, text=True)


def test_a_write_killed_mid_way_leaves_a_temporary_that_the_next_start_removes(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(_SCRIPT))
    run_dir = tmp_path / "run"
    state = run_dir / "state.pt"
    killed = _run(script, str(state), str(tmp_path / "unused.pt"), "kill")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    temps = [p for p in run_dir.iterdir() if p.name != "state.pt"]
    assert len(temps) == 1 and temps[0].name.startswith(".state.pt.luz-") and temps[0].name.endswith(".tmp")
    assert temps[0].stat().st_size > 0
    assert read_checkpoint(state)["epoch"] == 2  # the old state is intact under its name

    resumed = _run(script, str(state), str(tmp_path / "resumed.pt"), "run")
    assert resumed.returncode == 0, resumed.stderr
    assert list(run_dir.iterdir()) == []  # the temporary is gone, the finished state deleted
    reference = _run(script, str(tmp_path / "ref" / "state.pt"), str(tmp_path / "reference.pt"), "run")
    assert reference.returncode == 0, reference.stderr
    a = torch.load(tmp_path / "resumed.pt", weights_only=True)
    b = torch.load(tmp_path / "reference.pt", weights_only=True)
    assert a["metrics"] == b["metrics"] and len(a["metrics"]["train"]) == 5
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key


def _host() -> str:
    return "".join(c if c.isalnum() or c == "-" else "-" for c in socket.gethostname())[:32]


def _temp(directory: Path, name: str, pid: int, host: str | None = None) -> Path:
    path = directory / f".{name}.luz-{pid}@{_host() if host is None else host}.abcd1234.tmp"
    path.write_bytes(b"partial")
    return path


def test_a_live_writers_temporary_is_kept_and_removed_once_it_is_gone(tmp_path: Path) -> None:
    writer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = _temp(tmp_path, "state.pt", writer.pid)
        AutoResume(tmp_path / "state.pt")
        assert live.exists()  # another process of this host is running: maybe mid-write
    finally:
        writer.kill()
        writer.wait()
    AutoResume(tmp_path / "state.pt")
    assert not live.exists()


def test_temporaries_of_other_hosts_are_removed_only_when_old(tmp_path: Path) -> None:
    fresh = _temp(tmp_path, "state.pt", 1, host="other-node")
    old = _temp(tmp_path, "state.pt", 2, host="other-node")
    long_ago = time.time() - STALE_AFTER_S - 60
    os.utime(old, (long_ago, long_ago))
    removed = remove_stale_temporaries(tmp_path / "state.pt")
    assert removed == [old] and fresh.exists()


def test_only_pyluz_temporaries_of_that_path_are_touched(tmp_path: Path) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    pid = int(dead.stdout)
    mine = _temp(tmp_path, "state.pt", pid)
    other_file = _temp(tmp_path, "other.pt", pid)
    foreign = tmp_path / ".state.pt.abcd1234.tmp"  # not written by pyluz (no luz-pid@host tag)
    foreign.write_bytes(b"x")
    AutoResume(tmp_path / "state.pt")
    assert not mine.exists() and other_file.exists() and foreign.exists()
    assert not is_stale_temporary(foreign)


def test_model_checkpoint_cleans_its_directory_when_made(tmp_path: Path) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    stale = _temp(tmp_path, "epoch-03-valid_loss-0.123.pt", int(dead.stdout))
    ModelCheckpoint(f"{tmp_path}/")
    assert not stale.exists()


def test_an_own_pid_temporary_is_stale_at_start_but_a_write_in_progress_is_not_touched(
    tmp_path: Path,
) -> None:
    # A container restart reuses pids: a temporary tagged with this process's pid is from a
    # killed earlier process, since nothing is being written when a callback is made.
    reused = _temp(tmp_path, "state.pt", os.getpid())
    AutoResume(tmp_path / "state.pt")
    assert not reused.exists()
    with atomic_open(tmp_path / "other.pt") as handle:
        handle.write(b"data")
        (in_progress,) = tmp_path.glob(".other.pt.luz-*.tmp")
        assert remove_stale_temporaries(tmp_path / "other.pt") == []
        assert in_progress.exists()
    assert (tmp_path / "other.pt").read_bytes() == b"data" and not in_progress.exists()


@pytest.mark.skipif(os.name == "nt", reason="pids are not probed on Windows")
def test_an_unreaped_killed_writer_counts_as_gone(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    temp = _temp(tmp_path, "state.pt", child.pid)
    os.kill(child.pid, signal.SIGKILL)
    for _ in range(100):  # wait for the zombie state, without reaping it
        if Path(f"/proc/{child.pid}/stat").exists() and " Z " in Path(f"/proc/{child.pid}/stat").read_text():
            break
        time.sleep(0.05)
    try:
        assert is_stale_temporary(temp)
    finally:
        child.wait()
