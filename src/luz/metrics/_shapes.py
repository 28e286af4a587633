"""Shape checks and small helpers shared by the built-in metrics. The shape checks never read
tensor values (no host sync in ``update``); argument checks are in `luz._validate`."""

from __future__ import annotations

import math
from typing import Any

import torch


def check_tensors(name: str, pred: Any, target: Any) -> None:
    """Raise a ``TypeError`` naming the metric unless both arguments are tensors."""
    if not isinstance(pred, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise TypeError(
            f"{name} expects tensors, got pred={type(pred).__name__}, target={type(target).__name__}."
        )


def shape_error(name: str, pred: torch.Tensor, target: torch.Tensor, expected: str) -> ValueError:
    """A ``ValueError`` naming the metric, what it expects and both shapes."""
    return ValueError(
        f"{name} expects {expected}; got pred {tuple(pred.shape)} and target {tuple(target.shape)}."
    )


def elementwise_pair(name: str, pred: Any, target: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``pred`` and ``target`` with equal shapes, or raise instead of broadcasting.

    Equal shapes pass. If one shape is the other plus a trailing singleton dimension
    (``(N, 1)`` and ``(N,)``), ``target`` is viewed with ``pred``'s shape. Anything else raises a
    ``ValueError`` naming the metric and both shapes: broadcasting ``(N, 1)`` against ``(N, 2)``
    would silently compare every prediction with every target.
    """
    check_tensors(name, pred, target)
    if pred.shape == target.shape:
        return pred, target
    if pred.shape == (*target.shape, 1) or target.shape == (*pred.shape, 1):
        return pred, target.reshape(pred.shape)
    raise shape_error(name, pred, target, "pred and target of the same shape")


def positive_labels(target: torch.Tensor) -> torch.Tensor:
    """0/1 labels as booleans: booleans as they are, numbers above 0.5 are positive."""
    return target if target.dtype == torch.bool else target > 0.5


def accumulator_dtype(device: torch.device) -> torch.dtype:
    """float64 keeps long sums exact; MPS has no float64, so float32 there."""
    return torch.float32 if device.type == "mps" else torch.float64


def follow(acc: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``acc`` on ``like``'s device (a one-off copy when a metric is used off its device)."""
    if acc.device == like.device:
        return acc
    dtype = accumulator_dtype(like.device) if acc.is_floating_point() else acc.dtype
    return acc.to(device=like.device, dtype=dtype)


def logit(p: float) -> float:
    """``log(p / (1 - p))``: the logit above which ``sigmoid(x) > p`` (``-inf`` at 0, ``inf`` at 1)."""
    if p <= 0.0:
        return -math.inf
    if p >= 1.0:
        return math.inf
    return math.log(p / (1.0 - p))
