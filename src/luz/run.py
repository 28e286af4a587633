"""The entry points: `fit`, `evaluate` and `predict`, each with its one signature.

Each checks its arguments, assembles the context (the accelerator, the loaders, the model, the
callback runner with the default callbacks) and runs its loop from `luz.loop`. The methods
``LuzModule.fit``, ``Fitted.predict`` and ``Fitted.evaluate`` forward here, as do
``luz.fit``, ``luz.predict`` and ``luz.evaluate``, which are these functions.
"""

from __future__ import annotations

import functools
import numbers
import os
import re
import warnings
from collections.abc import Callable, Iterable
from typing import Any, Literal, overload

import torch
from torch import nn

from luz._dist.collectives import gather_objects
from luz._dist.sharding import distribute_train_loader, shard_eval_loader, unshard
from luz._dist.sync import DistributedSync, GatherForEvaluation, HeldStop
from luz._hints import keras_hints
from luz._loaders import eval_loader, split_valid, training_loader, warn_non_finite
from luz._persist.rng import get_rng_state, set_rng_state, sync_random_state
from luz._stream import TrainStream
from luz._tree import to_cpu
from luz._validate import check_count, check_flag, check_optional_flag, invalid, is_flag, is_number_text
from luz.accelerator import Accelerator, DeviceLoader, move_to_device, unwrap_loader
from luz.callbacks._runner import CallbackRunner
from luz.callbacks.base import Callback, as_callback_list
from luz.callbacks.defaults import Interrupt, Metrics, Profile, TrainValid
from luz.callbacks.progress import Progress, default_verbose
from luz.callbacks.terminate_on_nan import NaNGuard, TerminateOnNaN
from luz.context import Context
from luz.data import match_model_dtype
from luz.events import StopTraining, Terminated
from luz.loop import evaluate_loop, fit_loop, predict_loop
from luz.metrics.set import as_metric_set
from luz.module import LuzModule, resolve_loss
from luz.records import metrics_frame
from luz.results import Evaluation, Fitted
from luz.step import check_predict_kwargs, default_step


def parse_epochs(epochs: object) -> tuple[int, int]:
    """``n`` -> ``(0, n)``; ``(min, max)`` -> itself; anything else is a ``ValueError`` (SPEC §1).

    Counts are non-negative integers (NumPy integers too); floats such as ``10.0`` are refused."""
    hint = "It is the maximum number of epochs, or a (min, max) pair of them."
    if not isinstance(epochs, tuple | list):
        return 0, check_count(epochs, "epochs", wrong_type=ValueError, hint=hint)
    if len(epochs) != 2:
        raise invalid("epochs", "a non-negative integer or a (min, max) pair of them", epochs, hint)
    lo, hi = (
        check_count(e, "epochs", wrong_type=ValueError, hint=f"It is in the (min, max) pair {epochs!r}.")
        for e in epochs
    )
    if lo > hi:
        raise ValueError(f"`epochs`: the minimum ({lo}) is larger than the maximum ({hi}).")
    return lo, hi


def check_steps_per_epoch(value: object) -> int | None:
    """``fit(steps_per_epoch=)``: ``None`` or a positive integer, else a ``ValueError`` (also
    for a non-number: a count of training batches, checked as SPEC §8 checks ``epochs``)."""
    if value is None:
        return None
    hint = "It is the number of training batches per epoch; None means one pass over the data."
    return check_count(value, "steps_per_epoch", minimum=1, wrong_type=ValueError, hint=hint)


def train_stream(loader: Any, steps: int, device: torch.device) -> TrainStream:
    """The `luz._stream.TrainStream` of a fit with ``steps_per_epoch=steps`` over ``loader``
    (the device-aware training loader). Its random state is every stream a checkpoint holds,
    the training loader's generators included."""
    loaders = {"train": loader}

    def wrap(batches: Iterable[Any]) -> Iterable[Any]:
        return DeviceLoader(batches, device) if isinstance(loader, DeviceLoader) else batches

    return TrainStream(
        loader,
        steps,
        capture=lambda: get_rng_state(loaders),
        restore=lambda state: set_rng_state(state, loaders),
        unwrap=unwrap_loader,
        wrap=wrap,
    )


def _compile_options(compile: object) -> dict[str, Any] | None:
    if isinstance(compile, dict):
        return dict(compile)
    if not is_flag(compile):
        raise invalid("compile", "True, False or a dict of torch.compile arguments", compile, error=TypeError)
    return {} if compile else None


def resolve_step(model: nn.Module, ctx: Context) -> Callable[[], None]:
    """The module's own ``step()`` if it defines one, else `luz.step.default_step`."""
    if callable(getattr(type(model), "step", None)):
        step: Callable[[], None] = getattr(model, "step")  # noqa: B009 - not a Module attribute
        return step
    return functools.partial(default_step, ctx)  # a C call per batch, not a Python frame


def _check_run_options(verbose: object, accelerator: object) -> tuple[Accelerator, bool]:
    if accelerator is not None and not isinstance(accelerator, Accelerator):
        raise TypeError(f"`accelerator` must be a luz.Accelerator, got {type(accelerator).__name__}.")
    verbose = check_optional_flag(
        verbose, "verbose", hint="None shows progress on a terminal or in a notebook."
    )
    acc = accelerator or Accelerator()
    show = default_verbose() if verbose is None else bool(verbose)
    if acc.device.type == "mps" and "PYTORCH_ENABLE_MPS_FALLBACK" not in os.environ:
        warnings.warn(
            "Training on MPS: operations MPS does not support will fail. To fall back to the CPU "
            "for them, set PYTORCH_ENABLE_MPS_FALLBACK=1 before the Python process starts.",
            UserWarning,
            stacklevel=4,
        )
    return acc, show and acc.is_writer  # distributed: rank 0 prints


def _take_progress(user_callbacks: list[Callback]) -> tuple[Callback, list[Callback]]:
    """The default `Progress`, or the first of yours, which takes its place among the defaults
    (so it ends a bar before the defaults after it print notes); and your other callbacks."""
    for index, cb in enumerate(user_callbacks):
        if isinstance(cb, Progress):
            return cb, user_callbacks[:index] + user_callbacks[index + 1 :]
    return Progress(), user_callbacks


def _runner(acc: Accelerator, callbacks: list[Callback], *, fit: bool = False) -> CallbackRunner:
    if fit and acc.distributed:
        synced = [DistributedSync(), GatherForEvaluation(), *callbacks]
        return CallbackRunner(synced, stop_policy=HeldStop(acc.device))
    if acc.distributed:  # evaluate/predict: a sharded model gathers its parameters first
        return CallbackRunner([GatherForEvaluation(), *callbacks])
    return CallbackRunner(callbacks)


@keras_hints  # fit(x, y), batch_size=, validation_split=, device= → a TypeError naming the pyluz way
def fit(
    module: LuzModule,
    data: Any,
    *,
    epochs: int | tuple[int, int] = 10,
    callbacks: Any = None,
    valid_data: Any = None,
    accelerator: Accelerator | None = None,
    verbose: bool | None = None,
    dataloader_options: dict[str, Any] | None = None,
    compile: bool | dict[str, Any] = False,
    steps_per_epoch: int | None = None,
) -> Fitted:
    """Train a fresh model built from ``module`` and return a `luz.Fitted`.

    What runs (every breakpoint of `luz.events.BREAKPOINT_TREE`, in order)::

        on_fit_begin
        for epoch in 1..max_epochs:
            on_epoch_begin; training batches; validation batches (if valid_data); on_epoch_end
        on_fit_end

    Default callbacks (before yours, by weight): Profile, TrainValid, Metrics, Progress, Interrupt
    and `luz.callbacks.NaNGuard` (replaced by a `TerminateOnNaN` or `NaNGuard` of yours). A
    `Progress` of yours takes the place of the default one.

    Ctrl-C ends training gracefully and `fit` returns the model so far; a SIGTERM ends it the
    same way, then `fit` raises `luz.Terminated` (exit status 143). ``Fitted.stop_reason``
    says what ended training early.

    Args:
        module: a `luz.LuzModule` from `luz.setup`.
        data: training data: a DataLoader, a Dataset, tensors/arrays or a tuple of them.
        epochs: the maximum number of epochs, or ``(min_epochs, max_epochs)``.
        callbacks: a callback or a list of callbacks (instances), added after the defaults.
        valid_data: validation data, or a float in (0, 1): that share of ``data``.
        accelerator: a `luz.Accelerator` (default: choose the best device).
        verbose: show progress; ``None``: when attached to a terminal or notebook.
        dataloader_options: options for the loaders luz builds (``batch_size=32``; training
            adds ``shuffle=True, drop_last=True`` unless given).
        compile: compile the model's forward with ``torch.compile`` (``True``, or a dict of
            its arguments such as ``{"mode": "max-autotune"}``). The fitted model keeps
            its class and state-dict keys.
        steps_per_epoch: ``None`` (default): an epoch is one pass over the training data. An
            int: an epoch is that many training batches, the loader continuing where the
            previous epoch stopped and starting a new pass when exhausted (each pass shuffled
            anew, as an epoch is otherwise), so endless and iterable datasets get per-epoch
            records, validation and checkpoints (docs/distributed.md, "Steps per epoch").

    Returns:
        The fitted model with its records.

    Raises:
        ValueError: invalid ``epochs``, ``valid_data`` or options.
        TypeError: a callback class instead of an instance, unsupported data.
        luz.Terminated: a SIGTERM arrived during the fit (after the graceful stop); its
            ``fitted`` attribute holds the model trained so far.

    Example:
        >>> import torch, luz
        >>> from torch import nn
        >>> module = luz.setup(nn.Linear, loss=nn.MSELoss(), optimizer=torch.optim.SGD)
        >>> module = module.set_hparams(in_features=3, out_features=1).set_opt_hparams(lr=0.1)
        >>> fitted = luz.fit(module, (torch.randn(64, 3), torch.randn(64, 1)), epochs=1, verbose=False)
    """
    if not isinstance(module, LuzModule):
        raise TypeError(
            f"`module` must be a luz.LuzModule (made by luz.setup(...)), got {type(module).__name__}."
        )
    min_epochs, max_epochs = parse_epochs(epochs)
    steps = check_steps_per_epoch(steps_per_epoch)
    compile_options = _compile_options(compile)
    acc, show = _check_run_options(verbose, accelerator)
    progress, user_callbacks = _take_progress(as_callback_list(callbacks))
    interrupt = Interrupt()
    defaults: list[Callback] = [Profile(), TrainValid(), Metrics(), progress, interrupt]
    if not any(isinstance(cb, TerminateOnNaN | NaNGuard) for cb in user_callbacks):
        defaults.append(NaNGuard())  # yours replaces it (NaNGuard(enabled=False) turns it off)
    runner = _runner(acc, [*defaults, *user_callbacks], fit=True)
    ctx = Context(verbose=show, accelerator=acc, runner=runner)
    try:  # clean up (unbind model and callbacks) whether setting up or training fails
        if acc.distributed:
            # Every rank starts from rank 0's random state: same split, sampler seed, init.
            sync_random_state()
        if isinstance(valid_data, numbers.Number) or is_number_text(valid_data):  # "0.2": a clear error
            data, valid_data = split_valid(data, valid_data)
        train_dl = training_loader(data, dataloader_options)
        warn_non_finite(train_dl, "training")
        valid_dl = (
            None if valid_data is None else eval_loader(valid_data, dataloader_options, role="validation")
        )
        if acc.distributed:
            train_dl, valid_dl = _distribute_loaders(acc, train_dl, valid_dl)

        model = acc.prepare(module.build_model())
        match_model_dtype(model, train_dl, valid_dl)  # in-memory floats take the model's dtype
        if compile_options is not None:
            model.compile(**compile_options)  # compiles __call__ in place: same class, same keys
        ctx.hparams, ctx.opt_hparams = dict(module.hparams), dict(module.opt_hparams)
        ctx.model = model
        ctx.forward_model = acc.wrap_for_training(model)  # DDP when distributed
        ctx.optimizers = module.build_optimizers(model)
        ctx.loss_fn = _on_device(module.loss_fn(model), acc)
        ctx.backward = module.backward_fn(model)
        ctx.metric_set = module.metrics
        ctx.train_data, ctx.valid_data = acc.prepare(train_dl, valid_dl)
        ctx.data = ctx.train_data
        if steps is not None:
            ctx.train_stream = train_stream(ctx.train_data, steps, acc.device)
        ctx.max_epochs = max_epochs
        ctx.min_epochs = min_epochs
        ctx.training = True  # as in luz: a fit is in training mode from its start
        stop = fit_loop(ctx, resolve_step(model, ctx), runner)
        fitted = Fitted(
            model,
            records=ctx.records,
            hparams=ctx.hparams,
            opt_hparams=ctx.opt_hparams,
            module=module,
            optimizer_names=list(ctx.optimizers),
            stop_reason=None if stop is None else stop_reason(stop, ctx.epoch),
        )
        if interrupt.terminated:  # the handler took the SIGTERM: honour it now, wrap-up done
            raise Terminated(fitted.stop_reason or "terminated (SIGTERM) after training", fitted)
        return fitted
    finally:
        ctx.clean()


def stop_reason(stop: StopTraining | KeyboardInterrupt, epoch: int) -> str:
    """The sentence of ``Fitted.stop_reason`` for the signal that ended training at ``epoch``.

    ``StopTraining`` names the callback that raised it and adds its message
    (``"EarlyStopping stopped training at epoch 7: ..."``); a message that already says when,
    ``at epoch <epoch>``, takes the place of that part (``"NaNGuard stopped training:
    non-finite training loss (nan) at epoch 4"``). ``KeyboardInterrupt`` names the interrupt
    (its message, e.g. ``SIGTERM``, else the type).
    """
    if isinstance(stop, KeyboardInterrupt):
        cause = str(stop) or type(stop).__name__
        where = f"during epoch {epoch}" if epoch else "before the first epoch"
        return f"interrupted ({cause}) {where}"
    who = stop.raised_by or "StopTraining"
    where = f"at epoch {epoch}" if epoch else "before the first epoch"
    message = str(stop)
    if epoch and re.search(rf"\bat epoch {epoch}\b", message):
        return f"{who} stopped training: {message}"
    return f"{who} stopped training {where}" + (f": {message}" if message else "")


def _on_device(
    loss_fn: Callable[..., torch.Tensor] | None, acc: Accelerator
) -> Callable[..., torch.Tensor] | None:
    return loss_fn.to(acc.device) if isinstance(loss_fn, nn.Module) else loss_fn


def _distribute_loaders(acc: Accelerator, train_dl: Any, valid_dl: Any) -> tuple[Any, Any]:
    # The sampler seed derives from the global RNG state (rank 0's on every rank here), read
    # through a copy so the global stream is not advanced: the same on all ranks, reproducible
    # from torch.manual_seed, and the model is initialised as in a single-process run.
    peek = torch.Generator()
    peek.set_state(torch.get_rng_state())
    seed = int(torch.randint(0, 2**31 - 1, (), generator=peek).item())
    train = distribute_train_loader(train_dl, rank=acc.rank, world=acc.world_size, seed=seed)
    valid = None if valid_dl is None else shard_eval_loader(valid_dl, rank=acc.rank, world=acc.world_size)
    return train, valid


def _check_fitted(fitted: object, function: str) -> None:
    if isinstance(fitted, Fitted):
        return
    if isinstance(fitted, LuzModule):
        given, fix = "a LuzModule that is not fitted yet", "call .fit(data) on it first"
    elif isinstance(fitted, type):
        given, fix = f"the class {fitted.__name__}", "set it up and fit it: luz.setup(...).fit(data)"
    else:
        given, fix = f"a {type(fitted).__name__}", "pass the result of fit()"
    raise TypeError(f"luz.{function}(): `fitted` must be a luz.Fitted, got {given}; {fix}.")


@overload
def predict(
    fitted: Fitted,
    newdata: Any,
    *,
    stack: Literal[True] = True,
    callbacks: Any = None,
    accelerator: Accelerator | None = None,
    verbose: bool | None = None,
    dataloader_options: dict[str, Any] | None = None,
    **predict_kwargs: Any,
) -> torch.Tensor: ...


@overload
def predict(
    fitted: Fitted,
    newdata: Any,
    *,
    stack: Literal[False],
    callbacks: Any = None,
    accelerator: Accelerator | None = None,
    verbose: bool | None = None,
    dataloader_options: dict[str, Any] | None = None,
    **predict_kwargs: Any,
) -> list[Any]: ...


@overload
def predict(
    fitted: Fitted,
    newdata: Any,
    *,
    stack: bool,
    callbacks: Any = None,
    accelerator: Accelerator | None = None,
    verbose: bool | None = None,
    dataloader_options: dict[str, Any] | None = None,
    **predict_kwargs: Any,
) -> torch.Tensor | list[Any]: ...


def predict(
    fitted: Fitted,
    newdata: Any,
    *,
    stack: bool = True,
    callbacks: Any = None,
    accelerator: Accelerator | None = None,
    verbose: bool | None = None,
    dataloader_options: dict[str, Any] | None = None,
    **predict_kwargs: Any,
) -> torch.Tensor | list[Any]:
    """Predictions of a fitted model for ``newdata``, in order.

    What runs: ``on_predict_begin``, then per batch ``on_predict_batch_begin``, the model's
    ``predict(input, **predict_kwargs)`` method when it defines one (else its forward pass on
    the batch input),
    ``on_predict_batch_end``; then ``on_predict_end``. Default callbacks: Progress, Interrupt.

    Args:
        fitted: the `luz.Fitted` to predict with.
        newdata: data as for `fit`; batches may hold only the input (``(x,)``, or ``x``).
        stack: concatenate the per-batch outputs along dim 0 (tensors, or tuples/dicts of
            tensors); ``False``: return the list of per-batch outputs.
        callbacks: a callback or a list of callbacks (instances).
        accelerator: a `luz.Accelerator` (default: choose the best device).
        verbose: show progress; ``None``: when attached to a terminal or notebook.
        dataloader_options: options for the loader luz builds (``batch_size=32``; never shuffled).
        **predict_kwargs: passed to the model's ``predict`` method (e.g. ``scale=2.0``).

    Returns:
        The stacked predictions, or (``stack=False``) the list of per-batch outputs. Stacked
        predictions are typed ``torch.Tensor``, what a model that returns a tensor gives; a
        model that returns a tuple, list or dict of tensors gets that structure of stacked
        tensors (``typing.cast`` it, e.g. ``cast(tuple[Tensor, Tensor], preds)``).

    Raises:
        TypeError: ``predict_kwargs`` given for a model without a ``predict`` method.

    Example:
        >>> preds = luz.predict(fitted, x_test)  # doctest: +SKIP
    """
    _check_fitted(fitted, "predict")
    stack = check_flag(stack, "stack")
    acc, show = _check_run_options(verbose, accelerator)
    progress, user_callbacks = _take_progress(as_callback_list(callbacks))
    runner = _runner(acc, [progress, Interrupt(), *user_callbacks])
    ctx = Context(verbose=show, accelerator=acc, runner=runner)
    try:
        loader = eval_loader(newdata, dataloader_options, role="prediction")
        if acc.distributed:
            loader = shard_eval_loader(loader, rank=acc.rank, world=acc.world_size)
        model = acc.prepare(fitted.model)
        match_model_dtype(model, loader)
        model.eval()
        ctx.model = model
        ctx.training = False
        ctx.hparams, ctx.opt_hparams = dict(fitted.hparams), dict(fitted.opt_hparams)
        ctx.data = acc.prepare(loader)
        check_predict_kwargs(model, predict_kwargs)
        predictions = predict_loop(ctx, runner, predict_kwargs)
        if acc.distributed:  # every rank gets all predictions, in the original order
            ordered = unshard(gather_objects(to_cpu(predictions)))
            predictions = [move_to_device(p, acc.device) for p in ordered]
    finally:
        ctx.clean()
    if not stack:
        return predictions
    stacked: torch.Tensor = stack_predictions(predictions)  # or that structure of tensors (above)
    return stacked


def stack_predictions(predictions: list[Any]) -> Any:
    """Concatenate per-batch outputs along dim 0 (tensors, or tuples/dicts of tensors)."""
    if not predictions:
        return torch.empty(0)
    first = predictions[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(predictions) if first.ndim else torch.stack(predictions)
    if isinstance(first, tuple | list):
        parts = [stack_predictions([p[i] for p in predictions]) for i in range(len(first))]
        return tuple(parts) if isinstance(first, tuple) else parts
    if isinstance(first, dict):
        return {k: stack_predictions([p[k] for p in predictions]) for k in first}
    raise TypeError(
        f"Cannot stack predictions of type {type(first).__name__}: use predict(..., stack=False) "
        "to get the list of per-batch outputs."
    )


@keras_hints  # evaluate(x, y), batch_size=, device= → a TypeError naming the pyluz way
def evaluate(
    fitted: Fitted,
    data: Any,
    *,
    metrics: Any = None,
    callbacks: Any = None,
    accelerator: Accelerator | None = None,
    verbose: bool | None = None,
    dataloader_options: dict[str, Any] | None = None,
) -> Evaluation:
    """The loss and metrics of a fitted model on ``data``: one validation pass, no training.

    What runs: ``on_valid_begin``, per batch ``on_valid_batch_begin``, the validation step
    (forward and loss per optimizer), ``on_valid_batch_end``; then ``on_valid_end``. Metrics
    are recorded as the ``valid`` set of epoch 1. Default callbacks: Profile, Metrics,
    Progress, Interrupt.

    Args:
        fitted: the `luz.Fitted` to evaluate.
        data: data as for `fit`, with targets.
        metrics: metrics to use instead of the module's (for this call only).
        callbacks: a callback or a list of callbacks (instances).
        accelerator: a `luz.Accelerator` (default: choose the best device).
        verbose: show progress; ``None``: when attached to a terminal or notebook.
        dataloader_options: options for the loader luz builds (``batch_size=32``; never shuffled).

    Returns:
        An `luz.Evaluation` (``get_metrics()`` gives the table).

    Example:
        >>> luz.evaluate(fitted, (x_test, y_test)).get_metrics()  # doctest: +SKIP
    """
    _check_fitted(fitted, "evaluate")
    acc, show = _check_run_options(verbose, accelerator)
    progress, user_callbacks = _take_progress(as_callback_list(callbacks))
    defaults = [Profile(), Metrics(), progress, Interrupt()]
    runner = _runner(acc, [*defaults, *user_callbacks])
    ctx = Context(verbose=show, accelerator=acc, runner=runner)
    try:  # clean up (unbind the model) whether setting up or evaluating fails
        loader = eval_loader(data, dataloader_options, role="evaluation")
        if acc.distributed:
            loader = shard_eval_loader(loader, rank=acc.rank, world=acc.world_size)
        module = fitted.module
        model = acc.prepare(fitted.model)
        match_model_dtype(model, loader)
        model.eval()
        ctx.model = model
        ctx.training = False
        ctx.hparams, ctx.opt_hparams = dict(fitted.hparams), dict(fitted.opt_hparams)
        ctx.optimizers = _optimizers_for_evaluation(fitted, model)
        if module is not None:
            ctx.metric_set = as_metric_set(metrics) if metrics is not None else module.metrics
            ctx.loss_fn = _on_device(module.loss_fn(model), acc)
            ctx.backward = module.backward_fn(model)
        else:  # a loaded model: only its own loss method is known
            ctx.metric_set = as_metric_set(metrics)
            ctx.loss_fn = _on_device(resolve_loss(None, model, required=False), acc)
        ctx.valid_data = ctx.data = acc.prepare(loader)
        evaluate_loop(ctx, resolve_step(model, ctx), runner)
        return Evaluation(ctx.records)
    finally:
        ctx.clean()


def _optimizers_for_evaluation(fitted: Fitted, model: nn.Module) -> dict[str, torch.optim.Optimizer]:
    # Optimizers named as in training (a custom step may look them up): rebuilt from the
    # module when possible, else placeholders that are never stepped.
    if fitted.module is not None:
        try:
            return fitted.module.build_optimizers(model)
        except (TypeError, ValueError):
            pass
    params: list[torch.Tensor] = [*model.parameters()] or [torch.zeros(0, requires_grad=True)]
    return {name: torch.optim.SGD(params, lr=0.0) for name in fitted.optimizer_names}


# -- functional forms of the fluent methods --------------------------------------------------


def set_hparams(module: LuzModule, **hparams: Any) -> LuzModule:
    """Functional form of `LuzModule.set_hparams`."""
    return module.set_hparams(**hparams)


def set_opt_hparams(module: LuzModule, **opt_hparams: Any) -> LuzModule:
    """Functional form of `LuzModule.set_opt_hparams`."""
    return module.set_opt_hparams(**opt_hparams)


def get_metrics(obj: Fitted | Evaluation | Context) -> Any:
    """The metrics DataFrame of a fitted object, an evaluation or a context."""
    if isinstance(obj, Context):
        return metrics_frame(obj.records)
    if isinstance(obj, Fitted | Evaluation):
        return obj.get_metrics()
    raise TypeError(f"get_metrics() takes a Fitted, an Evaluation or a Context, got {type(obj).__name__}.")
