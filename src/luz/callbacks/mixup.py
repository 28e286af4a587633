"""Mixup: train on convex combinations of pairs of samples and of their targets."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from luz._validate import check_flag, check_real
from luz.callbacks.base import Callback


@dataclass(frozen=True)
class MixupTarget:
    """The target of a mixed batch: the two targets and the share of the second one.

    Attributes:
        ys: ``(y, y[perm])``: the original targets and those of the shuffled samples.
        weight: shape ``(batch,)``: the share of the shuffled sample in each mixed sample.
    """

    ys: tuple[Any, Any]
    weight: torch.Tensor


def _per_sample(weight: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``weight`` viewed as ``(batch, 1, ..., 1)`` to broadcast against ``like``."""
    return weight.reshape(-1, *([1] * (like.ndim - 1))).to(dtype=like.dtype)


def mixup(x: torch.Tensor, y: Any, weight: torch.Tensor) -> tuple[torch.Tensor, MixupTarget]:
    """Mix each sample of a batch with a randomly chosen other one.

    ``x_mixed[i] = x[i] + weight[i] * (x[perm[i]] - x[i])`` for a random permutation ``perm``
    drawn with torch's RNG.

    Args:
        x: the input batch, ``(batch, ...)``.
        y: the targets (a tensor indexable by the permutation).
        weight: ``(batch,)`` shares of the shuffled sample, in ``[0, 1]`` (a ``(batch, 1)``
            column is accepted and flattened).

    Returns:
        ``(x_mixed, MixupTarget(ys=(y, y[perm]), weight=weight))``.

    Example:
        >>> import torch, luz
        >>> x, y = torch.ones(4, 3), torch.tensor([0, 1, 0, 1])
        >>> mixed, target = luz.mixup(x, y, torch.full((4,), 0.7))
        >>> float(mixed.mean())
        1.0
    """
    if not isinstance(x, torch.Tensor) or not isinstance(weight, torch.Tensor):
        raise TypeError("mixup() needs tensors for `x` and `weight`.")
    batch = x.shape[0]
    if weight.shape == (batch, 1):  # luz's own examples pass a column
        weight = weight.reshape(batch)
    if weight.shape != (batch,):
        raise ValueError(
            f"`weight` must have shape ({batch},) (one share per sample) or ({batch}, 1), got "
            f"{tuple(weight.shape)}."
        )
    perm = torch.randperm(batch, device=x.device)
    x_mixed = torch.lerp(x, x[perm], _per_sample(weight, x))
    return x_mixed, MixupTarget(ys=(y, y[perm]), weight=weight)


def _takes_reduction(fn: Any) -> bool:
    try:
        parameters = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # no introspectable signature
        return False
    return "reduction" in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values())


class MixupLoss(nn.Module):
    """Wraps a loss module so that it understands `MixupTarget`s.

    On a `MixupTarget` it computes the per-sample losses ``l1`` (against ``ys[0]``) and ``l2``
    (against ``ys[1]``) with the loss's ``reduction`` temporarily ``"none"`` (restored even on
    error) and returns ``mean(l1 + weight * (l2 - l1))``, mixing each sample with its own
    weight. On any other target it is the plain loss (averaged if the loss is unreduced), so
    validation works unchanged.

    Args:
        loss: a loss module with a ``reduction`` attribute, e.g. ``nn.CrossEntropyLoss()``, or a
            loss function that takes ``reduction=``, e.g. ``F.cross_entropy``.

    Example:
        >>> import torch, luz
        >>> from torch import nn
        >>> loss = luz.MixupLoss(nn.CrossEntropyLoss())
        >>> pred, y = torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
        >>> bool(loss(pred, y) == nn.functional.cross_entropy(pred, y))
        True
    """

    def __init__(self, loss: nn.Module | Callable[..., torch.Tensor]) -> None:
        super().__init__()
        if isinstance(loss, nn.Module):
            if not isinstance(getattr(loss, "reduction", None), str):
                raise ValueError(
                    f"`loss` ({type(loss).__name__}) must support `reduction` (like torch.nn losses) "
                    "so that per-sample losses can be computed."
                )
        elif not callable(loss) or isinstance(loss, type) or not _takes_reduction(loss):
            raise TypeError(
                "`loss` must be a loss module such as nn.CrossEntropyLoss() or a function such as "
                f"F.cross_entropy that takes `reduction=`, got {loss!r} ({type(loss).__name__})."
            )
        self.loss = loss

    def forward(self, input: Any, target: Any) -> torch.Tensor:
        if not isinstance(target, MixupTarget):
            result: torch.Tensor = self.loss(input, target)
            # An unreduced loss (reduction="none", as luz's mixup examples use) is averaged.
            return result if result.ndim == 0 else result.mean()
        l1, l2 = self._per_sample_losses(input, target.ys)
        return (l1 + _per_sample(target.weight, l1) * (l2 - l1)).mean()

    def _per_sample_losses(self, input: Any, ys: tuple[Any, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        loss = self.loss
        if not isinstance(loss, nn.Module):  # a functional loss: ask for per-sample values
            return loss(input, ys[0], reduction="none"), loss(input, ys[1], reduction="none")
        previous = getattr(loss, "reduction")  # noqa: B009 - nn.Module's __getattr__ types it badly
        setattr(loss, "reduction", "none")  # noqa: B010
        try:
            return loss(input, ys[0]), loss(input, ys[1])
        finally:
            setattr(loss, "reduction", previous)  # noqa: B010


class Mixup(Callback):
    """Mixup data augmentation (Zhang et al., 2018) for classification.

    At ``on_train_batch_begin`` (and ``on_valid_batch_begin`` with ``run_valid``) draws
    per-sample weights ``w ~ Beta(alpha, alpha)``, keeps ``max(w, 1 - w)`` and replaces
    ``ctx.input`` and ``ctx.target`` by the output of `luz.mixup`. The loss must understand a
    `MixupTarget`: wrap it in `luz.MixupLoss`, or pass ``auto_loss=True`` to have this callback
    wrap ``ctx.loss_fn`` while a mixed phase runs (restored at its end). Training metrics other
    than the loss see the `MixupTarget`, so make them validation-only
    (``luz.MetricSet(valid=[...])``).

    Args:
        alpha: the Beta distribution's parameter (> 0).
        run_valid: also mix validation batches.
        auto_loss: wrap ``ctx.loss_fn`` in `MixupLoss` during training and validation (the
            base loss may be unreduced, ``reduction="none"``).

    Example:
        >>> import luz
        >>> cb = luz.callbacks.Mixup(alpha=0.4, auto_loss=True)
    """

    def __init__(self, alpha: float = 0.4, run_valid: bool = False, auto_loss: bool = False) -> None:
        self.alpha = check_real(alpha, "alpha", above=0)
        self.run_valid = check_flag(run_valid, "run_valid")
        self.auto_loss = check_flag(auto_loss, "auto_loss")
        self._saved_loss: Any = None
        self._distribution: torch.distributions.Beta | None = None
        self._distribution_device: torch.device | None = None

    def _beta(self, device: torch.device) -> torch.distributions.Beta:
        # Built once per device: constructing it (with argument validation) reads values back
        # to the host, a sync per batch on a GPU; sampling does not.
        if self._distribution is None or self._distribution_device != device:
            alpha = torch.tensor(self.alpha, device=device)
            self._distribution = torch.distributions.Beta(alpha, alpha, validate_args=False)
            self._distribution_device = device
        return self._distribution

    def _mix(self) -> None:
        ctx = self.context
        x = ctx.input
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"Mixup needs a tensor input, got {type(x).__name__}.")
        w = self._beta(x.device).sample((x.shape[0],))
        w = torch.maximum(w, 1 - w)
        ctx.input, ctx.target = mixup(x, ctx.target, w)

    def _wrap_loss(self) -> None:
        if not self.auto_loss:
            return
        ctx = self.context
        loss_fn = ctx.loss_fn
        if loss_fn is None or isinstance(loss_fn, MixupLoss):
            return
        if not isinstance(loss_fn, nn.Module) and not _takes_reduction(loss_fn):
            raise TypeError(
                "Mixup(auto_loss=True) needs a loss module with `reduction` (e.g. "
                "nn.CrossEntropyLoss()) or a loss function with a `reduction` argument (e.g. "
                f"F.cross_entropy), got {loss_fn!r}; mix the losses in your own `loss` "
                "method instead (see luz.MixupTarget)."
            )
        self._saved_loss = loss_fn
        ctx.loss_fn = MixupLoss(loss_fn)

    def _restore_loss(self) -> None:
        if self._saved_loss is not None:
            self.context.loss_fn = self._saved_loss
            self._saved_loss = None

    def on_train_begin(self) -> None:
        self._wrap_loss()

    def on_train_batch_begin(self) -> None:
        self._mix()

    def on_train_end(self) -> None:
        self._restore_loss()

    def on_valid_begin(self) -> None:
        # Wrapped in validation too: with run_valid the batches are mixed, and without it the
        # wrapper still averages an unreduced (reduction="none") loss, as luz does.
        self._wrap_loss()

    def on_valid_batch_begin(self) -> None:
        if self.run_valid:
            self._mix()

    def on_valid_end(self) -> None:
        self._restore_loss()

    def __repr__(self) -> str:
        return f"Mixup(alpha={self.alpha}, run_valid={self.run_valid}, auto_loss={self.auto_loss})"
