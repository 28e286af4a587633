"""What the entry points check and assemble before their loop runs: the run options, the
epochs, the default `Progress`, the step, the training stream; and how a fit's end and a
prediction's batches are reported (`stop_reason`, `stack_predictions`)."""

from __future__ import annotations

import functools
import os
import re
import warnings
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from luz._dist.plan import SingleProcess, plan_for
from luz._persist.rng import get_rng_state, set_rng_state
from luz._stream import TrainStream
from luz._validate import check_count, check_optional_flag, invalid, is_flag
from luz.accelerator import Accelerator, DeviceLoader, unwrap_loader
from luz.callbacks.base import Callback
from luz.callbacks.progress import Progress, default_verbose
from luz.context import Context
from luz.events import StopTraining
from luz.module import LuzModule
from luz.results import Fitted
from luz.step import default_step


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


def compile_options(compile: object) -> dict[str, Any] | None:
    """``fit(compile=)``: the ``torch.compile`` arguments (``{}`` for ``True``), or ``None``."""
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


def check_run_options(verbose: object, accelerator: object) -> tuple[Accelerator, bool, SingleProcess]:
    """The accelerator (a default one for ``None``), whether this process shows progress, and
    the run's plan (`luz._dist.plan.plan_for`)."""
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
    return acc, show and acc.is_writer, plan_for(acc)  # in a process group rank 0 prints


def take_progress(user_callbacks: list[Callback]) -> tuple[Callback, list[Callback]]:
    """The default `Progress`, or the first of yours, which takes its place among the defaults
    (so it ends a bar before the defaults after it print notes); and your other callbacks."""
    for index, cb in enumerate(user_callbacks):
        if isinstance(cb, Progress):
            return cb, user_callbacks[:index] + user_callbacks[index + 1 :]
    return Progress(), user_callbacks


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


def loss_on_device(
    loss_fn: Callable[..., torch.Tensor] | None, acc: Accelerator
) -> Callable[..., torch.Tensor] | None:
    """The loss on the accelerator's device when it is a module (a class weight, say)."""
    return loss_fn.to(acc.device) if isinstance(loss_fn, nn.Module) else loss_fn


def check_fitted(fitted: object, function: str) -> None:
    """A ``TypeError`` saying what to pass when ``fitted`` is not a `luz.Fitted`."""
    if isinstance(fitted, Fitted):
        return
    if isinstance(fitted, LuzModule):
        given, fix = "a LuzModule that is not fitted yet", "call .fit(data) on it first"
    elif isinstance(fitted, type):
        given, fix = f"the class {fitted.__name__}", "set it up and fit it: luz.setup(...).fit(data)"
    else:
        given, fix = f"a {type(fitted).__name__}", "pass the result of fit()"
    raise TypeError(f"luz.{function}(): `fitted` must be a luz.Fitted, got {given}; {fix}.")


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


def optimizers_for_evaluation(fitted: Fitted, model: nn.Module) -> dict[str, torch.optim.Optimizer]:
    """Optimizers named as in training (a custom step may look them up): rebuilt from the
    module when possible, else placeholders that are never stepped."""
    if fitted.module is not None:
        try:
            return fitted.module.build_optimizers(model)
        except (TypeError, ValueError):
            pass
    params: list[torch.Tensor] = [*model.parameters()] or [torch.zeros(0, requires_grad=True)]
    return {name: torch.optim.SGD(params, lr=0.0) for name in fitted.optimizer_names}
