"""luz._dist.sync: the stop policy, per-epoch reshuffling and reduced metrics, in a real process
group (one rank in this process; two ranks spawned with torch.multiprocessing)."""

from __future__ import annotations

import os
import traceback
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

import luz
from luz._dist.sync import DistributedSync, HeldStop
from luz.accelerator import DeviceLoader
from luz.events import StopTraining
from tests.conftest import Linear, regression_data

CPU = torch.device("cpu")


def test_held_stop_raises_the_first_held_stop_at_the_agreement(one_rank_group: None) -> None:
    policy = HeldStop(CPU)
    policy.settle()  # nothing held: no stop
    first, second = StopTraining("first"), StopTraining("second")
    policy.hold(first)
    policy.hold(second)
    with pytest.raises(StopTraining) as raised:
        policy.settle()
    assert raised.value is first
    assert policy.held is None
    policy.settle()  # the stop was consumed


class _Total(luz.Metric):
    dist_reduce = {"total": "sum", "seen": "cat"}  # noqa: RUF012

    def __init__(self) -> None:
        self.total = torch.zeros(())
        self.seen: list[int] = []

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        self.total = self.total + pred.sum()

    def compute(self) -> float:
        return float(self.total)


def _two_ranks(rank: int, store: str, out: str) -> None:
    try:
        dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
        results: dict[str, Any] = {}
        policy = HeldStop(CPU)
        policy.settle()  # no rank asked: every rank goes on
        if rank == 1:
            policy.hold(StopTraining("from rank 1"))
        try:
            policy.settle()
            results["stopped"] = None
        except StopTraining as stop:
            results["stopped"] = str(stop)
        metric = _Total()
        metric.total = torch.tensor(float(rank + 1))
        metric.seen = [rank]
        metric.sync()
        results["total"], results["seen"] = float(metric.total), metric.seen
        torch.save(results, os.path.join(out, f"rank{rank}.pt"))
        dist.destroy_process_group()
    except BaseException:
        Path(out, f"error{rank}.txt").write_text(traceback.format_exc())
        raise


@pytest.mark.distributed
@pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()), reason="needs Gloo")
def test_two_ranks_stop_together_and_combine_metric_state(tmp_path: Path) -> None:
    mp.spawn(_two_ranks, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=2, join=True)
    results = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    # The rank that asked raises its own stop; the other learns that another process stopped.
    assert results[1]["stopped"] == "from rank 1"
    assert results[0]["stopped"] == "Training was stopped on another process."
    for result in results:
        assert result["total"] == 3.0 and result["seen"] == [0, 1]


def test_distributed_sync_reshuffles_a_device_wrapped_loader() -> None:
    x, y = regression_data(8)
    dataset = TensorDataset(x, y)
    sampler: DistributedSampler[Any] = DistributedSampler(dataset, num_replicas=1, rank=0, shuffle=True)
    ctx = luz.Context(accelerator=luz.Accelerator(cpu=True))
    ctx.train_data = DeviceLoader(DataLoader(dataset, batch_size=4, sampler=sampler), CPU)
    sync = DistributedSync()
    sync.ctx = ctx
    ctx.epoch = 3
    sync.on_epoch_begin()
    assert sampler.epoch == 3


class _WrapOnDevice(luz.Callback):
    """Puts the training loader behind a `DeviceLoader`, as a fit on a GPU does, and records
    the sampler's epoch at each epoch begin."""

    weight = -float("inf")

    def __init__(self) -> None:
        self.epochs: list[int] = []

    def on_fit_begin(self) -> None:
        self.context.train_data = DeviceLoader(self.context.train_data, CPU)  # type: ignore[arg-type]

    def on_train_begin(self) -> None:
        self.epochs.append(self.context.train_data.loader.sampler.epoch)  # type: ignore[union-attr]


def test_a_one_rank_distributed_fit_reshuffles_and_checkpoints_its_sampler(
    one_rank_group: None, tmp_path: Path
) -> None:
    wrap = _WrapOnDevice()
    fitted = (
        luz.setup(Linear, loss=nn.MSELoss(), optimizer=torch.optim.SGD)
        .set_opt_hparams(lr=0.01)
        .fit(
            regression_data(),
            epochs=2,
            callbacks=[wrap, luz.callbacks.ModelCheckpoint(tmp_path / "last.pt", monitor="train_loss")],
            accelerator=luz.Accelerator(cpu=True, distributed=True),
            verbose=False,
        )
    )
    assert wrap.epochs == [1, 2]
    saved = luz.serialization.read_checkpoint(tmp_path / "last.pt")
    assert saved["distributed"]["world_size"] == 1 and saved["distributed"]["sampler_seed"] is not None
    assert len(fitted.records["metrics"]["train"]) == 2
