"""Distributed training under torchrun (2 CPU processes, Gloo): equivalence with one process,
reduced metrics, rank-0 I/O, collective stopping, failure propagation, exact resume, clean exit.

Each test writes a script to ``tmp_path`` and launches it with
``python -m torch.distributed.run --nproc-per-node=2``; the ranks write their results there.
Deselect with ``-m "not distributed"``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
from torch import nn

import luz

pytestmark = [
    pytest.mark.distributed,
    pytest.mark.skipif(
        not (dist.is_available() and dist.is_gloo_available()), reason="needs torch.distributed with Gloo"
    ),
]

# Shared by every script: deterministic single-threaded torch, the rank, and a recorder of
# every file pyluz writes (all of its writes end in an atomic os.replace).
_PRELUDE = """
import json, os, sys
import torch, luz
from torch import nn
torch.set_num_threads(1)
OUT = sys.argv[1]
RANK = int(os.environ["RANK"])
WRITES = []
_replace = os.replace
def _recording_replace(src, dst, *args, **kwargs):
    WRITES.append(os.path.relpath(str(dst), OUT))
    return _replace(src, dst, *args, **kwargs)
os.replace = _recording_replace

def dump(name, value):
    with open(os.path.join(OUT, f"{name}_r{RANK}.json"), "w") as handle:
        json.dump(value, handle)
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def torchrun(
    script: str, tmp_path: Path, *args: str, timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    """Run ``script`` (prelude added) on 2 processes; ``sys.argv[1]`` is ``tmp_path``."""
    path = tmp_path / "script.py"
    path.write_text(_PRELUDE + textwrap.dedent(script))
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node=2",
        f"--master-port={_free_port()}",
        str(path),
        str(tmp_path),
        *args,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout, cwd=tmp_path)


def load(tmp_path: Path, name: str, rank: int) -> Any:
    return json.loads((tmp_path / f"{name}_r{rank}.json").read_text())


def assert_ok(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]


# -- equivalence, reduced metrics, rank-0 I/O -------------------------------------------------

_DATA = """
torch.manual_seed(0)
x = torch.randn(48, 5)
y = x[:, :3].argmax(1)
xv = torch.randn(7, 5)
yv = xv[:, :3].argmax(1)
"""

_FIT = (
    _DATA
    + """
def classifier():
    return (
        luz.setup(nn.Linear, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.SGD,
                  metrics=[luz.metrics.Accuracy()])
        .set_hparams(in_features=5, out_features=3).set_opt_hparams(lr=0.1)
    )

def regressor():
    return (
        luz.setup(nn.Linear, loss=nn.MSELoss(), optimizer=torch.optim.SGD, metrics=[luz.metrics.MAE()])
        .set_hparams(in_features=5, out_features=1).set_opt_hparams(lr=0.05)
    )
"""
)

_DDP_FIT = (
    _FIT
    + """
valid = luz.as_dataloader((xv, yv), batch_size=2)
callbacks = [
    luz.callbacks.CSVLogger(os.path.join(OUT, "log.csv")),
    luz.callbacks.ModelCheckpoint(os.path.join(OUT, "ckpt") + "/", monitor="valid_loss"),
]
train = luz.as_dataloader((x, y), batch_size=4)  # a user's DataLoader: rebuilt per rank
fitted = classifier().fit(train, epochs=3, valid_data=valid, callbacks=callbacks, verbose=False)
luz.save(fitted, os.path.join(OUT, "model.safetensors"))
luz.save_model_weights(fitted, os.path.join(OUT, "weights.safetensors"))
evaluation = fitted.evaluate((xv, yv), dataloader_options={"batch_size": 2})
pred = fitted.predict(xv, dataloader_options={"batch_size": 3})
reg = regressor().fit((x, x[:, :1]), epochs=3, verbose=False,
                      dataloader_options={"batch_size": 4, "shuffle": False})
reg_eval = reg.evaluate((xv, xv[:, :1]), dataloader_options={"batch_size": 2})
dump("result", {
    "records": fitted.records["metrics"],
    "weight": fitted.model.weight.tolist(),
    "bias": fitted.model.bias.tolist(),
    "eval": evaluation.records["metrics"],
    "pred": pred.tolist(),
    "reg_weight": reg.model.weight.tolist(),
    "reg_eval": reg_eval.records["metrics"],
    "is_ddp": type(fitted.model).__name__,
})
dump("writes", sorted(set(WRITES)))
"""
)


def _single_process_reference() -> dict[str, Any]:
    namespace: dict[str, Any] = {"torch": torch, "luz": luz, "nn": nn}
    exec(_FIT, namespace)  # the same data and modules as the script
    x, y, xv, yv = (namespace[k] for k in ("x", "y", "xv", "yv"))
    valid = luz.as_dataloader((xv, yv), batch_size=2)
    train = luz.as_dataloader((x, y), batch_size=8)  # one process x 2b = two ranks x b
    options = {"batch_size": 8, "shuffle": False}
    fitted = namespace["classifier"]().fit(train, epochs=3, valid_data=valid, verbose=False)
    # In the script's order: evaluate and predict draw loader seeds from the global RNG too.
    evaluation = fitted.evaluate((xv, yv), dataloader_options={"batch_size": 2})
    pred = fitted.predict(xv, dataloader_options={"batch_size": 3})
    reg = namespace["regressor"]().fit((x, x[:, :1]), epochs=3, verbose=False, dataloader_options=options)
    return {
        "records": fitted.records["metrics"],
        "weight": fitted.model.weight.detach(),
        "eval": evaluation.records["metrics"],
        "pred": pred,
        "reg_weight": reg.model.weight.detach(),
        "reg_eval": reg.evaluate((xv, xv[:, :1]), dataloader_options={"batch_size": 2}).records["metrics"],
    }


def _assert_records_close(got: dict[str, Any], want: dict[str, Any], rel: float) -> None:
    assert got.keys() == want.keys()
    for set_name in want:
        assert len(got[set_name]) == len(want[set_name])
        for g, w in zip(got[set_name], want[set_name], strict=True):
            assert g == pytest.approx(w, rel=rel), set_name


def test_two_ranks_match_one_process_and_only_rank0_writes(tmp_path: Path) -> None:
    result = torchrun(_DDP_FIT, tmp_path)
    assert_ok(result)
    r0, r1 = load(tmp_path, "result", 0), load(tmp_path, "result", 1)
    assert r0 == r1  # identical parameters, records, evaluations and predictions on both ranks
    assert r0["is_ddp"] == "Linear"  # fitted.model is the user's module, not the DDP wrapper

    torch.manual_seed(0)
    ref = _single_process_reference()
    # 2 ranks x batch 4 with SGD == 1 process x batch 8 (DDP averages the gradients).
    torch.testing.assert_close(torch.tensor(r0["weight"]), ref["weight"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(torch.tensor(r0["reg_weight"]), ref["reg_weight"], rtol=1e-5, atol=1e-6)
    _assert_records_close(r0["records"], ref["records"], rel=1e-5)
    # 7 validation samples dealt out in batches of 2: same batches, every sample once.
    assert r0["eval"]["valid"][0] == pytest.approx(ref["eval"]["valid"][0], rel=1e-5)
    assert r0["reg_eval"]["valid"][0] == pytest.approx(ref["reg_eval"]["valid"][0], rel=1e-5)
    torch.testing.assert_close(torch.tensor(r0["pred"]), ref["pred"], rtol=1e-5, atol=1e-6)

    writes0, writes1 = load(tmp_path, "writes", 0), load(tmp_path, "writes", 1)
    assert writes1 == []
    assert {"log.csv", "model.safetensors", "weights.safetensors"} <= set(writes0)
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == sorted(
        Path(p).name for p in writes0 if p.startswith("ckpt")
    )
    assert len(list((tmp_path / "ckpt").iterdir())) == 3
    csv_rows = (tmp_path / "log.csv").read_text().strip().splitlines()
    assert len(csv_rows) == 1 + 3 * 2  # header + train and valid rows of 3 epochs


# -- stopping and failures --------------------------------------------------------------------

_STOP = (
    _FIT
    + """
from luz.callbacks import EarlyStopping
options = {"batch_size": 4, "shuffle": False}

# Early stopping on reduced metrics: counter hits patience at epoch 2 on both ranks.
early = classifier().fit((x, y), epochs=6, verbose=False, dataloader_options=options,
                         callbacks=[EarlyStopping(monitor="train_loss", patience=1, min_delta=10.0)])

# A StopTraining raised on rank 1 only, mid-epoch 2: both ranks stop after epoch 2.
class StopOnRank1(luz.Callback):
    def on_train_batch_end(self):
        if RANK == 1 and self.ctx.epoch == 2 and self.ctx.iter == 1:
            raise luz.StopTraining("rank 1 wants to stop")
one_rank = classifier().fit((x, y), epochs=6, verbose=False, dataloader_options=options,
                            callbacks=[StopOnRank1()])

# One validation batch of 7 samples: rank 1's shard is empty, yet it takes part. Reference:
# the same model evaluated in this process alone (same single batch).
single_batch = classifier().fit((x, y), epochs=1, valid_data=(xv, yv), verbose=False,
                                dataloader_options={"batch_size": 8, "shuffle": False})
alone = single_batch.evaluate((xv, yv), accelerator=luz.Accelerator(distributed=False),
                              dataloader_options={"batch_size": 8})
dump("stop", {
    "early": len(early.records["metrics"]["train"]),
    "one_rank": len(one_rank.records["metrics"]["train"]),
    "one_rank_weight": one_rank.model.weight.tolist(),
    "valid": single_batch.records["metrics"]["valid"],
    "alone": alone.records["metrics"]["valid"],
})
"""
)


def test_stops_are_collective_and_empty_shards_take_part(tmp_path: Path) -> None:
    result = torchrun(_STOP, tmp_path)
    assert_ok(result)
    r0, r1 = load(tmp_path, "stop", 0), load(tmp_path, "stop", 1)
    assert r0 == r1
    assert r0["early"] == 2
    assert r0["one_rank"] == 2

    assert r0["valid"] == r0["alone"]


_FAIL = (
    _FIT
    + """
class Boom(luz.Callback):
    def on_train_batch_end(self):
        if RANK == 1 and self.ctx.epoch == 2:
            raise RuntimeError("boom on rank 1")
classifier().fit((x, y), epochs=50, verbose=False, callbacks=[Boom()],
                 dataloader_options={"batch_size": 4, "shuffle": False})
"""
)


def test_an_error_on_one_rank_ends_the_job(tmp_path: Path) -> None:
    start = time.monotonic()
    result = torchrun(_FAIL, tmp_path, timeout=120)
    elapsed = time.monotonic() - start
    assert result.returncode != 0
    assert "boom on rank 1" in result.stdout + result.stderr
    assert elapsed < 60


# -- exact resume -----------------------------------------------------------------------------

_RESUME = """
import signal
torch.manual_seed(0)
x = torch.randn(64, 6)
y = x @ torch.randn(6, 1)

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Dropout(0.3), nn.Linear(8, 1))
    def forward(self, x):
        return self.net(x)

class KillRank0(luz.Callback):
    def on_train_batch_end(self):
        if sys.argv[2] == "kill" and RANK == 0 and self.ctx.epoch == 3 and self.ctx.iter == 2:
            os.kill(os.getpid(), signal.SIGKILL)

module = luz.setup(Net, loss=nn.MSELoss(), optimizer=torch.optim.Adam, metrics=[luz.metrics.MAE()])
fitted = module.set_opt_hparams(lr=0.01).fit(
    (x, y), epochs=4, valid_data=0.25, verbose=False, dataloader_options={"batch_size": 5},
    callbacks=[KillRank0(), luz.callbacks.AutoResume(os.path.join(OUT, sys.argv[3]))],
)
state = {k: v.tolist() for k, v in fitted.model.state_dict().items()}
dump(sys.argv[4], {"state": state, "records": fitted.records["metrics"], "draw": torch.rand(3).tolist()})
"""


def test_kill_and_rerun_resumes_exactly(tmp_path: Path) -> None:
    straight = torchrun(_RESUME, tmp_path, "run", "straight.pt", "straight")
    assert_ok(straight)
    killed = torchrun(_RESUME, tmp_path, "kill", "state.pt", "unused")
    assert killed.returncode != 0
    assert (tmp_path / "state.pt").exists()
    resumed = torchrun(_RESUME, tmp_path, "run", "state.pt", "resumed")
    assert_ok(resumed)
    assert not (tmp_path / "state.pt").exists()
    for rank in (0, 1):
        # Bitwise: weights, records (metrics reduced across ranks) and each rank's RNG stream.
        assert load(tmp_path, "resumed", rank) == load(tmp_path, "straight", rank)
    assert load(tmp_path, "straight", 0)["state"] == load(tmp_path, "straight", 1)["state"]


# -- clean exit -------------------------------------------------------------------------------

_SMALL = (
    _FIT
    + """
options = {"batch_size": 8}
fitted = classifier().fit((x, y), epochs=2, valid_data=0.2, verbose=False, dataloader_options=options)
fitted.evaluate((xv, yv))
fitted.predict(xv)
"""
)


def test_runs_exit_cleanly(tmp_path: Path) -> None:
    # The process group pyluz creates is destroyed at exit after the DDP wrapper is gone; on
    # torch 2.13 + Gloo a careless teardown aborts about one exit in three.
    for _ in range(3):
        assert_ok(torchrun(_SMALL, tmp_path))


_TRAINING_CALLBACKS = (
    _FIT
    + """
lrs = []
callbacks = [
    luz.callbacks.GradientClip(max_norm=0.5),
    luz.callbacks.LRScheduler(torch.optim.lr_scheduler.StepLR, step_size=1, gamma=0.5),
    luz.callbacks.MixedPrecision(),
    luz.callback(on_epoch_begin=lambda ctx: lrs.append(ctx.opt.param_groups[0]["lr"])),
]
fitted = classifier().fit((x, y), epochs=3, valid_data=(xv, yv), callbacks=callbacks, verbose=False,
                          dataloader_options={"batch_size": 4})
dump("training", {"lrs": lrs, "weight": fitted.model.weight.tolist(),
                  "valid": fitted.records["metrics"]["valid"]})
"""
)


def test_clipping_scheduling_and_mixed_precision_under_ddp(tmp_path: Path) -> None:
    assert_ok(torchrun(_TRAINING_CALLBACKS, tmp_path))
    ranks = [load(tmp_path, "training", rank) for rank in (0, 1)]
    assert ranks[0] == ranks[1]  # same schedule, same (clipped, bf16-autocast) model, same records
    assert ranks[0]["lrs"] == pytest.approx([0.1, 0.05, 0.025])
    assert len(ranks[0]["valid"]) == 3
