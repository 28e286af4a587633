"""Gradient clipping by total norm, before each optimizer step."""

from __future__ import annotations

import math
import numbers

import torch

from luz.callbacks.base import Callback


def _check_number(value: object, argument: str, *, positive: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`{argument}` must be a number, got {value!r} ({type(value).__name__}).")
    number = float(value)
    if math.isnan(number) or number < 0 or (positive and number == 0):
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"`{argument}` must be a number {bound}, got {value!r}.")
    return number


class GradientClip(Callback):
    """Clips the gradient norm of all model parameters at ``on_train_batch_before_step``.

    Uses ``torch.nn.utils.clip_grad_norm_`` over every parameter of the model (not only the
    current optimizer's), so with several optimizers it runs before each of their steps.

    Args:
        max_norm: the largest total norm allowed (``0`` zeroes the gradients).
        norm_type: the p of the p-norm (``float("inf")`` for the max norm).

    Example:
        >>> import luz
        >>> cb = luz.callbacks.GradientClip(max_norm=1.0)
    """

    def __init__(self, max_norm: float = 1.0, norm_type: float = 2.0) -> None:
        self.max_norm = _check_number(max_norm, "max_norm", positive=False)
        self.norm_type = _check_number(norm_type, "norm_type", positive=True)

    def on_train_batch_before_step(self) -> None:
        params = [p for p in self.context.model.parameters() if p.grad is not None]
        if params:
            torch.nn.utils.clip_grad_norm_(params, self.max_norm, norm_type=self.norm_type)

    def __repr__(self) -> str:
        return f"GradientClip(max_norm={self.max_norm}, norm_type={self.norm_type})"
