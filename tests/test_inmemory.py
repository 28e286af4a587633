"""luz._inmemory: the in-memory loader yields what torch's DataLoader yields, bit for bit, from the
same random state, and is built only when the options allow it."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader

import luz
from luz._loaders import eval_loader, training_loader
from luz.data import TensorBatchDataset


class _TorchIteration:
    def __init__(self, loader: DataLoader[Any]) -> None:
        self.loader = loader

    def __iter__(self) -> Any:
        return DataLoader.__iter__(self.loader)

    def __len__(self) -> int:
        return len(self.loader)


def _draws(loader: Any, generator: torch.Generator | None) -> list[tuple[Any, ...]]:
    """Every batch of two epochs, with a global-RNG draw after each and the generator's state."""
    seen = []
    for _ in range(2):
        for batch in loader:
            state = None if generator is None else generator.get_state()
            seen.append((batch, torch.rand(1), state))
    return seen


@pytest.mark.parametrize(
    ("n", "batch_size", "drop_last", "shuffle", "own_generator"),
    [
        (100, 32, False, True, False),  # a short last batch
        (96, 32, False, True, True),  # no short batch
        (100, 32, False, True, True),  # the user's generator, short last batch kept
        (100, 32, True, True, True),  # short last batch dropped
        (100, 7, False, False, False),  # sequential
        (5, 32, True, True, False),  # no batch at all
    ],
)
def test_in_memory_loader_equals_torch_dataloader_bitwise(
    n: int, batch_size: int, drop_last: bool, shuffle: bool, own_generator: bool
) -> None:
    from luz.data import InMemoryLoader, collate_batch

    x, y = torch.randn(n, 3), torch.arange(n)
    dataset = TensorBatchDataset((x, [x * 2]), y)
    runs = []
    for kind in ("torch", "luz", "luz through torch's iterator"):
        torch.manual_seed(0)
        generator = torch.Generator().manual_seed(5) if own_generator else None
        options = {"batch_size": batch_size, "shuffle": shuffle, "drop_last": drop_last}
        options["generator"] = generator
        if kind == "torch":
            loader: Any = DataLoader(dataset, collate_fn=collate_batch, **options)
        else:
            loader = InMemoryLoader(dataset, **options)
            assert isinstance(loader, DataLoader) and loader.batch_size == batch_size
            if kind != "luz":  # torch's iterator fetches with the same index batches
                loader = _TorchIteration(loader)
        runs.append((_draws(loader, generator), torch.rand(3), len(loader)))
    reference, after, length = runs[0]
    assert len(reference) == 2 * length
    for seen, rest, size in runs[1:]:
        assert size == length and len(seen) == len(reference) and torch.equal(rest, after)
        for (batch, draw, state), (want, want_draw, want_state) in zip(seen, reference, strict=True):
            (xa, (xb,)), yb = batch
            assert isinstance(batch, tuple) and isinstance(batch[0][1], tuple)
            assert torch.equal(yb, want[1]) and torch.equal(xa, want[0][0]) and torch.equal(xb, want[0][1][0])
            assert torch.equal(draw, want_draw)
            assert state is None or torch.equal(state, want_state)
    if shuffle and n > batch_size:
        assert not torch.equal(reference[0][0][1], torch.arange(batch_size))  # it did shuffle


def test_tensors_get_an_in_memory_loader_unless_options_need_torchs() -> None:
    from torch.utils.data import default_collate

    from luz.data import InMemoryLoader

    x, y = torch.randn(20, 3), torch.arange(20)
    assert type(luz.as_dataloader((x, y))) is InMemoryLoader
    assert type(training_loader((x, y), {"batch_size": 4})) is InMemoryLoader
    assert type(eval_loader(x, None, role="prediction")) is InMemoryLoader
    for options in (
        {"num_workers": 0},
        {"collate_fn": default_collate},
        {"pin_memory": False},
        {"sampler": range(20)},
        {"batch_size": None},
    ):
        loader = luz.as_dataloader((x, y), **options)
        assert type(loader) is DataLoader, options
    batch = next(iter(luz.as_dataloader((x, y), batch_size=5, num_workers=0)))
    assert torch.equal(batch[0], x[:5])  # the DataLoader path still fetches whole batches
