"""What a distributed fit adds to every run: per-epoch reshuffling, reduced metric records and a
check that the ranks still hold the same model."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar

from luz._distributed import broadcast_object, check_parameters_agree, is_main_process, sum_ints
from luz._sharding import distributed_sampler
from luz.callbacks.base import Callback
from luz.metrics.base import to_metric_value

if TYPE_CHECKING:
    from luz.context import Context
    from luz.metrics.base import Metric

ErrorFactory = Callable[[Exception, "Metric", str, int, int, str], Exception]


class DistributedSync(Callback):
    """Added to every distributed fit (before the user's callbacks).

    Breakpoints: ``on_epoch_begin`` calls ``set_epoch(epoch)`` on the training loader's
    `DistributedSampler`, so each epoch has its own shuffle (the same on every rank);
    ``on_epoch_end`` compares a fingerprint of the parameters across ranks (one all-gather)
    and raises on every rank if they differ, which happens when a custom ``step`` bypasses
    ``ctx.forward_model``.
    """

    weight: ClassVar[float] = -math.inf

    def on_epoch_begin(self) -> None:
        ctx = self.context
        sampler = distributed_sampler(ctx.train_data)
        if sampler is not None:
            sampler.set_epoch(ctx.epoch)

    def on_epoch_end(self) -> None:
        ctx = self.context
        check_parameters_agree(ctx.model, ctx.device, ctx.epoch)


def log_reduced_metrics(ctx: Context, phase: str, wrap_error: ErrorFactory) -> None:
    """End of a phase in a distributed run: combine every metric's state across ranks
    (``Metric.sync``), compute, and log rank 0's values on every rank, so records and the
    decisions taken from them (early stopping, checkpoints) are identical everywhere.

    A phase with no batches on any rank logs nothing; a rank whose shard was empty still
    takes part in the collectives.
    """
    batches = sum_ints(ctx.iter, ctx.device)
    if batches == 0:
        if phase == "valid" and is_main_process():
            warnings.warn(
                "The validation data produced no batches: no validation metrics are recorded for this epoch.",
                UserWarning,
                stacklevel=2,
            )
        return
    values = []
    for name, metric in zip(ctx.metric_names[phase], ctx.metrics[phase], strict=True):
        try:
            metric.sync()
            value = to_metric_value(metric.compute(), metric.display_name)
        except Exception as error:
            raise wrap_error(error, metric, "compute", ctx.iter, ctx.epoch, phase) from error
        values.append((name, value))
    for name, value in broadcast_object(values):
        ctx.log_metric(name, value)
