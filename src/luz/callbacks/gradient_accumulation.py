"""Gradient accumulation: step the optimizers every ``steps`` training batches."""

from __future__ import annotations

import contextlib
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from luz._validate import check_count
from luz.callbacks.base import Callback
from luz.step import needs_closure


class GradientAccumulation(Callback):
    """Steps the optimizers every ``steps`` training batches, on the sum of their gradients
    with each batch's loss scaled by ``1 / steps``: ``steps`` batches of size ``b`` then train
    as one batch of size ``steps * b`` with a mean loss.

    Groups never span epochs: the count restarts at each epoch, and the last group of an
    epoch steps even when it is partial (its ``r < steps`` batches are scaled by ``1 / steps``
    too, as SPEC §3 says, so it counts for ``r / steps`` of a full group, as in the usual
    hand-written ``loss / steps`` loop). An epoch therefore always ends on a step: a checkpoint
    written at epoch end (`AutoResume`) holds no half-accumulated gradients, and a resumed fit
    accumulates exactly as the uninterrupted one. The step happens at the epoch's last batch
    when the training data has a length (or with ``fit(steps_per_epoch=)``), else at
    ``on_train_end``.

    Only stepping batches fire ``on_train_batch_before_step`` and
    ``on_train_batch_after_step`` (see ``ctx.accumulating``), so `GradientClip` clips the
    accumulated gradients and `MixedPrecision` unscales them once per step. Under DDP the other
    batches run inside the wrapper's ``no_sync()``: gradients are all-reduced only on stepping
    batches. The recorded loss is the unscaled one. A module's own ``step()`` replaces the
    default step, so it must honour ``ctx.accumulating`` itself. A per-step schedule is
    ``LRScheduler(..., call_on="on_train_batch_after_step")``. With several optimizers and
    `MixedPrecision`, the autocast window reopens for the next optimizer's forward pass at
    ``after_step``, which accumulating batches skip: their later forward passes run in
    float32.

    Args:
        steps: the number of batches per optimizer step (``1``: step every batch).

    Example:
        >>> import luz
        >>> cb = luz.callbacks.GradientAccumulation(steps=4)
    """

    def __init__(self, steps: int) -> None:
        hint = "It is the number of batches per optimizer step."
        self.steps = check_count(steps, "steps", minimum=1, hint=hint)
        self._total: int | None = None
        self._ddp: DistributedDataParallel | None = None  # the fit's DDP wrapper, if any
        self._no_sync: contextlib.AbstractContextManager[Any] | None = None

    def on_fit_begin(self) -> None:
        closures = [name for name, opt in self.context.optimizers.items() if needs_closure(opt)]
        if closures and self.steps > 1:
            raise ValueError(
                f"GradientAccumulation(steps={self.steps}) cannot accumulate for optimizer "
                f"{closures[0]!r}: its step needs a closure that re-evaluates the loss (LBFGS). Use "
                "steps=1, or an optimizer without a closure."
            )

    def on_train_begin(self) -> None:
        ctx = self.context
        model = ctx.forward_model
        self._ddp = model if isinstance(model, DistributedDataParallel) else None
        try:
            self._total = len(ctx.data)  # type: ignore[arg-type]
        except TypeError:
            self._total = None
        for opt in ctx.optimizers.values():
            # a group that an interrupted epoch (SkipEpoch, an error caught by a callback) left
            # half accumulated must not leak into this epoch's first step
            opt.zero_grad()

    def on_train_batch_begin(self) -> None:
        ctx = self.context
        ctx.accumulating = ctx.iter % self.steps != 0 and ctx.iter != self._total
        if ctx.accumulating and self._ddp is not None:
            self._no_sync = self._ddp.no_sync()  # forward and backward without all-reduce
            self._no_sync.__enter__()

    def on_train_batch_before_backward(self) -> None:
        ctx = self.context
        if ctx.loss_grad is not None and self.steps > 1:
            with torch.enable_grad():  # hooks run under no_grad; the scaled loss needs its graph
                ctx.loss_grad = ctx.loss_grad / self.steps

    def on_train_batch_end(self) -> None:
        self._leave_no_sync()

    def on_train_end(self) -> None:
        ctx = self.context
        pending, ctx.accumulating = ctx.accumulating, False
        if pending:  # data without a length: its last, partial group steps now
            if self._ddp is not None:
                _average_gradients(ctx.model)  # they were accumulated without all-reduce
            for name, opt in ctx.optimizers.items():
                ctx.opt, ctx.opt_name = opt, name
                ctx.fire("on_train_batch_before_step")
                ctx.step_opt(opt)
                opt.zero_grad()
                ctx.fire("on_train_batch_after_step")

    def teardown(self) -> None:
        """Leave a ``no_sync()`` window that an error left open; let go of the fit's model."""
        self._leave_no_sync()
        self._ddp = None

    def _leave_no_sync(self) -> None:
        window, self._no_sync = self._no_sync, None
        if window is not None:
            window.__exit__(None, None, None)

    def __repr__(self) -> str:
        return f"GradientAccumulation(steps={self.steps})"


def _average_gradients(model: torch.nn.Module) -> None:
    world = dist.get_world_size()
    for param in model.parameters():
        if param.grad is not None:
            dist.all_reduce(param.grad)
            param.grad /= world
