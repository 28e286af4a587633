"""LRMonitor: the learning rate per epoch reaches the records, get_metrics(), CSV and TensorBoard."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import luz
from luz.callbacks import CSVLogger, LRMonitor, LRScheduler, TensorBoard
from tests.conftest import Linear, regression_data, two_optimizer_model


def _fit(callbacks: list[Any], module: Any = None, epochs: int = 4) -> luz.Fitted:
    x, y = regression_data(n=32)
    if module is None:
        module = luz.setup(Linear, loss=nn.MSELoss(), optimizer=torch.optim.SGD).set_opt_hparams(lr=0.1)
    return module.fit(
        (x, y), epochs=epochs, valid_data=(x, y), callbacks=callbacks, verbose=False,
        dataloader_options={"batch_size": 16},
    )  # fmt: skip


def test_records_the_rate_each_epoch_trained_with(tmp_path: Path) -> None:
    # StepLR halves the rate after every epoch: epoch e trains with 0.1 / 2**(e-1).
    halve = LRScheduler(torch.optim.lr_scheduler.StepLR, step_size=1, gamma=0.5)
    fitted = _fit([halve, LRMonitor(), CSVLogger(tmp_path / "log.csv")])
    train = fitted.records["metrics"]["train"]
    assert [list(epoch) for epoch in train] == [["loss", "lr"]] * 4  # after the epoch's metrics
    assert [epoch["lr"] for epoch in train] == pytest.approx([0.1, 0.05, 0.025, 0.0125])
    assert all("lr" not in epoch for epoch in fitted.records["metrics"]["valid"])
    frame = fitted.get_metrics()
    lr = frame[frame["metric"] == "lr"]
    assert list(lr["set"]) == ["train"] * 4 and list(lr["epoch"]) == [1, 2, 3, 4]
    assert list(lr["value"]) == pytest.approx([0.1, 0.05, 0.025, 0.0125])
    with (tmp_path / "log.csv").open(newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["set"] == "train"]
    assert [float(row["lr"]) for row in rows] == pytest.approx([0.1, 0.05, 0.025, 0.0125])


def test_several_optimizers_give_lr_per_optimizer_name() -> None:
    module = luz.setup(two_optimizer_model(("gen", "disc")), loss=nn.MSELoss()).set_opt_hparams(lr=0.02)
    slow = LRScheduler(torch.optim.lr_scheduler.StepLR, step_size=1, gamma=0.1, opt_name="disc")
    fitted = _fit([LRMonitor(), slow], module=module, epochs=2)
    assert [e["lr"] for e in fitted.records["metrics"]["train"]] == [
        pytest.approx({"gen": 0.02, "disc": 0.02}),
        pytest.approx({"gen": 0.02, "disc": 0.002}),
    ]
    frame = fitted.get_metrics()
    assert {"lr_gen", "lr_disc"} <= set(frame["metric"])


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is None, reason="tensorboard is not installed")
def test_the_rate_reaches_tensorboard(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _fit([LRMonitor(), TensorBoard(tmp_path)], epochs=3)
    acc = EventAccumulator(str(tmp_path / "train")).Reload()
    assert "lr" in acc.Tags()["scalars"]
    events = acc.Scalars("lr")
    assert [e.step for e in events] == [1, 2, 3]
    assert [e.value for e in events] == pytest.approx([0.1, 0.1, 0.1])
