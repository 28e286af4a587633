"""Step-based epochs, ``fit(..., steps_per_epoch=n)``: an epoch is ``n`` training batches, the
loader continues across epochs (a new, reshuffled pass when it is exhausted), iterable and
endless data get per-epoch records, and `AutoResume` resumes exactly mid-pass, skipping the
batches already seen without loading them."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, IterableDataset, TensorDataset

import luz
from luz._persist.checkpoint import write_checkpoint
from luz._stream import SkipBatches, TrainStream
from luz.data import InMemoryLoader, TensorBatchDataset
from tests.callbacks.test_resume import FailOnce, assert_identical, script_runner
from tests.conftest import Linear, regression_data


def module() -> luz.LuzModule:
    return luz.setup(Linear, loss=nn.MSELoss(), optimizer=torch.optim.SGD).set_opt_hparams(lr=0.05)


def shuffled_loader(n: int = 100) -> DataLoader[Any]:
    x, y = regression_data(n)
    return DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True, drop_last=True)  # 12 batches


def hand_written(loader: DataLoader[Any], epochs: int, steps: int) -> tuple[nn.Module, list[float]]:
    """The loop `steps_per_epoch` stands for: one iterator, renewed when exhausted."""
    model = Linear()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    batches = iter(loader)
    losses = []
    for _ in range(epochs):
        total = 0.0
        for _ in range(steps):
            try:
                x, y = next(batches)
            except StopIteration:
                batches = iter(loader)
                x, y = next(batches)
            loss = nn.functional.mse_loss(model(x), y)
            loss.backward()
            opt.step()
            opt.zero_grad()
            total += loss.item()
        losses.append(total / steps)
    return model, losses


def test_epochs_of_steps_equal_a_hand_written_loop_across_passes() -> None:
    # 5 steps per epoch over 12-batch passes: epochs 3 and 5 cross into a new shuffled pass.
    torch.manual_seed(1)
    fitted = module().fit(shuffled_loader(), epochs=6, steps_per_epoch=5, verbose=False)
    torch.manual_seed(1)
    model, losses = hand_written(shuffled_loader(), epochs=6, steps=5)
    assert_identical(fitted.model.state_dict(), model.state_dict())
    train = fitted.records["metrics"]["train"]
    assert [e["loss"] for e in train] == pytest.approx(losses, rel=1e-6)
    assert len(train) == 6


def test_a_short_epoch_continues_the_pass_and_the_next_pass_is_reshuffled() -> None:
    seen: list[torch.Tensor] = []
    record = luz.callback(on_train_batch_begin=lambda ctx: seen.append(ctx.batch[0][:, 0].clone()))
    x = torch.arange(16.0).unsqueeze(1).repeat(1, 10) / 1024  # sample i is i / 1024
    fitted = module().fit(
        (x, x[:, :1]),
        epochs=4,
        steps_per_epoch=3,
        callbacks=[record],
        verbose=False,
        dataloader_options={"batch_size": 4},
    )
    assert len(fitted.records["metrics"]["train"]) == 4
    first_pass, second_pass = (torch.cat(seen[i : i + 4]) * 1024 for i in (0, 4))
    assert sorted(first_pass.tolist()) == list(range(16))  # epoch 2 went on with the same pass
    assert sorted(second_pass.tolist()) == list(range(16))
    assert not torch.equal(first_pass, second_pass)  # pass 2 has a shuffle of its own


class Endless(IterableDataset[tuple[torch.Tensor, torch.Tensor]]):
    """Samples of a fixed linear relation, forever, from its own seeded generator."""

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        generator = torch.Generator().manual_seed(7)
        while True:
            x = torch.randn(10, generator=generator)
            yield x, x.sum(0, keepdim=True)


def test_an_endless_dataset_gets_records_validation_and_checkpoints(tmp_path: Path) -> None:
    iters: list[int] = []
    last = luz.callback(on_train_end=lambda ctx: iters.append(ctx.iter))
    checkpoints = luz.callbacks.ModelCheckpoint(str(tmp_path) + "/")
    x, _ = regression_data(16)
    fitted = module().fit(
        Endless(),
        epochs=3,
        steps_per_epoch=4,
        valid_data=(x, x.sum(1, keepdim=True)),
        callbacks=[last, checkpoints],
        verbose=False,
        dataloader_options={"batch_size": 8},
    )
    assert iters == [4, 4, 4]
    metrics = fitted.records["metrics"]
    assert len(metrics["train"]) == 3 and len(metrics["valid"]) == 3
    assert len(list(tmp_path.iterdir())) == 3
    assert metrics["valid"][-1]["loss"] < metrics["valid"][0]["loss"]


@pytest.mark.parametrize("bad", [0, -2, 2.5, True, "4", [4]])
def test_steps_per_epoch_must_be_a_positive_integer(bad: object) -> None:
    with pytest.raises(ValueError, match="steps_per_epoch"):
        module().fit(regression_data(32), epochs=1, steps_per_epoch=bad, verbose=False)  # type: ignore[arg-type]


def test_luz_fit_takes_steps_per_epoch_too() -> None:
    fitted = luz.fit(module(), regression_data(64), epochs=2, steps_per_epoch=1, verbose=False)
    assert len(fitted.records["metrics"]["train"]) == 2
    assert fitted.records["profile"]["train"] and len(fitted.records["profile"]["epoch"]) == 2


def test_a_distributed_sampler_gets_the_pass_number() -> None:
    # Pass p calls set_epoch(p) (pass p is epoch p without steps_per_epoch).
    x, y = regression_data(32)
    sampler = DistributedSampler(TensorDataset(x, y), num_replicas=2, rank=0, shuffle=True, seed=3)
    loader = DataLoader(TensorDataset(x, y), batch_size=4, sampler=sampler)  # 4 batches per pass
    epochs: list[int] = []
    stream = TrainStream(
        loader, 3, capture=lambda: None, restore=lambda state: None, unwrap=lambda lo: lo, wrap=lambda b: b
    )
    for _ in range(4):
        for _ in stream.epoch():
            epochs.append(sampler.epoch)
    assert epochs == [1] * 4 + [2] * 4 + [3] * 4


def test_skipping_draws_no_samples_and_yields_the_rest() -> None:
    loader = shuffled_loader(40)  # 5 batches
    torch.manual_seed(5)
    full = [b[0] for b in loader]
    torch.manual_seed(5)
    skipper = SkipBatches(loader.batch_sampler, 3)  # type: ignore[arg-type]
    rest = [b[0] for b in DataLoader(loader.dataset, batch_sampler=skipper)]
    assert len(skipper) == 2 and len(rest) == 2
    assert all(torch.equal(a, b) for a, b in zip(full[3:], rest, strict=True))


class _CountingData(TensorBatchDataset):
    """Counts the batches torch's DataLoader fetches (``__getitems__``), not the in-memory gathers."""

    fetched = 0

    def __getitems__(self, indices: Any) -> tuple[Any, ...]:
        type(self).fetched += 1
        return super().__getitems__(indices)


def test_a_resumed_pass_of_in_memory_data_stays_in_memory_and_continues_exactly() -> None:
    x, y = regression_data(100)
    loader = InMemoryLoader(_CountingData(x, y), batch_size=8, shuffle=True, drop_last=True)  # 12

    def stream() -> TrainStream:
        return TrainStream(
            loader,
            5,
            capture=torch.get_rng_state,
            restore=torch.set_rng_state,
            unwrap=lambda lo: lo,
            wrap=lambda batches: batches,
        )

    torch.manual_seed(4)
    straight = stream()
    reference = [straight.next_batch()[0] for _ in range(20)]  # passes 1 and 2
    after_reference = torch.rand(3)
    torch.manual_seed(4)
    first = stream()
    for _ in range(15):  # 3 batches into pass 2
        first.next_batch()
    position, rng = first.state_dict(), torch.get_rng_state()
    resumed = stream()
    resumed.load_state_dict(position)
    torch.set_rng_state(rng)
    _CountingData.fetched = 0
    rest = [resumed.next_batch()[0] for _ in range(5)]
    assert all(torch.equal(a, b) for a, b in zip(reference[15:], rest, strict=True))
    assert torch.equal(torch.rand(3), after_reference)  # the run's own random stream is intact
    assert _CountingData.fetched == 0  # gathered by the in-memory loader, not torch's fetcher


# -- exact resume --------------------------------------------------------------------------------


def _resume_run(path: Path, data: str, *extra: luz.Callback) -> luz.Fitted:
    torch.manual_seed(0)
    x, y = regression_data(100)
    source: Any = Endless() if data == "endless" else (x, y)
    workers = {"num_workers": 2} if data == "workers" else {}
    net = luz.setup(
        lambda: nn.Sequential(nn.Linear(10, 8), nn.Dropout(0.2), nn.Linear(8, 1)),
        loss=nn.MSELoss(),
        optimizer=torch.optim.Adam,
    ).set_opt_hparams(lr=0.01)
    return net.fit(
        source,
        epochs=5,
        steps_per_epoch=5,
        valid_data=(x[:16], y[:16]),
        callbacks=[luz.callbacks.AutoResume(path), *extra],
        verbose=False,
        dataloader_options={"batch_size": 8, **workers},
    )


@pytest.mark.parametrize("data", ["map", "endless", pytest.param("workers", marks=pytest.mark.slow)])
def test_resume_after_an_error_mid_pass_is_bitwise_identical(tmp_path: Path, data: str) -> None:
    with pytest.raises(luz.CallbackError, match="simulated failure"):
        _resume_run(tmp_path / "state.pt", data, FailOnce(3, "on_train_batch_end", iteration=2))
    resumed = _resume_run(tmp_path / "state.pt", data)
    straight = _resume_run(tmp_path / "straight.pt", data)
    assert_identical(resumed.model.state_dict(), straight.model.state_dict())
    assert_identical(resumed.records["metrics"], straight.records["metrics"], "records")


def test_a_damaged_position_is_an_error_naming_the_part(tmp_path: Path) -> None:
    path = tmp_path / "state.pt"
    with pytest.raises(luz.CallbackError):
        _resume_run(path, "map", FailOnce(2, "on_train_batch_end", iteration=1))
    state = luz.serialization.read_checkpoint(path)
    state["stream"]["taken"] = -1
    write_checkpoint(state, path)  # a valid checksum over a bad part
    with pytest.raises(ValueError, match="part 'stream'"):
        _resume_run(path, "map")


def test_a_damaged_pass_random_state_is_an_error_naming_the_file_before_any_step(tmp_path: Path) -> None:
    path = tmp_path / "state.pt"
    with pytest.raises(luz.CallbackError):
        _resume_run(path, "map", FailOnce(2, "on_train_batch_end", iteration=1))
    state = luz.serialization.read_checkpoint(path)
    assert state["stream"]["pass_state"] is not None  # epoch 1 ended inside the first pass
    state["stream"]["pass_state"]["torch"] = torch.zeros(3, dtype=torch.uint8)
    write_checkpoint(state, path)  # a valid checksum over a bad part
    steps: list[int] = []
    with pytest.raises(ValueError, match=r"state\.pt.*stream\['pass_state'\]\['torch'\]"):
        _resume_run(path, "map", luz.callback(on_train_batch_begin=lambda ctx: steps.append(ctx.iter)))
    assert steps == []  # refused at on_fit_begin, before any batch


def test_a_checkpoint_of_whole_passes_does_not_resume_with_steps_per_epoch(tmp_path: Path) -> None:
    x, y = regression_data(64)
    crash = FailOnce(2, "on_train_batch_end", iteration=1)
    with pytest.raises(luz.CallbackError):
        module().fit(
            (x, y), epochs=3, callbacks=[luz.callbacks.AutoResume(tmp_path / "s.pt"), crash], verbose=False
        )
    with pytest.raises(ValueError, match="steps per epoch: saved one pass, now 5"):
        module().fit(
            (x, y),
            epochs=3,
            steps_per_epoch=5,
            callbacks=[luz.callbacks.AutoResume(tmp_path / "s.pt")],
            verbose=False,
        )


_SCRIPT = """
import json, os, signal, sys
import torch, luz
from torch import nn
torch.set_num_threads(1)
state, out, kill = sys.argv[1], sys.argv[2], sys.argv[3] == "kill"

class Counting(torch.utils.data.Dataset):
    def __init__(self, x, y):
        self.x, self.y, self.loaded = x, y, 0
    def __len__(self):
        return len(self.x)
    def __getitem__(self, i):
        self.loaded += 1
        return self.x[i], self.y[i]

torch.manual_seed(0)
x, y = torch.randn(100, 10), torch.randn(100, 1)
data = Counting(x, y)  # 12 batches of 8 per pass; epochs of 5 steps

def maybe_kill(ctx):
    if kill and ctx.epoch == 4 and ctx.iter == 2:
        os.kill(os.getpid(), signal.SIGKILL)

net = lambda: nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 1))
fitted = (
    luz.setup(net, loss=nn.MSELoss(), optimizer=torch.optim.Adam).set_opt_hparams(lr=0.01)
    .fit(data, epochs=6, steps_per_epoch=5, verbose=False, dataloader_options={"batch_size": 8},
         valid_data=(x[:20], y[:20]),
         callbacks=[luz.callback(on_train_batch_end=maybe_kill), luz.callbacks.AutoResume(state)])
)
torch.save({"model": fitted.model.state_dict(), "metrics": fitted.records["metrics"],
            "draw": torch.rand(3), "loaded": data.loaded}, out)
"""


@pytest.mark.slow
def test_resume_after_sigkill_mid_pass_skips_without_loading(tmp_path: Path) -> None:
    run = script_runner(tmp_path, _SCRIPT)
    killed = run("state.pt", "unused.pt", "kill")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    # Killed in epoch 4: 3 epochs of 5 steps saved, 15 batches into the 12-batch passes.
    saved = luz.serialization.read_checkpoint(tmp_path / "state.pt")
    assert saved["epoch"] == 3
    assert (saved["stream"]["passes"], saved["stream"]["taken"]) == (2, 3)
    resumed = run("state.pt", "resumed.pt", "run")
    assert resumed.returncode == 0, resumed.stderr
    reference = run("reference.pt", "reference_out.pt", "run")
    assert reference.returncode == 0, reference.stderr
    a = torch.load(tmp_path / "resumed.pt", weights_only=True)
    b = torch.load(tmp_path / "reference_out.pt", weights_only=True)
    assert b["loaded"] == 6 * 5 * 8
    assert a["loaded"] == 3 * 5 * 8  # only epochs 4-6 were loaded: the skipped batches never were
    a.pop("loaded"), b.pop("loaded")
    assert len(a["metrics"]["train"]) == 6
    assert_identical(a, b)
