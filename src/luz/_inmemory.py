"""In-memory tensor data: `TensorBatchDataset` (one indexing operation per tensor per batch),
the index-batch sampler and `InMemoryLoader`, the `DataLoader` luz builds for tensors and arrays.

Public as ``luz.data.TensorBatchDataset``, ``luz.data.InMemoryLoader`` and
``luz.data.collate_batch``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler, Sampler, SequentialSampler

# A nested tuple of leaf positions, e.g. ``((0, 1), 2)`` for ``((xa, xb), y)``.
Structure = int | tuple["Structure", ...]


class TensorBatchDataset(Dataset[Any]):
    """A dataset over tensors with equal first dimension; items are tuples.

    Each argument is a tensor or a (nested) tuple/list of tensors, e.g.
    ``TensorBatchDataset((xa, xb), y)`` for a two-input model: items and batches keep that
    nesting, as tuples. It implements ``__getitems__``, so a `DataLoader` fetches a whole batch
    with one indexing operation per tensor instead of collating samples one by one (much
    faster for in-memory data). Use it with `collate_batch` as ``collate_fn``.
    """

    def __init__(self, *tensors: Any) -> None:
        if not tensors:
            raise ValueError("TensorBatchDataset needs at least one tensor.")
        leaves: list[torch.Tensor] = []
        self.structure: tuple[Structure, ...] = tuple(_flatten(t, leaves) for t in tensors)
        self._flat = all(isinstance(s, int) for s in self.structure)
        n = leaves[0].shape[0] if leaves[0].ndim else 0
        for i, t in enumerate(leaves):
            if t.ndim == 0 or t.shape[0] != n:
                shapes = [tuple(x.shape) for x in leaves]
                raise ValueError(
                    f"All tensors/arrays must share their first dimension (number of samples); "
                    f"tensor {i} does not. Shapes (in order, nesting flattened): {shapes}."
                )
        self.tensors = tuple(leaves)
        """The tensors, flattened in order."""
        # True when luz built it from the user's in-memory data inside fit/predict/evaluate:
        # its floating tensors then take the model's dtype (`match_model_dtype`).
        self._from_memory = False

    def __len__(self) -> int:
        return int(self.tensors[0].shape[0])

    def _build(self, leaves: list[torch.Tensor]) -> tuple[Any, ...]:
        if self._flat:
            return tuple(leaves)
        return tuple(_unflatten(s, leaves) for s in self.structure)

    def __getitem__(self, index: int) -> tuple[Any, ...]:
        return self._build([t[index] for t in self.tensors])

    def __getitems__(self, indices: Sequence[int] | torch.Tensor) -> tuple[Any, ...]:
        return self.gather(torch.as_tensor(indices, dtype=torch.int64))

    def gather(self, index: torch.Tensor) -> tuple[Any, ...]:
        """The batch at ``index`` (an int64 tensor on the tensors' device): one
        ``index_select`` per tensor, nested like the dataset."""
        if self._flat:
            return tuple([torch.index_select(t, 0, index) for t in self.tensors])
        return self._build([torch.index_select(t, 0, index) for t in self.tensors])

    def to(self, device: torch.device) -> TensorBatchDataset:
        """A dataset with the same nesting over the tensors moved to ``device``."""
        moved = TensorBatchDataset(*self._build([t.to(device) for t in self.tensors]))
        moved._from_memory = self._from_memory
        return moved

    def subset(self, indices: torch.Tensor) -> TensorBatchDataset:
        """A new dataset with the rows at ``indices`` (copied), nested alike."""
        subset = TensorBatchDataset(*self._build([t[indices] for t in self.tensors]))
        subset._from_memory = self._from_memory
        return subset


class IndexBatchSampler(Sampler[torch.Tensor]):
    """Batches of sample indices as int64 tensors, in the order of a `RandomSampler` or a
    `SequentialSampler`: each epoch draws the same permutation as torch's own
    ``BatchSampler(RandomSampler(...))`` from the same random state (the same global-RNG seed
    draw, or the sampler's generator, advanced alike), so shuffled batches are bitwise equal;
    it is one ``randperm`` split into views instead of a Python int per sample.

    Args:
        sampler: a `RandomSampler` without replacement over the whole dataset, or a
            `SequentialSampler`.
        batch_size: samples per batch.
        drop_last: drop the last, incomplete batch.
        device: where the index tensors go (the permutation is drawn on the CPU and moved
            once per epoch, so CUDA data is gathered there without a per-batch copy).
    """

    def __init__(
        self,
        sampler: RandomSampler | SequentialSampler,
        batch_size: int,
        drop_last: bool,
        device: torch.device | None = None,
    ) -> None:
        if not _plain_sampler(sampler):
            raise ValueError(
                "IndexBatchSampler takes a RandomSampler without replacement over the whole "
                f"dataset or a SequentialSampler; got {type(sampler).__name__}."
            )
        self.sampler = sampler
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.device = device

    def __iter__(self) -> Iterator[torch.Tensor]:
        sampler = self.sampler
        n = len(sampler)
        generator = None
        if isinstance(sampler, RandomSampler):
            generator = sampler.generator
            if generator is None:  # exactly RandomSampler.__iter__'s draw from the global RNG
                seed = int(torch.empty((), dtype=torch.int64).random_().item())
                own = torch.Generator()
                own.manual_seed(seed)
                order = torch.randperm(n, generator=own)
            else:
                order = torch.randperm(n, generator=generator)
        else:
            order = torch.arange(n)
        if self.device is not None and self.device.type != "cpu":
            # Once per epoch; from pinned memory the copy does not wait for the device.
            pinned = order.pin_memory() if self.device.type == "cuda" else order
            order = pinned.to(self.device, non_blocking=True)
        batches = torch.split(order, self.batch_size)[: len(self)]
        if generator is None:
            yield from batches
            return
        # An exhausted RandomSampler draws one more permutation (and keeps none of it), so the
        # user's generator advances alike, when torch's BatchSampler exhausts it: before the
        # last batch when that one is short and kept, else after the last batch.
        short_last = not self.drop_last and n % self.batch_size != 0
        yield from batches[:-1] if short_last else batches
        torch.randperm(n, generator=generator)
        if short_last:
            yield batches[-1]

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)


def _plain_sampler(sampler: object) -> bool:
    if type(sampler) is SequentialSampler:
        return True
    return (
        type(sampler) is RandomSampler
        and not sampler.replacement
        and sampler.num_samples == len(sampler.data_source)
    )


_PLAIN_OPTIONS = frozenset({"batch_size", "shuffle", "drop_last", "generator"})


def _plain_batching(options: Mapping[str, Any]) -> bool:
    """Options an `InMemoryLoader` implements itself: batch size (an int), shuffle, drop_last
    and a generator. Workers, samplers, a collate function, pinning and the rest keep torch's
    `DataLoader`."""
    batch_size = options.get("batch_size")
    return (
        options.keys() <= _PLAIN_OPTIONS
        and isinstance(batch_size, int)
        and not isinstance(batch_size, bool)
        and batch_size > 0
    )


class InMemoryLoader(DataLoader[Any]):
    """The loader luz builds for in-memory tensors: a `DataLoader` over a `TensorBatchDataset`
    whose batches are gathered with one ``index_select`` per tensor.

    It is a real `DataLoader` (``dataset``, ``sampler``, ``batch_sampler``, ``batch_size``,
    ``len`` are torch's), and yields the same batches in the same order as
    ``DataLoader(dataset, batch_size, shuffle, drop_last, generator, collate_fn=collate_batch)``
    from the same random state, drawing the same random numbers: its batch indices come from an
    `IndexBatchSampler`, and iterating skips the per-batch machinery of torch's iterator
    (with workers set later, or pinned memory, it falls back to it). Built by
    `as_dataloader` and inside ``fit``/``predict``/``evaluate`` for tensors and arrays when
    ``dataloader_options`` hold only ``batch_size``, ``shuffle``, ``drop_last`` and
    ``generator``.

    Its tensors may live on another device than the CPU (`on_device`): the permutation is
    then drawn on the CPU as here and moved once per epoch, and batches are gathered on the
    device.
    """

    def __init__(
        self,
        dataset: TensorBatchDataset,
        batch_size: int = 32,
        shuffle: bool = False,
        drop_last: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(
            dataset,
            batch_size=batch_size,
            shuffle=bool(shuffle),
            drop_last=drop_last,
            generator=generator,
            collate_fn=collate_batch,
        )
        self.index_batches = IndexBatchSampler(
            self.sampler,  # type: ignore[arg-type]  # DataLoader built a Random/SequentialSampler
            batch_size,
            drop_last,
            device=_device_of(dataset),
        )
        """The index tensors of each batch (what torch's own iterator fetches with, too)."""

    @property
    def _index_sampler(self) -> Any:  # what torch's iterator and len() read
        return self.index_batches

    def __iter__(self) -> Any:
        if self.num_workers > 0 or self.pin_memory:  # set after construction: torch's iterator
            return super().__iter__()
        # The random draw torch's iterator makes when it is created (its workers' base seed),
        # made here too, at the same point, so the global random stream advances exactly as
        # with a DataLoader; the batch indices are drawn when the first batch is asked for.
        torch.empty((), dtype=torch.int64).random_(generator=self.generator)
        return self._batches(iter(self.index_batches))

    def _batches(self, indices: Iterator[torch.Tensor]) -> Iterator[tuple[Any, ...]]:
        dataset: TensorBatchDataset = self.dataset  # type: ignore[assignment]
        for index in indices:
            yield dataset.gather(index)

    def on_device(self, device: torch.device) -> InMemoryLoader:
        """The same loader (same sampler, hence the same order and random draws) over a copy of
        the tensors on ``device``; gathering happens there, with no per-batch copy."""
        dataset: TensorBatchDataset = self.dataset  # type: ignore[assignment]
        index_batches = IndexBatchSampler(
            self.index_batches.sampler, self.index_batches.batch_size, self.drop_last, device=device
        )
        return self._like(dataset.to(device), index_batches)

    def with_index_batches(self, index_batches: Iterable[torch.Tensor]) -> InMemoryLoader:
        """The same loader drawing its batch indices from ``index_batches`` (an iterable of
        index tensors with a length, such as a `luz._stream.SkipBatches` over `index_batches`)."""
        return self._like(self.dataset, index_batches)  # type: ignore[arg-type]

    def _like(self, dataset: TensorBatchDataset, index_batches: Iterable[torch.Tensor]) -> InMemoryLoader:
        # This loader's sampler and options over ``dataset``, its batches from ``index_batches``.
        loader = InMemoryLoader.__new__(InMemoryLoader)
        DataLoader.__init__(
            loader,
            dataset,
            batch_size=self.batch_size,
            sampler=self.sampler,
            drop_last=self.drop_last,
            generator=self.generator,
            collate_fn=collate_batch,
        )
        loader.index_batches = index_batches  # type: ignore[assignment]
        return loader

    def nbytes(self) -> int:
        """Bytes of the tensors behind the loader."""
        dataset: TensorBatchDataset = self.dataset  # type: ignore[assignment]
        return sum(t.numel() * t.element_size() for t in dataset.tensors)


def _device_of(dataset: TensorBatchDataset) -> torch.device:
    return dataset.tensors[0].device


def _flatten(x: Any, leaves: list[torch.Tensor]) -> Structure:
    if isinstance(x, torch.Tensor):
        leaves.append(x)
        return len(leaves) - 1
    if isinstance(x, tuple | list) and x:
        return tuple(_flatten(e, leaves) for e in x)
    raise TypeError(
        f"TensorBatchDataset takes tensors or non-empty (nested) tuples/lists of tensors; "
        f"got {type(x).__name__}."
    )


def _unflatten(structure: Structure, leaves: list[torch.Tensor]) -> Any:
    if isinstance(structure, int):
        return leaves[structure]
    return tuple(_unflatten(s, leaves) for s in structure)


def collate_batch(batch: Any) -> Any:
    """The collate function for `TensorBatchDataset`: its batches are already stacked."""
    return batch
