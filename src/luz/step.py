"""The default per-batch steps for training, validation and prediction.

A module can replace `default_step` with a ``step()`` method of its own; these functions are
public so a custom step can reuse them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from luz.context import Context


def has_forward(model: nn.Module) -> bool:
    """Whether the model defines ``forward`` (a model without one is treated as the identity)."""
    return type(model).forward is not nn.Module.forward


def call_model(model: nn.Module, input: Any) -> Any:
    """Run the model on a batch input: ``model(*input)`` for a tuple/list, ``model(**input)``
    for a dict, ``model(input)`` otherwise. A model without ``forward`` returns the input."""
    if not has_forward(model):
        return input
    if isinstance(input, tuple | list):
        return model(*input)
    if isinstance(input, dict):
        return model(**input)
    return model(input)


def default_step(ctx: Context) -> None:
    """One batch: `train_step` when ``ctx.training`` else `valid_step`."""
    if ctx.training:
        train_step(ctx)
    else:
        valid_step(ctx)


def train_step(ctx: Context) -> None:
    """Forward, loss, backward and step for each optimizer in ``ctx.optimizers`` order.

    The forward pass is re-run per optimizer; gradients of the current optimizer are zeroed
    after its step.
    """
    fire = ctx.fire
    model = ctx.model
    for name, opt in ctx.optimizers.items():
        ctx.pred = call_model(model, ctx.input)
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
        ctx.pred = call_model(model, ctx.input)
        fire("on_valid_batch_after_pred")
        ctx.loss[name] = compute_loss(ctx, training=False)
        fire("on_valid_batch_after_loss")


def compute_loss(ctx: Context, *, training: bool = True) -> torch.Tensor:
    """``ctx.loss_fn(ctx.pred, ctx.target)``, checked to be a scalar tensor (with a graph when
    training). The checks read only metadata: no host sync."""
    if ctx.loss_fn is None:
        raise RuntimeError(
            "No loss function: pass `loss=` to luz.setup(), define a `loss(pred, target)` method "
            "on the module, or define a custom `step()`."
        )
    loss = ctx.loss_fn(ctx.pred, ctx.target)
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


def predict_batch(ctx: Context) -> Any:
    """The prediction for the current batch: ``model.predict(input)`` if the model defines it,
    else the forward pass on ``ctx.input``."""
    model = ctx.model
    predict = getattr(model, "predict", None)
    if callable(predict):
        return predict(ctx.input)
    return call_model(model, ctx.input)
