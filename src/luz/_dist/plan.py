"""The one seam between the entry points and distribution: `plan_for` gives `luz.run` an object
that builds the runner and the metrics callback, readies the random state and the loaders, and
collects predictions; `SingleProcess` does nothing extra, `ProcessGroup` does what a run that is
one of several processes needs. `luz.run` never asks which one it has."""

from __future__ import annotations

from typing import Any

import torch

from luz._dist.collectives import gather_objects
from luz._dist.sharding import distribute_train_loader, shard_eval_loader, unshard
from luz._dist.sync import DistributedSync, GatherForEvaluation, HeldStop, ReducedMetrics
from luz._persist.rng import sync_random_state
from luz._tree import to_cpu
from luz.accelerator import Accelerator, move_to_device
from luz.callbacks._runner import CallbackRunner
from luz.callbacks.base import Callback
from luz.callbacks.defaults import Metrics


class SingleProcess:
    """The plan of a run in one process: the callbacks as given, the loaders as built."""

    def runner(self, callbacks: list[Callback], *, fit: bool = False) -> CallbackRunner:
        """The callback runner of the run (``fit``: a training run)."""
        return CallbackRunner(callbacks)

    def metrics(self) -> Metrics:
        """The default metrics callback."""
        return Metrics()

    def start_fit(self) -> None:
        """Called first in a fit, before the data is split or the model built."""

    def fit_loaders(self, train: Any, valid: Any) -> tuple[Any, Any]:
        """The training and validation loaders this process iterates."""
        return train, valid

    def eval_loader(self, loader: Any) -> Any:
        """The evaluation or prediction loader this process iterates."""
        return loader

    def all_predictions(self, predictions: list[Any]) -> list[Any]:
        """Every batch's prediction, in the data's order."""
        return predictions


class ProcessGroup(SingleProcess):
    """The plan of a run that is one of several processes (``torchrun``): every rank starts
    from rank 0's random state, trains on its shard of the data, holds a stop until the ranks
    agree, logs metrics reduced across ranks, and gets every rank's predictions."""

    def __init__(self, accelerator: Accelerator) -> None:
        self.accelerator = accelerator

    def runner(self, callbacks: list[Callback], *, fit: bool = False) -> CallbackRunner:
        if fit:
            synced = [DistributedSync(), GatherForEvaluation(), *callbacks]
            return CallbackRunner(synced, stop_policy=HeldStop(self.accelerator.device))
        return CallbackRunner([GatherForEvaluation(), *callbacks])  # a sharded model gathers first

    def metrics(self) -> Metrics:
        return ReducedMetrics()

    def start_fit(self) -> None:
        sync_random_state()  # the same split, sampler seed and initial weights on every rank

    def fit_loaders(self, train: Any, valid: Any) -> tuple[Any, Any]:
        # The sampler seed derives from the global RNG state (rank 0's on every rank here), read
        # through a copy so the global stream is not advanced: the same on all ranks, reproducible
        # from torch.manual_seed, and the model is initialised as in a single-process run.
        acc = self.accelerator
        peek = torch.Generator()
        peek.set_state(torch.get_rng_state())
        seed = int(torch.randint(0, 2**31 - 1, (), generator=peek).item())
        train = distribute_train_loader(train, rank=acc.rank, world=acc.world_size, seed=seed)
        return train, None if valid is None else self.eval_loader(valid)

    def eval_loader(self, loader: Any) -> Any:
        return shard_eval_loader(loader, rank=self.accelerator.rank, world=self.accelerator.world_size)

    def all_predictions(self, predictions: list[Any]) -> list[Any]:
        ordered = unshard(gather_objects(to_cpu(predictions)))
        return [move_to_device(p, self.accelerator.device) for p in ordered]


def plan_for(accelerator: Accelerator) -> SingleProcess:
    """The plan of a run on ``accelerator``."""
    return ProcessGroup(accelerator) if accelerator.distributed else SingleProcess()
