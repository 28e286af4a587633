"""Argument and shape checks shared by the built-in metrics. The shape checks never read tensor
values (no host sync in ``update``)."""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np
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


def _is_bool(value: object) -> bool:
    if isinstance(value, torch.Tensor):
        return value.dtype == torch.bool
    return isinstance(value, bool | np.bool_)


def check_real(argument: str, value: object, low: float | None = None, high: float | None = None) -> float:
    """``value`` as a finite float in ``[low, high]`` (bounds optional, inclusive).

    Accepts Python and NumPy real numbers and 0-d real tensors. A non-number is a ``TypeError``;
    a bool, NaN, an infinity or a value out of range is a ``ValueError``. Both name ``argument``,
    the value given and the allowed range.
    """
    allowed = "a finite real number" if low is None and high is None else f"a number in [{low}, {high}]"
    if _is_bool(value):
        raise ValueError(f"`{argument}` must be {allowed}, got the boolean {value!r}.")
    if isinstance(value, torch.Tensor):
        if value.ndim != 0 or value.is_complex():
            raise TypeError(f"`{argument}` must be {allowed}, got a tensor of shape {tuple(value.shape)}.")
        number = float(value)  # a one-off host read at construction
    elif isinstance(value, numbers.Real):
        number = float(value)
    else:
        raise TypeError(f"`{argument}` must be {allowed}, got {value!r} ({type(value).__name__}).")
    if (
        not math.isfinite(number)
        or (low is not None and number < low)
        or (high is not None and number > high)
    ):
        raise ValueError(f"`{argument}` must be {allowed}, got {value!r}.")
    return number


def check_integer(argument: str, value: object, minimum: int) -> int:
    """``value`` as an int of at least ``minimum``.

    Accepts Python and NumPy integers and integral floats (``1e5``). A non-number is a
    ``TypeError``; a bool, a non-integral number or a value below ``minimum`` is a
    ``ValueError``. Both name ``argument`` and the value given.
    """
    allowed = f"an integer of at least {minimum}"
    if _is_bool(value):
        raise ValueError(f"`{argument}` must be {allowed}, got the boolean {value!r}.")
    if isinstance(value, numbers.Integral):
        number = int(value)
    elif isinstance(value, numbers.Real):
        real = float(value)
        if not real.is_integer():  # NaN and infinities included
            raise ValueError(f"`{argument}` must be {allowed}, got {value!r}.")
        number = int(real)
    else:
        raise TypeError(f"`{argument}` must be {allowed}, got {value!r} ({type(value).__name__}).")
    if number < minimum:
        raise ValueError(f"`{argument}` must be {allowed}, got {value!r}.")
    return number


def logit(p: float) -> float:
    """``log(p / (1 - p))``: the logit above which ``sigmoid(x) > p`` (``-inf`` at 0, ``inf`` at 1)."""
    if p <= 0.0:
        return -math.inf
    if p >= 1.0:
        return math.inf
    return math.log(p / (1.0 - p))
