"""Fault tolerance and several nodes under torchrun (CPU, Gloo): a worker killed mid-epoch makes
``torchrun --max-restarts`` restart the group, which comes back on the first try and ends
identical to an uninterrupted run; two launchers joined by a c10d rendezvous (``--nnodes=2``)
equal one launcher with two processes.

``LUZ_ELASTIC_RESTARTS`` sets how many workers are killed, one per generation, in a row (1 by
default to keep CI short; ``LUZ_ELASTIC_RESTARTS=10`` is the full check). Before pyluz
namespaced the launcher's store by ``TORCHELASTIC_RESTART_COUNT``, a restarted group often
tried to reach a dead worker's Gloo address and the restart failed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.test_distributed import _free_port
from tests.test_distributed import pytestmark as _distributed

pytestmark = [*_distributed, pytest.mark.slow]

RESTARTS = int(os.environ.get("LUZ_ELASTIC_RESTARTS", "1"))

_SCRIPT = """
import json, os, signal, sys
import torch, luz
from torch import nn
torch.set_num_threads(1)
OUT, KILLS, NAME, EPOCHS = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
RANK = int(os.environ["RANK"])
RESTART = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))

class Kill(luz.Callback):
    # Generation g < KILLS: rank g % 2 dies at batch 2 of epoch g + 2 (after g + 1 saved epochs;
    # epochs of 3 steps over passes of 4 batches per rank, so the resumes are mid-pass).
    def __init__(self, active):
        self.active = active
    def on_train_batch_end(self):
        at = (self.ctx.epoch, self.ctx.iter) == (RESTART + 2, 2)
        if self.active and RESTART < KILLS and RANK == RESTART % 2 and at:
            os.kill(os.getpid(), signal.SIGKILL)

def run(state, kill):
    torch.manual_seed(0)
    x = torch.randn(40, 4)
    y = x @ torch.randn(4, 1)
    net = lambda: nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.2), nn.Linear(8, 1))
    module = luz.setup(net, loss=nn.MSELoss(), optimizer=torch.optim.Adam).set_opt_hparams(lr=0.01)
    fitted = module.fit(
        (x, y), epochs=EPOCHS, steps_per_epoch=3, valid_data=0.2, verbose=False,
        dataloader_options={"batch_size": 4},
        callbacks=[Kill(kill), luz.callbacks.AutoResume(os.path.join(OUT, state))],
        accelerator=luz.Accelerator(timeout=60),
    )
    weights = {k: v.tolist() for k, v in fitted.model.state_dict().items()}
    return {"weights": weights, "records": fitted.records["metrics"], "draw": torch.rand(2).tolist()}

result = {"restart": RESTART, "world": int(os.environ["WORLD_SIZE"]), "fit": run(f"{NAME}.pt", True)}
if KILLS:  # the last generation also runs the same fit uninterrupted, for reference
    result["straight"] = run("straight.pt", False)
with open(os.path.join(OUT, f"{NAME}_r{RANK}.json"), "w") as handle:
    json.dump(result, handle)
"""


def _launch(tmp_path: Path, *launcher: str, kills: int, name: str) -> subprocess.Popen[str]:
    script = tmp_path / "elastic.py"
    script.write_text(textwrap.dedent(_SCRIPT))
    arguments = [str(script), str(tmp_path), str(kills), name, str(RESTARTS + 2)]
    command = [sys.executable, "-m", "torch.distributed.run", *launcher, *arguments]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path
    )


def _finish(process: subprocess.Popen[str], timeout: float) -> None:
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        raise AssertionError(f"torchrun did not finish in {timeout} s:\n{output[-4000:]}") from None
    assert process.returncode == 0, output[-6000:]


def _result(tmp_path: Path, name: str, rank: int) -> Any:
    return json.loads((tmp_path / f"{name}_r{rank}.json").read_text())


@pytest.fixture(scope="module")
def elastic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One torchrun job with ``--max-restarts=RESTARTS`` in which a worker is killed in each of
    the first ``RESTARTS`` generations: it succeeds only if every restart comes back at once."""
    tmp_path = tmp_path_factory.mktemp("elastic")
    launcher = ("--nproc-per-node=2", f"--max-restarts={RESTARTS}", f"--master-port={_free_port()}")
    _finish(_launch(tmp_path, *launcher, kills=RESTARTS, name="killed"), timeout=60 + 40 * RESTARTS)
    return tmp_path


def test_killed_workers_restart_and_the_run_ends_as_an_uninterrupted_one(elastic: Path) -> None:
    for rank in (0, 1):
        result = _result(elastic, "killed", rank)
        assert result["restart"] == RESTARTS  # every restart came back on its first try
        assert result["fit"] == result["straight"]  # weights, records and RNG, bitwise
        assert len(result["fit"]["records"]["valid"]) == RESTARTS + 2
    assert _result(elastic, "killed", 0)["fit"] == _result(elastic, "killed", 1)["fit"]
    assert not (elastic / "killed.pt").exists()  # the finished run removed its state file


def test_two_nodes_equal_one_node_with_the_same_world_size(elastic: Path, tmp_path: Path) -> None:
    # Two launchers ("nodes") of one process each, joined by a c10d rendezvous on this machine.
    rendezvous = (
        "--nnodes=2",
        "--nproc-per-node=1",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint=127.0.0.1:{_free_port()}",
        "--rdzv-id=luz-two-nodes",
    )
    nodes = [_launch(tmp_path, *rendezvous, kills=0, name="nodes") for _ in range(2)]
    for node in nodes:
        _finish(node, timeout=120)
    reference = _result(elastic, "killed", 0)["straight"]  # one launcher, two processes
    for rank in (0, 1):
        result = _result(tmp_path, "nodes", rank)
        assert result["world"] == 2
        assert result["fit"] == reference
