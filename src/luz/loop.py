"""The loops: fit, evaluate and predict, each firing breakpoints in the order of
`luz.events.BREAKPOINT_TREE`. Policy (train/eval mode, metrics, progress, timing) lives in the
default callbacks; these functions only loop.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from luz._dist.collectives import any_rank
from luz.events import SkipEpoch, StopTraining
from luz.step import predict_batch

if TYPE_CHECKING:
    from luz.context import Context

Step = Callable[[], None]


def fit_loop(ctx: Context, step: Step) -> None:
    """Run epochs ``1..ctx.max_epochs``. ``StopTraining`` and Ctrl-C end training gracefully
    (``on_early_stopping`` / ``on_interrupt``, then ``on_fit_end``); other errors propagate
    without ``on_fit_end``."""
    fire = ctx.fire
    try:  # on_fit_begin too: a callback may stop training before the first epoch
        fire("on_fit_begin")
        _agree_to_stop(ctx)
        for epoch in range(1, ctx.max_epochs + 1):
            ctx.epoch = epoch
            _epoch_with_rollback(ctx, step)
            _agree_to_stop(ctx)
    except StopTraining:
        _fire_wrap_up(ctx, "on_early_stopping")
    except KeyboardInterrupt:
        _fire_wrap_up(ctx, "on_interrupt")
    _fire_wrap_up(ctx, "on_fit_end")


def _fire_wrap_up(ctx: Context, name: str) -> None:
    # Training is over: a StopTraining raised now has nothing left to stop.
    with contextlib.suppress(StopTraining):
        ctx.fire(name)


def _agree_to_stop(ctx: Context) -> None:
    # Distributed fits: a StopTraining from a callback was held (`Context.fire`) so that this
    # rank kept pace with the others; here every rank learns whether any asked (one all-reduce
    # per epoch) and all stop together.
    if not ctx.distributed:
        return
    request, ctx.stop_requested = ctx.stop_requested, None
    if any_rank(request is not None, ctx.device):
        raise request or StopTraining("Training was stopped on another process.")


def _epoch_with_rollback(ctx: Context, step: Step) -> None:
    # An epoch that does not reach on_epoch_end leaves no records (metrics, timings, custom
    # logs). The records object is held as it was at the epoch's start: when a callback swaps
    # in other records mid-epoch (a resume), those are left alone.
    records = ctx.records
    marks = {(what, key): len(entries) for what, key, entries in _record_lists(records)}
    reached_end = [False]
    try:
        _epoch(ctx, step, reached_end)
    except (SkipEpoch, StopTraining, KeyboardInterrupt) as signal:
        if not reached_end[0]:
            for what, key, entries in _record_lists(records):
                del entries[marks.get((what, key), 0) :]
        if not isinstance(signal, SkipEpoch):
            raise


def _record_lists(records: dict[str, Any]) -> list[tuple[str, str, list[Any]]]:
    return [
        (what, key, entries)
        for what, sets in records.items()
        if isinstance(sets, dict)
        for key, entries in sets.items()
        if isinstance(entries, list)
    ]


def _epoch(ctx: Context, step: Step, reached_end: list[bool]) -> None:
    fire = ctx.fire
    ctx.iter = 0
    ctx.data = ctx.train_data
    fire("on_epoch_begin")
    _train(ctx, step)
    if ctx.valid_data is not None:
        _valid(ctx, step)
    reached_end[0] = True
    fire("on_epoch_end")
    for action in ctx.epoch_end_actions:
        action()


def _train(ctx: Context, step: Step) -> None:
    fire = ctx.fire
    fire("on_train_begin")
    iteration = 0
    for batch in ctx.data:  # type: ignore[union-attr]
        iteration += 1
        ctx.batch = batch
        ctx._iter = iteration  # the loop's own counter: skip the validating setter
        fire("on_train_batch_begin")
        step()
        fire("on_train_batch_end")
        # Let the batch's autograd graph go now, not when the next batch overwrites them.
        ctx.pred = ctx.loss_grad = None
    if iteration == 0:
        raise ValueError(
            "The training data produced no batches. With the default drop_last=True a dataset "
            "smaller than batch_size yields none: pass more data, a smaller batch_size, or "
            "dataloader_options={'drop_last': False}."
        )
    fire("on_train_end")


def _valid(ctx: Context, step: Step, *, stop_ends_pass: bool = False) -> None:
    fire = ctx.fire
    ctx.data = ctx.valid_data
    with torch.no_grad():
        fire("on_valid_begin")  # ctx.iter still holds the last training iteration here
        iteration = 0
        ctx.iter = 0
        try:
            for batch in ctx.data:  # type: ignore[union-attr]
                iteration += 1
                ctx.batch = batch
                ctx._iter = iteration
                fire("on_valid_batch_begin")
                step()
                fire("on_valid_batch_end")
        except StopTraining:
            if not stop_ends_pass:  # in fit, the fit loop handles it
                raise
        if iteration == 0 and not ctx.distributed:  # a rank's shard may be empty
            warnings.warn(
                "The validation data produced no batches: no validation metrics are recorded for this epoch.",
                UserWarning,
                stacklevel=4,
            )
        fire("on_valid_end")


def evaluate_loop(ctx: Context, step: Step) -> None:
    """Run one validation pass over ``ctx.valid_data`` (metrics logged as ``valid``, epoch 1).
    A `StopTraining` raised by a batch hook ends the pass early; the batches seen are reported."""
    ctx.epoch = 1
    with contextlib.suppress(StopTraining):  # from on_valid_begin/_end: nothing more to do
        _valid(ctx, step, stop_ends_pass=True)


def predict_loop(ctx: Context) -> list[Any]:
    """Predict every batch of ``ctx.data``; returns the list of per-batch outputs (those
    predicted so far if a callback raises `StopTraining`)."""
    fire = ctx.fire
    ctx.pred = []
    with torch.no_grad():
        try:  # a StopTraining ends prediction early: the batches predicted so far are returned
            fire("on_predict_begin")
            for batch in ctx.data:  # type: ignore[union-attr]
                ctx.batch = batch
                fire("on_predict_batch_begin")
                ctx.pred.append(predict_batch(ctx))
                fire("on_predict_batch_end")
        except StopTraining:
            pass
        _fire_wrap_up(ctx, "on_predict_end")
    return list(ctx.pred)
