"""What a distributed fit adds to every run: per-epoch reshuffling, reduced metric records, a
check that the ranks still hold the same model, stopping on every rank together, and (for a
sharded model) evaluation with gathered parameters."""

from __future__ import annotations

import contextlib
import math
import warnings
from typing import ClassVar

import torch
import torch.distributed as dist
from torch import nn

from luz._dist.collectives import any_rank, broadcast_object, sum_ints
from luz._dist.fsdp import gathered, is_sharded
from luz._dist.group import world_size
from luz._dist.sharding import shard_sampler
from luz.accelerator import is_writer, unwrap_loader
from luz.callbacks.base import Callback
from luz.callbacks.defaults import EMPTY_VALIDATION, Metrics, metric_error
from luz.events import StopTraining
from luz.records import to_metric_value


class DistributedSync(Callback):
    """Added first to every distributed fit: a new shuffle each epoch (the same on every rank)
    and, at each epoch end, a check that every rank still holds the same parameters.

    Breakpoints: ``on_epoch_begin`` (``DistributedSampler.set_epoch``; with
    ``fit(steps_per_epoch=)`` the training stream sets the pass number instead, when each pass
    starts) and ``on_epoch_end`` (`check_parameters_agree`).

    How it works: docs/distributed.md.
    """

    weight: ClassVar[float] = -math.inf

    def on_epoch_begin(self) -> None:
        ctx = self.context
        sampler = shard_sampler(unwrap_loader(ctx.train_data))
        if sampler is not None and ctx.train_stream is None:  # a stream sets it per pass
            sampler.set_epoch(ctx.epoch)

    def on_epoch_end(self) -> None:
        ctx = self.context
        check_parameters_agree(ctx.model, ctx.device, ctx.epoch)


class ReducedMetrics(Metrics):
    """`Metrics` in a distributed run: at the end of a phase every metric's state is combined
    across ranks (``Metric.sync``) and rank 0's values are logged on every rank, so records and
    the decisions taken from them (early stopping, checkpoints) are identical everywhere.

    A phase with no batches on any rank logs nothing; a rank whose shard was empty still
    takes part in the collectives.
    """

    def _finish(self, phase: str) -> None:
        ctx = self.context
        batches = sum_ints(ctx.iter, ctx.device)
        if batches == 0:
            if phase == "valid" and is_writer(ctx.accelerator):  # warn once, not once per rank
                warnings.warn(EMPTY_VALIDATION, UserWarning, stacklevel=2)
            return
        values = []
        for name, metric in zip(ctx.metric_names[phase], ctx.metrics[phase], strict=True):
            try:
                metric.sync()
                value = to_metric_value(metric.compute(), metric.display_name)
            except Exception as error:
                raise metric_error(error, metric, "compute", ctx.iter, ctx.epoch, phase) from error
            values.append((name, value))
        for name, value in broadcast_object(values):
            ctx.log_metric(name, value)


def check_parameters_agree(model: nn.Module, device: torch.device, epoch: int) -> None:
    """Raise on every rank if the model's parameters differ between ranks (one all-gather of a
    few numbers per epoch): the sign of a custom step that bypassed the DDP wrapper. A sharded
    (FSDP) model holds a different slice on each rank and has no wrapper to bypass: skipped."""
    if is_sharded(model):
        return
    with torch.no_grad():
        sums = [p.detach().double().sum() for p in model.parameters()]
        if not sums:
            return
        fingerprint = torch.stack(sums).to(device)
    gathered = [torch.empty_like(fingerprint) for _ in range(world_size())]
    dist.all_gather(gathered, fingerprint)
    if any(not torch.equal(gathered[0], other) for other in gathered[1:]):
        raise RuntimeError(
            f"The model's parameters differ between processes after epoch {epoch}: gradients "
            "were not averaged. A custom `step()` must run the training forward pass through "
            "`ctx.forward_model` (the DistributedDataParallel wrapper), e.g. "
            "`luz.step.call_model(ctx.forward_model, ctx.input)`, not through the module itself."
        )


class HeldStop:
    """The stop policy of a distributed fit (`luz.callbacks._runner.StopPolicy`): a
    callback's `StopTraining` is held (`hold`) until the next agreement point, where `settle`
    stops every rank together when any rank asked.

    How it works (why, and where the agreement points are): docs/distributed.md.

    Example:
        >>> policy = HeldStop(torch.device("cpu"))
        >>> policy.hold(StopTraining("patience ran out"))  # held, not raised
        >>> policy.held is not None
        True
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.held: StopTraining | None = None

    def hold(self, stop: StopTraining) -> None:
        """Hold ``stop`` instead of raising it; the first one raised on this rank is kept."""
        if self.held is None:
            self.held = stop

    def settle(self) -> None:
        """Raise on every rank when any rank holds a stop (its own `StopTraining` where it
        holds one), else return; either way nothing stays held. Every rank must call it."""
        held, self.held = self.held, None
        if any_rank(held is not None, self.device):
            raise held or StopTraining("Training was stopped on another process.")


class GatherForEvaluation(Callback):
    """Added to every distributed run: while a sharded (FSDP) model validates, evaluates or
    predicts, its parameters are gathered (`luz._dist.fsdp.gathered`), so ranks given
    different numbers of batches run their forward passes without waiting for each other.
    Does nothing for a model that is not sharded.

    Breakpoints: ``on_valid_begin``/``on_valid_end`` and ``on_predict_begin``/``on_predict_end``
    (gather, shard again); ``teardown`` shards again after an error.
    """

    weight: ClassVar[float] = -math.inf

    def __init__(self) -> None:
        self._window: contextlib.ExitStack | None = None

    def _open(self) -> None:
        model = self.context.model
        if self._window is None and is_sharded(model):
            self._window = contextlib.ExitStack()
            self._window.enter_context(gathered(model))

    def _close(self) -> None:
        window, self._window = self._window, None
        if window is not None:
            window.close()

    def on_valid_begin(self) -> None:
        self._open()

    def on_valid_end(self) -> None:
        self._close()

    def on_predict_begin(self) -> None:
        self._open()

    def on_predict_end(self) -> None:
        self._close()

    def teardown(self) -> None:
        """Shard the parameters again when an error ended the pass."""
        self._close()
