"""`luz.Accelerator`: device choice, `prepare`, moving nested batches."""

from __future__ import annotations

import re
from collections import namedtuple
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from torch import nn

import luz
from luz.accelerator import DeviceLoader, is_writer, move_to_device, unwrap_loader


def test_cpu_accelerator() -> None:
    acc = luz.Accelerator(cpu=True)
    assert acc.device == torch.device("cpu")
    assert "cpu" in repr(acc)


def test_prepare_single_returns_it_several_return_tuple() -> None:
    acc = luz.Accelerator(cpu=True)
    model = nn.Linear(2, 1)
    assert acc.prepare(model) is model
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    dl = luz.as_dataloader(torch.ones(4, 2))
    prepared = acc.prepare(model, opt, dl)
    assert isinstance(prepared, tuple) and len(prepared) == 3
    assert prepared[0] is model and prepared[1] is opt and prepared[2] is dl
    assert acc.prepare(None) is None
    assert acc.prepare([model, None]) == [model, None]
    with pytest.raises(TypeError, match="supports modules"):
        acc.prepare(3)


def test_prepare_moves_modules(device: str) -> None:
    acc = luz.Accelerator(cpu=device == "cpu")
    model = acc.prepare(nn.Linear(2, 1))
    assert next(model.parameters()).device.type == device
    unplaced = luz.Accelerator(device_placement=False).prepare(nn.Linear(2, 1))
    assert next(unplaced.parameters()).device.type == "cpu"


def test_device_loader_moves_nested_batches(device: str) -> None:
    # R row 1: same batches in order, last batch holds rows 91-100
    x = torch.arange(100.0).unsqueeze(1)
    loader = DeviceLoader(luz.as_dataloader((x, x), batch_size=10), torch.device(device))
    batches = list(loader)
    assert len(loader) == 10 and len(batches) == 10
    assert batches[-1][0].device.type == device
    assert batches[-1][0].flatten().tolist() == list(range(90, 100))
    assert unwrap_loader(loader).batch_size == 10
    assert "DeviceLoader" in repr(loader)


def test_move_to_device_structures() -> None:
    point = namedtuple("point", ["x", "y"])
    batch = {"a": (torch.ones(1), [torch.zeros(1), "keep"]), "p": point(torch.ones(1), 3)}
    moved = move_to_device(batch, torch.device("cpu"))
    assert isinstance(moved["a"], tuple) and isinstance(moved["a"][1], list)
    assert moved["a"][1][1] == "keep"
    assert isinstance(moved["p"], point) and moved["p"].y == 3


def test_the_writer_is_rank_0_or_a_process_outside_distributed_runs(one_rank_group: None) -> None:
    import torch.distributed as dist

    acc = luz.Accelerator(cpu=True, distributed=True)
    assert acc.is_writer and acc.is_main_process and is_writer(acc) and is_writer(None)
    # A rank other than 0 of a process group, with or without an accelerator, writes nothing.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(dist, "get_rank", lambda *args, **kwargs: 1)
        assert not acc.is_writer and not acc.is_main_process
        assert not is_writer(acc) and not is_writer(None)
        assert is_writer(luz.Accelerator(cpu=True, distributed=False))


def test_without_a_process_group_every_process_writes() -> None:
    assert is_writer(None) and luz.Accelerator(cpu=True).is_writer


def test_cpu_loaders_are_not_wrapped() -> None:
    dl = luz.as_dataloader(torch.ones(4))
    assert luz.Accelerator(cpu=True).prepare(dl) is dl


def test_mps_can_be_disabled(monkeypatch: pytest.MonkeyPatch) -> None:
    from luz.accelerator import mps_usable

    monkeypatch.setenv("LUZ_DISABLE_MPS", "1")
    assert not mps_usable()


def test_hand_written_loop_with_accelerator() -> None:
    acc = luz.Accelerator(cpu=True)
    model = nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    dl = luz.as_dataloader((torch.randn(8, 3), torch.randn(8, 1)), batch_size=4)
    model, opt, dl = acc.prepare(model, opt, dl)
    before = model.weight.clone()
    for x, y in dl:
        nn.functional.mse_loss(model(x), y).backward()
        opt.step()
        opt.zero_grad()
    assert not torch.equal(before, model.weight)


@pytest.mark.parametrize(
    ("obj", "named", "hint"),
    [
        ("abc", "str", "modules, optimizers and data loaders"),
        (b"abc", "bytes", "modules, optimizers and data loaders"),
        (torch.ones(3, 2), "Tensor", r"\.to\(accelerator\.device\)"),
        (np.ones((3, 2)), "ndarray", r"torch\.as_tensor\(array\)\.to\(accelerator\.device\)"),
        ((nn.Linear(1, 1), None), "tuple", r"separate arguments"),
        (3, "int", "modules, optimizers and data loaders"),
    ],
)
def test_prepare_rejects_what_is_not_a_module_optimizer_or_loader(obj: object, named: str, hint: str) -> None:
    for acc in (luz.Accelerator(cpu=True), luz.Accelerator()):
        with pytest.raises(TypeError, match=f"got {named}") as info:
            acc.prepare(obj)
        assert re.search(hint, str(info.value))
        with pytest.raises(TypeError, match=f"got {named}"):
            acc.prepare([nn.Linear(1, 1), obj])  # inside a list too


def test_prepare_keeps_lists_dicts_none_and_custom_loaders(device: str) -> None:
    class Batches:
        """A loader that is not a DataLoader: any iterable of batches."""

        def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
            yield (torch.ones(2), torch.zeros(2))

        def __len__(self) -> int:
            return 1

    acc = luz.Accelerator(cpu=device == "cpu")
    model = nn.Linear(2, 1)
    prepared = acc.prepare({"model": model, "data": [Batches(), None]})
    assert prepared["model"] is model and prepared["data"][1] is None
    (x, y), *_ = list(prepared["data"][0])
    assert x.device.type == device and y.device.type == device
    assert acc.prepare(None) is None
