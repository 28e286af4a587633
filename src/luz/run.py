"""The entry points: `fit`, `evaluate` and `predict`, each with its one signature.

Each checks its arguments, assembles the context (the accelerator, the loaders, the model, the
callback runner with the default callbacks) and runs its loop from `luz.loop`. The methods
``LuzModule.fit``, ``Fitted.predict`` and ``Fitted.evaluate`` forward here, as do
``luz.fit``, ``luz.predict`` and ``luz.evaluate``, which are these functions.
"""

from __future__ import annotations

import numbers
from typing import Any, Literal, overload

import torch

from luz._hints import keras_hints
from luz._loaders import eval_loader, split_valid, training_loader, warn_non_finite
from luz._run_setup import (
    check_fitted,
    check_run_options,
    check_steps_per_epoch,
    compile_options,
    loss_on_device,
    optimizers_for_evaluation,
    parse_epochs,
    resolve_step,
    stack_predictions,
    stop_reason,
    take_progress,
    train_stream,
)
from luz._validate import check_flag, is_number_text
from luz.accelerator import Accelerator
from luz.callbacks.base import Callback, as_callback_list
from luz.callbacks.defaults import Interrupt, Profile, TrainValid
from luz.callbacks.terminate_on_nan import NaNGuard, TerminateOnNaN
from luz.context import Context
from luz.data import match_model_dtype
from luz.events import Terminated
from luz.loop import evaluate_loop, fit_loop, predict_loop
from luz.metrics.set import as_metric_set
from luz.module import LuzModule, resolve_loss
from luz.records import metrics_frame
from luz.results import Evaluation, Fitted
from luz.step import check_predict_kwargs


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
    compiling = compile_options(compile)
    acc, show, plan = check_run_options(verbose, accelerator)
    progress, user_callbacks = take_progress(as_callback_list(callbacks))
    interrupt = Interrupt()
    defaults: list[Callback] = [Profile(), TrainValid(), plan.metrics(), progress, interrupt]
    if not any(isinstance(cb, TerminateOnNaN | NaNGuard) for cb in user_callbacks):
        defaults.append(NaNGuard())  # yours replaces it (NaNGuard(enabled=False) turns it off)
    runner = plan.runner([*defaults, *user_callbacks], fit=True)
    ctx = Context(verbose=show, accelerator=acc, runner=runner)
    try:  # clean up (unbind model and callbacks) whether setting up or training fails
        plan.start_fit()
        if isinstance(valid_data, numbers.Number) or is_number_text(valid_data):  # "0.2": a clear error
            data, valid_data = split_valid(data, valid_data)
        train_dl = training_loader(data, dataloader_options)
        warn_non_finite(train_dl, "training")
        valid_dl = (
            None if valid_data is None else eval_loader(valid_data, dataloader_options, role="validation")
        )
        train_dl, valid_dl = plan.fit_loaders(train_dl, valid_dl)
        model = acc.prepare(module.build_model())
        match_model_dtype(model, train_dl, valid_dl)  # in-memory floats take the model's dtype
        if compiling is not None:
            model.compile(**compiling)  # compiles __call__ in place: same class, same keys
        ctx.hparams, ctx.opt_hparams = dict(module.hparams), dict(module.opt_hparams)
        ctx.model = model
        ctx.forward_model = acc.wrap_for_training(model)  # the DDP wrapper in a process group
        ctx.optimizers = module.build_optimizers(model)
        ctx.loss_fn = loss_on_device(module.loss_fn(model), acc)
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
    check_fitted(fitted, "predict")
    stack = check_flag(stack, "stack")
    acc, show, plan = check_run_options(verbose, accelerator)
    progress, user_callbacks = take_progress(as_callback_list(callbacks))
    runner = plan.runner([progress, Interrupt(), *user_callbacks])
    ctx = Context(verbose=show, accelerator=acc, runner=runner)
    try:
        loader = plan.eval_loader(eval_loader(newdata, dataloader_options, role="prediction"))
        model = acc.prepare(fitted.model)
        match_model_dtype(model, loader)
        model.eval()
        ctx.model = model
        ctx.training = False
        ctx.hparams, ctx.opt_hparams = dict(fitted.hparams), dict(fitted.opt_hparams)
        ctx.data = acc.prepare(loader)
        check_predict_kwargs(model, predict_kwargs)
        predictions = plan.all_predictions(predict_loop(ctx, runner, predict_kwargs))
    finally:
        ctx.clean()
    if not stack:
        return predictions
    stacked: torch.Tensor = stack_predictions(predictions)  # or that structure of tensors (above)
    return stacked


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
    check_fitted(fitted, "evaluate")
    acc, show, plan = check_run_options(verbose, accelerator)
    progress, user_callbacks = take_progress(as_callback_list(callbacks))
    defaults = [Profile(), plan.metrics(), progress, Interrupt()]
    runner = plan.runner([*defaults, *user_callbacks])
    ctx = Context(verbose=show, accelerator=acc, runner=runner)
    try:  # clean up (unbind the model) whether setting up or evaluating fails
        loader = plan.eval_loader(eval_loader(data, dataloader_options, role="evaluation"))
        module = fitted.module
        model = acc.prepare(fitted.model)
        match_model_dtype(model, loader)
        model.eval()
        ctx.model = model
        ctx.training = False
        ctx.hparams, ctx.opt_hparams = dict(fitted.hparams), dict(fitted.opt_hparams)
        ctx.optimizers = optimizers_for_evaluation(fitted, model)
        if module is not None:
            ctx.metric_set = as_metric_set(metrics) if metrics is not None else module.metrics
            ctx.loss_fn = loss_on_device(module.loss_fn(model), acc)
            ctx.backward = module.backward_fn(model)
        else:  # a loaded model: only its own loss method is known
            ctx.metric_set = as_metric_set(metrics)
            ctx.loss_fn = loss_on_device(resolve_loss(None, model, required=False), acc)
        ctx.valid_data = ctx.data = acc.prepare(loader)
        evaluate_loop(ctx, resolve_step(model, ctx), runner)
        return Evaluation(ctx.records)
    finally:
        ctx.clean()


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
