"""Reading a batch: its input and target, calling the model on the input, describing it in errors.

Batches are ``(input, target, *ignored)`` tuples or lists, dicts, or bare tensors (the input,
with no target). A dict with an ``input`` (or ``x``) entry is read by its keys (``target`` or
``y`` is the target); any other dict is the input as a whole, ``model(**batch)``, and its
``labels`` entry is the target (the Hugging Face convention: the model gets the labels too).
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
LABELS_KEY = "labels"
"""The target of a dict batch without input keys, which is the input as a whole (Hugging Face)."""


def batch_input(batch: Any) -> Any:
    """The input of ``batch``: element 0, the ``input``/``x`` entry, or a bare tensor itself."""
    if type(batch) is tuple or type(batch) is list:  # the common case, checked cheaply
        return batch[0]
    if isinstance(batch, torch.Tensor):  # a loader of bare tensors: the batch is the input
        return batch
    if isinstance(batch, Mapping):
        if is_keyed(batch):
            return batch["input"] if "input" in batch else batch["x"]
        return batch  # the input as a whole: model(**batch), labels included
    return batch[0]


def batch_target(batch: Any) -> Any:
    """The target of ``batch``: element 1, the ``target``/``y`` entry of a keyed dict, the
    ``labels`` entry of another dict, or ``None``."""
    if type(batch) is tuple or type(batch) is list:  # the common case, checked cheaply
        return batch[1] if len(batch) > 1 else None
    if isinstance(batch, torch.Tensor):
        return None
    if isinstance(batch, Mapping):
        if is_keyed(batch):
            return next((batch[k] for k in TARGET_KEYS if k in batch), None)
        return batch.get(LABELS_KEY)
    return batch[1] if len(batch) > 1 else None


def is_keyed(batch: Mapping[Any, Any]) -> bool:
    """Whether a dict batch is read by its keys (it has an ``input`` or ``x`` entry); if not,
    the whole dict is the input."""
    return "input" in batch or "x" in batch


def with_input(batch: Any, value: Any) -> Any:
    """A copy of ``batch`` whose input is ``value``. For a dict batch without input keys (the
    input as a whole) a dict ``value`` is the new batch; any other value gives the keyed batch
    ``{"input": value, "target": labels}``."""
    return _replace(batch, 0, value)


def with_target(batch: Any, value: Any) -> Any:
    """A copy of ``batch`` whose target is ``value`` (the ``labels`` entry of a dict batch
    without input keys, which the model receives too)."""
    return _replace(batch, 1, value)


def has_forward(model: nn.Module) -> bool:
    """Whether the model defines ``forward`` (a model without one is treated as the identity)."""
    return type(model).forward is not nn.Module.forward


def call_model(model: nn.Module, input: Any) -> Any:
    """Run the model on a batch input: ``model(*input)`` for a tuple/list, ``model(**input)``
    for a dict (any mapping, e.g. a tokenizer's ``BatchEncoding``), ``model(input)`` otherwise.
    A model without ``forward`` returns the input."""
    if not has_forward(model):
        return input
    if isinstance(input, torch.Tensor):  # the common case, checked first: no ABC check
        return model(input)
    if isinstance(input, tuple | list):
        return model(*input)
    if isinstance(input, Mapping):
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


def _replace(batch: Any, index: int, value: Any) -> Any:
    if isinstance(batch, Mapping):
        if not is_keyed(batch):  # the whole dict is the input; its labels are the target
            if index == 1:
                return {**batch, LABELS_KEY: value}
            if isinstance(value, Mapping):  # a new input as a whole, labels as it holds them
                return dict(value)
            return {"input": value, "target": batch.get(LABELS_KEY)}  # now read by keys
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


class BatchAccess:
    """The batch part of `luz.context.Context`: ``ctx.input`` and ``ctx.target``, read from
    (and written into) ``ctx.batch`` by the rules above."""

    batch: Any

    @property
    def input(self) -> Any:
        """The first element of ``batch`` (its ``"input"``/``"x"`` entry for a dict batch, the
        batch itself for a loader that yields bare tensors); setting it replaces that element."""
        return batch_input(self.batch)

    @input.setter
    def input(self, value: Any) -> None:
        self.batch = with_input(self.batch, value)

    @property
    def target(self) -> Any:
        """The second element of ``batch`` (or its ``"target"``/``"y"`` entry for a dict batch;
        ``None`` if there is none, as for a bare-tensor batch)."""
        return batch_target(self.batch)

    @target.setter
    def target(self, value: Any) -> None:
        self.batch = with_target(self.batch, value)
