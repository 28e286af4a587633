"""The loops: fit, evaluate and predict, each firing breakpoints in the order of
`luz.events.BREAKPOINT_TREE`. Policy (train/eval mode, metrics, progress, timing) lives in the
default callbacks; these functions only loop.

Each level begins, runs its body, turns its own signal into its cancel path and ends, and each
loop-control exception is caught at exactly one level:

=================  ==========================  ===================================================
level              caught here                 cancel path
=================  ==========================  ===================================================
fit                ``StopTraining``            ``on_early_stopping``, then ``on_fit_end``
fit                ``KeyboardInterrupt``       ``on_interrupt``, then ``on_fit_end``
epoch              ``SkipEpoch``               the next epoch
epoch end          ``StopTraining`` re-raised the epoch commits, then the fit level's path
validation pass    ``StopTraining`` (evaluate) ``on_valid_end`` with the batches seen
predict            ``StopTraining``            ``on_predict_end`` with the batches predicted
=================  ==========================  ===================================================

An epoch that is left before ``on_epoch_end`` (any of these signals) leaves no records: its
records are rolled back to the `luz.records.snapshot` taken when it began. `fit_loop` returns
the signal that ended training (``None`` when every epoch ran): `luz.run.fit` turns it into
``Fitted.stop_reason`` (and, after a SIGTERM, `luz.Terminated`) without the loop knowing who
raised it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from luz import records
from luz.events import EPOCH_END_STOP, SkipEpoch, StopTraining
from luz.outputs import detached
from luz.step import predict_batch

if TYPE_CHECKING:
    from luz.callbacks._runner import CallbackRunner
    from luz.context import Context

Step = Callable[[], None]

_LEAVE_EPOCH = (SkipEpoch, StopTraining, KeyboardInterrupt)
"""Signals that leave an epoch before its end: its records are rolled back."""


def fit_loop(ctx: Context, step: Step, runner: CallbackRunner) -> StopTraining | KeyboardInterrupt | None:
    """Run epochs ``1..ctx.max_epochs``. ``StopTraining`` and Ctrl-C end training gracefully
    (``on_early_stopping`` / ``on_interrupt``, then ``on_fit_end``); other errors propagate
    without ``on_fit_end``. Returns the signal that ended training early, or ``None``."""
    fire = runner.fire
    stop: StopTraining | KeyboardInterrupt | None = None
    try:  # on_fit_begin too: a callback may stop training before the first epoch
        fire("on_fit_begin")
        runner.settle_stop()
        for epoch in range(1, ctx.max_epochs + 1):
            ctx.epoch = epoch
            _epoch(ctx, step, runner)
            runner.settle_stop()
    except StopTraining as signal:
        stop = signal.with_traceback(None)  # its frames would keep the last batch alive
        _wrap_up(runner, "on_early_stopping")
    except KeyboardInterrupt as signal:
        stop = signal.with_traceback(None)
        _wrap_up(runner, "on_interrupt")
    _wrap_up(runner, "on_fit_end")
    return stop


def _wrap_up(runner: CallbackRunner, name: str) -> None:
    # Training is over: a StopTraining raised now has nothing left to stop.
    with contextlib.suppress(StopTraining):
        runner.fire(name)


def _epoch(ctx: Context, step: Step, runner: CallbackRunner) -> None:
    fire = runner.fire
    mark = records.snapshot(ctx.records)
    try:
        try:
            ctx.iter = 0
            stream = ctx.train_stream
            ctx.data = ctx.train_data if stream is None else stream.epoch()
            fire("on_epoch_begin")
            _train(ctx, step, runner)
            if ctx.valid_data is not None:
                _valid(ctx, step, runner)
        except _LEAVE_EPOCH:
            records.rollback(mark)
            raise
        # From here on the epoch's records stay, whatever its end hooks raise.
        try:
            fire("on_epoch_end")
        except StopTraining as signal:
            ctx.buffers[EPOCH_END_STOP] = signal  # the commit's actions may save the stop
            runner.commit_epoch()  # the epoch is complete: an early stop keeps it
            raise
        runner.commit_epoch()
    except SkipEpoch:
        pass


def _train(ctx: Context, step: Step, runner: CallbackRunner) -> None:
    fire = runner.fire
    fire("on_train_begin")
    # Looked up once per phase: a breakpoint no callback implements costs nothing per batch.
    batch_begin, batch_end = runner.caller("on_train_batch_begin"), runner.caller("on_train_batch_end")
    iteration = 0
    for batch in ctx.data:  # type: ignore[union-attr]
        iteration += 1
        ctx.batch = batch
        ctx._iter = iteration  # the loop's own counter: skip the validating setter
        if batch_begin is not None:
            batch_begin()
        step()
        if batch_end is not None:
            batch_end()
        # Let the batch's autograd graph go now, not when the next batch overwrites them; the
        # prediction stays, detached (SPEC §2: a callback at on_train_end reads the last one).
        ctx.loss_grad = None
        pred = ctx.pred
        ctx.pred = pred.detach() if isinstance(pred, torch.Tensor) else detached(pred)
        del pred  # the local would hold the graph until the next batch
    if iteration == 0:
        raise ValueError(
            "The training data produced no batches. With the default drop_last=True a dataset "
            "smaller than batch_size yields none: pass more data, a smaller batch_size, or "
            "dataloader_options={'drop_last': False}."
        )
    fire("on_train_end")


def _valid(
    ctx: Context, step: Step, runner: CallbackRunner, *, ends_pass: tuple[type[BaseException], ...] = ()
) -> None:
    # ``ends_pass``: the signals that end the pass early but still fire on_valid_end (evaluate
    # gives StopTraining; in fit it ends the whole fit instead).
    fire = runner.fire
    ctx.data = ctx.valid_data
    with torch.no_grad():
        fire("on_valid_begin")  # ctx.iter still holds the last training iteration here
        batch_begin, batch_end = runner.caller("on_valid_batch_begin"), runner.caller("on_valid_batch_end")
        iteration = 0
        ctx.iter = 0
        try:
            for batch in ctx.data:  # type: ignore[union-attr]
                iteration += 1
                ctx.batch = batch
                ctx._iter = iteration
                if batch_begin is not None:
                    batch_begin()
                step()
                if batch_end is not None:
                    batch_end()
        except ends_pass:
            pass
        fire("on_valid_end")


def evaluate_loop(ctx: Context, step: Step, runner: CallbackRunner) -> None:
    """Run one validation pass over ``ctx.valid_data`` (metrics logged as ``valid``, epoch 1).
    A `StopTraining` raised by a batch hook ends the pass early; the batches seen are reported;
    raised by ``on_valid_begin`` or ``on_valid_end`` it ends the evaluation there."""
    ctx.epoch = 1
    with contextlib.suppress(StopTraining):
        _valid(ctx, step, runner, ends_pass=(StopTraining,))


def predict_loop(
    ctx: Context, runner: CallbackRunner, predict_kwargs: dict[str, Any] | None = None
) -> list[Any]:
    """Predict every batch of ``ctx.data``; returns the list of per-batch outputs (those
    predicted so far if a callback raises `StopTraining`). ``predict_kwargs`` go to the
    model's ``predict`` method (see `luz.step.predict_batch`)."""
    fire = runner.fire
    ctx.pred = []
    with torch.no_grad():
        # A StopTraining ends prediction early: the batches predicted so far are returned.
        with contextlib.suppress(StopTraining):
            fire("on_predict_begin")
            batch_begin = runner.caller("on_predict_batch_begin")
            batch_end = runner.caller("on_predict_batch_end")
            for batch in ctx.data:  # type: ignore[union-attr]
                ctx.batch = batch
                if batch_begin is not None:
                    batch_begin()
                ctx.pred.append(predict_batch(ctx, predict_kwargs))
                if batch_end is not None:
                    batch_end()
        _wrap_up(runner, "on_predict_end")
    return list(ctx.pred)
