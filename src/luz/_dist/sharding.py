"""Splitting data between the processes of a distributed run.

Training: the loader is rebuilt with the same options around a `DistributedSampler` (shuffled
or not as the user's loader was; padded so every rank has the same number of batches, as DDP
needs). Evaluation and prediction: the batches the single-process loader would produce are dealt
out round-robin (rank ``r`` gets batches ``r, r + W, r + 2W, ...``), so every sample is seen
exactly once, the batches are the same batches as in one process, and predictions are put back
in order by interleaving.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import Any

from torch.utils.data import (
    BatchSampler,
    DataLoader,
    DistributedSampler,
    IterableDataset,
    RandomSampler,
    Sampler,
    SequentialSampler,
)


def loader_options(loader: DataLoader[Any]) -> dict[str, Any]:
    """The options of ``loader`` other than how it samples and batches (workers, collate, ...)."""
    options: dict[str, Any] = {
        "num_workers": loader.num_workers,
        "collate_fn": loader.collate_fn,
        "pin_memory": loader.pin_memory,
        "timeout": loader.timeout,
        "worker_init_fn": loader.worker_init_fn,
        "multiprocessing_context": loader.multiprocessing_context,
        "generator": loader.generator,
        "persistent_workers": loader.persistent_workers,
        "pin_memory_device": loader.pin_memory_device,
    }
    if loader.num_workers > 0:
        options["prefetch_factor"] = loader.prefetch_factor
    if hasattr(loader, "in_order"):
        options["in_order"] = loader.in_order
    return options


def distribute_train_loader(loader: Any, *, rank: int, world: int, seed: int) -> Any:
    """The training loader for this rank: same dataset, batch size and options, sampled by a
    `DistributedSampler` (``seed`` must be equal on all ranks). A loader that already has a
    `DistributedSampler`, or one over an `IterableDataset` (which must shard itself), is kept."""
    if not isinstance(loader, DataLoader) or isinstance(loader.dataset, IterableDataset):
        return loader
    if isinstance(loader.sampler, DistributedSampler):
        return loader
    custom_batches = loader.batch_sampler is not None and type(loader.batch_sampler) is not BatchSampler
    sampler = loader.sampler
    plain = type(sampler) is SequentialSampler or (
        type(sampler) is RandomSampler
        and not sampler.replacement
        and sampler.num_samples == len(loader.dataset)  # type: ignore[arg-type]
    )
    if custom_batches or not plain or loader.batch_size is None:
        raise ValueError(
            "Distributed training rebuilds the training DataLoader around a DistributedSampler, "
            f"but this one uses a custom sampler ({type(sampler).__name__}) or batch sampler "
            f"({type(loader.batch_sampler).__name__}). Pass a Dataset (with dataloader_options), "
            "a DataLoader with shuffle=True/False, or a DataLoader with a DistributedSampler you "
            "built yourself (luz calls its set_epoch)."
        )
    shuffle = isinstance(sampler, RandomSampler)
    dist_sampler: DistributedSampler[Any] = DistributedSampler(
        loader.dataset, num_replicas=world, rank=rank, shuffle=shuffle, seed=seed
    )
    return DataLoader(
        loader.dataset,
        batch_size=loader.batch_size,
        sampler=dist_sampler,
        drop_last=loader.drop_last,
        **loader_options(loader),
    )


def shard_sampler(loader: Any) -> DistributedSampler[Any] | None:
    """The `DistributedSampler` of a loader, if it has one. Pass the user's loader: one behind
    a device wrapper has none (``shard_sampler(unwrap_loader(loader))``)."""
    sampler = getattr(loader, "sampler", None)
    return sampler if isinstance(sampler, DistributedSampler) else None


class RoundRobin(Sampler[Any]):
    """Every ``world``-th item of ``inner`` (a batch sampler or a sampler), from ``rank``."""

    def __init__(self, inner: Iterable[Any], rank: int, world: int) -> None:
        self.inner = inner
        self.rank = rank
        self.world = world

    def __iter__(self) -> Iterator[Any]:
        rank, world = self.rank, self.world
        for i, item in enumerate(self.inner):
            if i % world == rank:
                yield item

    def __len__(self) -> int:
        n = len(self.inner)  # type: ignore[arg-type]
        return max(0, math.ceil((n - self.rank) / self.world))


class RoundRobinLoader:
    """Every ``world``-th batch of a loader that cannot be rebuilt (e.g. over an
    `IterableDataset`): every rank reads all batches and keeps its own."""

    def __init__(self, loader: Iterable[Any], rank: int, world: int) -> None:
        self.loader = loader
        self.shard = RoundRobin(loader, rank, world)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.shard)

    def __len__(self) -> int:
        return len(self.shard)


def shard_eval_loader(loader: Any, *, rank: int, world: int) -> Any:
    """This rank's share of an evaluation/prediction loader's batches (round-robin, no
    padding: a rank may get one batch fewer, or none)."""
    if isinstance(loader, DataLoader) and not isinstance(loader.dataset, IterableDataset):
        if loader.batch_sampler is not None:
            return DataLoader(
                loader.dataset,
                batch_sampler=RoundRobin(loader.batch_sampler, rank, world),
                **loader_options(loader),
            )
        # batch_size=None: every "batch" is one sample; deal out the samples.
        return DataLoader(
            loader.dataset,
            batch_size=None,
            sampler=RoundRobin(loader.sampler, rank, world),
            **loader_options(loader),
        )
    return RoundRobinLoader(loader, rank, world)


def unshard(per_rank: list[list[Any]]) -> list[Any]:
    """Interleave per-rank lists dealt out by `RoundRobin` back into the original order."""
    total = sum(len(items) for items in per_rank)
    world = len(per_rank)
    return [per_rank[i % world][i // world] for i in range(total)]
