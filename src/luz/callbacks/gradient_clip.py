"""Gradient clipping by total norm, before each optimizer step."""

from __future__ import annotations

import torch

from luz._validate import check_real
from luz.callbacks.base import Callback


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
        self.max_norm = check_real(max_norm, "max_norm", minimum=0, finite=False)
        self.norm_type = check_real(norm_type, "norm_type", above=0, finite=False)

    def on_train_batch_before_step(self) -> None:
        params = [p for p in self.context.model.parameters() if p.grad is not None]
        if params:
            torch.nn.utils.clip_grad_norm_(params, self.max_norm, norm_type=self.norm_type)

    def __repr__(self) -> str:
        return f"GradientClip(max_norm={self.max_norm}, norm_type={self.norm_type})"
