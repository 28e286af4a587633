"""Reading a batch: its input and target, calling the model on the input, describing it in errors.

Batches are ``(input, target, *ignored)`` tuples or lists, dicts with ``input``/``target`` (or
``x``/``y``) entries, or bare tensors (the input, with no target).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

INPUT_KEYS = ("input", "x")
"""Keys of a dict batch that hold the input (the first one present is used)."""
TARGET_KEYS = ("target", "y")
"""Keys of a dict batch that hold the target."""


def batch_input(batch: Any) -> Any:
    """The input of ``batch``: element 0, the ``input``/``x`` entry, or a bare tensor itself."""
    if type(batch) is tuple or type(batch) is list:  # the common case, checked cheaply
        return batch[0]
    if isinstance(batch, torch.Tensor):  # a loader of bare tensors: the batch is the input
        return batch
    if isinstance(batch, Mapping):
        return _dict_entry(batch, INPUT_KEYS, required=True)
    return batch[0]


def batch_target(batch: Any) -> Any:
    """The target of ``batch``: element 1, the ``target``/``y`` entry, or ``None``."""
    if type(batch) is tuple or type(batch) is list:  # the common case, checked cheaply
        return batch[1] if len(batch) > 1 else None
    if isinstance(batch, torch.Tensor):
        return None
    if isinstance(batch, Mapping):
        return _dict_entry(batch, TARGET_KEYS, required=False)
    return batch[1] if len(batch) > 1 else None


def with_input(batch: Any, value: Any) -> Any:
    """A copy of ``batch`` whose input is ``value``."""
    return _replace(batch, 0, value)


def with_target(batch: Any, value: Any) -> Any:
    """A copy of ``batch`` whose target is ``value``."""
    return _replace(batch, 1, value)


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


def describe(x: Any) -> str:
    """A short description of a batch element for error messages: type, shape and dtype."""
    if isinstance(x, torch.Tensor):
        return f"a tensor of shape {tuple(x.shape)} ({str(x.dtype).removeprefix('torch.')})"
    if isinstance(x, tuple | list):
        parts = ", ".join(describe(e) for e in x[:4]) + (", ..." if len(x) > 4 else "")
        return f"a {type(x).__name__} of {len(x)} [{parts}]"
    if isinstance(x, Mapping):
        return f"a {type(x).__name__} with keys {list(x)[:8]}"
    return "None" if x is None else f"a {type(x).__name__}"


def _dict_entry(batch: Mapping[Any, Any], keys: tuple[str, ...], *, required: bool) -> Any:
    for key in keys:
        if key in batch:
            return batch[key]
    if not required and any(k in batch for k in INPUT_KEYS):
        return None
    raise structure_error(batch)


def structure_error(batch: Mapping[Any, Any] | torch.Tensor) -> TypeError:
    """The error for a batch whose input (or target) cannot be found, with the fix."""
    if isinstance(batch, torch.Tensor):
        got = f"a bare tensor of shape {tuple(batch.shape)}"
        fix = (
            "pass the tensors to fit directly (`fit((x, y))`, or `fit(x)` for `(x,)` batches), or "
            "make your Dataset return `(input, target)` tuples"
        )
    else:
        got = f"a {type(batch).__name__} with keys {list(batch)[:8]}"
        fix = (
            "name the entries 'input' and 'target' (or 'x' and 'y'), or return `(input, target)` "
            "tuples (a dict input goes first: "
            "`({'a': a, 'b': b}, y)` calls `model(a=a, b=b)`), or define a custom `step()` that "
            "reads `ctx.batch`"
        )
    return TypeError(
        f"luz expects each batch to be a tuple/list `(input, target, ...)` or a dict with 'input' "
        f"and 'target' (or 'x' and 'y') entries, got {got}. To fix: {fix}."
    )


def _replace(batch: Any, index: int, value: Any) -> Any:
    if isinstance(batch, Mapping):
        keys = INPUT_KEYS if index == 0 else TARGET_KEYS
        key = next((k for k in keys if k in batch), keys[0])
        return {**batch, key: value}
    if isinstance(batch, torch.Tensor):  # a bare-tensor batch is its input
        if index == 0:
            return value if isinstance(value, torch.Tensor) else (value,)
        return (batch, value)
    items = list(batch)
    while len(items) <= index:
        items.append(None)
    items[index] = value
    return tuple(items) if isinstance(batch, tuple) else items
