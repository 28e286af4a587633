"""`luz.Accelerator`: device choice, `prepare`, moving nested batches."""

from __future__ import annotations

import re
from collections import namedtuple
from collections.abc import Iterator
from typing import ClassVar

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


# -- in-memory data on the device (issue 18, SPEC §9) -------------------------------------------------


class CountedMoves(torch.Tensor):
    """A tensor that counts the copies made of it with ``.to`` (its batches inherit the class)."""

    moves: ClassVar[list[str]] = []

    @classmethod
    def __torch_function__(
        cls, func: object, types: object, args: tuple[object, ...] = (), kwargs: object = None
    ) -> object:
        if getattr(func, "__name__", "") == "to":
            cls.moves.append("to")
        return super().__torch_function__(func, types, args, kwargs or {})  # type: ignore[arg-type]


def _counted_loader() -> luz.data.InMemoryLoader:
    CountedMoves.moves = []
    x = torch.randn(40, 3).as_subclass(CountedMoves)
    y = torch.arange(40).as_subclass(CountedMoves)
    loader = luz.as_dataloader((x, y), batch_size=8, shuffle=True)
    assert isinstance(loader, luz.data.InMemoryLoader)
    return loader


def test_in_memory_data_is_moved_once_and_batches_are_gathered_there(device: str) -> None:
    loader = _counted_loader()
    target = torch.device(device)
    moved = luz.accelerator.in_memory_on_device(loader, target, free_bytes=10**9, share=0.25)
    assert isinstance(moved, luz.data.InMemoryLoader) and moved.sampler is loader.sampler
    assert CountedMoves.moves == ["to", "to"]  # once per tensor
    tensors = moved.dataset.tensors  # type: ignore[attr-defined]
    assert all(t.device.type == target.type for t in tensors)
    for kind, source in (("moved", moved), ("cpu", loader)):
        torch.manual_seed(0)
        batches = [b for _ in range(2) for b in source]
        if kind == "moved":
            got = batches
        else:
            want = batches
    assert CountedMoves.moves == ["to", "to"]  # no copy per batch, nor per epoch
    assert len(got) == len(want) == 10
    for (gx, gy), (wx, wy) in zip(got, want, strict=True):  # the same order from the same seed
        assert gx.device.type == target.type
        assert torch.equal(gy.cpu(), wy) and torch.equal(gx.cpu(), wx)
    if device == "cpu":  # nothing moved at all: batches are gathered from the same storage
        assert [t.data_ptr() for t in tensors] == [t.data_ptr() for t in loader.dataset.tensors]  # type: ignore[attr-defined]


def test_in_memory_data_stays_on_the_host_when_it_does_not_fit() -> None:
    loader = _counted_loader()
    size = loader.nbytes()
    assert size == 40 * 3 * 4 + 40 * 8
    cpu = torch.device("cpu")
    assert luz.accelerator.in_memory_on_device(loader, cpu, free_bytes=4 * size - 1, share=0.25) is None
    assert luz.accelerator.in_memory_on_device(loader, cpu, free_bytes=4 * size, share=0.25) is not None
    assert luz.accelerator.in_memory_on_device(loader, cpu, free_bytes=10**12, share=0.0) is None
    assert CountedMoves.moves == ["to", "to"]


@pytest.mark.parametrize("share", [-0.1, 1.5, "half"])
def test_device_data_share_is_checked(share: object) -> None:
    error = TypeError if isinstance(share, str) else ValueError
    with pytest.raises(error, match="device_data_share"):
        luz.Accelerator(cpu=True, device_data_share=share)  # type: ignore[arg-type]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_cuda_fit_on_tensors_gathers_batches_on_the_device() -> None:
    x, y = torch.randn(256, 10), torch.randint(0, 3, (256,))
    acc = luz.Accelerator()
    train = acc.prepare(luz.as_dataloader((x, y), batch_size=32, shuffle=True))
    assert isinstance(train, luz.data.InMemoryLoader)
    assert train.dataset.tensors[0].is_cuda  # type: ignore[attr-defined]
    batches = list(train)
    assert len(batches) == 8 and all(b[0].is_cuda and b[1].is_cuda for b in batches)
    off = luz.Accelerator(device_data_share=0).prepare(luz.as_dataloader((x, y), batch_size=32))
    assert isinstance(off, DeviceLoader)
