"""The default per-batch steps for training, validation and prediction.

A module can replace `default_step` with a ``step()`` method of its own; these functions are
public so a custom step can reuse them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from luz.batch import call_model, describe, has_forward
from luz.errors import with_origin
from luz.events import SkipEpoch, StopTraining

if TYPE_CHECKING:
    from luz.context import Context

__all__ = [
    "call_model",
    "check_same_shape",
    "compute_loss",
    "default_step",
    "describe",
    "has_forward",
    "predict_batch",
    "train_step",
    "valid_step",
]


def default_step(ctx: Context) -> None:
    """One batch: `train_step` when ``ctx.training`` else `valid_step`."""
    if ctx.training:
        train_step(ctx)
    else:
        valid_step(ctx)


def train_step(ctx: Context) -> None:
    """Forward, loss, backward and step for each optimizer in ``ctx.optimizers`` order.

    The forward pass is re-run per optimizer, through ``ctx.forward_model`` (the DDP wrapper
    in a distributed fit); gradients of the current optimizer are zeroed after its step.
    """
    fire = ctx.fire
    model = ctx.forward_model  # the DDP wrapper in a distributed fit: it averages gradients
    for name, opt in ctx.optimizers.items():
        try:  # free when nothing is raised (Python 3.11 zero-cost try): no per-step work
            ctx.pred = call_model(model, ctx.input)
        except (StopTraining, SkipEpoch):
            raise
        except Exception as error:
            raise _forward_error(error, ctx) from error
        fire("on_train_batch_after_pred")
        ctx.opt = opt
        ctx.opt_name = name
        loss = compute_loss(ctx)
        ctx.loss_grad = loss
        ctx.loss[name] = loss.detach()
        fire("on_train_batch_after_loss")
        fire("on_train_batch_before_backward")
        if ctx.backward is None:
            ctx.loss_grad.backward()  # type: ignore[no-untyped-call]
        else:
            ctx.backward(ctx.loss_grad)
        fire("on_train_batch_before_step")
        ctx.step_opt(opt)
        opt.zero_grad()
        fire("on_train_batch_after_step")


def valid_step(ctx: Context) -> None:
    """Forward and loss for each optimizer name (the caller holds ``torch.no_grad()``)."""
    fire = ctx.fire
    model = ctx.model
    for name in ctx.optimizers:
        ctx.opt_name = name
        try:
            ctx.pred = call_model(model, ctx.input)
        except (StopTraining, SkipEpoch):
            raise
        except Exception as error:
            raise _forward_error(error, ctx) from error
        fire("on_valid_batch_after_pred")
        ctx.loss[name] = compute_loss(ctx, training=False)
        fire("on_valid_batch_after_loss")


def compute_loss(ctx: Context, *, training: bool = True) -> torch.Tensor:
    """``ctx.loss_fn(ctx.pred, ctx.target)``, checked to be a scalar tensor (with a graph when
    training). The checks read only metadata: no host sync.

    Raises:
        ValueError: a non-scalar loss, a training loss without a graph, a failing loss on a
            batch without a target, or pred/target shapes that differ for an elementwise
            regression loss (see `check_same_shape`).
        Exception: any other error of the loss, re-raised (chained, same type) with the batch
            index, the epoch and the shapes of pred and target.
    """
    if ctx.loss_fn is None:
        raise RuntimeError(
            "No loss function: pass `loss=` to luz.setup(), define a `loss(pred, target)` method "
            "on the module, or define a custom `step()`."
        )
    pred, target = ctx.pred, ctx.target
    loss_fn = ctx.loss_fn
    if isinstance(loss_fn, _SAME_SHAPE_LOSSES):
        check_same_shape(loss_fn, pred, target, ctx)
    try:
        loss = loss_fn(pred, target)
    except (StopTraining, SkipEpoch):
        raise
    except Exception as error:
        raise _loss_error(error, pred, target, ctx) from error
    if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
        shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
        raise ValueError(
            f"The loss must return a scalar tensor, got {shape} at batch {ctx.iter} of epoch "
            f"{ctx.epoch}. Use a reducing loss (e.g. reduction='mean') or reduce it yourself."
        )
    if training and not loss.requires_grad:
        raise ValueError(
            f"The loss at batch {ctx.iter} of epoch {ctx.epoch} does not require grad, so "
            "nothing can be learned: check that the model's parameters require grad and that "
            "the loss is computed from the model's output (not under torch.no_grad())."
        )
    return loss


# Elementwise losses for which torch only warns (and broadcasts) when pred and target shapes
# differ: (N, 1) against (N,) silently becomes an (N, N) loss. Classification losses take
# targets of another shape by design and are not checked.
_SAME_SHAPE_LOSSES = (nn.MSELoss, nn.L1Loss, nn.SmoothL1Loss, nn.HuberLoss)


def check_same_shape(loss_fn: nn.Module, pred: Any, target: Any, ctx: Context) -> None:
    """Raise ``ValueError`` when an elementwise regression loss (``MSELoss``, ``L1Loss``,
    ``SmoothL1Loss``, ``HuberLoss``) gets tensors of different shapes, which torch would
    broadcast with only a warning. Compares shapes only: no host sync."""
    if isinstance(pred, torch.Tensor) and isinstance(target, torch.Tensor) and pred.shape != target.shape:
        p, t = tuple(pred.shape), tuple(target.shape)
        raise ValueError(
            f"{type(loss_fn).__name__} got a prediction of shape {p} and a target of shape {t} "
            f"at batch {ctx.iter} of epoch {ctx.epoch} ({_phase(ctx)}); torch would broadcast "
            "them into a wrong loss. Make the shapes equal: e.g. give the target the model's "
            "output shape (`y.view(-1, 1)` for a (N, 1) output) or squeeze the output "
            "(`out.squeeze(-1)`)."
        )


def _phase(ctx: Context) -> str:
    return "training" if ctx.training else "validation"


def _loss_error(error: Exception, pred: Any, target: Any, ctx: Context) -> Exception:
    where = f"at batch {ctx.iter} of epoch {ctx.epoch} ({_phase(ctx)})"
    if target is None:
        return ValueError(
            f"The loss failed {where} and the batch has no target: it is {describe(ctx.batch)}. "
            "The default step needs batches `(input, target, ...)`: pass `(x, y)` to fit (a "
            "bare tensor gives `(x,)` batches), make your Dataset return `(input, target)` "
            f"tuples, or define a custom `step()`. The loss said: {error}"
        )
    message = f"Error computing the loss {where}: pred is {describe(pred)}, target is {describe(target)}"
    return with_origin(error, message, RuntimeError)


def predict_batch(ctx: Context) -> Any:
    """The prediction for the current batch: ``model.predict(input)`` if the model defines it,
    else the forward pass on ``ctx.input``."""
    model = ctx.model
    # A method defined on the class, not a submodule that happens to be called `predict`.
    method = getattr(type(model), "predict", None)
    try:
        if callable(method) and not isinstance(method, nn.Module):
            return getattr(model, "predict")(ctx.input)  # noqa: B009 - nn.Module types attributes as Tensor
        return call_model(model, ctx.input)
    except (StopTraining, SkipEpoch):
        raise
    except Exception as error:
        raise _forward_error(error, ctx, phase="prediction") from error


def _forward_error(error: Exception, ctx: Context, *, phase: str | None = None) -> Exception:
    """``error`` (raised by the model's forward) re-raised with where it happened: the batch
    index, the epoch, the phase and the batch's structure (types and shapes).

    The result is also an instance of ``type(error)`` (see `luz.errors.with_origin`); built only
    on the error path, so the steps pay nothing for it.
    """
    batch = ctx.batch
    if phase == "prediction":  # the predict loop keeps no index: its outputs so far count batches
        done = ctx.pred if isinstance(ctx.pred, list) else []
        where = f"at batch {len(done) + 1}"
    else:
        where = f"at batch {ctx.iter} of epoch {ctx.epoch}"
    message = (
        f"Error in the model's forward {where} ({phase or _phase(ctx)}): the batch is "
        f"{describe(batch)} and the model was called with {describe(ctx.input)}."
    )
    if isinstance(batch, tuple | list):
        message += (
            " A batch is `(input, target, ...)` and only element 0 goes to the model: to call "
            "`model(x1, x2)`, pass the inputs nested, `((x1, x2), y)` (`predict(((x1, x2),))`)."
        )
    try:  # exactly the original type, so `except torch.OutOfMemoryError` still catches it
        return with_origin(error, message + " The model said", type(error))
    except Exception:  # a type that cannot be built from a message alone
        return with_origin(error, message + " The model said", RuntimeError)
