"""Assembling a run: argument checks, the context, default callbacks, then the loop."""

from __future__ import annotations

import numbers
import os
import sys
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from luz._distributed import gather_objects, sync_random_state, to_cpu
from luz._sharding import distribute_train_loader, shard_eval_loader, unshard
from luz._validate import check_count, check_optional_flag, invalid, is_flag
from luz.accelerator import Accelerator, move_to_device
from luz.callbacks.base import Callback, check_callbacks
from luz.callbacks.defaults import Interrupt, Metrics, Profile, TrainValid
from luz.callbacks.distributed import DistributedSync
from luz.context import Context
from luz.data import eval_loader, split_valid, training_loader
from luz.loop import evaluate_loop, fit_loop, predict_loop
from luz.metrics.base import as_metric_set
from luz.reporting.progress import Progress
from luz.step import default_step

if TYPE_CHECKING:
    from luz.fitted import Evaluation, Fitted
    from luz.module import LuzModule


def default_verbose() -> bool:
    """Progress is shown when stderr is a terminal or we run inside a notebook kernel."""
    if "ipykernel" in sys.modules:
        return True
    stream = sys.stderr
    return bool(stream is not None and hasattr(stream, "isatty") and stream.isatty())


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


def _compile_options(compile: object) -> dict[str, Any] | None:
    if isinstance(compile, dict):
        return dict(compile)
    if not is_flag(compile):
        raise invalid("compile", "True, False or a dict of torch.compile arguments", compile, error=TypeError)
    return {} if compile else None


def as_callback_list(callbacks: Any) -> list[Callback]:
    """``None`` -> ``[]``; a single callback -> ``[it]``; lists as lists (in the given order).

    Raises:
        TypeError: an element is not a callback instance; the index is the user's.
    """
    if callbacks is None:
        return []
    if isinstance(callbacks, Callback | type) or not isinstance(callbacks, list | tuple):
        callbacks = [callbacks]
    check_callbacks(callbacks)  # before the defaults are added, so error indices are the user's
    return list(callbacks)


def resolve_step(model: nn.Module, ctx: Context) -> Callable[[], None]:
    """The module's own ``step()`` if it defines one, else `luz.step.default_step`."""
    if callable(getattr(type(model), "step", None)):
        step: Callable[[], None] = getattr(model, "step")  # noqa: B009 - not a Module attribute
        return step
    return lambda: default_step(ctx)


def _new_context(verbose: bool | None, accelerator: Accelerator | None, callbacks: list[Any]) -> Context:
    if accelerator is not None and not isinstance(accelerator, Accelerator):
        raise TypeError(f"`accelerator` must be a luz.Accelerator, got {type(accelerator).__name__}.")
    verbose = check_optional_flag(
        verbose, "verbose", hint="None shows progress on a terminal or in a notebook."
    )
    acc = accelerator or Accelerator()
    show = default_verbose() if verbose is None else bool(verbose)
    ctx = Context(verbose=show and acc.is_main_process, accelerator=acc)  # distributed: rank 0 prints
    ctx.callbacks = callbacks
    if ctx.device.type == "mps" and "PYTORCH_ENABLE_MPS_FALLBACK" not in os.environ:
        warnings.warn(
            "Training on MPS: operations MPS does not support will fail. To fall back to the CPU "
            "for them, set PYTORCH_ENABLE_MPS_FALLBACK=1 before the Python process starts.",
            UserWarning,
            stacklevel=3,
        )
    return ctx


def run_fit(
    module: LuzModule,
    data: Any,
    *,
    epochs: Any,
    callbacks: Any,
    valid_data: Any,
    accelerator: Accelerator | None,
    verbose: bool | None,
    dataloader_options: dict[str, Any] | None,
    compile: bool | dict[str, Any] = False,
) -> Fitted:
    """Build the fit context and run `luz.loop.fit_loop`."""
    from luz.fitted import Fitted

    min_epochs, max_epochs = parse_epochs(epochs)
    compile_options = _compile_options(compile)
    defaults = [Profile(), TrainValid(), Metrics(), Progress(), Interrupt()]
    ctx = _new_context(verbose, accelerator, [*defaults, *as_callback_list(callbacks)])
    try:  # clean up (unbind model and callbacks) whether setting up or training fails
        acc = ctx.accelerator
        assert acc is not None
        if acc.distributed:
            # Every rank starts from rank 0's random state: same split, sampler seed, init.
            sync_random_state()
            ctx.callbacks = [DistributedSync(), *ctx.callbacks]
        if isinstance(valid_data, numbers.Number):
            data, valid_data = split_valid(data, valid_data)  # type: ignore[arg-type]
        train_dl = training_loader(data, dataloader_options)
        valid_dl = (
            None if valid_data is None else eval_loader(valid_data, dataloader_options, role="validation")
        )
        if acc.distributed:
            train_dl, valid_dl = _distribute_loaders(acc, train_dl, valid_dl)

        model = acc.prepare(module.build_model())
        if compile_options is not None:
            model.compile(**compile_options)  # compiles __call__ in place: same class, same keys
        ctx.hparams, ctx.opt_hparams = dict(module.hparams), dict(module.opt_hparams)
        ctx.model = model
        ctx.forward_model = acc.wrap_for_training(model)  # DDP when distributed
        ctx.optimizers = module.build_optimizers(model)
        loss_fn = module.loss_fn(model)
        ctx.loss_fn = loss_fn.to(acc.device) if isinstance(loss_fn, nn.Module) else loss_fn
        ctx.backward = module.backward_fn(model)
        ctx.metric_set = module.metrics
        ctx.train_data, ctx.valid_data = acc.prepare(train_dl, valid_dl)
        ctx.data = ctx.train_data
        ctx.max_epochs = max_epochs
        ctx.min_epochs = min_epochs
        ctx.training = True  # as in luz: a fit is in training mode from its start
        fit_loop(ctx, resolve_step(model, ctx))
        return Fitted(
            model,
            records=ctx.records,
            hparams=ctx.hparams,
            opt_hparams=ctx.opt_hparams,
            module=module,
            optimizer_names=list(ctx.optimizers),
        )
    finally:
        ctx.clean()


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


def run_predict(
    fitted: Fitted,
    newdata: Any,
    *,
    stack: bool,
    callbacks: Any,
    accelerator: Accelerator | None,
    verbose: bool | None,
    dataloader_options: dict[str, Any] | None,
) -> Any:
    """Predict every batch of ``newdata`` with the fitted model."""
    ctx = _new_context(verbose, accelerator, [Progress(), Interrupt(), *as_callback_list(callbacks)])
    assert ctx.accelerator is not None
    try:
        acc = ctx.accelerator
        loader = eval_loader(newdata, dataloader_options, role="prediction")
        if acc.distributed:
            loader = shard_eval_loader(loader, rank=acc.rank, world=acc.world_size)
        model = acc.prepare(fitted.model)
        model.eval()
        ctx.model = model
        ctx.training = False
        ctx.hparams, ctx.opt_hparams = dict(fitted.hparams), dict(fitted.opt_hparams)
        ctx.data = acc.prepare(loader)
        predictions = predict_loop(ctx)
        if acc.distributed:  # every rank gets all predictions, in the original order
            ordered = unshard(gather_objects(to_cpu(predictions)))
            predictions = [move_to_device(p, acc.device) for p in ordered]
    finally:
        ctx.clean()
    return stack_predictions(predictions) if stack else predictions


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


def run_evaluate(
    fitted: Fitted,
    data: Any,
    *,
    metrics: Any,
    callbacks: Any,
    accelerator: Accelerator | None,
    verbose: bool | None,
    dataloader_options: dict[str, Any] | None,
) -> Evaluation:
    """One validation pass over ``data`` with the loss and metrics (or ``metrics``)."""
    from luz.fitted import Evaluation

    defaults = [Profile(), Metrics(), Progress(), Interrupt()]
    ctx = _new_context(verbose, accelerator, [*defaults, *as_callback_list(callbacks)])
    assert ctx.accelerator is not None
    try:  # clean up (unbind the model) whether setting up or evaluating fails
        loader = eval_loader(data, dataloader_options, role="evaluation")
        if ctx.accelerator.distributed:
            loader = shard_eval_loader(loader, rank=ctx.accelerator.rank, world=ctx.accelerator.world_size)
        module = fitted.module
        model = ctx.accelerator.prepare(fitted.model)
        model.eval()
        ctx.model = model
        ctx.training = False
        ctx.hparams, ctx.opt_hparams = dict(fitted.hparams), dict(fitted.opt_hparams)
        ctx.optimizers = fitted.build_optimizers_for_evaluation(model)
        if module is not None:
            ctx.metric_set = as_metric_set(metrics) if metrics is not None else module.metrics
            loss_fn = module.loss_fn(model)
            ctx.backward = module.backward_fn(model)
        else:
            ctx.metric_set = as_metric_set(metrics)
            method = getattr(model, "loss", None)
            loss_fn = method if callable(method) else None
        ctx.loss_fn = loss_fn.to(ctx.accelerator.device) if isinstance(loss_fn, nn.Module) else loss_fn
        ctx.valid_data = ctx.data = ctx.accelerator.prepare(loader)
        evaluate_loop(ctx, resolve_step(model, ctx))
        return Evaluation(ctx.records)
    finally:
        ctx.clean()
