"""Plain containers: checking that a value is made of dicts, lists, tuples and leaves, for a
checkpoint (tensors allowed) or for JSON (tuples tagged, so they come back as tuples).

One walker serves both: they differ only in which leaves they take, whether dict keys must be
strings, how a tuple is written, and what the error says.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

TUPLE = "__tuple__"
"""The key of the one-entry dict that stands for a tuple in JSON."""


@dataclass(frozen=True)
class _Rules:
    leaves: tuple[type, ...]
    str_keys: bool  # JSON objects have string keys only
    tag_tuples: bool  # JSON has no tuples: write {TUPLE: [...]}
    refuse: Callable[[Any, str], str]  # the error message for a value at `where`


def _walk(value: Any, where: str, rules: _Rules) -> Any:
    if value is None or isinstance(value, rules.leaves):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict) and (not rules.str_keys or all(isinstance(k, str) for k in value)):
        items = ((k, _walk(v, f"{where}[{k!r}]", rules)) for k, v in value.items())
        return OrderedDict(items) if isinstance(value, OrderedDict) else dict(items)
    if isinstance(value, list | tuple):
        walked = [_walk(v, f"{where}[{i}]", rules) for i, v in enumerate(value)]
        if isinstance(value, list):
            return walked
        return {TUPLE: walked} if rules.tag_tuples else tuple(walked)
    raise TypeError(rules.refuse(value, where))


def _not_checkpointable(value: Any, where: str) -> str:
    return (
        f"Cannot checkpoint {where}: it holds a {type(value).__name__}. Checkpoints store only "
        "tensors, numbers, strings, None and dicts/lists/tuples of them (so loading never "
        "unpickles code). Convert it, e.g. to a float or a list."
    )


def _not_json(value: Any, where: str) -> str:
    kind = "a dict with non-str keys" if isinstance(value, dict) else f"a {type(value).__name__}"
    return (
        f"Cannot save {where}: it is {kind}. luz.save() stores hparams, opt_hparams and records "
        "as JSON (numbers, strings, booleans, None, lists, tuples and dicts with str keys) so that "
        "loading never runs code. Use JSON-friendly values (e.g. a string naming an activation "
        "instead of the function), or save the weights with luz.save_model_weights()."
    )


_CHECKPOINT = _Rules(
    (bool, int, float, str, torch.Tensor), str_keys=False, tag_tuples=False, refuse=_not_checkpointable
)
_JSON = _Rules((bool, int, float, str), str_keys=True, tag_tuples=True, refuse=_not_json)


def plain(value: Any, where: str) -> Any:
    """``value`` checked to be made of dicts/lists/tuples of tensors, numbers, strings and
    ``None`` (NumPy scalars become Python numbers); anything else is a ``TypeError`` naming
    ``where`` it sits."""
    return _walk(value, where, _CHECKPOINT)


def to_json(value: Any, where: str) -> Any:
    """``value`` as JSON-ready data: numbers, strings, booleans, ``None``, lists and dicts with
    str keys; a tuple becomes ``{TUPLE: [...]}``, NumPy scalars Python numbers. Anything else is
    a ``TypeError`` naming ``where`` it sits."""
    return _walk(value, where, _JSON)


def from_json(value: Any) -> Any:
    """The inverse of `to_json`: tagged tuples become tuples again."""
    if isinstance(value, list):
        return [from_json(v) for v in value]
    if isinstance(value, dict):
        if set(value) == {TUPLE}:
            return tuple(from_json(v) for v in value[TUPLE])
        return {k: from_json(v) for k, v in value.items()}
    return value
