"""The default per-batch steps for training, validation and prediction.

A module can replace `default_step` with a ``step()`` method of its own; these functions are
public so a custom step can reuse them.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from luz._hints import keyword_hints
from luz.batch import batch_input, batch_target, call_model, describe, has_forward, is_keyed
from luz.context import _default_step_opt  # the step a closure optimizer may replace
from luz.errors import with_origin
from luz.events import LOOP_SIGNALS
from luz.outputs import OutputLoss, prediction

if TYPE_CHECKING:
    from luz.context import Context

__all__ = [
    "call_model",
    "check_predict_kwargs",
    "check_same_shape",
    "compute_loss",
    "default_step",
    "describe",
    "has_forward",
    "has_predict",
    "needs_closure",
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
    in a distributed fit); gradients of the current optimizer are zeroed after its step. An
    optimizer whose ``step`` requires a closure (``torch.optim.LBFGS``, see `needs_closure`)
    steps with ``opt.step(closure)``, the closure re-running forward, loss and backward
    (breakpoints fire once per batch); a replaced ``ctx.step_opt`` (``MixedPrecision``'s
    ``GradScaler``, which supports no closures) is then a ``ValueError``. While
    ``ctx.accumulating`` (`GradientAccumulation`), a batch ends after backward: no
    ``before_step``, step, ``zero_grad`` or ``after_step``.
    """
    # The breakpoints some callback implements, looked up once per batch: the others are
    # skipped without a call (``ctx.callers`` holds only implemented ones).
    hooks = ctx.callers
    after_pred = hooks.get("on_train_batch_after_pred")
    after_loss = hooks.get("on_train_batch_after_loss")
    before_backward = hooks.get("on_train_batch_before_backward")
    before_step = hooks.get("on_train_batch_before_step")
    after_step = hooks.get("on_train_batch_after_step")
    model = ctx.forward_model  # the DDP wrapper in a distributed fit: it averages gradients
    for name, opt in ctx.optimizers.items():
        try:  # free when nothing is raised (Python 3.11 zero-cost try): no per-step work
            ctx.pred = call_model(model, batch_input(ctx.batch))
        except LOOP_SIGNALS:
            raise
        except Exception as error:
            raise _forward_error(error, ctx) from error
        if after_pred is not None:
            after_pred()
        ctx.opt = opt
        ctx.opt_name = name
        loss = compute_loss(ctx)
        ctx.loss_grad = loss
        ctx.loss[name] = loss.detach()
        if after_loss is not None:
            after_loss()
        if before_backward is not None:
            before_backward()
        if ctx.backward is None:
            ctx.loss_grad.backward()  # type: ignore[no-untyped-call]
        else:
            ctx.backward(ctx.loss_grad)
        if ctx.accumulating:  # GradientAccumulation: the gradients add up until a stepping batch
            continue
        if before_step is not None:
            before_step()
        if needs_closure(opt):
            if ctx.step_opt is not _default_step_opt:
                raise _closure_step_error(opt)
            opt.step(_closure(ctx, model, opt, loss))  # type: ignore[arg-type]  # torch types it float; LBFGS takes a tensor
        else:
            ctx.step_opt(opt)
        opt.zero_grad()
        if after_step is not None:
            after_step()


def needs_closure(opt: torch.optim.Optimizer) -> bool:
    """Whether ``opt.step`` requires a closure (``torch.optim.LBFGS``): its ``step`` has a
    ``closure`` parameter without a default.

    The rule reads the signature, not a list of classes, so a user's closure optimizer works
    too; optimizers whose closure is optional (``SGD``, ``Adam``, ...) get none, since
    calling it would re-run the forward pass for nothing. The answer is cached per class: an
    ordinary optimizer costs one dict lookup per step.
    """
    cls = type(opt)
    known = _NEEDS_CLOSURE.get(cls)
    if known is None:
        closure = inspect.signature(cls.step).parameters.get("closure")
        known = _NEEDS_CLOSURE[cls] = closure is not None and closure.default is inspect.Parameter.empty
    return known


_NEEDS_CLOSURE: dict[type, bool] = {}


def _closure_step_error(opt: torch.optim.Optimizer) -> Exception:
    # `ctx.step_opt(opt)` takes no closure: stepping around it (MixedPrecision's GradScaler on
    # CUDA) would apply scaled gradients, so refuse instead.
    return ValueError(
        f"{type(opt).__name__} needs a closure, but ctx.step_opt was replaced (e.g. by "
        "MixedPrecision's GradScaler on CUDA), and it steps without one; torch's GradScaler "
        "does not support closures. Drop the callback that replaced it, or use another optimizer."
    )


def _closure(
    ctx: Context, model: nn.Module, opt: torch.optim.Optimizer, loss: torch.Tensor
) -> Callable[[], torch.Tensor]:
    """The closure for ``opt.step``: its first call returns ``loss`` (forward, loss and backward
    already ran, with their breakpoints); each further call (a line search re-evaluating)
    zeroes the gradients and re-runs forward, loss and backward without breakpoints, as a
    hand-written ``closure()`` does (SPEC §2: breakpoints fire once per batch)."""
    first = [loss]

    def closure() -> torch.Tensor:
        if first:
            return first.pop()
        opt.zero_grad()
        ctx.pred = call_model(model, ctx.input)
        again = compute_loss(ctx)
        if ctx.backward is None:
            again.backward()  # type: ignore[no-untyped-call]
        else:
            ctx.backward(again)
        return again

    return closure


def valid_step(ctx: Context) -> None:
    """Forward and loss for each optimizer name (the caller holds ``torch.no_grad()``)."""
    after_pred = ctx.callers.get("on_valid_batch_after_pred")
    after_loss = ctx.callers.get("on_valid_batch_after_loss")
    model = ctx.model
    for name in ctx.optimizers:
        ctx.opt_name = name
        try:
            ctx.pred = call_model(model, batch_input(ctx.batch))
        except LOOP_SIGNALS:
            raise
        except Exception as error:
            raise _forward_error(error, ctx) from error
        if after_pred is not None:
            after_pred()
        ctx.loss[name] = compute_loss(ctx, training=False)
        if after_loss is not None:
            after_loss()


def compute_loss(ctx: Context, *, training: bool = True) -> torch.Tensor:
    """``ctx.loss_fn(ctx.pred, ctx.target)``, checked to be a scalar tensor (with a graph when
    training). The checks read only metadata: no host sync.

    A loss function given to ``setup`` receives the output's ``logits`` when it has them
    (`luz.outputs.prediction`); the module's own ``loss`` method receives the output as the
    model returned it (it may read any field); ``setup(loss="output")``
    (`luz.outputs.OutputLoss`) reads the output's own ``loss`` field.

    Raises:
        ValueError: a non-scalar loss, a training loss without a graph, a failing loss on a
            batch without a target, pred/target shapes that differ for an elementwise
            regression loss (see `check_same_shape`), or ``loss="output"`` with an output that
            has no loss.
        Exception: any other error of the loss, re-raised (chained, same type) with the batch
            index, the epoch and the shapes of pred and target.
    """
    if ctx.loss_fn is None:
        raise RuntimeError(
            "No loss function: pass `loss=` to luz.setup(), define a `loss(pred, target)` method "
            "on the module, or define a custom `step()`."
        )
    pred, target = ctx.pred, batch_target(ctx.batch)  # what ctx.target reads, one call less
    loss_fn = ctx.loss_fn
    if isinstance(loss_fn, OutputLoss):  # the model computed it: its own error says what is missing
        try:
            loss = loss_fn(pred, target)
        except ValueError as error:
            raise ValueError(f"At batch {ctx.iter} of epoch {ctx.epoch} ({_phase(ctx)}): {error}") from None
    else:
        if not isinstance(pred, torch.Tensor) and getattr(loss_fn, "__self__", None) is not ctx.model:
            pred = prediction(pred)  # a loss given to setup gets the logits; the model's own, all
        if isinstance(loss_fn, _SAME_SHAPE_LOSSES):
            check_same_shape(loss_fn, pred, target, ctx)
        try:
            loss = loss_fn(pred, target)
        except LOOP_SIGNALS:
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
        batch = ctx.batch
        if isinstance(batch, Mapping) and not is_keyed(batch):
            fix = (
                "A dict batch without an 'input' (or 'x') entry takes its 'labels' entry as the "
                "target: add `labels` to each batch, or name the entries 'input' and 'target'"
            )
        else:
            fix = (
                "The default step needs batches `(input, target, ...)`: pass `(x, y)` to fit (a "
                "bare tensor gives `(x,)` batches), make your Dataset return `(input, target)` "
                "tuples, or define a custom `step()`"
            )
        return ValueError(
            f"The loss failed {where} and the batch has no target: it is {describe(batch)}. "
            f"{fix}. The loss said: {error}"
        )
    message = f"Error computing the loss {where}: pred is {describe(pred)}, target is {describe(target)}"
    return with_origin(error, message, RuntimeError)


def predict_batch(ctx: Context, predict_kwargs: dict[str, Any] | None = None) -> Any:
    """The prediction for the current batch: ``model.predict(input, **predict_kwargs)`` if the
    model defines it, else the forward pass on ``ctx.input`` (``predict_kwargs`` are then
    refused up front by `check_predict_kwargs`), reduced to its ``logits`` when the output has
    them (`luz.outputs.prediction`)."""
    model = ctx.model
    try:
        if has_predict(model):
            predict = getattr(model, "predict")  # noqa: B009 - nn.Module types attributes as Tensor
            return predict(ctx.input, **predict_kwargs) if predict_kwargs else predict(ctx.input)
        return prediction(call_model(model, ctx.input))
    except LOOP_SIGNALS:
        raise
    except Exception as error:
        raise _forward_error(error, ctx, phase="prediction") from error


def has_predict(model: nn.Module) -> bool:
    """Whether ``model`` defines a ``predict`` method: one on its class, not a submodule that
    happens to be called ``predict``."""
    method = getattr(type(model), "predict", None)
    return callable(method) and not isinstance(method, nn.Module)


def check_predict_kwargs(model: nn.Module, predict_kwargs: dict[str, Any]) -> None:
    """Raise ``TypeError`` naming ``predict_kwargs`` when ``model`` has no ``predict`` method
    to receive them (SPEC §1); nothing to check when there are none."""
    if predict_kwargs and not has_predict(model):
        names = ", ".join(repr(k) for k in predict_kwargs)
        hints = keyword_hints("predict", list(predict_kwargs))  # batch_size=, device=: Keras habits
        raise TypeError(
            " ".join(hints)
            + (" " if hints else "")
            + f"predict() got extra keyword arguments {names}, but {type(model).__name__} defines "
            "no `predict` method to pass them to: define `predict(self, input, **kwargs)` on the "
            "model, or drop them."
        )


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
    elif isinstance(batch, Mapping) and not is_keyed(batch):
        message += (
            " A dict batch without an 'input' (or 'x') entry is the input as a whole, "
            "`model(**batch)`, and its 'labels' entry is the target (the Hugging Face "
            "convention). To pass only part of it, name the entries 'input' and 'target' (or "
            "'x' and 'y'), or return `(input, target)` tuples (a dict input goes first: "
            "`({'a': a, 'b': b}, y)` calls `model(a=a, b=b)`)."
        )
    try:  # exactly the original type, so `except torch.OutOfMemoryError` still catches it
        return with_origin(error, message + " The model said", type(error))
    except Exception:  # a type that cannot be built from a message alone
        return with_origin(error, message + " The model said", RuntimeError)
